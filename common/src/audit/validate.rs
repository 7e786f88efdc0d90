//! Validation of one audit event against the limits in `audit.proto`.

use agentsec_proto::audit::v1::Event;
use agentsec_proto::common::v1::Outcome;

/// Most events in one append request or stream message.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Largest encoded event (its canonical bytes), 32 KiB.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

const MAX_ACTORS: usize = 16;
const MAX_POLICY_IDS: usize = 64;
const MAX_ATTRIBUTES: usize = 64;
const MAX_ATTRIBUTE_VALUE: usize = 4_096;

/// A field of an event that breaks the contract; `field` is its proto name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct EventError {
    pub field: String,
    pub reason: String,
}

fn error(field: impl Into<String>, reason: impl Into<String>) -> EventError {
    EventError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    if value.chars().count() > max {
        return Err(error(field, format!("is longer than {max} characters")));
    }
    Ok(())
}

fn check_required(
    field: &str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    charset: &str,
) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(error(field, "is required"));
    }
    check_len(field, value, max)?;
    if !value.chars().all(allowed) {
        return Err(error(field, format!("may only contain {charset}")));
    }
    Ok(())
}

fn is_lower_hex(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Checks every limit of `audit.proto`'s `Event` except the encoded size,
/// which audit-svc checks on the canonical bytes.
pub fn validate_event(event: &Event) -> Result<(), EventError> {
    check_required(
        "id",
        &event.id,
        128,
        |c| c.is_ascii_alphanumeric() || "_.:-".contains(c),
        "A-Z a-z 0-9 _ . : -",
    )?;
    match &event.time {
        None => return Err(error("time", "is required")),
        Some(time) if !(0..1_000_000_000).contains(&time.nanos) => {
            return Err(error("time", "has nanos outside 0..=999999999"))
        }
        Some(_) => {}
    }
    check_required(
        "service",
        &event.service,
        64,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c),
        "a-z 0-9 _ . -",
    )?;
    check_required(
        "kind",
        &event.kind,
        128,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c),
        "a-z 0-9 _ . : -",
    )?;
    match Outcome::try_from(event.outcome) {
        Ok(Outcome::Allow | Outcome::Deny | Outcome::Error) => {}
        Ok(Outcome::Unspecified) => return Err(error("outcome", "is required")),
        Err(_) => {
            return Err(error(
                "outcome",
                format!("has unknown value {}", event.outcome),
            ))
        }
    }
    check_len("tenant", &event.tenant, 64)?;
    check_len("agent_id", &event.agent_id, 64)?;
    check_len("person_subject", &event.person_subject, 256)?;
    check_len("action", &event.action, 128)?;
    check_len("resource_type", &event.resource_type, 64)?;
    check_len("resource_id", &event.resource_id, 512)?;
    check_len("audience", &event.audience, 256)?;
    check_len("reason", &event.reason, 2_048)?;
    check_len("decision_id", &event.decision_id, 64)?;
    if let Some(chain) = &event.actor_chain {
        if chain.actors.len() > MAX_ACTORS {
            return Err(error(
                "actor_chain",
                format!("has more than {MAX_ACTORS} actors"),
            ));
        }
        for (index, actor) in chain.actors.iter().enumerate() {
            let field = format!("actor_chain.actors[{index}].agent_id");
            if actor.agent_id.is_empty() {
                return Err(error(field, "is required"));
            }
            check_len(&field, &actor.agent_id, 64)?;
            check_len(
                &format!("actor_chain.actors[{index}].issuer"),
                &actor.issuer,
                256,
            )?;
        }
    }
    if event.policy_ids.len() > MAX_POLICY_IDS {
        return Err(error(
            "policy_ids",
            format!("has more than {MAX_POLICY_IDS} entries"),
        ));
    }
    for (index, policy_id) in event.policy_ids.iter().enumerate() {
        check_len(&format!("policy_ids[{index}]"), policy_id, 64)?;
    }
    if !event.trace_id.is_empty() && (event.trace_id.len() != 32 || !is_lower_hex(&event.trace_id))
    {
        return Err(error(
            "trace_id",
            "must be empty or 32 lowercase hex characters",
        ));
    }
    if !event.span_id.is_empty() && (event.span_id.len() != 16 || !is_lower_hex(&event.span_id)) {
        return Err(error(
            "span_id",
            "must be empty or 16 lowercase hex characters",
        ));
    }
    if event.attributes.len() > MAX_ATTRIBUTES {
        return Err(error(
            "attributes",
            format!("has more than {MAX_ATTRIBUTES} entries"),
        ));
    }
    for (key, value) in &event.attributes {
        let valid_key = key.len() <= 64
            && key.starts_with(|c: char| c.is_ascii_lowercase())
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_key {
            return Err(error(
                format!("attributes[{key:?}]"),
                "key must match [a-z][a-z0-9_]{0,63}",
            ));
        }
        check_len(&format!("attributes[{key:?}]"), value, MAX_ATTRIBUTE_VALUE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentsec_proto::common::v1::{Actor, ActorChain};

    fn valid() -> Event {
        Event {
            id: "01JD0000000000000000000000".into(),
            time: Some(prost_types::Timestamp {
                seconds: 1_790_000_000,
                nanos: 123_456_789,
            }),
            service: "identity-svc".into(),
            kind: "token.issued".into(),
            outcome: Outcome::Allow as i32,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            actor_chain: Some(ActorChain {
                actors: vec![Actor {
                    agent_id: "agt_1".into(),
                    issuer: String::new(),
                }],
            }),
            ..Event::default()
        }
    }

    #[test]
    fn accepts_a_valid_event_and_unknown_kinds() {
        assert_eq!(validate_event(&valid()), Ok(()));
        let future_kind = Event {
            kind: "something.new:v2".into(),
            ..valid()
        };
        assert_eq!(validate_event(&future_kind), Ok(()));
    }

    #[test]
    fn names_the_offending_field() {
        let cases: Vec<(Event, &str)> = vec![
            (
                Event {
                    id: String::new(),
                    ..valid()
                },
                "id",
            ),
            (
                Event {
                    id: "has space".into(),
                    ..valid()
                },
                "id",
            ),
            (
                Event {
                    time: None,
                    ..valid()
                },
                "time",
            ),
            (
                Event {
                    time: Some(prost_types::Timestamp {
                        seconds: 1,
                        nanos: -1,
                    }),
                    ..valid()
                },
                "time",
            ),
            (
                Event {
                    service: "Identity".into(),
                    ..valid()
                },
                "service",
            ),
            (
                Event {
                    kind: String::new(),
                    ..valid()
                },
                "kind",
            ),
            (
                Event {
                    outcome: 0,
                    ..valid()
                },
                "outcome",
            ),
            (
                Event {
                    outcome: 42,
                    ..valid()
                },
                "outcome",
            ),
            (
                Event {
                    trace_id: "XYZ".into(),
                    ..valid()
                },
                "trace_id",
            ),
            (
                Event {
                    span_id: "0".repeat(32),
                    ..valid()
                },
                "span_id",
            ),
            (
                Event {
                    reason: "x".repeat(2_049),
                    ..valid()
                },
                "reason",
            ),
            (
                Event {
                    policy_ids: vec!["p".into(); 65],
                    ..valid()
                },
                "policy_ids",
            ),
        ];
        for (event, field) in cases {
            let err = validate_event(&event).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let mut bad_key = valid();
        bad_key.attributes.insert("Bad-Key".into(), "v".into());
        assert!(validate_event(&bad_key)
            .unwrap_err()
            .field
            .starts_with("attributes"));
    }
}
