//! Playback order and timing ([0060]-[0062]).
//!
//! Blocks are played in sequence order. Playback starts once the peer holds
//! one second of media with at most a tenth of it missing and its first
//! quarter whole (the holes are repaired while it plays, so scattered loss
//! does not hold the start back; the first blocks are due at once),
//! at the first such run; when that is
//! more than the most play delay older than the newest block held (a
//! newcomer's catch-up brought old blocks), at the first run the least play
//! delay behind the newest instead. Each block is then due one block-duration
//! after the previous one, scaled by a speed that slows down when the play
//! delay is below the target range and speeds up above it. The play delay
//! is tied to the source's timeline through the arrivals themselves, never
//! to this machine's clock against the source's: it is how far the block's
//! batch time lags the local clock, minus the least such lag of any block
//! that arrived lately (the earliest arrivals mark the live edge; the
//! clocks' offset cancels out). A block missing when due freezes playback for at most
//! `max_freeze`; if it arrives meanwhile it is played late, otherwise it is
//! skipped. Far behind the target range, or when no connection carries its
//! club, a missing block is skipped at once. A block newer than any held
//! is not missing but not made yet (the feed paused or the buffer ran
//! dry): playback waits for it without a freeze, and after a start
//! buffer's worth of waiting it buffers again from there, as after the
//! start, so a feed that comes back plays on.
//! The counters give continuity: blocks played on time over blocks due,
//! where the blocks that fell due while the peer was not playing (a start
//! later than the start grace, a stop after a graceful failure) count as
//! missed, and a peer that never started has continuity 0.

use super::store::BlockStore;
use crate::roles::Time;

/// Playback settings.
#[derive(Debug, Clone, Copy)]
pub struct PlayoutConfig {
    /// Media to hold before playback starts ([0060]: one second).
    pub start_buffer_us: u64,
    /// Longest freeze for one missing block ([0062]).
    pub max_freeze_us: u64,
    /// Play delay below which playback slows down ([0061]).
    pub min_delay_us: u64,
    /// Play delay above which playback speeds up ([0061]).
    pub max_delay_us: u64,
    /// Relative speed change when outside the range.
    pub speed_step: f64,
    /// Blocks that fall due later than this after the peer started, while
    /// it has not begun playing, count as missed.
    pub start_grace_us: u64,
    /// Share of a start buffer that must be held for playback to start.
    pub start_fill: f64,
}

impl Default for PlayoutConfig {
    fn default() -> Self {
        PlayoutConfig {
            start_buffer_us: 1_000_000,
            max_freeze_us: 300_000,
            min_delay_us: 1_500_000,
            max_delay_us: 4_000_000,
            speed_step: 0.1,
            start_grace_us: 2_000_000,
            start_fill: 0.9,
        }
    }
}

impl PlayoutConfig {
    /// For viewers on good networks: half a second of start buffer and a
    /// play delay kept between 0.6 and 1.5 s, so glass-to-glass falls to
    /// about a second; a block has less time to arrive or be repaired, so
    /// a lossy or slow link skips more.
    pub fn low_latency() -> Self {
        PlayoutConfig {
            start_buffer_us: 500_000,
            min_delay_us: 600_000,
            max_delay_us: 1_500_000,
            ..Self::default()
        }
    }
}

/// Playback counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    /// Blocks present when due.
    pub on_time: u64,
    /// Blocks played after a freeze.
    pub late: u64,
    /// Blocks skipped.
    pub skipped: u64,
    /// Freezes begun.
    pub freezes: u64,
    /// Blocks that fell due while the peer was not playing: after the
    /// start grace before its first start, and while it was stopped.
    pub missed: u64,
    /// True once playback has started.
    pub started: bool,
}

impl PlayoutStats {
    /// Blocks due so far.
    pub fn due(&self) -> u64 {
        self.on_time + self.late + self.skipped + self.missed
    }

    /// Blocks played on time over blocks due: 0 for a peer that never
    /// started, 1 for one that started with nothing due yet.
    pub fn continuity(&self) -> f64 {
        match (self.started, self.due()) {
            (false, _) => 0.0,
            (true, 0) => 1.0,
            (true, due) => self.on_time as f64 / due as f64,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a start buffer: anywhere (`None`) or from a block on.
    Buffering(Option<u64>),
    Playing {
        next: u64,
        due: Time,
        frozen_since: Option<Time>,
    },
}

/// What happened to one block at playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Played {
    /// Played when due.
    OnTime(u64),
    /// Played after a freeze.
    Late(u64),
    /// Skipped.
    Skipped(u64),
}

/// The playback clock of one peer.
#[derive(Debug, Clone)]
pub struct Playout {
    cfg: PlayoutConfig,
    state: State,
    created: Time,
    started_at: Option<Time>,
    /// After a stop: the block playback had reached, and when it stopped.
    stopped: Option<(u64, Time)>,
    speed: f64,
    stats: PlayoutStats,
}

/// How far `source_time` lags `now`, less the least lag `floor_us` of a
/// recent arrival: the play delay on the source's timeline.
fn play_delay(now: Time, source_time: Time, floor_us: i64) -> u64 {
    let lag = i128::from(now.0) - i128::from(source_time.0) - i128::from(floor_us);
    lag.clamp(0, i128::from(u64::MAX)) as u64
}

impl Playout {
    /// A player made at `now`, waiting for its start buffer.
    pub fn new(cfg: PlayoutConfig, now: Time) -> Self {
        Playout {
            cfg,
            state: State::Buffering(None),
            created: now,
            started_at: None,
            stopped: None,
            speed: 1.0,
            stats: PlayoutStats::default(),
        }
    }

