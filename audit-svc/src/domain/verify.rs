//! Chain verification over stored blocks: recompute every event's hash
//! from the stored canonical bytes, check that each block covers its
//! sequence range exactly and links to the block before, that its key
//! summary lists its events' keys, and check checkpoints (head hash and
//! signature). Reports the first broken sequence and why.

use std::collections::BTreeMap;

use agentsec_common::keys::Jwks;

use super::block::{Block, BlockSummary, EventKeys};
use super::canonical::chain_hash;
use super::checkpoint::Checkpoint;
use super::{to_hex, Hash};

/// Kinds of breakage, as in `VerifyFailure` of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    HashMismatch,
    PrevHashMismatch,
    SequenceGap,
    CheckpointMismatch,
    CheckpointSignatureInvalid,
}

/// The first place where the chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub sequence: u64,
    pub failure: Failure,
    pub reason: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verified {
    pub events: u64,
    pub checkpoints: u64,
}

/// Checks one block on its own, for the events in `from..=to`: each
/// event's hash over its stored bytes (with the stored hash before it), that
/// the block holds an event and a hash for every sequence of its range and
/// no more, and that its summary lists every event's keys (exactly, when
/// the whole block is in the range). Independent of other blocks, so
/// callers may run it in parallel.
pub fn check_block(
    block: &Block,
    summary: &BlockSummary,
    from: u64,
    to: u64,
) -> Result<(), Broken> {
    let first = block.first_sequence;
    let last = block.last_sequence;
    let first_checked = first.max(from);
    let broken = |sequence, failure, reason: String| Broken {
        sequence,
        failure,
        reason,
    };
    if first >= from && block.prev_hash.len() != 32 {
        return Err(broken(
            first,
            Failure::PrevHashMismatch,
            format!("prev_hash has {} bytes, not 32", block.prev_hash.len()),
        ));
    }
    let count = last.checked_sub(first).map(|n| n + 1).unwrap_or(0);
    if block.hashes.len() as u64 != count.saturating_mul(32) || count == 0 {
        return Err(broken(
            first_checked,
            Failure::HashMismatch,
            format!(
                "the block of sequences {first}..={last} holds {} bytes of hashes, not 32 per event: the block was changed after it was written",
                block.hashes.len()
            ),
        ));
    }
    let whole = from <= first && last <= to;
    let mut lines = block.lines();
    let mut listed = summary.check();
    for sequence in first..=last.min(to) {
        let Some(body) = lines.next() else {
            return Err(broken(
                sequence,
                Failure::SequenceGap,
                format!(
                    "the block of sequences {first}..={last} holds no event for sequence {sequence}: an event was deleted"
                ),
            ));
        };
        if sequence < from {
            continue;
        }
        let (Some(prev), Some(stored)) = (block.prev_hash_of(sequence), block.hash_at(sequence))
        else {
            // Lengths were checked above.
            continue;
        };
        let prev: Hash = prev.try_into().unwrap_or_default();
        let recomputed = chain_hash(&prev, body.as_bytes());
        if recomputed.as_slice() != stored {
            return Err(broken(
                sequence,
                Failure::HashMismatch,
                format!(
                    "stored hash {} but the stored event hashes to {}: the event was changed after it was written",
                    to_hex(stored),
                    to_hex(&recomputed)
                ),
            ));
        }
        let keys = EventKeys::parse(body).ok_or_else(|| {
            broken(
                sequence,
                Failure::HashMismatch,
                "the hashed event is not a canonical event with a valid time".to_owned(),
            )
        })?;
        if let Some(column) = listed.missing(&keys) {
            return Err(broken(
                sequence,
                Failure::HashMismatch,
                format!("the block summary `{column}` does not cover this event: the block was changed after it was written"),
            ));
        }
    }
    if whole {
        if lines.next().is_some() {
            return Err(broken(
                last,
                Failure::HashMismatch,
                format!("the block of sequences {first}..={last} holds more events than its range: the block was changed after it was written"),
            ));
        }
        if let Some(column) = listed.unused() {
            return Err(broken(
                first,
                Failure::HashMismatch,
                format!("the block summary `{column}` lists values that no event of the block has: the block was changed after it was written"),
            ));
        }
    }
    Ok(())
}

/// Walks blocks in sequence order and checks what links them.
pub struct ChainVerifier<'a> {
    next_sequence: u64,
    end_sequence: u64,
    expected_prev: Hash,
    checkpoints: BTreeMap<u64, Checkpoint>,
    keys: &'a Jwks,
    verified: Verified,
}

