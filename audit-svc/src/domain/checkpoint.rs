//! Signed checkpoints: a statement, signed with Ed25519, that the chain had
//! `head_hash` at `sequence`. The signed message is
//! `"agentsec-audit-checkpoint-v1\n" + sequence + "\n" + head_hash_hex + "\n"
//! + time + "\n" + key_id`, without a trailing newline.

use chrono::{DateTime, Utc};

use super::canonical::format_time;
use super::{to_hex, Hash};

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub sequence: u64,
    pub head_hash: Hash,
    /// Microsecond precision.
    pub time: DateTime<Utc>,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// The exact bytes a checkpoint signature covers.
pub fn signed_message(
    sequence: u64,
    head_hash: &Hash,
    time: DateTime<Utc>,
    key_id: &str,
) -> Vec<u8> {
    format!(
        "agentsec-audit-checkpoint-v1\n{sequence}\n{}\n{}\n{key_id}",
        to_hex(head_hash),
        format_time(time)
    )
    .into_bytes()
}

impl Checkpoint {
    pub fn message(&self) -> Vec<u8> {
        signed_message(self.sequence, &self.head_hash, self.time, &self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_has_the_documented_layout() {
        let time = DateTime::from_timestamp(1_790_000_000, 5_000).unwrap();
        let message = signed_message(42, &[0xab; 32], time, "kid-1");
        let expected = format!(
            "agentsec-audit-checkpoint-v1\n42\n{}\n{}\nkid-1",
            "ab".repeat(32),
            format_time(time)
        );
        assert_eq!(String::from_utf8(message).unwrap(), expected);
    }
}
