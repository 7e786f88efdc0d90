//! audit-svc's rules, free of gRPC and database types: the canonical encoding
//! and hash chain of events, checkpoints, and chain verification.

pub mod block;
pub mod canonical;
pub mod checkpoint;
pub mod filter;
pub mod verify;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `prev_hash` of the first event.
pub const GENESIS_HASH: Hash = [0u8; 32];

/// Lowercase hex, as hashes appear in the API and exports.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
