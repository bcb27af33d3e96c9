//! The peers this peer knows of, and how it picks one to connect to
//! ([0032]-[0039]).
//!
//! A contact comes from the tracker's list, a CLUB_PEERS answer or any
//! datagram. A PONG tells its clubs, its connection counts and the upload
//! capacity it has left, and is kept and reused while fresh ([0036],
//! [0038]); its round trip gives the contact's RTT. `choose` picks among
//! the fresh, unbanned members of a club that have room for one more
//! upload (all of them when none has), at random, weighted by the uploads
//! they reported, a count of 0 weighing as 1 ([0033], [0035]), or among
//! the least loaded ([0034]). The book is bounded and forgets the
//! longest-silent contact first. It is ordered by address, so what it
//! answers (a CLUB_PEERS list, a choice, an eviction) is the same in every
//! process for the same seed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rand::Rng;

use super::rtt::Rtt;
use crate::roles::Time;
use crate::wire::{Load, SPARE_UNLIMITED};

/// How a connection target is picked among candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// At random, weighted by reported uploads (0 counts as 1) ([0033]).
    WeightedByUploads,
    /// At random among those with the fewest uploads ([0034]).
    LeastLoaded,
}

/// What is known of one peer.
#[derive(Debug, Clone, Default)]
pub struct Contact {
    /// Clubs it sits in, from its PONG (or hints from CLUB_PEERS).
    pub clubs: Vec<u16>,
    /// Load and time of its last PONG.
    pub pong: Option<(Time, Load)>,
    /// Time and nonce of the last PING sent to it.
    pub pinged: Option<Time>,
    /// Nonce of that PING.
    pub ping_nonce: u32,
    /// Club that PING asked about.
    pub ping_club: u16,
    /// Round trips to it.
    pub rtt: Option<Rtt>,
    /// Upload capacity it said it has left, kbit/s.
    pub spare_kbps: u32,
    /// Last time any datagram came from it.
    pub heard: Time,
    /// Refused us until then; not chosen meanwhile.
    pub refused_until: Time,
    /// When the tracker was last asked to have it punch, until it answers.
    pub punch_asked: Option<Time>,
    /// Its PONG said no router stands in front of it.
    pub public: bool,
}

/// Bounded address book.
#[derive(Debug, Clone)]
pub struct Contacts {
    map: BTreeMap<SocketAddr, Contact>,
    capacity: usize,
}

impl Contacts {
    /// A book of at most `capacity` contacts.
    pub fn new(capacity: usize) -> Self {
        Contacts {
            map: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The contact for `addr`, added if new.
    pub fn entry(&mut self, addr: SocketAddr, now: Time) -> &mut Contact {
        if !self.map.contains_key(&addr) && self.map.len() >= self.capacity {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, c)| c.heard)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.map.remove(&a);
            }
        }
        self.map.entry(addr).or_insert_with(|| Contact {
            heard: now,
            spare_kbps: SPARE_UNLIMITED,
            ..Contact::default()
        })
    }

    /// The contact for `addr`, if known.
    pub fn get(&self, addr: &SocketAddr) -> Option<&Contact> {
        self.map.get(addr)
    }

    /// The contact for `addr`, if known, to update.
    pub fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Contact> {
        self.map.get_mut(addr)
    }

    /// Forgets `addr`.
    pub fn remove(&mut self, addr: &SocketAddr) {
        self.map.remove(addr);
    }

    /// Number of contacts.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no contact is known.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All contacts.
    pub fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Contact)> {
        self.map.iter()
    }

    /// Contacts known or hinted to sit in `club`.
    pub fn members(&self, club: u16) -> impl Iterator<Item = (&SocketAddr, &Contact)> {
        self.map
            .iter()
            .filter(move |(_, c)| c.clubs.contains(&club))
    }

    /// Picks a member of `club` with a PONG newer than `fresh_since`,
    /// for which `allowed` holds, preferring those with at least
    /// `need_kbps` of upload capacity left, then (with `spare_public`)
    /// those behind a router: public peers are the only uploaders peers
    /// behind symmetric routers can reach, so others leave them room.
    #[allow(clippy::too_many_arguments)]
    pub fn choose(
        &self,
        club: u16,
        now: Time,
        fresh_since: Time,
        how: Choice,
        need_kbps: u32,
        spare_public: bool,
        rng: &mut impl Rng,
        allowed: impl Fn(&SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        let mut candidates: Vec<(SocketAddr, u32, bool, bool)> = self
            .members(club)
            .filter(|(a, c)| c.refused_until <= now && allowed(a))
            .filter_map(|(a, c)| {
                let (at, load) = c.pong?;
                (at >= fresh_since).then(|| {
                    let uploads =
                        u32::from(load.uploads_in_club) + u32::from(load.uploads_out_of_club);
                    (*a, uploads, c.spare_kbps >= need_kbps, c.public)
                })
            })
            .collect();
        if candidates.iter().any(|c| c.2) {
            candidates.retain(|c| c.2);
        }
        if spare_public && candidates.iter().any(|c| !c.3) {
            candidates.retain(|c| !c.3);
        }
        // In address order (the book's), so a seeded RNG gives a
        // repeatable choice.
        let candidates: Vec<(SocketAddr, u32)> =
            candidates.into_iter().map(|(a, u, _, _)| (a, u)).collect();
        match how {
            Choice::WeightedByUploads => {
                let total: u64 = candidates.iter().map(|(_, u)| u64::from((*u).max(1))).sum();
                if total == 0 {
                    return None;
                }
                let mut pick = rng.random_range(0..total);
                for (a, u) in &candidates {
                    let w = u64::from((*u).max(1));
                    if pick < w {
                        return Some(*a);
                    }
                    pick -= w;
                }
                None
            }
            Choice::LeastLoaded => {
                let least = candidates.iter().map(|(_, u)| *u).min()?;
                let lowest: Vec<SocketAddr> = candidates
                    .iter()
                    .filter(|(_, u)| *u == least)
                    .map(|(a, _)| *a)
                    .collect();
                Some(lowest[rng.random_range(0..lowest.len())])
            }
        }
    }
}
