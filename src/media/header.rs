//! The media header at the start of every media block's payload.
//!
//! A block that carries media (rather than the raw bytes of a synthetic
//! feed) starts with 11 bytes, covered by the batch signature like the rest
//! of the payload: the magic `C1 4D`, a flags byte, and the ingest time.
//! The flags give the container (FLV or MPEG-TS), whether the block starts
//! at a random-access point (the decoder's configuration and a key frame
//! begin at its first data byte), and whether it begins a new ingest
//! session (the feed stopped and came back). The ingest time is when the
//! source received the block's first byte, in microseconds since the UNIX
//! epoch, for glass-to-glass latency. `docs/PROTOCOL.md` has the layout.

use thiserror::Error;

/// Bytes of the media header.
pub const MEDIA_HEADER_LEN: usize = 11;

/// The two bytes every media block starts with. The synthetic feed's byte
/// pattern (i mod 251) never holds them in a row.
pub const MEDIA_MAGIC: [u8; 2] = [0xC1, 0x4D];

const FLAG_RAP: u8 = 0x80;
const FLAG_RESTART: u8 = 0x40;
const KIND_MASK: u8 = 0x0F;
const RESERVED_MASK: u8 = 0x30;

/// The container a media block's bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    /// FLV tags (RTMP ingest); played as HTTP-FLV.
    Flv,
    /// 188-byte MPEG-TS packets (UDP or stdin ingest); played as MPEG-TS.
    Ts,
}

impl Container {
    fn code(self) -> u8 {
        match self {
            Container::Flv => 1,
            Container::Ts => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Container::Flv),
            2 => Some(Container::Ts),
            _ => None,
        }
    }

    /// The HTTP `Content-Type` of the played stream.
    pub fn content_type(self) -> &'static str {
        match self {
            Container::Flv => "video/x-flv",
            Container::Ts => "video/mp2t",
        }
    }
}

/// The parsed media header of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaHeader {
    /// The container.
    pub container: Container,
    /// The block starts at a random-access point.
    pub rap: bool,
    /// The block is the first of a new ingest session.
    pub restart: bool,
    /// When the source received the block's first byte (µs since the
    /// UNIX epoch).
    pub ingest_us: u64,
}

/// Why a payload is not a media block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MediaHeaderError {
    /// Shorter than the header.
    #[error("payload of {0} bytes is shorter than the {MEDIA_HEADER_LEN}-byte media header")]
    Short(usize),
    /// No magic: a raw (synthetic) block.
    #[error("payload does not start with the media magic C1 4D (a raw block)")]
    NoMagic,
    /// Unknown container code or reserved bits set.
    #[error("media flags {0:#04x} name no known container or set reserved bits")]
    BadFlags(u8),
}

impl MediaHeader {
    /// Writes the header into the first [`MEDIA_HEADER_LEN`] bytes of
    /// `out` (which must be at least that long).
    pub fn write(&self, out: &mut [u8; MEDIA_HEADER_LEN]) {
        let mut flags = self.container.code();
        if self.rap {
            flags |= FLAG_RAP;
        }
        if self.restart {
            flags |= FLAG_RESTART;
        }
        out[..2].copy_from_slice(&MEDIA_MAGIC);
        out[2] = flags;
        out[3..].copy_from_slice(&self.ingest_us.to_le_bytes());
    }

    /// The header as bytes.
    pub fn to_bytes(&self) -> [u8; MEDIA_HEADER_LEN] {
        let mut out = [0u8; MEDIA_HEADER_LEN];
        self.write(&mut out);
        out
    }

    /// Splits a block payload into its header and media bytes.
    pub fn parse(payload: &[u8]) -> Result<(MediaHeader, &[u8]), MediaHeaderError> {
        if payload.len() < MEDIA_HEADER_LEN {
            return Err(MediaHeaderError::Short(payload.len()));
        }
        if payload[..2] != MEDIA_MAGIC {
            return Err(MediaHeaderError::NoMagic);
        }
        let flags = payload[2];
        let container = Container::from_code(flags & KIND_MASK)
            .filter(|_| flags & RESERVED_MASK == 0)
            .ok_or(MediaHeaderError::BadFlags(flags))?;
        let mut t = [0u8; 8];
        t.copy_from_slice(&payload[3..MEDIA_HEADER_LEN]);
        Ok((
            MediaHeader {
                container,
                rap: flags & FLAG_RAP != 0,
                restart: flags & FLAG_RESTART != 0,
                ingest_us: u64::from_le_bytes(t),
            },
            &payload[MEDIA_HEADER_LEN..],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let h = MediaHeader {
            container: Container::Ts,
            rap: true,
            restart: false,
            ingest_us: 0x0102_0304_0506_0708,
        };
        assert_eq!(h.to_bytes(), [0xC1, 0x4D, 0x82, 8, 7, 6, 5, 4, 3, 2, 1]);
        let mut payload = h.to_bytes().to_vec();
        payload.extend_from_slice(b"data");
        assert_eq!(MediaHeader::parse(&payload), Ok((h, &b"data"[..])));
    }

    #[test]
    fn raw_and_malformed_payloads_are_refused() {
        assert_eq!(MediaHeader::parse(&[0xC1]), Err(MediaHeaderError::Short(1)));
        let raw: Vec<u8> = (0..64u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(MediaHeader::parse(&raw), Err(MediaHeaderError::NoMagic));
        let mut bad = [0u8; MEDIA_HEADER_LEN];
        bad[..2].copy_from_slice(&MEDIA_MAGIC);
        for flags in [0x00, 0x03, 0x0F, 0x11, 0x21] {
            bad[2] = flags;
            assert_eq!(
                MediaHeader::parse(&bad),
                Err(MediaHeaderError::BadFlags(flags))
            );
        }
    }

    proptest! {
        #[test]
        fn headers_round_trip(flv in any::<bool>(), rap in any::<bool>(), restart in any::<bool>(), t in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let h = MediaHeader {
                container: if flv { Container::Flv } else { Container::Ts },
                rap,
                restart,
                ingest_us: t,
            };
            let mut payload = h.to_bytes().to_vec();
            payload.extend_from_slice(&tail);
            prop_assert_eq!(MediaHeader::parse(&payload), Ok((h, &tail[..])));
        }

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = MediaHeader::parse(&bytes);
        }
    }
}
