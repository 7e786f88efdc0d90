//! Cache keys: a digest of the normalized request, bound to the tenant and
//! the policy version that decides it.
//!
//! The request is hashed after validation and the tenant's attribute
//! declarations were applied ([`DecisionRequest`]), so two requests that
//! the engine cannot tell apart share a key whatever the order of their
//! attribute maps or the wire form of their values. Every field is written
//! with a tag and a length, so no two different requests encode alike.
//!
//! `time` is left out on purpose: a decision that read `context.time` is
//! never cached (`Decision::depends_on_time`), and one that did not read it
//! is the same at any time.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use crate::domain::engine::value::AttrValue;
use crate::domain::engine::DecisionRequest;

/// Where a decision is kept: readable parts for the Redis key, and the
/// digest of everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub tenant: String,
    pub policy_version: u64,
    /// The agents whose invalidation events evict this decision: the actor
    /// chain, acting agent first.
    pub agents: Vec<String>,
    /// SHA-256 (first 128 bits) of the normalized request.
    pub digest: u128,
}

impl CacheKey {
    pub fn new(policy_version: u64, request: &DecisionRequest) -> Self {
        Self {
            tenant: request.tenant.clone(),
            policy_version,
            agents: request.actor_chain.clone(),
            digest: digest(policy_version, request),
        }
    }

    /// The digest as the Redis key's last part.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.digest)
    }
}

/// Tagged, length-prefixed writes into the hash.
struct Canonical(Sha256);

impl Canonical {
    fn tag(&mut self, tag: u8) {
        self.0.update([tag]);
    }

    fn u64(&mut self, value: u64) {
        self.0.update(value.to_be_bytes());
    }

    fn str(&mut self, value: &str) {
        self.u64(value.len() as u64);
        self.0.update(value.as_bytes());
    }

    fn opt_str(&mut self, value: Option<&str>) {
        match value {
            None => self.tag(0),
            Some(value) => {
                self.tag(1);
                self.str(value);
            }
        }
    }

    fn value(&mut self, value: &AttrValue) {
        match value {
            AttrValue::String(text) => {
                self.tag(b's');
                self.str(text);
            }
            AttrValue::Int(number) => {
                self.tag(b'i');
                self.0.update(number.to_be_bytes());
            }
            AttrValue::Double(number) => {
                self.tag(b'd');
                // -0.0 and 0.0 compare equal in conditions: one key.
                let number = if *number == 0.0 { 0.0 } else { *number };
                self.0.update(number.to_bits().to_be_bytes());
            }
            AttrValue::Bool(flag) => {
                self.tag(b'b');
                self.tag(u8::from(*flag));
            }
            AttrValue::StringList(items) => {
                self.tag(b'l');
                self.u64(items.len() as u64);
                for item in items {
                    self.str(item);
                }
            }
        }
    }

    /// A map in key order (HashMap order differs between equal maps).
    fn attributes(&mut self, tag: u8, attributes: &HashMap<String, AttrValue>) {
        self.tag(tag);
        let mut names: Vec<&String> = attributes.keys().collect();
        names.sort_unstable();
        self.u64(names.len() as u64);
        for name in names {
            self.str(name);
            if let Some(value) = attributes.get(name) {
                self.value(value);
            }
        }
    }
}

fn digest(policy_version: u64, request: &DecisionRequest) -> u128 {
    let mut out = Canonical(Sha256::new());
    // A layout version: a change of this encoding never reuses old keys.
    out.tag(2);
    out.str(&request.tenant);
    out.u64(policy_version);
    out.opt_str(request.agent_id.as_deref());
    out.attributes(b'A', &request.agent_attributes);
    out.opt_str(request.person_subject.as_deref());
    out.attributes(b'P', &request.person_attributes);
    out.u64(request.actor_chain.len() as u64);
    for agent in &request.actor_chain {
        out.str(agent);
    }
    out.str(&request.audience);
    out.str(&request.action);
    out.str(&request.resource_type);
    out.str(&request.resource_id);
    out.attributes(b'R', &request.resource_attributes);
    out.opt_str(request.environment.as_deref());
    out.u64(u64::from(request.delegation_depth));
    match request.risk_score {
        None => out.tag(0),
        Some(score) => {
            out.tag(1);
            out.u64(u64::from(score));
        }
    }
    out.attributes(b'C', &request.context_attributes);
    out.u64(request.conversion_errors.len() as u64);
    for error in &request.conversion_errors {
        out.str(error);
    }
    let hash = out.0.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash[..16]);
    u128::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone as _, Utc};

    fn request() -> DecisionRequest {
        DecisionRequest {
            tenant: "acme".into(),
            agent_id: Some("agt_1".into()),
            agent_attributes: HashMap::from([
                ("tier".into(), AttrValue::Int(2)),
                ("project".into(), AttrValue::String("x".into())),
                ("tags".into(), AttrValue::StringList(vec!["a".into()])),
            ]),
            person_subject: Some("alice".into()),
            person_attributes: HashMap::new(),
            actor_chain: vec!["agt_1".into()],
            audience: "github".into(),
            action: "read".into(),
            resource_type: "repository".into(),
            resource_id: "repo:x".into(),
            resource_attributes: HashMap::new(),
            time: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            environment: None,
            delegation_depth: 1,
            risk_score: None,
            context_attributes: HashMap::new(),
            conversion_errors: Vec::new(),
        }
    }

    #[test]
    fn equal_requests_share_a_key_whatever_the_map_order_or_time() {
        let one = request();
        let mut other = request();
        // Rebuilt in another insertion order, at another time.
        let mut pairs: Vec<_> = other.agent_attributes.into_iter().collect();
        pairs.reverse();
        other.agent_attributes = HashMap::with_capacity(16);
        other.agent_attributes.extend(pairs);
        other.time = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        assert_eq!(CacheKey::new(3, &one), CacheKey::new(3, &other));
    }

    #[test]
    fn every_field_and_the_version_change_the_key() {
        let base = CacheKey::new(3, &request()).digest;
        assert_ne!(CacheKey::new(4, &request()).digest, base);
        type Change = fn(&mut DecisionRequest);
        let changes: [Change; 13] = [
            |r| r.tenant = "globex".into(),
            |r| r.agent_id = Some("agt_2".into()),
            |r| r.agent_id = None,
            |r| {
                r.agent_attributes
                    .insert("tier".into(), AttrValue::String("2".into()));
            },
            |r| r.person_subject = None,
            |r| {
                r.person_attributes
                    .insert("dept".into(), AttrValue::Bool(true));
            },
            |r| r.actor_chain.push("agt_9".into()),
            |r| r.audience = "gitlab".into(),
            |r| r.action = "write".into(),
            |r| r.resource_id = "repo:y".into(),
            |r| r.environment = Some("prod".into()),
            |r| r.delegation_depth = 2,
            |r| r.risk_score = Some(0),
        ];
        for (index, change) in changes.into_iter().enumerate() {
            let mut changed = request();
            change(&mut changed);
            assert_ne!(CacheKey::new(3, &changed).digest, base, "change {index}");
        }
    }

    #[test]
    fn field_boundaries_are_part_of_the_key() {
        let mut one = request();
        one.resource_type = "ab".into();
        one.resource_id = "c".into();
        let mut other = request();
        other.resource_type = "a".into();
        other.resource_id = "bc".into();
        assert_ne!(
            CacheKey::new(1, &one).digest,
            CacheKey::new(1, &other).digest
        );
    }
}
