//! What policy-svc tells the rest of the system: audit events through the
//! audit client (`policy.changed` for every new version, `decision` for
//! every decision) and `POLICY_CHANGED` invalidation events (Redis or in process).
//!
//! Policy changes are audited like identity-svc's changes: the event is
//! queued before the new version commits, and a refused event (queue full
//! in `when_full = "fail"` mode, or the client closed) refuses the change.
//!
//! Decisions are audited off the hot path: the handler puts the event on a
//! local bounded backlog (`decisions.audit_backlog`) with a non-blocking
//! `try_send`, and a background task hands the events to the audit client
//! (which may wait for room). A decision never waits for, and never fails
//! because of, the audit trail. The price: when the backlog is full the
//! event is not delivered to audit-svc; it is logged at error level with
//! the decision id, principal, action, resource and outcome, and counted
//! ([`DecisionAudit::unaudited_counter`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use agentsec_common::audit::client::{AuditClient, AuditClientError};
use agentsec_common::error::ApiError;
use agentsec_common::ids::new_id;
use agentsec_common::invalidation::{Invalidation, InvalidationKind, Publisher};
use agentsec_proto::audit::v1::Event;
use agentsec_proto::common::v1::{Actor, ActorChain, Outcome};
use agentsec_proto::policy::v1::CheckRequest;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::engine::{Decision, Effect};

const SERVICE: &str = "policy-svc";

pub use agentsec_common::time::timestamp;

/// A `policy.changed` event.
pub struct PolicyChange<'a> {
    pub tenant: &'a str,
    pub version: u64,
    pub actor: &'a str,
    pub rolled_back_from: u64,
    pub content_sha256: &'a str,
    pub description: &'a str,
}

/// Sends audit and invalidation events.
#[derive(Clone)]
pub struct Events {
    audit: AuditClient,
    invalidations: Publisher,
}

impl Events {
    pub fn new(audit: AuditClient, invalidations: Publisher) -> Self {
        Self {
            audit,
            invalidations,
        }
    }

    /// Queues the `policy.changed` event; an error means the change must not
    /// go ahead (nothing changes unaudited).
    pub async fn policy_changed(&self, change: PolicyChange<'_>) -> Result<(), ApiError> {
        let id = new_id("evt_").map_err(|err| ApiError::internal("audit event id", err))?;
        let mut attributes = HashMap::from([
            ("policy_version".to_owned(), change.version.to_string()),
            ("actor".to_owned(), change.actor.to_owned()),
            (
                "content_sha256".to_owned(),
                change.content_sha256.to_owned(),
            ),
        ]);
        if change.rolled_back_from > 0 {
            attributes.insert(
                "rolled_back_from".to_owned(),
                change.rolled_back_from.to_string(),
            );
        }
        let cause = agentsec_common::telemetry::current_trace_ids();
        let event = Event {
            id,
            time: Some(timestamp(Utc::now())),
            service: SERVICE.to_owned(),
            kind: "policy.changed".to_owned(),
            tenant: change.tenant.to_owned(),
            action: if change.rolled_back_from > 0 {
                "policy.rollback".to_owned()
            } else {
                "policy.put".to_owned()
            },
            resource_type: "policy_set".to_owned(),
            resource_id: format!("{}@{}", change.tenant, change.version),
            outcome: Outcome::Allow as i32,
            reason: change.description.chars().take(1024).collect(),
            trace_id: cause.trace_id,
            span_id: cause.span_id,
            attributes,
            ..Event::default()
        };
        self.audit.record(event).await.map_err(|err| match err {
            AuditClientError::QueueFull { .. } | AuditClientError::Closed => {
                ApiError::Unavailable {
                    what: "the audit trail (its queue is full)".to_owned(),
                }
            }
            other => ApiError::internal("audit event", other),
        })
    }

    /// Publishes POLICY_CHANGED; the database already holds the change, so
    /// a Redis failure is logged, not returned.
    pub async fn invalidate(&self, tenant: &str, version: u64) {
        let mut event = Invalidation::new(InvalidationKind::PolicyChanged, tenant, "");
        event.policy_version = version;
        self.invalidations.publish(&event).await;
    }
}

/// The `decision` audit events, off the hot path (see the module doc).
#[derive(Clone)]
pub struct DecisionAudit {
    backlog: mpsc::Sender<Event>,
    unaudited: Arc<AtomicU64>,
}

