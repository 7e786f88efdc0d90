//! Turning a contract `Event` into its canonical, hashable form.

use std::collections::BTreeMap;

use agentsec_common::audit::{validate_event, MAX_EVENT_BYTES};
use agentsec_proto::audit::v1::Event;
use agentsec_proto::common::v1::Outcome;
use chrono::{DateTime, Utc};

use crate::domain::block::EventKeys;
use crate::domain::canonical::{format_time, CanonicalActor, CanonicalEvent};
use crate::error::AuditError;

/// An event ready for the chain: validated, time truncated to microseconds,
/// canonical bytes computed once.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event_id: String,
    /// The keys the block summary records.
    pub keys: EventKeys<'static>,
    pub body: String,
}

/// Validates and canonicalises `event`, the `index`-th of its request.
pub fn prepare(index: usize, event: Event) -> Result<PreparedEvent, AuditError> {
    validate_event(&event).map_err(|err| AuditError::InvalidEvent {
        index,
        field: err.field,
        reason: err.reason,
    })?;
    let timestamp = event.time.unwrap_or_default();
    let micros = i64::from(timestamp.nanos / 1_000);
    let time = DateTime::<Utc>::from_timestamp_micros(
        timestamp
            .seconds
            .saturating_mul(1_000_000)
            .saturating_add(micros),
    )
    .ok_or_else(|| AuditError::InvalidEvent {
        index,
        field: "time".to_owned(),
        reason: "is out of range".to_owned(),
    })?;
    let canonical = CanonicalEvent {
        action: event.action,
        actor_chain: event
            .actor_chain
            .map(|chain| {
                chain
                    .actors
                    .into_iter()
                    .map(|actor| CanonicalActor {
                        agent_id: actor.agent_id,
                        issuer: actor.issuer,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        agent_id: event.agent_id,
        attributes: event.attributes.into_iter().collect::<BTreeMap<_, _>>(),
        audience: event.audience,
        decision_id: event.decision_id,
        id: event.id,
        kind: event.kind,
        outcome: outcome_name(event.outcome).to_owned(),
        person_subject: event.person_subject,
        policy_ids: event.policy_ids,
        reason: event.reason,
        resource_id: event.resource_id,
        resource_type: event.resource_type,
        service: event.service,
        span_id: event.span_id,
        tenant: event.tenant,
        time: format_time(time),
        trace_id: event.trace_id,
    };
    let bytes = canonical.to_bytes();
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(AuditError::InvalidEvent {
            index,
            field: "event".to_owned(),
            reason: format!(
                "encodes to {} bytes; the limit is {MAX_EVENT_BYTES}",
                bytes.len()
            ),
        });
    }
    let keys = EventKeys {
        time,
        tenant: canonical.tenant.into(),
        agent_id: canonical.agent_id.into(),
        person_subject: canonical.person_subject.into(),
        trace_id: canonical.trace_id.into(),
        decision_id: canonical.decision_id.into(),
        kind: canonical.kind.into(),
        outcome: canonical.outcome.into(),
    };
    // serde_json writes valid UTF-8.
    let body = String::from_utf8(bytes).unwrap_or_default();
    Ok(PreparedEvent {
        event_id: canonical.id,
        keys,
        body,
    })
}

/// The canonical name of an outcome (validation has ruled out the others).
pub fn outcome_name(outcome: i32) -> &'static str {
    match Outcome::try_from(outcome) {
        Ok(Outcome::Allow) => "allow",
        Ok(Outcome::Deny) => "deny",
        Ok(Outcome::Error) => "error",
        Ok(Outcome::Unspecified) | Err(_) => "",
    }
}

/// The contract outcome of a canonical name.
pub fn outcome_value(name: &str) -> Outcome {
    match name {
        "allow" => Outcome::Allow,
        "deny" => Outcome::Deny,
        "error" => Outcome::Error,
        _ => Outcome::Unspecified,
    }
}

/// The contract event of stored canonical bytes.
pub fn to_contract_event(canonical: CanonicalEvent, time: DateTime<Utc>) -> Event {
    Event {
        id: canonical.id,
        time: Some(prost_types::Timestamp {
            seconds: time.timestamp(),
            nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        service: canonical.service,
        kind: canonical.kind,
        tenant: canonical.tenant,
        agent_id: canonical.agent_id,
        person_subject: canonical.person_subject,
        actor_chain: (!canonical.actor_chain.is_empty()).then(|| {
            agentsec_proto::common::v1::ActorChain {
                actors: canonical
                    .actor_chain
                    .into_iter()
                    .map(|actor| agentsec_proto::common::v1::Actor {
                        agent_id: actor.agent_id,
                        issuer: actor.issuer,
                    })
                    .collect(),
            }
        }),
        action: canonical.action,
        resource_type: canonical.resource_type,
        resource_id: canonical.resource_id,
        audience: canonical.audience,
        outcome: outcome_value(&canonical.outcome) as i32,
        reason: canonical.reason,
        policy_ids: canonical.policy_ids,
        decision_id: canonical.decision_id,
        trace_id: canonical.trace_id,
        span_id: canonical.span_id,
        attributes: canonical.attributes.into_iter().collect(),
    }
}
