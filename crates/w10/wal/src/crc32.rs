//! CRC-32 (IEEE 802.3), the checksum every log record and every checkpoint carries.
//!
//! A log is read back after a crash, when a record may be half written (a torn write), when a
//! sector may hold zeros the record never had, or when a bit has flipped on the medium. The
//! reader must tell a record it can trust from one it cannot, and a checksum over the record's
//! bytes is how: a record whose stored CRC disagrees with the CRC of its bytes was not written as
//! it reads now, so recovery stops there. CRC-32 detects every burst error of up to 32 bits and
//! every odd number of flipped bits, which covers the torn and flipped records a log meets; it is
//! not a defence against someone who forges records on purpose (that needs a MAC).
//!
//! This is the classic table-driven form. The polynomial is used *reflected* (`0xEDB8_8320`, bit
//! 0 first), as Ethernet, zlib, PNG and `crc32fast` do, so the crate's tests can hold it against
//! `crc32fast` as an oracle. The register starts at `0xFFFF_FFFF` (so leading zero bytes change
//! the result) and is inverted at the end. The 256-entry table holds, for every possible low byte
//! of the register, what eight one-bit steps would do to it, so the inner loop is one lookup and
//! one shift per byte instead of eight conditional xors. The table is built by a `const fn` at
//! compile time: no start-up cost, no lazy initialisation, no lock.

/// The CRC-32 polynomial 0x04C1_1DB7, bit-reversed: the reflected form processes bit 0 first.
const POLY: u32 = 0xEDB8_8320;

// starter: w10-l01 todo "Do 1: entry n = n put through 8 steps: shift right one bit, xor POLY when the bit shifted out was 1"
/// The lookup table: entry `n` is the register after feeding the byte `n` through eight
/// one-bit steps of the reflected algorithm.
const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
}

// starter: w10-l01 todo "Do 2: Crc32::new, update with the bytes, finish"
/// The CRC-32 of `bytes`, in one call.
///
/// ```
/// assert_eq!(wal::crc32(b"123456789"), 0xCBF4_3926);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

/// An incremental CRC-32: feeding the bytes in several pieces gives the same result as
/// [`crc32`] over all of them, so a checksum can cover data that is never in one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32 {
    /// The register, already inverted at the start (`0xFFFF_FFFF` before any byte).
    state: u32,
}

impl Crc32 {
    // starter: w10-l01 todo "Do 2: the register starts at 0xFFFF_FFFF"
    /// A checksum over no bytes yet.
    pub fn new() -> Self {
        Crc32 { state: 0xFFFF_FFFF }
    }

    // starter: w10-l01 todo "Do 2: per byte: TABLE[(state ^ byte) & 0xFF] ^ (state >> 8), TABLE a static built by make_table()"
    /// Feeds `bytes` into the checksum.
    pub fn update(&mut self, bytes: &[u8]) {
        // A `static` inside the fn: evaluated at compile time, and only where it is used.
        static TABLE: [u32; 256] = make_table();
        let mut state = self.state;
        for &byte in bytes {
            state = TABLE[((state ^ u32::from(byte)) & 0xFF) as usize] ^ (state >> 8);
        }
        self.state = state;
    }

    // starter: w10-l01 todo "Do 2: the register, inverted"
    /// The checksum of every byte fed so far. It does not consume the state: more bytes may
    /// follow.
    pub fn finish(&self) -> u32 {
        self.state ^ 0xFFFF_FFFF
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
