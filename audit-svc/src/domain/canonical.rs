//! The canonical byte encoding of an event and the chain hash over it.
//!
//! `canonical_bytes` is RFC 8785 (JCS) JSON of a fixed object with 19 keys in
//! sorted order, every key always present, and only strings in it, so it is
//! byte-for-byte what Python's
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
//! produces. `hash = SHA-256(prev_hash || canonical_bytes)`. The full
//! specification, with a verifier, is in `docs/audit-chain.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Hash;

/// The hashed form of an event. Field order is the sorted key order: serde
/// writes fields in declaration order, which makes the output canonical.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalEvent {
    pub action: String,
    pub actor_chain: Vec<CanonicalActor>,
    pub agent_id: String,
    pub attributes: BTreeMap<String, String>,
    pub audience: String,
    pub decision_id: String,
    pub id: String,
    pub kind: String,
    pub outcome: String,
    pub person_subject: String,
    pub policy_ids: Vec<String>,
    pub reason: String,
    pub resource_id: String,
    pub resource_type: String,
    pub service: String,
    pub span_id: String,
    pub tenant: String,
    pub time: String,
    pub trace_id: String,
}

/// One actor of the chain, keys in sorted order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalActor {
    pub agent_id: String,
    pub issuer: String,
}

impl CanonicalEvent {
    /// The canonical bytes. serde_json escapes exactly `"`, `\` and U+0000 to
    /// U+001F (short forms where JSON has them, lowercase `\u00xx`
    /// otherwise) and writes everything else as UTF-8, as JCS requires.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, vectors and a string map cannot fail.
        // Most events fit the initial capacity, so the buffer never grows.
        let mut bytes = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut bytes, self) {
            Ok(()) => bytes,
            Err(_) => Vec::new(),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The event time, parsed back from its canonical form.
    pub fn parsed_time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }
}

/// A time in the canonical form `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `SHA-256(prev_hash || canonical_bytes)`.
pub fn chain_hash(prev_hash: &Hash, canonical_bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical_bytes);
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{to_hex, GENESIS_HASH};

    fn sample() -> CanonicalEvent {
        CanonicalEvent {
            action: "tools/call".into(),
            actor_chain: vec![CanonicalActor {
                agent_id: "agt_1".into(),
                issuer: String::new(),
            }],
            agent_id: "agt_1".into(),
            attributes: BTreeMap::from([
                ("z".into(), "last".into()),
                ("a".into(), "ü \"q\" \n\u{1}".into()),
            ]),
            audience: "mcp:github".into(),
            decision_id: "dec_1".into(),
            id: "evt_1".into(),
            kind: "decision".into(),
            outcome: "allow".into(),
            person_subject: "alice".into(),
            policy_ids: vec!["p2".into(), "p1".into()],
            reason: "matched p2".into(),
            resource_id: "mcp:github/create_issue".into(),
            resource_type: "mcp.tool".into(),
            service: "policy-svc".into(),
            span_id: String::new(),
            tenant: "acme".into(),
            time: "2026-11-29T01:02:03.456789Z".into(),
            trace_id: String::new(),
        }
    }

    #[test]
    fn keys_are_sorted_and_every_key_is_present() {
        let bytes = sample().to_bytes();
        let as_value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        // serde_json's Value map is a BTreeMap: re-serialising sorts the keys.
        assert_eq!(serde_json::to_vec(&as_value).unwrap(), bytes);
        assert_eq!(as_value.as_object().unwrap().len(), 19);
    }

    #[test]
    fn escapes_only_what_jcs_escapes() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        assert!(text.contains(r#""a":"ü \"q\" \n\u0001""#), "{text}");
        assert!(text.starts_with(
            r#"{"action":"tools/call","actor_chain":[{"agent_id":"agt_1","issuer":""}]"#
        ));
    }

    #[test]
    fn round_trips_and_hashes_stably() {
        let event = sample();
        let bytes = event.to_bytes();
        assert_eq!(CanonicalEvent::from_bytes(&bytes).unwrap(), event);
        let first = chain_hash(&GENESIS_HASH, &bytes);
        assert_eq!(first, chain_hash(&GENESIS_HASH, &bytes));
        assert_ne!(
            first,
            chain_hash(&first, &bytes),
            "the previous hash is part of the input"
        );
        assert_eq!(to_hex(&first).len(), 64);
    }

    #[test]
    fn times_have_exactly_six_fractional_digits() {
        let time = DateTime::from_timestamp(1_790_000_000, 120_000).unwrap();
        assert_eq!(format_time(time), "2026-09-21T14:13:20.000120Z");
        let whole = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        assert_eq!(format_time(whole), "2026-09-21T14:13:20.000000Z");
    }
}
