//! Run-length bit fields coded with Elias gamma ([0056]).
//!
//! A bit field (bit i at `bytes[i / 8] >> (7 - i % 8)`) becomes the value of
//! its first bit plus the lengths of its runs of equal bits, each written as
//! an Elias gamma code: for a run of n >= 1, floor(log2 n) zero bits, then n
//! in binary from its leading one. Codes are packed MSB first; the last byte
//! is padded with zero bits. The decoder stops when the runs cover exactly the
//! announced bit count and rejects a run that overshoots it, a code cut off by
//! the end of the input, non-zero padding and whole bytes left over, so every
//! bit field has exactly one encoding.

use super::WireError;

/// Longest run a gamma code may announce (2^32 - 1): more leading zeros than
/// this is rejected before any shift could overflow.
const MAX_GAMMA_ZEROS: u32 = 31;

/// Bytes needed to hold `nbits` bits.
pub fn packed_len(nbits: usize) -> usize {
    nbits.div_ceil(8)
}

/// Reads bit `i` of a packed bit field.
pub fn get_bit(bytes: &[u8], i: usize) -> bool {
    bytes
        .get(i / 8)
        .is_some_and(|b| (b >> (7 - (i % 8))) & 1 == 1)
}

/// Sets bit `i` of a packed bit field (ignored past the end).
pub fn set_bit(bytes: &mut [u8], i: usize) {
    if let Some(b) = bytes.get_mut(i / 8) {
        *b |= 1 << (7 - (i % 8));
    }
}

struct BitWriter<'a> {
    out: &'a mut [u8],
    bit: usize,
}

impl BitWriter<'_> {
    fn push(&mut self, one: bool) -> Result<(), WireError> {
        let byte = self.bit / 8;
        let Some(slot) = self.out.get_mut(byte) else {
            return Err(WireError::BufferTooSmall {
                needed: byte + 1,
                capacity: self.out.len(),
            });
        };
        if self.bit.is_multiple_of(8) {
            *slot = 0;
        }
        if one {
            *slot |= 1 << (7 - (self.bit % 8));
        }
        self.bit += 1;
        Ok(())
    }

    fn gamma(&mut self, n: u64) -> Result<(), WireError> {
        let width = 64 - n.leading_zeros();
        for _ in 1..width {
            self.push(false)?;
        }
        for shift in (0..width).rev() {
            self.push((n >> shift) & 1 == 1)?;
        }
        Ok(())
    }
}

struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn next(&mut self) -> Result<bool, WireError> {
        let Some(byte) = self.data.get(self.bit / 8) else {
            return Err(WireError::Invalid {
                field: "bitfield runs",
                reason: "gamma code cut off by the end of the data",
            });
        };
        let one = (byte >> (7 - (self.bit % 8))) & 1 == 1;
        self.bit += 1;
        Ok(one)
    }

    fn gamma(&mut self) -> Result<u64, WireError> {
        let mut zeros = 0;
        while !self.next()? {
            zeros += 1;
            if zeros > MAX_GAMMA_ZEROS {
                return Err(WireError::Invalid {
                    field: "bitfield runs",
                    reason: "gamma prefix of more than 31 zeros (run over 32 bits)",
                });
            }
        }
        let mut n = 1u64;
        for _ in 0..zeros {
            n = (n << 1) | u64::from(self.next()?);
        }
        Ok(n)
    }
}

/// Encodes the first `nbits` bits of `bits` into `out`. Returns the value of
/// bit 0 and the number of bytes written.
pub fn encode(bits: &[u8], nbits: usize, out: &mut [u8]) -> Result<(bool, usize), WireError> {
    if packed_len(nbits) > bits.len() {
        return Err(WireError::Invalid {
            field: "bitfield",
            reason: "bit count exceeds the bits given",
        });
    }
    let first = nbits > 0 && get_bit(bits, 0);
    let mut w = BitWriter { out, bit: 0 };
    let mut i = 0;
    while i < nbits {
        let value = get_bit(bits, i);
        let start = i;
        while i < nbits && get_bit(bits, i) == value {
            i += 1;
        }
        w.gamma((i - start) as u64)?;
    }
    Ok((first, packed_len(w.bit)))
}

/// Walks the runs, calling `on_run(start, len, value)` for each, and checks
/// the encoding is canonical.
fn walk(
    first: bool,
    runs: &[u8],
    nbits: usize,
    mut on_run: impl FnMut(usize, usize, bool),
) -> Result<(), WireError> {
    let mut r = BitReader { data: runs, bit: 0 };
    let mut covered = 0usize;
    let mut value = first;
    while covered < nbits {
        let len = r.gamma()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= nbits - covered)
            .ok_or(WireError::Invalid {
                field: "bitfield runs",
                reason: "a run goes past the announced bit count",
            })?;
        on_run(covered, len, value);
        covered += len;
        value = !value;
    }
    if packed_len(r.bit) != runs.len() {
        return Err(WireError::Invalid {
            field: "bitfield runs",
            reason: "bytes left after the last run",
        });
    }
    while !r.bit.is_multiple_of(8) {
        if r.next()? {
            return Err(WireError::Invalid {
                field: "bitfield runs",
                reason: "non-zero padding after the last run",
            });
        }
    }
    Ok(())
}

/// Checks that `runs` is the canonical coding of an `nbits`-bit field.
pub fn validate(runs: &[u8], nbits: usize) -> Result<(), WireError> {
    walk(false, runs, nbits, |_, _, _| {})
}

/// Decodes `runs` into `out`, which must hold at least `packed_len(nbits)`
/// bytes; bits past `nbits` are left zero.
pub fn decode(first: bool, runs: &[u8], nbits: usize, out: &mut [u8]) -> Result<(), WireError> {
    let need = packed_len(nbits);
    if out.len() < need {
        return Err(WireError::BufferTooSmall {
            needed: need,
            capacity: out.len(),
        });
    }
    out[..need].fill(0);
    walk(first, runs, nbits, |start, len, value| {
        if value {
            (start..start + len).for_each(|i| set_bit(out, i));
        }
    })
}
