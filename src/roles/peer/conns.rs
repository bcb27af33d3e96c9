//! A peer's connections: downloads (it receives a club's blocks) and
//! uploads (it sends them), each for one club ([0025]-[0029]).
//!
//! A download remembers the last block and sequence number, for the delay,
//! gap and silence rules ([0051]-[0053]); an upload remembers the last
//! keep-alive and which recent blocks the receiver said it has ([0047]).

use std::net::SocketAddr;

use crate::roles::Time;

/// Recent sequence numbers a receiver announced with HAVE or BITFIELD.
#[derive(Debug, Clone)]
pub struct HaveWindow {
    seqs: [u64; 64],
    next: usize,
    len: usize,
}

impl Default for HaveWindow {
    fn default() -> Self {
        HaveWindow {
            seqs: [0; 64],
            next: 0,
            len: 0,
        }
    }
}

impl HaveWindow {
    /// Records `seq`, forgetting the oldest of the last 64.
    pub fn insert(&mut self, seq: u64) {
        if self.contains(seq) {
            return;
        }
        self.seqs[self.next] = seq;
        self.next = (self.next + 1) % self.seqs.len();
        self.len = (self.len + 1).min(self.seqs.len());
    }

    /// True when `seq` was announced recently.
    pub fn contains(&self, seq: u64) -> bool {
        self.seqs[..self.len].contains(&seq)
    }
}

/// A connection on which this peer receives the blocks of `club`.
#[derive(Debug, Clone)]
pub struct Download {
    /// The uploader.
    pub from: SocketAddr,
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
    /// A skipped sequence number and when the skip was seen; it becomes a
    /// gap ([0052]) if the block does not follow within the reorder window.
    pub gap: Option<(u64, Time)>,
}

/// A connection on which this peer sends the blocks of `club`.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The receiver.
    pub to: SocketAddr,
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

    /// Adds an upload to `to` for `club`, unless there is one already.
    pub fn add_upload(&mut self, to: SocketAddr, club: u16, in_club: bool, now: Time) {
        if self.upload(to, club).is_none() {
            self.uploads.push(Upload {
                to,
                club,
                in_club,
                since: now,
                keepalive: now,
                have: HaveWindow::default(),
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

    /// True when any connection involves `addr`.
    pub fn involves(&self, addr: SocketAddr) -> bool {
        self.downloads.iter().any(|d| d.from == addr) || self.uploads.iter().any(|u| u.to == addr)
    }
}
