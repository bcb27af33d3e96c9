//! Source keys and stream ids.
//!
//! A source holds an ed25519 secret key in a 32-byte file readable by its
//! owner only (mode 0600). The matching public key is the stream id: peers
//! are given it as 64 hex digits and reject anything it did not sign. Loading
//! refuses a missing, unreadable, wrongly sized or group/world-readable file
//! with an error that says how to fix it.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

/// Bytes in a key file: the ed25519 secret seed.
pub const KEY_FILE_LEN: usize = 32;

/// Why a key or stream id could not be used.
#[derive(Debug, Error)]
pub enum KeyError {
    /// No file at the path.
    #[error("key file {path} does not exist (create one with `clubcast keygen --out {path}`)")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("cannot read key file {path}: {source}")]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not 32 bytes long.
    #[error("key file {path} holds {len} bytes, a source key is exactly {KEY_FILE_LEN}")]
    WrongSize {
        /// The path given.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Group or others may read or write the file.
    #[error(
        "key file {path} has mode {mode:03o}, readable beyond its owner; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The path given.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `keygen` would overwrite a file.
    #[error("{path} already exists; refusing to overwrite a key (remove it first)")]
    Exists {
        /// The path given.
        path: PathBuf,
    },
    /// Writing a new key failed.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The system random source failed.
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
    /// A stream id string is malformed.
    #[error("invalid stream id: {0}")]
    BadStreamId(&'static str),
}

/// A stream's public key, which peers use to authenticate blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StreamId(VerifyingKey);

impl StreamId {
    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Builds a stream id from key bytes; fails on a byte string that is not
    /// a valid curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(StreamId)
            .map_err(|_| KeyError::BadStreamId("not a valid ed25519 public key"))
    }

    /// The key as a curve point (for checking several signatures at once,
    /// `super::sigbatch`).
    pub(crate) fn point(&self) -> curve25519_dalek::edwards::EdwardsPoint {
        self.0.to_edwards()
    }

    /// Checks `signature` over `message` (strict: no malleable signatures,
    /// no small-order keys).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_bytes()))
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({self})")
    }
}

impl FromStr for StreamId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(KeyError::BadStreamId("expected 64 hex digits"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)
            .map_err(|_| KeyError::BadStreamId("not hexadecimal"))?;
        StreamId::from_bytes(&bytes)
    }
}

/// A source's secret signing key.
pub struct SourceKey(SigningKey);

impl SourceKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; KEY_FILE_LEN];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key with this 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; KEY_FILE_LEN]) -> Self {
        SourceKey(SigningKey::from_bytes(seed))
    }

    /// The stream id (public key) of this source.
    pub fn stream_id(&self) -> StreamId {
        StreamId(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Writes the key to a new file with mode 0600; never overwrites.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::Exists {
                    path: path.to_owned(),
                },
                _ => KeyError::Write {
                    path: path.to_owned(),
                    source,
                },
            })?;
        file.write_all(&self.0.to_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Write {
                path: path.to_owned(),
                source,
            })
    }

    /// Loads a key file, checking that it exists, is private to its owner and
    /// is exactly 32 bytes.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let meta = fs::metadata(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => KeyError::Missing {
                path: path.to_owned(),
            },
            _ => KeyError::Unreadable {
                path: path.to_owned(),
                source,
            },
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() != KEY_FILE_LEN as u64 {
            return Err(KeyError::WrongSize {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let bytes = fs::read(path).map_err(|source| KeyError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let seed: &[u8; KEY_FILE_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::WrongSize {
                    path: path.to_owned(),
                    len: bytes.len() as u64,
                })?;
        Ok(Self::from_seed(seed))
    }
}
