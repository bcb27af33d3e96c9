//! A peer's connections: downloads (it receives a club's blocks) and
//! uploads (it sends them), each for one club ([0025]-[0029]).
//!
//! A download remembers the last block and sequence number, its one-way
//! delay and its holes, for the delay, gap and silence rules
//! ([0051]-[0053]); an upload remembers the last keep-alive, what the
//! receiver reported of it, and which recent blocks the receiver said it
//! has ([0047]).

use std::net::SocketAddr;
use std::sync::Arc;

use super::delay::OneWayDelay;
use super::gaps::GapTracker;
use super::pacer::UploadFeedback;
use crate::forward::HaveBoard;
use crate::roles::Time;

/// Recent sequence numbers a receiver announced with HAVE or BITFIELD, on
/// a board the relay's data plane can read too ([`HaveBoard`]).
#[derive(Debug, Clone, Default)]
pub struct HaveWindow(Arc<HaveBoard>);

impl HaveWindow {
    /// Records `seq`, forgetting the oldest of the last
    /// [`crate::forward::HAVE_WINDOW`].
    pub fn insert(&mut self, seq: u64) {
        self.0.insert(seq);
    }

    /// True when `seq` was announced recently.
    pub fn contains(&self, seq: u64) -> bool {
        self.0.contains(seq)
    }

    /// The board, to share with a data plane.
    pub fn board(&self) -> Arc<HaveBoard> {
        Arc::clone(&self.0)
    }
}

/// A connection on which this peer receives the blocks of `club`.
#[derive(Debug, Clone)]
pub struct Download {
    /// The uploader.
    pub from: SocketAddr,
    /// The block tag this peer gave the uploader (kept, so the hot path
    /// does not compute it again for every block).
    pub tag: u64,
    /// The club whose blocks flow.
    pub club: u16,
    /// True when this peer sits in `club`.
    pub in_club: bool,
    /// When the connection was made.
    pub since: Time,
    /// When the last block came.
    pub last_block: Time,
    /// The highest sequence number received on it.
    pub last_seq: Option<u64>,
    /// When the last KEEPALIVE was sent.
    pub keepalive_sent: Time,
    /// Blocks received on it (wrapping), reported in KEEPALIVE.
    pub received: u32,
    /// Its one-way delay against its own floor ([0051]).
    pub owd: OneWayDelay,
    /// Its holes and losses, for the gap rule ([0052]).
    pub gaps: GapTracker,
}

impl Download {
    /// A download from `from` of `club`, whose uploader was given the
    /// block tag `tag`, made at `now`.
    pub fn new(from: SocketAddr, tag: u64, club: u16, in_club: bool, now: Time) -> Self {
        Download {
            from,
            tag,
            club,
            in_club,
            since: now,
            last_block: now,
            last_seq: None,
            keepalive_sent: now,
            received: 0,
            owd: OneWayDelay::new(),
            gaps: GapTracker::default(),
        }
    }
}

/// A connection on which this peer sends the blocks of `club`.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The receiver.
    pub to: SocketAddr,
    /// The block tag the receiver gave this peer, stamped on every BLOCK
    /// sent on it.
    pub tag: u64,
    /// The club whose blocks flow.
    pub club: u16,
    /// True when the receiver sits in `club`.
    pub in_club: bool,
    /// When the connection was made.
    pub since: Time,
    /// When the receiver's last KEEPALIVE came.
    pub keepalive: Time,
    /// Blocks the receiver has.
    pub have: HaveWindow,
    /// Blocks sent on it (wrapping).
    pub sent: u32,
    /// `sent` as it was at recent ticks, to match a report with what had
    /// been sent a round trip before it came.
    pub sent_history: SentHistory,
    /// The receiver's last report: its received count and this side's
    /// sent count it is compared with.
    pub last_report: Option<(u32, u32)>,
    /// Blocks sent and received over the current control period, from the
    /// receiver's reports.
    pub period_sent: u64,
    /// See `period_sent`.
    pub period_received: u64,
    /// The receiver's latest queuing delay, us.
    pub queuing_us: Option<u64>,
    /// When a BITFIELD on it last had blocks resent ([0056] catch-up).
    pub caught_up: Option<Time>,
}

/// Samples of an upload's sent count kept.
const SENT_HISTORY: usize = 64;

/// An upload's sent count at recent times, oldest forgotten first.
#[derive(Debug, Clone)]
pub struct SentHistory {
    samples: [(Time, u32); SENT_HISTORY],
    next: usize,
    len: usize,
}

impl Default for SentHistory {
    fn default() -> Self {
        SentHistory {
            samples: [(Time(0), 0); SENT_HISTORY],
            next: 0,
            len: 0,
        }
    }
}

impl SentHistory {
    /// Records that `sent` blocks had been sent by `now`.
    pub fn record(&mut self, now: Time, sent: u32) {
        self.samples[self.next] = (now, sent);
        self.next = (self.next + 1) % SENT_HISTORY;
        self.len = (self.len + 1).min(SENT_HISTORY);
    }