    /// Stops playback at `now` (a graceful failure); [`Playout::advance`]
    /// buffers afresh afterwards, and the blocks due in between count as
    /// missed.
    pub fn stop(&mut self, now: Time) {
        let next = match self.state {
            State::Playing { next, .. } => Some(next),
            State::Buffering(_) => None,
        };
        if let Some(next) = next {
            self.stopped = Some((next, now));
        }
        self.state = State::Buffering(None);
    }

    /// Counters so far.
    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// When playback started.
    pub fn started_at(&self) -> Option<Time> {
        self.started_at
    }

    /// The next sequence number to play, once started.
    pub fn next_seq(&self) -> Option<u64> {
        match self.state {
            State::Buffering(_) => None,
            State::Playing { next, .. } => Some(next),
        }
    }

    /// The current speed factor.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Advances playback to `now`. `block_us` is the media duration of one
    /// block; `floor_us` the least lag of a recent arrival (see the module
    /// comment). `awaited(seq)` says whether a missing block may still come
    /// (a connection of its club has not moved past it, or it is being
    /// repaired); one that cannot is skipped without a freeze. Calls
    /// `on_play` for every block played or skipped, in order.
    pub fn advance(
        &mut self,
        now: Time,
        block_us: u64,
        floor_us: i64,
        store: &BlockStore,
        awaited: impl Fn(u64) -> bool,
        mut on_play: impl FnMut(Played),
    ) {
        let block_us = block_us.max(1);
        if let State::Buffering(from) = self.state {
            let need = self.cfg.start_buffer_us.div_ceil(block_us).max(1);
            let held = ((need as f64 * self.cfg.start_fill).ceil() as u64).clamp(1, need);
            // The first blocks are due at once: they must all be here.
            let whole = (need / 4).max(1);
            let first = match from {
                None => {
                    // A newcomer whose catch-up reaches further back than
                    // the most play delay starts the least play delay
                    // behind the newest block instead.
                    let newest = store.newest().and_then(|n| store.source_time(n));
                    let first = store.first_dense_run(Time(0), need, held, whole);
                    let too_old = |s: u64| {
                        store
                            .source_time(s)
                            .zip(newest)
                            .is_some_and(|(t, n)| t.0 + self.cfg.max_delay_us < n.0)
                    };
                    match (first, newest) {
                        (Some(f), Some(n)) if too_old(f) => store
                            .first_dense_run(
                                Time(n.0.saturating_sub(self.cfg.min_delay_us)),
                                need,
                                held,
                                whole,
                            )
                            .or(first),
                        _ => first,
                    }
                }
                Some(n) => {
                    (store.has(n) && store.seqs_in(n..n + need).count() as u64 >= held).then_some(n)
                }
            };
            let Some(first) = first else {
                return;
            };
            self.state = State::Playing {
                next: first,
                due: now,
                frozen_since: None,
            };
            if self.started_at.is_none() {
                let late = now
                    .0
                    .saturating_sub(self.created.0.saturating_add(self.cfg.start_grace_us));
                self.stats.missed += late / block_us;
                self.started_at = Some(now);
                self.stats.started = true;
            }
            if let Some((was, _)) = self.stopped.take() {
                self.stats.missed += first.saturating_sub(was);
            }
        }
        // Bounded work per call: at most one buffer's worth of blocks.
        for _ in 0..4096 {
            let State::Playing {
                next,
                due,
                frozen_since,
            } = self.state
            else {
                return;
            };
            if now < due {
                return;
            }
            let delay = store
                .source_time(next)
                .map(|t| play_delay(now, t, floor_us));
            self.speed = match delay {
                Some(d) if d > self.cfg.max_delay_us => 1.0 + self.cfg.speed_step,
                Some(d) if d < self.cfg.min_delay_us => 1.0 - self.cfg.speed_step,
                _ => 1.0,
            };
            let step = Time((block_us as f64 / self.speed) as u64);
            if store.has(next) {
                let played = if frozen_since.is_some() {
                    self.stats.late += 1;
                    Played::Late(next)
                } else {
                    self.stats.on_time += 1;
                    Played::OnTime(next)
                };
                on_play(played);
                let base = if frozen_since.is_some() { now } else { due };
                self.state = State::Playing {
                    next: next + 1,
                    due: Time(base.0 + step.0),
                    frozen_since: None,
                };
                continue;
            }
            if store.newest().is_none_or(|n| next > n) {
                // The live edge: not made yet. Wait; buffer again after a
                // start buffer's worth of waiting.
                if frozen_since.is_none() && now.0.saturating_sub(due.0) >= self.cfg.start_buffer_us
                {
                    self.state = State::Buffering(Some(next));
                }
                return;
            }
            // Missing: far behind the range, skip at once; else freeze.
            let far_behind = delay.is_some_and(|d| d > 2 * self.cfg.max_delay_us) || !awaited(next);
            let since = match frozen_since {
                Some(s) => s,
                None if far_behind => now,
                None => {
                    self.stats.freezes += 1;
                    self.state = State::Playing {
                        next,
                        due,
                        frozen_since: Some(now),
                    };
                    now
                }
            };
            if far_behind || now.0.saturating_sub(since.0) >= self.cfg.max_freeze_us {
                self.stats.skipped += 1;
                on_play(Played::Skipped(next));
                self.state = State::Playing {
                    next: next + 1,
                    due: now,
                    frozen_since: None,
                };
                continue;
            }
            return;
        }
    }
}
