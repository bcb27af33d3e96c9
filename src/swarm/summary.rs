//! The figures of a swarm run, reduced from its peers' counters.
//!
//! - continuity: blocks played on time over blocks due since a peer's
//!   playback started ([0060]-[0062]);
//! - startup: from a peer's start to its first block played;
//! - delay: from the source's batch time to the block being verified and
//!   ready at the peer;
//! - dup_ratio: block payload bytes received over unique payload bytes;
//! - control_overhead: bytes of non-BLOCK datagrams over bytes of BLOCK
//!   datagrams, both as sent by the peers and the source;
//! - repair_overhead: bytes of BLOCKs sent in answer to REQUESTs over the
//!   unique payload the peers needed;
//! - drops_per_peer_min: connections the peers dropped for congestion
//!   (delay, gap, silence, missing keep-alives), per peer and minute;
//!   delay_drops counts those for delay alone ([0051]);
//! - bans_added: peers the peers put on their ban lists.

use hdrhistogram::Histogram;

use crate::roles::Peer;

/// The summary of a run, as printed and written by `clubcast demo`.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmSummary {
    /// Peers summarised.
    pub peers: usize,
    /// Clubs in the swarm.
    pub clubs: u16,
    /// Length of the run in seconds.
    pub duration_s: f64,
    /// The stream's bit rate in kbit/s.
    pub bitrate_kbps: u64,
    /// Lowest continuity of any peer.
    pub continuity_min: f64,
    /// Mean continuity.
    pub continuity_mean: f64,
    /// Median startup time, ms.
    pub startup_ms_p50: f64,
    /// Longest startup time, ms (a peer that never started counts as the
    /// whole run).
    pub startup_ms_max: f64,
    /// Median block delay, ms.
    pub delay_ms_p50: f64,
    /// 99th-percentile block delay, ms.
    pub delay_ms_p99: f64,
    /// Block payload received over unique payload needed.
    pub dup_ratio: f64,
    /// Control bytes over block bytes.
    pub control_overhead: f64,
    /// Blocks that failed authentication, over all peers.
    pub forged_rejected: u64,
    /// Repair bytes sent over unique payload needed.
    pub repair_overhead: f64,
    /// Congestion drops per peer and minute.
    pub drops_per_peer_min: f64,
    /// Drops for delay ([0051]), over all peers.
    pub delay_drops: u64,
    /// Bans added, over all peers.
    pub bans_added: u64,
}

impl SwarmSummary {
    /// Summarises `peers` (viewers), each at the latest time it has seen
    /// on its own clock; `source` adds its sends to the overhead figure.
    pub fn of<'a>(
        peers: impl IntoIterator<Item = &'a Peer>,
        source: Option<&Peer>,
        duration_s: f64,
        bitrate_kbps: u64,
    ) -> Self {
        let mut n = 0usize;
        let mut clubs = 0u16;
        let mut continuity = Vec::new();
        let mut startup = Vec::new();
        let mut delays: Histogram<u64> =
            Histogram::new(2).expect("2 significant figures are valid");
        let (mut payload_in, mut unique, mut forged) = (0u64, 0u64, 0u64);
        let (mut control, mut block) = (0u64, 0u64);
        let (mut repair, mut drops, mut delay_drops, mut bans) = (0u64, 0u64, 0u64, 0u64);
        for p in peers {
            n += 1;
            clubs = p.club_count();
            let s = p.stats();
            continuity.push(p.playout_stats().continuity());
            let start = p
                .playback_started_at()
                .map_or(p.now().0.saturating_sub(p.started_at().0), |t| {
                    t.0.saturating_sub(p.started_at().0)
                });
            if p.playback_started_at().is_none() {
                continuity.pop();
                continuity.push(0.0);
            }
            startup.push(start as f64 / 1000.0);
            let _ = delays.add(p.delays_us());
            payload_in += s.block_payload_in;
            unique += s.unique_payload;
            forged += s.forged_rejected;
            control += s.control_bytes_out;
            block += s.block_bytes_out;
            repair += s.repair_bytes_sent;
            drops += s.dropped_delay + s.dropped_gap + s.dropped_silence + s.dropped_keepalive;
            delay_drops += s.dropped_delay;
            bans += s.bans_added;
        }
        if let Some(src) = source {
            control += src.stats().control_bytes_out;
            block += src.stats().block_bytes_out;
        }
        startup.sort_by(f64::total_cmp);
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        SwarmSummary {
            peers: n,
            clubs,
            duration_s,
            bitrate_kbps,
            continuity_min: continuity
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .min(1.0),
            continuity_mean: if n == 0 {
                0.0
            } else {
                continuity.iter().sum::<f64>() / n as f64
            },
            startup_ms_p50: startup.get(startup.len() / 2).copied().unwrap_or(0.0),
            startup_ms_max: startup.last().copied().unwrap_or(0.0),
            delay_ms_p50: delays.value_at_quantile(0.5) as f64 / 1000.0,
            delay_ms_p99: delays.value_at_quantile(0.99) as f64 / 1000.0,
            dup_ratio: ratio(payload_in, unique),
            control_overhead: ratio(control, block),
            forged_rejected: forged,
            repair_overhead: ratio(repair, unique),
            drops_per_peer_min: if n == 0 || duration_s <= 0.0 {
                0.0
            } else {
                drops as f64 / n as f64 / (duration_s / 60.0)
            },
            delay_drops,
            bans_added: bans,
        }
    }

    /// The summary as one JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"peers\":{},\"clubs\":{},\"duration_s\":{:.1},\"bitrate_kbps\":{},\"continuity_min\":{:.4},\"continuity_mean\":{:.4},\"startup_ms_p50\":{:.0},\"startup_ms_max\":{:.0},\"delay_ms_p50\":{:.1},\"delay_ms_p99\":{:.1},\"dup_ratio\":{:.3},\"control_overhead\":{:.4},\"forged_rejected\":{},\"repair_overhead\":{:.4},\"drops_per_peer_min\":{:.2},\"delay_drops\":{},\"bans_added\":{}}}",
            self.peers,
            self.clubs,
            self.duration_s,
            self.bitrate_kbps,
            self.continuity_min,
            self.continuity_mean,
            self.startup_ms_p50,
            self.startup_ms_max,
            self.delay_ms_p50,
            self.delay_ms_p99,
            self.dup_ratio,
            self.control_overhead,
            self.forged_rejected,
            self.repair_overhead,
            self.drops_per_peer_min,
            self.delay_drops,
            self.bans_added
        )
    }
}
