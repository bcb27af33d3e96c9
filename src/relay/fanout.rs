//! The relay's fan-out table: which subscribers get the blocks of each club.
//!
//! A [`FanoutTable`] maps a club to the [`Subscriber`]s (MAC and IPv4
//! address/port) its blocks are copied to. It is immutable once built, held
//! in an `Arc`, and bounded ([`FanoutLimits`]): the control plane builds a
//! new table with [`FanoutTableBuilder`] whenever membership changes and
//! publishes it through a bounded channel ([`fanout_channel`]); the data
//! plane worker polls [`FanoutUpdates`] once per loop and swaps the newest
//! table in, so its hot path reads the table without a lock. This module
//! does not decide who subscribes; that is the control plane's job.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;

use thiserror::Error;

use super::frame::MacAddr;
use crate::forward::HaveBoard;

/// Default most subscribers one club's blocks are copied to. Each copy costs
/// a UMEM frame and a TX descriptor; 64 keeps a 256-frame RX batch within
/// two 8192-entry TX rings' worth of frames.
pub const DEFAULT_MAX_SUBSCRIBERS_PER_CLUB: usize = 64;

/// Default most clubs in a table (the protocol default is 12; a relay may
/// serve several streams' worth).
pub const DEFAULT_MAX_CLUBS: usize = 1024;

/// Default depth of the table channel: the worker keeps only the newest
/// table, so one pending table is enough, and two lets the control plane
/// publish again before the worker has polled.
pub const DEFAULT_CHANNEL_DEPTH: usize = 2;

/// One receiver of a club's blocks: where the relay sends its copy, and
/// what it said it holds.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// Ethernet address of the next hop towards the subscriber (the
    /// subscriber itself on a shared segment, else the gateway).
    pub mac: MacAddr,
    /// The subscriber's IPv4 address and UDP port.
    pub addr: SocketAddrV4,
    /// The block tag it gave the relay: each copy to it carries this one.
    pub tag: u64,
    /// Its recent HAVEs, kept by the control plane ([0046]); `None` when
    /// nobody tracks them.
    pub have: Option<Arc<HaveBoard>>,
}

impl Subscriber {
    /// A subscriber at `addr`, reached through `mac`, that gave the block
    /// tag `tag`, whose HAVEs nobody tracks.
    pub fn new(mac: MacAddr, addr: SocketAddrV4, tag: u64) -> Self {
        Subscriber {
            mac,
            addr,
            tag,
            have: None,
        }
    }

    /// True when it said it holds block `seq`.
    pub fn holds(&self, seq: u64) -> bool {
        self.have.as_ref().is_some_and(|h| h.contains(seq))
    }
}

impl PartialEq for Subscriber {
    fn eq(&self, other: &Self) -> bool {
        self.mac == other.mac
            && self.addr == other.addr
            && self.tag == other.tag
            && match (&self.have, &other.have) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for Subscriber {}

/// The bounds a table is built within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutLimits {
    /// Most clubs with subscribers.
    pub max_clubs: usize,
    /// Most subscribers of one club.
    pub max_subscribers_per_club: usize,
}

impl Default for FanoutLimits {
    fn default() -> Self {
        FanoutLimits {
            max_clubs: DEFAULT_MAX_CLUBS,
            max_subscribers_per_club: DEFAULT_MAX_SUBSCRIBERS_PER_CLUB,
        }
    }
}

/// Why a subscriber could not be added to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FanoutError {
    /// The club already has the most subscribers allowed.
    #[error(
        "club {club} already has {max} subscribers, the limit \
         (raise max_subscribers_per_club or spread the club over more relays)"
    )]
    ClubFull {
        /// The club.
        club: u16,
        /// The limit.
        max: usize,
    },
    /// The table already has the most clubs allowed.
    #[error("the fan-out table already holds {max} clubs, the limit (raise max_clubs)")]
    TooManyClubs {
        /// The limit.
        max: usize,
    },
    /// The subscriber is already in that club.
    #[error("{addr} already subscribes to club {club}")]
    Duplicate {
        /// The club.
        club: u16,
        /// The subscriber's address.
        addr: SocketAddrV4,
    },
}

/// Why a table could not be handed to the worker.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The channel is full: the worker has not polled since the last
    /// publications. The table is handed back; publish it again later.
    #[error("the worker has not taken the previous fan-out tables yet; retry shortly")]
    Full(Arc<FanoutTable>),
    /// The worker is gone.
    #[error("the data plane worker has stopped; no one takes fan-out tables any more")]
    WorkerGone(Arc<FanoutTable>),
}

