//! Media in and out: what streamers push and what players play.
//!
//! At the source, an ingest turns a live feed into *units*: [`rtmp`] takes
//! a push from OBS or ffmpeg (one poll thread; each connection's protocol
//! state is an [`rtmp_session`]) and [`flv`] wraps its messages in FLV tags;
//! [`ts`] finds the packets of MPEG-TS over UDP or a pipe, and
//! [`ts_retime`] keeps their timeline going when a feed restarts. Units that begin
//! a random-access point (decoder configuration and a key frame) are
//! marked, and [`cutter`] packs units into block payloads so that each such
//! unit begins a block. Every media block starts with the [`header`]:
//! container, random-access and restart flags, and the ingest time. At a
//! peer, [`output`] turns the blocks its playback clock releases into the
//! byte stream of each player, starting them at a random-access block, and
//! [`http`] serves it at `/stream`.

pub mod cutter;
pub mod flv;
pub mod flv_ts;
pub mod header;
pub mod hls;
pub mod http;
pub mod ingest;
pub mod output;
pub mod rtmp;
pub mod rtmp_session;
pub mod serve;
pub mod ts;
pub mod ts_retime;

pub use cutter::BlockCutter;
pub use header::{Container, MediaHeader, MEDIA_HEADER_LEN};
pub use http::HttpServer;
pub use ingest::{IngestPump, IngestStats};
pub use output::{Chunk, MediaOutput};
pub use rtmp::{Ingest, RtmpServer};
pub use serve::PeerStream;
pub use ts::TsPacker;
pub use ts_retime::TsRetimer;
