//! Chain verification: recompute every hash from the stored canonical bytes,
//! check every link and sequence number, check that the queryable columns
//! agree with the hashed content, and check checkpoints (head hash and
//! signature). Reports the first broken sequence and why.

use std::collections::BTreeMap;

use agentsec_common::keys::Jwks;
use chrono::{DateTime, Utc};

use super::canonical::{chain_hash, CanonicalEvent};
use super::checkpoint::Checkpoint;
use super::{to_hex, Hash};

/// One stored event as read back for verification or answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRecord {
    pub sequence: u64,
    /// The columns queries filter on; they must agree with `body`.
    pub columns: IndexedColumns,
    /// The canonical bytes the hash covers.
    pub body: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The copies of event fields kept in their own columns for queries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexedColumns {
    pub event_id: String,
    pub time: DateTime<Utc>,
    pub tenant: String,
    pub agent_id: String,
    pub person_subject: String,
    pub trace_id: String,
    pub decision_id: String,
    pub kind: String,
    pub outcome: String,
}

impl IndexedColumns {
    /// The columns an event is stored with.
    pub fn of(event: &CanonicalEvent, time: DateTime<Utc>) -> Self {
        Self {
            event_id: event.id.clone(),
            time,
            tenant: event.tenant.clone(),
            agent_id: event.agent_id.clone(),
            person_subject: event.person_subject.clone(),
            trace_id: event.trace_id.clone(),
            decision_id: event.decision_id.clone(),
            kind: event.kind.clone(),
            outcome: event.outcome.clone(),
        }
    }

    /// The name of the first column that differs from `other`.
    fn first_difference(&self, other: &Self) -> Option<&'static str> {
        let pairs: [(&'static str, bool); 9] = [
            ("event_id", self.event_id == other.event_id),
            ("time", self.time == other.time),
            ("tenant", self.tenant == other.tenant),
            ("agent_id", self.agent_id == other.agent_id),
            (
                "person_subject",
                self.person_subject == other.person_subject,
            ),
            ("trace_id", self.trace_id == other.trace_id),
            ("decision_id", self.decision_id == other.decision_id),
            ("kind", self.kind == other.kind),
            ("outcome", self.outcome == other.outcome),
        ];
        pairs.iter().find(|(_, same)| !same).map(|(name, _)| *name)
    }
}

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

/// Checks one record on its own: its hash over its stored bytes and the
/// agreement of its columns with those bytes. Independent of other records,
/// so callers may run it in parallel.
pub fn check_record(record: &ChainRecord) -> Result<(), Broken> {
    let broken = |failure, reason: String| Broken {
        sequence: record.sequence,
        failure,
        reason,
    };
    let prev: Hash = record.prev_hash.as_slice().try_into().map_err(|_| {
        broken(
            Failure::PrevHashMismatch,
            format!("prev_hash has {} bytes, not 32", record.prev_hash.len()),
        )
    })?;
    let recomputed = chain_hash(&prev, record.body.as_bytes());
    if recomputed.as_slice() != record.hash.as_slice() {
        return Err(broken(
            Failure::HashMismatch,
            format!(
                "stored hash {} but the stored event hashes to {}: the event was changed after it was written",
                to_hex(&record.hash),
                to_hex(&recomputed)
            ),
        ));
    }
    let event = CanonicalEvent::from_bytes(record.body.as_bytes()).map_err(|err| {
        broken(
            Failure::HashMismatch,
            format!("the hashed event is not canonical JSON: {err}"),
        )
    })?;
    let time = event.parsed_time().ok_or_else(|| {
        broken(
            Failure::HashMismatch,
            "the hashed event has no valid time".to_owned(),
        )
    })?;
    if let Some(column) = record
        .columns
        .first_difference(&IndexedColumns::of(&event, time))
    {
        return Err(broken(
            Failure::HashMismatch,
            format!("column `{column}` differs from the hashed event: the row was changed after it was written"),
        ));
    }
    Ok(())
}

/// Walks records in sequence order and checks what links them.
pub struct ChainVerifier<'a> {
    next_sequence: u64,
    end_sequence: u64,
    expected_prev: Hash,
    checkpoints: BTreeMap<u64, Checkpoint>,
    keys: &'a Jwks,
    verified: Verified,
}

impl<'a> ChainVerifier<'a> {
    /// Verifies `start..=end`; `expected_prev` is the hash of record
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

    /// Checks the next record, given the result of [`check_record`] on it
    /// (computed apart, possibly in parallel). A gap before the record is
    /// reported first: it is the earlier breakage.
    pub fn link(
        &mut self,
        record: &ChainRecord,
        checked: Result<(), Broken>,
    ) -> Result<(), Broken> {
        if record.sequence != self.next_sequence {
            return Err(Broken {
                sequence: self.next_sequence,
                failure: Failure::SequenceGap,
                reason: format!(
                    "sequence {} is missing (next stored is {}): an event was deleted",
                    self.next_sequence, record.sequence
                ),
            });
        }
        checked?;
        if record.prev_hash.as_slice() != self.expected_prev.as_slice() {
            return Err(Broken {
                sequence: record.sequence,
                failure: Failure::PrevHashMismatch,
                reason: format!(
                    "prev_hash is {} but the previous event's hash is {}",
                    to_hex(&record.prev_hash),
                    to_hex(&self.expected_prev)
                ),
            });
        }
        // check_record has established that the hash is 32 bytes.
        self.expected_prev.copy_from_slice(&record.hash);
        if let Some(checkpoint) = self.checkpoints.remove(&record.sequence) {
            self.check_checkpoint(&checkpoint, &self.expected_prev.clone())?;
        }
        self.verified.events += 1;
        self.next_sequence += 1;
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
    use crate::domain::canonical::{format_time, CanonicalEvent};
    use crate::domain::checkpoint::signed_message;
    use crate::domain::GENESIS_HASH;
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};

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