#[derive(Debug, Clone, Copy)]
struct ClubRange {
    club: u16,
    start: u32,
    len: u32,
}

/// Clubs and their subscribers, immutable and bounded. Lookup is a binary
/// search over the clubs; a club's subscribers are one contiguous slice.
#[derive(Debug, Clone)]
pub struct FanoutTable {
    clubs: Box<[ClubRange]>,
    subscribers: Box<[Subscriber]>,
    limits: FanoutLimits,
    swarm_clubs: u16,
}

/// Clubs in a swarm until the control plane says otherwise (the protocol
/// default, [0022]).
pub const DEFAULT_SWARM_CLUBS: u16 = 12;

impl FanoutTable {
    /// A table with no subscribers: blocks are verified and dropped.
    pub fn empty() -> Self {
        FanoutTable {
            clubs: Box::new([]),
            subscribers: Box::new([]),
            limits: FanoutLimits::default(),
            swarm_clubs: DEFAULT_SWARM_CLUBS,
        }
    }

    /// A builder for a table within `limits`.
    pub fn builder(limits: FanoutLimits) -> FanoutTableBuilder {
        FanoutTableBuilder {
            limits,
            clubs: BTreeMap::new(),
            swarm_clubs: DEFAULT_SWARM_CLUBS,
        }
    }

    /// Clubs in the swarm: a block belongs to club `seq` modulo this, and
    /// one labelled otherwise is never fanned out.
    pub fn swarm_clubs(&self) -> u16 {
        self.swarm_clubs
    }

    /// The subscribers of `club`, empty if none.
    pub fn subscribers(&self, club: u16) -> &[Subscriber] {
        match self.clubs.binary_search_by_key(&club, |c| c.club) {
            Ok(i) => {
                let c = self.clubs[i];
                let start = c.start as usize;
                self.subscribers
                    .get(start..start + c.len as usize)
                    .unwrap_or(&[])
            }
            Err(_) => &[],
        }
    }

    /// Clubs with at least one subscriber, in ascending order.
    pub fn clubs(&self) -> impl Iterator<Item = u16> + '_ {
        self.clubs.iter().map(|c| c.club)
    }

    /// Number of clubs with at least one subscriber.
    pub fn club_count(&self) -> usize {
        self.clubs.len()
    }

    /// Subscriptions in all clubs together.
    pub fn subscription_count(&self) -> usize {
        self.subscribers.len()
    }

    /// The largest club's subscriber count: the most frames one block fans
    /// out to.
    pub fn max_fanout(&self) -> usize {
        self.clubs.iter().map(|c| c.len as usize).max().unwrap_or(0)
    }

    /// The limits the table was built within.
    pub fn limits(&self) -> FanoutLimits {
        self.limits
    }
}

impl Default for FanoutTable {
    fn default() -> Self {
        Self::empty()
    }
}

/// Collects subscriptions for a [`FanoutTable`], enforcing its limits.
#[derive(Debug, Clone)]
pub struct FanoutTableBuilder {
    limits: FanoutLimits,
    clubs: BTreeMap<u16, Vec<Subscriber>>,
    swarm_clubs: u16,
}

impl FanoutTableBuilder {
    /// Sets the swarm's club count (default [`DEFAULT_SWARM_CLUBS`]).
    pub fn swarm_clubs(&mut self, clubs: u16) -> &mut Self {
        self.swarm_clubs = clubs;
        self
    }

    /// Adds `subscriber` to `club`.
    pub fn add(&mut self, club: u16, subscriber: Subscriber) -> Result<&mut Self, FanoutError> {
        let clubs = self.clubs.len();
        let max_clubs = self.limits.max_clubs;
        let max = self.limits.max_subscribers_per_club;
        let list = match self.clubs.get_mut(&club) {
            Some(list) => list,
            None if clubs >= max_clubs => return Err(FanoutError::TooManyClubs { max: max_clubs }),
            None => self.clubs.entry(club).or_default(),
        };
        if list.iter().any(|s| s.addr == subscriber.addr) {
            return Err(FanoutError::Duplicate {
                club,
                addr: subscriber.addr,
            });
        }
        if list.len() >= max {
            return Err(FanoutError::ClubFull { club, max });
        }
        list.push(subscriber);
        Ok(self)
    }