impl<'a> ChainVerifier<'a> {
    /// Verifies `start..=end`; `expected_prev` is the stored hash of event
    /// `start - 1` (the genesis hash when `start` is 1); `checkpoints` are
    /// those with a sequence in the range.
    pub fn new(
        start: u64,
        end: u64,
        expected_prev: Hash,
        checkpoints: Vec<Checkpoint>,
        keys: &'a Jwks,
    ) -> Self {
        Self {
            next_sequence: start,
            end_sequence: end,
            expected_prev,
            checkpoints: checkpoints.into_iter().map(|c| (c.sequence, c)).collect(),
            keys,
            verified: Verified::default(),
        }
    }

    /// Checks the next block, given the result of [`check_block`] on it
    /// (computed apart, possibly in parallel). Of several breakages the one
    /// at the lowest sequence is reported; a gap before the block first.
    pub fn link(&mut self, block: &Block, checked: Result<(), Broken>) -> Result<(), Broken> {
        let expected = self.next_sequence;
        // Only the first block of a range may start before it.
        let first_of_range = self.verified.events == 0;
        if block.first_sequence > expected || block.last_sequence < expected {
            return Err(Broken {
                sequence: expected,
                failure: Failure::SequenceGap,
                reason: format!(
                    "sequence {expected} is missing (the next stored block holds {}..={}): events were deleted",
                    block.first_sequence, block.last_sequence
                ),
            });
        }
        if block.first_sequence < expected && !first_of_range {
            return Err(Broken {
                sequence: block.first_sequence,
                failure: Failure::HashMismatch,
                reason: format!(
                    "the block of sequences {}..={} overlaps the block before it: the blocks were changed after they were written",
                    block.first_sequence, block.last_sequence
                ),
            });
        }
        let block_error = checked.err();
        if let Some(broken) = block_error.as_ref().filter(|b| b.sequence <= expected) {
            return Err(broken.clone());
        }
        if block.first_sequence == expected && block.prev_hash.as_slice() != self.expected_prev {
            return Err(Broken {
                sequence: expected,
                failure: Failure::PrevHashMismatch,
                reason: format!(
                    "prev_hash is {} but the previous event's hash is {}",
                    to_hex(&block.prev_hash),
                    to_hex(&self.expected_prev)
                ),
            });
        }
        let through = block.last_sequence.min(self.end_sequence);
        let due: Vec<u64> = self
            .checkpoints
            .range(expected..=through)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in due {
            if let Some(broken) = block_error.as_ref().filter(|b| b.sequence <= sequence) {
                return Err(broken.clone());
            }
            if let Some(checkpoint) = self.checkpoints.remove(&sequence) {
                let stored: Hash = block
                    .hash_at(sequence)
                    .and_then(|hash| hash.try_into().ok())
                    .unwrap_or_default();
                self.check_checkpoint(&checkpoint, &stored)?;
            }
        }
        if let Some(broken) = block_error {
            return Err(broken);
        }
        if let Some(hash) = block
            .hash_at(through)
            .and_then(|h| <Hash>::try_from(h).ok())
        {
            self.expected_prev = hash;
        }
        self.verified.events += through - expected + 1;
        self.next_sequence = through + 1;
        Ok(())
    }

    fn check_checkpoint(
        &mut self,
        checkpoint: &Checkpoint,
        stored_hash: &Hash,
    ) -> Result<(), Broken> {
        if &checkpoint.head_hash != stored_hash {
            return Err(Broken {
                sequence: checkpoint.sequence,
                failure: Failure::CheckpointMismatch,
                reason: format!(
                    "the checkpoint signed head hash {} but the stored event has {}",
                    to_hex(&checkpoint.head_hash),
                    to_hex(stored_hash)
                ),
            });
        }
        let signature_ok = self
            .keys
            .find(&checkpoint.key_id)
            .is_some_and(|key| key.verify_bytes(&checkpoint.message(), &checkpoint.signature));
        if !signature_ok {
            return Err(Broken {
                sequence: checkpoint.sequence,
                failure: Failure::CheckpointSignatureInvalid,
                reason: format!(
                    "the checkpoint's signature does not verify with key `{}`",
                    checkpoint.key_id
                ),
            });
        }
        self.verified.checkpoints += 1;
        Ok(())
    }

