//! The media side of `clubcast demo`: a live feed into the source and a
//! `/stream` for every peer.
//!
//! With `--rtmp-listen`, `--udp-ts-listen` or `--media testsrc` the demo's
//! source takes a real feed ([`IngestPump`]) instead of its synthetic one,
//! and peer i serves its stream at `http://127.0.0.1:(P+i)/stream`
//! ([`PeerStream`]). `--media testsrc` runs Debian's ffmpeg to push a test
//! pattern (320x240 H.264 with an AAC tone) for the demo's duration, and
//! stops it at the end. Each shard thread keeps a [`ShardMedia`] and calls
//! it every few milliseconds: the pump feeds the source, the streams take
//! what their peers played.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

use hdrhistogram::Histogram;

use crate::io::udp::NodeId;
use crate::media::{IngestPump, PeerStream};
use crate::swarm::loopback::Shard;

/// What `--media` can push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MediaSource {
    /// ffmpeg's `testsrc` pattern and a sine tone.
    Testsrc,
}

/// The feed and players of one shard.
#[derive(Debug, Default)]
pub struct ShardMedia {
    /// The source's ingest (the shard that holds the source).
    pub pump: Option<IngestPump>,
    /// Each peer's stream.
    pub streams: Vec<(NodeId, PeerStream)>,
}

impl ShardMedia {
    /// Feeds the source and the players of `shard` at `now_us`.
    pub fn service(&mut self, shard: &mut Shard, now_us: u64) {
        if let (Some(pump), Some(source)) = (&mut self.pump, shard.source_mut()) {
            let now = crate::roles::Time(now_us);
            pump.pump(now_us, |payload| source.push_block(now, &payload));
        }
        for (id, stream) in &mut self.streams {
            if let Some(peer) = shard.peer_mut(*id) {
                stream.service(peer, now_us);
            }
        }
    }

    /// Serves peer `id` of this shard on 127.0.0.1:`port`, with HLS
    /// segments of about `segment_target_us`.
    pub fn serve(
        &mut self,
        id: NodeId,
        port: u16,
        segment_target_us: u64,
    ) -> Result<SocketAddr, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = PeerStream::start(addr, segment_target_us)
            .map_err(|e| format!("cannot serve HTTP on {addr}: {e}"))?;
        let at = stream.addr();
        self.streams.push((id, stream));
        Ok(at)
    }
}

/// What the players got, over all peers.
#[derive(Debug)]
pub struct MediaSummary {
    /// Media blocks played out.
    pub blocks: u64,
    /// Blocks skipped (breaks in the stream).
    pub skipped: u64,
    /// Players dropped as too slow.
    pub dropped_slow: u64,
    /// Ingest-to-output latency, µs.
    pub latency: Histogram<u64>,
}

impl MediaSummary {
    /// Sums the shards' streams.
    pub fn of<'a>(media: impl IntoIterator<Item = &'a ShardMedia>) -> Self {
        let mut s = MediaSummary {
            blocks: 0,
            skipped: 0,
            dropped_slow: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| unreachable!("constant, valid bounds")),
        };
        for m in media {
            for (_, stream) in &m.streams {
                let o = stream.stats();
                s.blocks += o.blocks;
                s.skipped += o.skipped;
                s.dropped_slow += o.dropped_slow;
                let _ = s.latency.add(stream.output().latency());
            }
        }
        s
    }

    /// One JSON line for scripts.
    pub fn to_json(&self) -> String {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "{{\"media_blocks\":{},\"media_skipped\":{},\"players_dropped_slow\":{},\"glass_to_glass_ms_p50\":{:.1},\"glass_to_glass_ms_p99\":{:.1}}}",
            self.blocks,
            self.skipped,
            self.dropped_slow,
            ms(0.5),
            ms(0.99)
        )
    }
}

/// Starts ffmpeg pushing a test pattern for `seconds` to the RTMP endpoint
/// `rtmp`, or as MPEG-TS to UDP `udp`.
pub fn push_testsrc(
    rtmp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    seconds: u64,
) -> Result<Child, String> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        ]);
    match (rtmp, udp) {
        (Some(a), _) => cmd.args([
            "-f",
            "flv",
            &format!("rtmp://{a}/live/{}", super::demo::DEMO_STREAM_KEY),
        ]),
        (None, Some(a)) => cmd.args(["-f", "mpegts", &format!("udp://{a}?pkt_size=1316")]),
        (None, None) => return Err("testsrc needs an RTMP or UDP endpoint".into()),
    };
    cmd.stdin(Stdio::null()).spawn().map_err(|e| {
        format!("cannot run ffmpeg for --media testsrc (install Debian's ffmpeg): {e}")
    })
}