    /// The table.
    pub fn build(&self) -> FanoutTable {
        let mut clubs = Vec::with_capacity(self.clubs.len());
        let mut subscribers = Vec::with_capacity(self.clubs.values().map(Vec::len).sum());
        for (&club, list) in self.clubs.iter().filter(|(_, l)| !l.is_empty()) {
            clubs.push(ClubRange {
                club,
                start: subscribers.len() as u32,
                len: list.len() as u32,
            });
            subscribers.extend_from_slice(list);
        }
        FanoutTable {
            clubs: clubs.into_boxed_slice(),
            subscribers: subscribers.into_boxed_slice(),
            limits: self.limits,
            swarm_clubs: self.swarm_clubs,
        }
    }
}

/// The control plane's end of the table channel.
#[derive(Debug, Clone)]
pub struct FanoutPublisher {
    tx: SyncSender<Arc<FanoutTable>>,
}

/// The worker's end of the table channel.
#[derive(Debug)]
pub struct FanoutUpdates {
    rx: Receiver<Arc<FanoutTable>>,
}

/// A bounded channel of `depth` (at least 1) tables from the control plane
/// to one worker.
pub fn fanout_channel(depth: usize) -> (FanoutPublisher, FanoutUpdates) {
    let (tx, rx) = mpsc::sync_channel(depth.max(1));
    (FanoutPublisher { tx }, FanoutUpdates { rx })
}

impl FanoutPublisher {
    /// Hands `table` to the worker without blocking. The worker picks it
    /// up on its next loop.
    pub fn publish(&self, table: Arc<FanoutTable>) -> Result<(), PublishError> {
        self.tx.try_send(table).map_err(|err| match err {
            TrySendError::Full(t) => PublishError::Full(t),
            TrySendError::Disconnected(t) => PublishError::WorkerGone(t),
        })
    }
}

impl FanoutUpdates {
    /// The newest table published since the last call, if any; older ones
    /// still queued are skipped. Never blocks and never allocates.
    pub fn latest(&mut self) -> Option<Arc<FanoutTable>> {
        let mut newest = None;
        loop {
            match self.rx.try_recv() {
                Ok(table) => newest = Some(table),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => return newest,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn sub(host: u8) -> Subscriber {
        Subscriber::new(
            [2, 0, 0, 0, 0, host],
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, host), 9000),
            u64::from(host),
        )
    }

    #[test]
    fn subscribers_are_found_by_club() {
        let mut b = FanoutTable::builder(FanoutLimits::default());
        b.add(3, sub(1)).unwrap().add(3, sub(2)).unwrap();
        b.add(0, sub(3)).unwrap();
        let t = b.build();
        assert_eq!(t.subscribers(3), &[sub(1), sub(2)]);
        assert_eq!(t.subscribers(0), &[sub(3)]);
        assert!(t.subscribers(1).is_empty());
        assert_eq!(t.clubs().collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(t.subscription_count(), 3);
        assert_eq!(t.max_fanout(), 2);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = FanoutLimits {
            max_clubs: 2,
            max_subscribers_per_club: 2,
        };
        let mut b = FanoutTable::builder(limits);
        b.add(1, sub(1)).unwrap().add(1, sub(2)).unwrap();
        assert_eq!(
            b.add(1, sub(3)).unwrap_err(),
            FanoutError::ClubFull { club: 1, max: 2 }
        );
        assert!(matches!(
            b.add(1, sub(1)).unwrap_err(),
            FanoutError::Duplicate { club: 1, .. }
        ));
        b.add(2, sub(3)).unwrap();
        assert_eq!(
            b.add(3, sub(4)).unwrap_err(),
            FanoutError::TooManyClubs { max: 2 }
        );
        assert_eq!(b.build().max_fanout(), 2);
    }

    #[test]
    fn worker_sees_only_the_newest_table() {
        let (publisher, mut updates) = fanout_channel(2);
        assert!(updates.latest().is_none());
        let mut b = FanoutTable::builder(FanoutLimits::default());
        b.add(1, sub(1)).unwrap();
        publisher.publish(Arc::new(FanoutTable::empty())).unwrap();
        publisher.publish(Arc::new(b.build())).unwrap();
        assert!(matches!(
            publisher.publish(Arc::new(FanoutTable::empty())),
            Err(PublishError::Full(_))
        ));
        let t = updates.latest().expect("a table");
        assert_eq!(t.subscribers(1), &[sub(1)]);
        assert!(updates.latest().is_none());
        drop(updates);
        assert!(matches!(
            publisher.publish(Arc::new(FanoutTable::empty())),
            Err(PublishError::WorkerGone(_))
        ));
    }
}