    /// Ends the walk: records missing at the end of the range are a gap.
    pub fn finish(self) -> Result<Verified, Broken> {
        if self.next_sequence <= self.end_sequence {
            return Err(Broken {
                sequence: self.next_sequence,
                failure: Failure::SequenceGap,
                reason: format!(
                    "sequences {}..={} are missing: events were deleted",
                    self.next_sequence, self.end_sequence
                ),
            });
        }
        Ok(self.verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::block::{BlockBuilder, NewBlock};
    use crate::domain::canonical::{format_time, CanonicalEvent};
    use crate::domain::checkpoint::signed_message;
    use crate::domain::GENESIS_HASH;
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};
    use chrono::DateTime;

    fn event(n: u64) -> CanonicalEvent {
        let time = DateTime::from_timestamp(1_790_000_000 + n as i64, 0).unwrap_or_default();
        CanonicalEvent {
            action: String::new(),
            actor_chain: Vec::new(),
            agent_id: format!("agt_{n}"),
            attributes: Default::default(),
            audience: String::new(),
            decision_id: String::new(),
            id: format!("evt_{n}"),
            kind: "decision".into(),
            outcome: "allow".into(),
            person_subject: String::new(),
            policy_ids: Vec::new(),
            reason: String::new(),
            resource_id: String::new(),
            resource_type: String::new(),
            service: "policy-svc".into(),
            span_id: String::new(),
            tenant: "acme".into(),
            time: format_time(time),
            trace_id: String::new(),
        }
    }

    /// A chain of `len` events in blocks of `per_block`.
    fn chain(len: u64, per_block: u64) -> Vec<NewBlock> {
        let bodies: Vec<String> = (1..=len)
            .map(|sequence| String::from_utf8(event(sequence).to_bytes()).unwrap())
            .collect();
        let keys: Vec<EventKeys> = bodies
            .iter()
            .map(|b| EventKeys::parse(b).unwrap())
            .collect();
        let mut blocks = Vec::new();
        let mut prev = GENESIS_HASH;
        for (index, chunk) in bodies.chunks(per_block as usize).enumerate() {
            let first = index * per_block as usize;
            let mut builder = BlockBuilder::after(first as u64, prev);
            for (offset, body) in chunk.iter().enumerate() {
                let hash = chain_hash(&prev, body.as_bytes());
                builder.push(body, &keys[first + offset], hash);
                prev = hash;
            }
            blocks.extend(builder.finish());
        }
        blocks
    }

    fn verify_range(
        blocks: &[NewBlock],
        start: u64,
        end: u64,
        checkpoints: Vec<Checkpoint>,
        keys: &Jwks,
    ) -> Result<Verified, Broken> {
        let expected_prev = blocks
            .iter()
            .find_map(|b| b.block.hash_at(start - 1))
            .map(|h| h.try_into().unwrap())
            .unwrap_or(GENESIS_HASH);
        let mut verifier = ChainVerifier::new(start, end, expected_prev, checkpoints, keys);
        for new in blocks
            .iter()
            .filter(|b| b.block.last_sequence >= start && b.block.first_sequence <= end)
        {
            verifier.link(
                &new.block,
                check_block(&new.block, &new.summary, start, end),
            )?;
        }
        verifier.finish()
    }

    fn verify(blocks: &[NewBlock], end: u64) -> Result<Verified, Broken> {
        verify_range(blocks, 1, end, Vec::new(), &Jwks::default())
    }

    fn checkpoint(key: &SigningKey, blocks: &[NewBlock], sequence: u64) -> Checkpoint {
        let head: Hash = blocks
            .iter()
            .find_map(|b| b.block.hash_at(sequence))
            .unwrap()
            .try_into()
            .unwrap();
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let signature = key
            .sign_bytes(&signed_message(sequence, &head, time, key.kid()))
            .unwrap();
        Checkpoint {
            sequence,
            head_hash: head,
            time,
            key_id: key.kid().to_owned(),
            signature,
        }
    }

    fn failure(result: Result<Verified, Broken>) -> (u64, Failure) {
        let broken = result.unwrap_err();
        (broken.sequence, broken.failure)
    }

    #[test]
    fn an_intact_chain_verifies_whole_and_in_part() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let keys = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        let blocks = chain(10, 4);
        let checkpoints = vec![checkpoint(&key, &blocks, 3), checkpoint(&key, &blocks, 9)];
        assert_eq!(
            verify_range(&blocks, 1, 10, checkpoints.clone(), &keys),
            Ok(Verified {
                events: 10,
                checkpoints: 2
            })
        );
        assert_eq!(
            verify_range(&blocks, 3, 6, checkpoints[..1].to_vec(), &keys),
            Ok(Verified {
                events: 4,
                checkpoints: 1
            })
        );
    }

    #[test]
    fn an_edited_event_is_a_hash_mismatch_at_its_sequence() {
        let mut blocks = chain(8, 4);
        blocks[1].block.events = blocks[1].block.events.replace("agt_6", "agt_X");
        assert_eq!(failure(verify(&blocks, 8)), (6, Failure::HashMismatch));
    }