    fn chain(len: u64) -> Vec<ChainRecord> {
        let mut prev = GENESIS_HASH;
        (1..=len)
            .map(|sequence| {
                let canonical = event(sequence);
                let body = String::from_utf8(canonical.to_bytes()).unwrap();
                let hash = chain_hash(&prev, body.as_bytes());
                let record = ChainRecord {
                    sequence,
                    columns: IndexedColumns::of(&canonical, canonical.parsed_time().unwrap()),
                    body,
                    prev_hash: prev.to_vec(),
                    hash: hash.to_vec(),
                };
                prev = hash;
                record
            })
            .collect()
    }

    fn verify(
        records: &[ChainRecord],
        end: u64,
        checkpoints: Vec<Checkpoint>,
        keys: &Jwks,
    ) -> Result<Verified, Broken> {
        let mut verifier = ChainVerifier::new(1, end, GENESIS_HASH, checkpoints, keys);
        for record in records {
            verifier.link(record, check_record(record))?;
        }
        verifier.finish()
    }

    fn checkpoint(key: &SigningKey, record: &ChainRecord) -> Checkpoint {
        let head: Hash = record.hash.as_slice().try_into().unwrap();
        let time = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let signature = key
            .sign_bytes(&signed_message(record.sequence, &head, time, key.kid()))
            .unwrap();
        Checkpoint {
            sequence: record.sequence,
            head_hash: head,
            time,
            key_id: key.kid().to_owned(),
            signature,
        }
    }

    #[test]
    fn an_intact_chain_verifies() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let keys = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        let records = chain(5);
        let checkpoints = vec![checkpoint(&key, &records[2])];
        assert_eq!(
            verify(&records, 5, checkpoints, &keys),
            Ok(Verified {
                events: 5,
                checkpoints: 1
            })
        );
    }

    #[test]
    fn an_edited_body_is_a_hash_mismatch() {
        let mut records = chain(4);
        records[2].body = records[2].body.replace("agt_3", "agt_X");
        let broken = verify(&records, 4, Vec::new(), &Jwks::default()).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (3, Failure::HashMismatch)
        );
    }

    #[test]
    fn an_edited_column_is_named() {
        let mut records = chain(4);
        records[1].columns.agent_id = "agt_other".into();
        let broken = verify(&records, 4, Vec::new(), &Jwks::default()).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (2, Failure::HashMismatch)
        );
        assert!(broken.reason.contains("agent_id"), "{}", broken.reason);
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        let mut records = chain(4);
        records[1].body = records[1].body.replace("agt_2", "agt_X");
        let prev: Hash = records[1].prev_hash.as_slice().try_into().unwrap();
        records[1].hash = chain_hash(&prev, records[1].body.as_bytes()).to_vec();
        records[1].columns.agent_id = "agt_X".into();
        let broken = verify(&records, 4, Vec::new(), &Jwks::default()).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (3, Failure::PrevHashMismatch)
        );
    }

    #[test]
    fn deleted_events_are_gaps_in_the_middle_and_at_the_end() {
        let mut records = chain(5);
        records.remove(2);
        let broken = verify(&records, 5, Vec::new(), &Jwks::default()).unwrap_err();
        assert_eq!((broken.sequence, broken.failure), (3, Failure::SequenceGap));
        let records = chain(5);
        let broken = verify(&records[..4], 5, Vec::new(), &Jwks::default()).unwrap_err();
        assert_eq!((broken.sequence, broken.failure), (5, Failure::SequenceGap));
    }

    #[test]
    fn a_gap_is_reported_before_a_later_edit() {
        let mut records = chain(5);
        records[3].body = records[3].body.replace("agt_4", "agt_X");
        records.remove(2);
        let broken = verify(&records, 5, Vec::new(), &Jwks::default()).unwrap_err();
        assert_eq!((broken.sequence, broken.failure), (3, Failure::SequenceGap));
    }

    #[test]
    fn a_rewritten_suffix_is_caught_by_the_checkpoint() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let keys = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        let original = chain(3);
        let signed = checkpoint(&key, &original[2]);
        // Rebuild the whole chain with different content: every link holds.
        let mut forged = chain(3);
        let mut prev = GENESIS_HASH;
        for record in &mut forged {
            record.body = record.body.replace("acme", "evil");
            record.columns.tenant = "evil".into();
            record.prev_hash = prev.to_vec();
            record.hash = chain_hash(&prev, record.body.as_bytes()).to_vec();
            prev = record.hash.as_slice().try_into().unwrap();
        }
        let broken = verify(&forged, 3, vec![signed.clone()], &keys).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (3, Failure::CheckpointMismatch)
        );

        let mut bad_signature = signed;
        bad_signature.signature[0] ^= 1;
        let broken = verify(&original, 3, vec![bad_signature], &keys).unwrap_err();
        assert_eq!(
            (broken.sequence, broken.failure),
            (3, Failure::CheckpointSignatureInvalid)
        );
    }
}
