//! FLV: tags from RTMP messages at the source, the file header at the peer.
//!
//! RTMP carries audio and video messages whose bodies are FLV tag bodies.
//! [`FlvPacker`] wraps each in an FLV tag and hands it on as a unit. It
//! keeps the latest decoder configuration (the AVC sequence header with
//! SPS/PPS, and the AAC AudioSpecificConfig) and puts both in front of every
//! key frame, with the key frame's timestamp, as one random-access unit, so
//! a player that starts there needs nothing older. Nothing is emitted before
//! the first key frame. When a publisher comes back after a stop
//! ([`FlvPacker::new_session`]), timestamps are shifted to continue where
//! the last session ended. Only H.264 video and AAC or MP3 audio are taken;
//! anything else is refused with an error that names the codec.

use thiserror::Error;

/// FLV tag type of audio.
pub const TAG_AUDIO: u8 = 8;
/// FLV tag type of video.
pub const TAG_VIDEO: u8 = 9;
/// Bytes of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Largest tag body FLV can express (24-bit size).
pub const MAX_TAG_BODY: usize = (1 << 24) - 1;

/// The FLV file header (audio and video present) and the first
/// PreviousTagSize (0): what a player reads before the first tag.
pub const FILE_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];

/// Why an RTMP message cannot go into the stream.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    /// Video in a codec other than H.264.
    #[error("unsupported video codec id {0} (only H.264, codec id 7, is carried)")]
    UnsupportedVideo(u8),
    /// Audio in a format other than AAC or MP3.
    #[error("unsupported audio format {0} (only AAC, 10, and MP3, 2, are carried)")]
    UnsupportedAudio(u8),
    /// An empty or oversized message body.
    #[error("a {kind} message of {len} bytes cannot be an FLV tag body")]
    BadBody {
        /// Audio or video.
        kind: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Checks that a video message body is H.264 the stream can carry.
pub fn check_video(body: &[u8]) -> Result<(), FlvError> {
    if body.len() < 2 || body.len() > MAX_TAG_BODY {
        return Err(FlvError::BadBody {
            kind: "video",
            len: body.len(),
        });
    }
    match body[0] & 0x0F {
        7 => Ok(()),
        codec => Err(FlvError::UnsupportedVideo(codec)),
    }
}

/// Checks that an audio message body is AAC or MP3.
pub fn check_audio(body: &[u8]) -> Result<(), FlvError> {
    if body.is_empty() || body.len() > MAX_TAG_BODY {
        return Err(FlvError::BadBody {
            kind: "audio",
            len: body.len(),
        });
    }
    match body[0] >> 4 {
        2 | 10 => Ok(()),
        format => Err(FlvError::UnsupportedAudio(format)),
    }
}

/// Appends one FLV tag (header, body, PreviousTagSize) to `out`.
pub fn write_tag(out: &mut Vec<u8>, tag_type: u8, timestamp_ms: u32, body: &[u8]) {
    let size = body.len().min(MAX_TAG_BODY) as u32;
    out.push(tag_type);
    out.extend_from_slice(&size.to_be_bytes()[1..]);
    out.extend_from_slice(&(timestamp_ms & 0x00FF_FFFF).to_be_bytes()[1..]);
    out.push((timestamp_ms >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&body[..size as usize]);
    out.extend_from_slice(&(TAG_HEADER_LEN as u32 + size).to_be_bytes());
}

/// Counters of the packer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlvStats {
    /// Video tags emitted.
    pub video_tags: u64,
    /// Key frames among them.
    pub key_frames: u64,
    /// Audio tags emitted.
    pub audio_tags: u64,
    /// Tags dropped while waiting for the first key frame.
    pub before_key_frame: u64,
}

/// Turns RTMP audio and video messages into FLV units (see the module
/// documentation).
#[derive(Debug, Clone, Default)]
pub struct FlvPacker {
    video_config: Option<Vec<u8>>,
    audio_config: Option<Vec<u8>>,
    started: bool,
    /// Added to this session's timestamps.
    offset_ms: i64,
    /// Newest timestamp emitted.
    last_ms: Option<u32>,
    /// The session's first timestamp is not known yet.
    rebase: bool,
    unit: Vec<u8>,
    stats: FlvStats,
}

impl FlvPacker {
    /// A packer waiting for the first key frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> FlvStats {
        self.stats
    }

    /// A new publisher takes over: its configuration is awaited afresh and
    /// its timestamps continue after the last ones emitted.
    pub fn new_session(&mut self) {
        self.video_config = None;
        self.audio_config = None;
        self.started = false;
        self.rebase = true;
    }

    fn out_ms(&mut self, ts: u32) -> u32 {
        if self.rebase {
            self.rebase = false;
            let next = self.last_ms.map_or(0, |l| i64::from(l) + 40);
            self.offset_ms = next - i64::from(ts);
        }
        let out = (i64::from(ts) + self.offset_ms).clamp(0, i64::from(u32::MAX)) as u32;
        self.last_ms = Some(self.last_ms.map_or(out, |l| l.max(out)));
        out
    }

    /// Takes a video message body at `ts` (ms); `emit(unit, rap)` gets the
    /// FLV bytes to send, if any.
    pub fn video(
        &mut self,
        ts: u32,
        body: &[u8],
        emit: impl FnOnce(&[u8], bool),
    ) -> Result<(), FlvError> {
        check_video(body)?;
        let key = body[0] >> 4 == 1;
        if body[1] == 0 {
            // AVC sequence header: carried in front of the next key frame.
            self.video_config = Some(body.to_vec());
            return Ok(());
        }
        let rap = key && self.video_config.is_some();
        if !self.started && !rap {
            self.stats.before_key_frame += 1;
            return Ok(());
        }
        self.started = true;
        let ms = self.out_ms(ts);
        self.unit.clear();
        if rap {
            if let Some(config) = &self.video_config {
                write_tag(&mut self.unit, TAG_VIDEO, ms, config);
            }
            if let Some(config) = &self.audio_config {
                write_tag(&mut self.unit, TAG_AUDIO, ms, config);
            }
            self.stats.key_frames += 1;
        }
        write_tag(&mut self.unit, TAG_VIDEO, ms, body);
        self.stats.video_tags += 1;
        emit(&self.unit, rap);
        Ok(())
    }

    /// Takes an audio message body at `ts` (ms).
    pub fn audio(
        &mut self,
        ts: u32,
        body: &[u8],
        emit: impl FnOnce(&[u8], bool),
    ) -> Result<(), FlvError> {
        check_audio(body)?;
        if body[0] >> 4 == 10 && body.get(1) == Some(&0) {
            self.audio_config = Some(body.to_vec());
            return Ok(());
        }
        if !self.started {
            self.stats.before_key_frame += 1;
            return Ok(());
        }
        let ms = self.out_ms(ts);
        self.unit.clear();
        write_tag(&mut self.unit, TAG_AUDIO, ms, body);
        self.stats.audio_tags += 1;
        emit(&self.unit, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        p: &mut FlvPacker,
        video: bool,
        ts: u32,
        body: &[u8],
    ) -> Result<Option<(Vec<u8>, bool)>, FlvError> {
        let mut got = None;
        let r = if video {
            p.video(ts, body, |u, rap| got = Some((u.to_vec(), rap)))
        } else {
            p.audio(ts, body, |u, rap| got = Some((u.to_vec(), rap)))
        };
        r.map(|()| got)
    }

    /// Tag types and timestamps of the tags in `bytes`.
    fn tags(mut bytes: &[u8]) -> Vec<(u8, u32, usize)> {
        let mut out = Vec::new();
        while bytes.len() >= TAG_HEADER_LEN + 4 {
            let size = u32::from_be_bytes([0, bytes[1], bytes[2], bytes[3]]) as usize;
            let ts = u32::from_be_bytes([bytes[7], bytes[4], bytes[5], bytes[6]]);
            out.push((bytes[0], ts, size));
            let prev = u32::from_be_bytes(
                bytes[TAG_HEADER_LEN + size..TAG_HEADER_LEN + size + 4]
                    .try_into()
                    .unwrap(),
            );
            assert_eq!(prev as usize, TAG_HEADER_LEN + size);
            bytes = &bytes[TAG_HEADER_LEN + size + 4..];
        }
        assert!(bytes.is_empty());
        out
    }

    #[test]
    fn key_frames_carry_the_configuration_and_nothing_comes_before_one() {
        let mut p = FlvPacker::new();
        assert_eq!(
            collect(&mut p, true, 0, &[0x27, 1, 0, 0, 0, 9]),
            Ok(None),
            "inter frame first"
        );
        assert_eq!(
            collect(&mut p, false, 0, &[0xAF, 1, 5]),
            Ok(None),
            "audio first"
        );
        assert_eq!(
            collect(&mut p, true, 0, &[0x17, 0, 0, 0, 0, 1, 2]),
            Ok(None),
            "AVC config"
        );
        assert_eq!(
            collect(&mut p, false, 0, &[0xAF, 0, 0x12, 0x10]),
            Ok(None),
            "AAC config"
        );
        let (unit, rap) = collect(&mut p, true, 40, &[0x17, 1, 0, 0, 0, 7, 7])
            .unwrap()
            .unwrap();
        assert!(rap);
        assert_eq!(
            tags(&unit),
            vec![(TAG_VIDEO, 40, 7), (TAG_AUDIO, 40, 4), (TAG_VIDEO, 40, 7)]
        );
        let (unit, rap) = collect(&mut p, false, 60, &[0xAF, 1, 3, 3])
            .unwrap()
            .unwrap();
        assert!(!rap);
        assert_eq!(tags(&unit), vec![(TAG_AUDIO, 60, 4)]);
        assert_eq!(p.stats().before_key_frame, 2);
    }

    #[test]
    fn a_new_session_continues_the_timeline() {
        let mut p = FlvPacker::new();
        collect(&mut p, true, 0, &[0x17, 0, 0, 0, 0, 1]).unwrap();
        collect(&mut p, true, 5_000, &[0x17, 1, 0, 0, 0, 1]).unwrap();
        collect(&mut p, true, 6_000, &[0x27, 1, 0, 0, 0, 1]).unwrap();
        p.new_session();
        assert_eq!(
            collect(&mut p, true, 0, &[0x27, 1, 0, 0, 0, 1]),
            Ok(None),
            "waits for config and key"
        );
        collect(&mut p, true, 0, &[0x17, 0, 0, 0, 0, 1]).unwrap();
        let (unit, _) = collect(&mut p, true, 0, &[0x17, 1, 0, 0, 0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(
            tags(&unit)[1].1,
            6_040,
            "continues after the last tag (6000 ms)"
        );
    }

    #[test]
    fn unsupported_codecs_are_named() {
        let mut p = FlvPacker::new();
        assert_eq!(
            collect(&mut p, true, 0, &[0x12, 0]),
            Err(FlvError::UnsupportedVideo(2))
        );
        assert_eq!(
            collect(&mut p, false, 0, &[0x6F, 0]),
            Err(FlvError::UnsupportedAudio(6))
        );
        assert!(matches!(
            collect(&mut p, true, 0, &[]),
            Err(FlvError::BadBody { .. })
        ));
    }
}