    #[test]
    fn an_edited_summary_is_named() {
        let mut blocks = chain(8, 4);
        blocks[0].summary.agent_ids.retain(|a| a != "agt_3");
        let broken = verify(&blocks, 8).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (3, Failure::HashMismatch)
        );
        assert!(broken.reason.contains("agent_ids"), "{}", broken.reason);
        let mut blocks = chain(8, 4);
        blocks[1].summary.tenants.push("zzz".into());
        let broken = verify(&blocks, 8).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (5, Failure::HashMismatch)
        );
        assert!(broken.reason.contains("tenants"), "{}", broken.reason);
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_event_or_block() {
        // Inside a block the next event's hash no longer follows.
        let mut blocks = chain(8, 4);
        let block = &mut blocks[0].block;
        let lines: Vec<String> = block.lines().map(str::to_owned).collect();
        let edited = lines[1].replace("agt_2", "agt_X");
        let new_hash = chain_hash(
            &block.hash_at(1).unwrap().try_into().unwrap(),
            edited.as_bytes(),
        );
        block.hashes[32..64].copy_from_slice(&new_hash);
        block.events = [lines[0].clone(), edited, lines[2].clone(), lines[3].clone()].join("\n");
        blocks[0].summary.agent_ids.push("agt_X".into());
        blocks[0].summary.agent_ids.sort();
        assert_eq!(failure(verify(&blocks, 8)), (3, Failure::HashMismatch));
        // A whole block rewritten: the next block's link breaks.
        let mut blocks = chain(8, 4);
        let forged = chain(4, 4);
        let mut first = forged[0].clone();
        first.block.events = first.block.events.replace("acme", "evil");
        let mut prev = GENESIS_HASH;
        let mut hashes = Vec::new();
        for line in first.block.lines() {
            prev = chain_hash(&prev, line.as_bytes());
            hashes.extend_from_slice(&prev);
        }
        first.block.hashes = hashes;
        first.summary.tenants = vec!["evil".into()];
        blocks[0] = first;
        assert_eq!(failure(verify(&blocks, 8)), (5, Failure::PrevHashMismatch));
    }

    #[test]
    fn deleted_events_and_blocks_are_gaps() {
        let blocks = chain(12, 4);
        let mut without_block = blocks.clone();
        without_block.remove(1);
        assert_eq!(
            failure(verify(&without_block, 12)),
            (5, Failure::SequenceGap)
        );
        assert_eq!(failure(verify(&blocks[..2], 12)), (9, Failure::SequenceGap));

        // One event's line and hash removed from inside a block.
        let mut blocks = chain(8, 4);
        let block = &mut blocks[1].block;
        let lines: Vec<&str> = block.lines().collect();
        block.events = [lines[0], lines[2], lines[3]].join("\n");
        block.hashes.drain(32..64);
        assert_eq!(failure(verify(&blocks, 8)), (5, Failure::HashMismatch));
        // Only the line removed: the next event no longer hashes.
        let mut blocks = chain(8, 4);
        let block = &mut blocks[1].block;
        let lines: Vec<&str> = block.lines().collect();
        block.events = [lines[0], lines[2], lines[3]].join("\n");
        assert_eq!(failure(verify(&blocks, 8)), (6, Failure::HashMismatch));
    }

    #[test]
    fn a_gap_is_reported_before_a_later_edit() {
        let mut blocks = chain(12, 4);
        blocks[2].block.events = blocks[2].block.events.replace("agt_10", "agt_X");
        blocks.remove(1);
        assert_eq!(failure(verify(&blocks, 12)), (5, Failure::SequenceGap));
    }

    #[test]
    fn a_rewritten_suffix_is_caught_by_the_checkpoint() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let keys = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        let original = chain(6, 3);
        let signed = checkpoint(&key, &original, 5);
        let mut forged = chain(6, 3);
        let mut prev = GENESIS_HASH;
        for new in &mut forged {
            new.block.events = new.block.events.replace("acme", "evil");
            new.summary.tenants = vec!["evil".into()];
            new.block.prev_hash = prev.to_vec();
            let mut hashes = Vec::new();
            for line in new.block.lines() {
                prev = chain_hash(&prev, line.as_bytes());
                hashes.extend_from_slice(&prev);
            }
            new.block.hashes = hashes;
        }
        assert_eq!(
            failure(verify_range(&forged, 1, 6, vec![signed.clone()], &keys)),
            (5, Failure::CheckpointMismatch)
        );
        let mut bad_signature = signed;
        bad_signature.signature[0] ^= 1;
        assert_eq!(
            failure(verify_range(&original, 1, 6, vec![bad_signature], &keys)),
            (5, Failure::CheckpointSignatureInvalid)
        );
    }
}