    /// The count as of `t`: the latest sample not after it (the oldest
    /// kept when all are after it), or `None` with no sample.
    pub fn at(&self, t: Time) -> Option<u32> {
        let newest_first =
            (1..=self.len).map(|k| self.samples[(self.next + SENT_HISTORY - k) % SENT_HISTORY]);
        let mut oldest = None;
        for (when, sent) in newest_first {
            if when <= t {
                return Some(sent);
            }
            oldest = Some(sent);
        }
        oldest
    }
}

impl Upload {
    /// Takes a KEEPALIVE's report: `received` blocks so far and the
    /// receiver's queuing delay. The blocks it counts had left a round
    /// trip (`rtt_us`) before `now`, so it is compared with what had been
    /// sent then. Counts are summed over the period unclamped (a report
    /// that runs ahead of the estimate is made up by the next), and the
    /// period's loss is clamped to [0, 1].
    pub fn report(&mut self, now: Time, rtt_us: u64, received: u32, queuing_us: Option<u64>) {
        let then = Time(now.0.saturating_sub(rtt_us));
        let sent_then = self.sent_history.at(then).unwrap_or(self.sent);
        if let Some((r0, s0)) = self.last_report {
            let sent = u64::from(sent_then.wrapping_sub(s0));
            let got = u64::from(received.wrapping_sub(r0));
            // A count that went backwards (a wrapped history, a lie) is
            // ignored.
            if sent < u64::from(u32::MAX / 2) && got < u64::from(u32::MAX / 2) {
                self.period_sent += sent;
                self.period_received += got;
            }
        }
        self.last_report = Some((received, sent_then));
        if queuing_us.is_some() {
            self.queuing_us = queuing_us;
        }
    }

    /// What its receiver reported over the period just ended; starts the
    /// next. Arrivals reported beyond what was sent (a burst whose sends
    /// the round-trip shift put in the next period) carry over to it.
    pub fn take_feedback(&mut self) -> UploadFeedback {
        let received = self.period_received.min(self.period_sent);
        let feedback = UploadFeedback {
            sent: self.period_sent,
            received,
            queuing_us: self.queuing_us,
        };
        self.period_received -= received;
        self.period_sent = 0;
        feedback
    }
}

/// All connections of a peer.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    /// Downloads.
    pub downloads: Vec<Download>,
    /// Uploads.
    pub uploads: Vec<Upload>,
}

impl Connections {
    /// The download from `from` for `club`.
    pub fn download(&mut self, from: SocketAddr, club: u16) -> Option<&mut Download> {
        self.downloads
            .iter_mut()
            .find(|d| d.from == from && d.club == club)
    }

    /// The upload to `to` for `club`.
    pub fn upload(&mut self, to: SocketAddr, club: u16) -> Option<&mut Upload> {
        self.uploads
            .iter_mut()
            .find(|u| u.to == to && u.club == club)
    }

    /// Adds an upload to `to` for `club`, whose receiver gave the block
    /// tag `tag`, unless there is one already (whose tag is then updated).
    pub fn add_upload(&mut self, to: SocketAddr, club: u16, in_club: bool, tag: u64, now: Time) {
        if let Some(u) = self.upload(to, club) {
            u.tag = tag;
        } else {
            self.uploads.push(Upload {
                to,
                tag,
                club,
                in_club,
                since: now,
                keepalive: now,
                have: HaveWindow::default(),
                sent: 0,
                sent_history: SentHistory::default(),
                last_report: None,
                period_sent: 0,
                period_received: 0,
                queuing_us: None,
                caught_up: None,
            });
        }
    }

    /// Downloads of `club`.
    pub fn downloads_of(&self, club: u16) -> usize {
        self.downloads.iter().filter(|d| d.club == club).count()
    }

    /// Uploads of `club` to peers inside it.
    pub fn in_club_uploads_of(&self, club: u16) -> usize {
        self.uploads
            .iter()
            .filter(|u| u.club == club && u.in_club)
            .count()
    }

    /// Removes the download from `from` for `club`; true if there was one.
    pub fn remove_download(&mut self, from: SocketAddr, club: u16) -> bool {
        let before = self.downloads.len();
        self.downloads
            .retain(|d| !(d.from == from && d.club == club));
        before != self.downloads.len()
    }

    /// Removes the upload to `to` for `club`; true if there was one.
    pub fn remove_upload(&mut self, to: SocketAddr, club: u16) -> bool {
        let before = self.uploads.len();
        self.uploads.retain(|u| !(u.to == to && u.club == club));
        before != self.uploads.len()
    }

    /// Whether `addr` holds a connection with this peer, either way.
    pub fn is_connected(&self, addr: SocketAddr) -> bool {
        self.downloads.iter().any(|d| d.from == addr) || self.uploads.iter().any(|u| u.to == addr)
    }

    /// Every peer this one has a connection with, in address order, once.
    pub fn peers(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .downloads
            .iter()
            .map(|d| d.from)
            .chain(self.uploads.iter().map(|u| u.to))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// True when any connection involves `addr`.
    pub fn involves(&self, addr: SocketAddr) -> bool {
        self.downloads.iter().any(|d| d.from == addr) || self.uploads.iter().any(|u| u.to == addr)
    }
}
