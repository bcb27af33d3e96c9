//! The tracker's club recommendations ([0030]-[0031]).
//!
//! The tracker keeps a shuffled list of the clubs. Each joining peer is
//! recommended the next clubs from the front of the list, which are removed;
//! when the list runs out it is rebuilt and shuffled again. Over every pass
//! each club is recommended equally often, which balances club sizes.

use rand::seq::SliceRandom;
use rand::Rng;

/// Hands out club recommendations from a shuffled, refilled list.
#[derive(Debug, Clone)]
pub struct ClubRecommender {
    clubs: u16,
    list: Vec<u16>,
}

impl ClubRecommender {
    /// Recommendations over clubs `0..clubs` (at least one).
    pub fn new(clubs: u16) -> Self {
        ClubRecommender {
            clubs: clubs.max(1),
            list: Vec::new(),
        }
    }

    fn refill(&mut self, rng: &mut impl Rng) {
        self.list = (0..self.clubs).collect();
        self.list.shuffle(rng);
    }

    /// The next `n` distinct clubs (fewer when the swarm has fewer clubs),
    /// written into `out`; returns how many were written.
    pub fn next(&mut self, n: usize, rng: &mut impl Rng, out: &mut [u16]) -> usize {
        let n = n.min(usize::from(self.clubs)).min(out.len());
        let mut written = 0;
        while written < n {
            if self.list.is_empty() {
                self.refill(rng);
            }
            // The list is consumed from its end; skip a club already chosen
            // for this peer (possible right after a refill).
            let pick = self
                .list
                .iter()
                .rposition(|c| !out[..written].contains(c))
                .map(|i| self.list.remove(i));
            match pick {
                Some(club) => {
                    out[written] = club;
                    written += 1;
                }
                None => self.refill(rng),
            }
        }
        written
    }
}