impl DecisionAudit {
    /// Starts the task that hands backlog events to `audit`; it ends when
    /// every `DecisionAudit` handle is dropped and the backlog is drained.
    pub fn start(audit: AuditClient, capacity: usize) -> (Self, JoinHandle<()>) {
        let (backlog, mut receiver) = mpsc::channel::<Event>(capacity);
        let unaudited = Arc::new(AtomicU64::new(0));
        let counter = unaudited.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if let Err(err) = audit.record(event.clone()).await {
                    let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    log_unaudited(&event, &err.to_string(), total);
                }
            }
        });
        (Self { backlog, unaudited }, task)
    }

    /// Queues the event of one decision without ever waiting.
    pub fn record(&self, event: Event) {
        if let Err(err) = self.backlog.try_send(event) {
            let (event, why) = match err {
                mpsc::error::TrySendError::Full(event) => {
                    (event, "the decision audit backlog is full")
                }
                mpsc::error::TrySendError::Closed(event) => {
                    (event, "the audit client is shut down")
                }
            };
            let total = self.unaudited.fetch_add(1, Ordering::Relaxed) + 1;
            log_unaudited(&event, why, total);
        }
    }

    /// How many decisions' audit events did not reach the audit client (a
    /// counter that outlives the handles).
    pub fn unaudited_counter(&self) -> Arc<AtomicU64> {
        self.unaudited.clone()
    }
}

fn log_unaudited(event: &Event, why: &str, total: u64) {
    tracing::error!(
        decision_id = %event.decision_id,
        tenant = %event.tenant,
        agent_id = %event.agent_id,
        person_subject = %event.person_subject,
        action = %event.action,
        resource_id = %event.resource_id,
        outcome = event.outcome,
        policy_ids = ?event.policy_ids,
        unaudited_decisions_total = total,
        "decision not audited: {why}"
    );
}

/// The `decision` event of a decided request.
pub fn decision_event(
    request: &CheckRequest,
    decision: &Decision,
    decision_id: &str,
    cached: bool,
) -> Option<Event> {
    let id = new_id("evt_").ok()?;
    let cause = agentsec_common::telemetry::current_trace_ids();
    let principal = request.principal.clone().unwrap_or_default();
    let resource = request.resource.clone().unwrap_or_default();
    let outcome = if decision.evaluation_error {
        Outcome::Error
    } else if decision.effect == Effect::Allow {
        Outcome::Allow
    } else {
        Outcome::Deny
    };
    let actor_chain = principal.actor_chain.map(|chain| ActorChain {
        actors: chain
            .actors
            .into_iter()
            .take(16)
            .map(|actor| Actor {
                agent_id: actor.agent_id.chars().take(64).collect(),
                ..actor
            })
            .collect(),
    });
    Some(Event {
        id,
        time: Some(timestamp(Utc::now())),
        service: SERVICE.to_owned(),
        kind: "decision".to_owned(),
        // Bounded as audit.proto bounds them: AuthZEN decides (DENY) even
        // requests naming a tenant or agent id that cannot exist.
        tenant: principal.tenant.chars().take(64).collect(),
        agent_id: principal.agent_id.chars().take(64).collect(),
        person_subject: principal.person_subject,
        actor_chain,
        action: request.action.clone(),
        resource_type: resource.r#type,
        resource_id: resource.id,
        audience: request.audience.clone(),
        outcome: outcome as i32,
        reason: decision.reason.chars().take(2048).collect(),
        policy_ids: decision.policy_ids.iter().take(64).cloned().collect(),
        decision_id: decision_id.to_owned(),
        trace_id: cause.trace_id,
        span_id: cause.span_id,
        attributes: if cached {
            HashMap::from([
                (
                    "policy_version".to_owned(),
                    decision.policy_version.to_string(),
                ),
                ("cached".to_owned(), "true".to_owned()),
            ])
        } else {
            HashMap::from([(
                "policy_version".to_owned(),
                decision.policy_version.to_string(),
            )])
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_backlog_never_blocks_a_decision_and_is_counted() {
        // A backlog nobody drains, as when the audit client is stuck.
        let (backlog, _receiver) = mpsc::channel(1);
        let audit = DecisionAudit {
            backlog,
            unaudited: Arc::new(AtomicU64::new(0)),
        };
        let event = |n: u32| Event {
            decision_id: format!("dec_{n}"),
            ..Event::default()
        };
        let started = std::time::Instant::now();
        for n in 0..100 {
            audit.record(event(n));
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(audit.unaudited_counter().load(Ordering::Relaxed), 99);
    }
}
