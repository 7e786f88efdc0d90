//! Building a service's audit events: an [`AuditRecord`] names what
//! happened; [`AuditRecord::into_event`] adds the id, time, service and the
//! current trace id. [`record`] queues it, and an error means the action
//! must not go ahead (nothing happens unaudited).

use std::collections::HashMap;

use agentsec_proto::audit::v1::Event;
use agentsec_proto::common::v1::{ActorChain, Outcome};
use chrono::Utc;

use super::client::{AuditClient, AuditClientError};
use crate::error::ApiError;

/// One audit event before it gets its id and time.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub kind: &'static str,
    pub tenant: String,
    pub agent_id: String,
    pub person_subject: String,
    pub resource_type: String,
    pub resource_id: String,
    pub audience: String,
    pub outcome: Outcome,
    pub reason: String,
    pub action: String,
    pub actor_chain: Option<ActorChain>,
    pub decision_id: String,
    pub policy_ids: Vec<String>,
    pub attributes: HashMap<String, String>,
}

impl AuditRecord {
    pub fn new(kind: &'static str, tenant: &str, agent_id: &str, outcome: Outcome) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            agent_id: agent_id.to_owned(),
            person_subject: String::new(),
            resource_type: String::new(),
            resource_id: String::new(),
            audience: String::new(),
            outcome,
            reason: String::new(),
            action: String::new(),
            actor_chain: None,
            decision_id: String::new(),
            policy_ids: Vec::new(),
            attributes: HashMap::new(),
        }
    }

    pub fn action(mut self, action: &str) -> Self {
        self.action = action.to_owned();
        self
    }

    /// The agents acting, outermost (the current one) first.
    pub fn actors(mut self, chain: ActorChain) -> Self {
        self.actor_chain = Some(chain);
        self
    }

    /// The policy decision behind the action.
    pub fn decision(mut self, decision_id: &str, policy_ids: &[String]) -> Self {
        self.decision_id = decision_id.to_owned();
        self.policy_ids = policy_ids.to_vec();
        self
    }

    pub fn person(mut self, subject: &str) -> Self {
        self.person_subject = subject.to_owned();
        self
    }

    pub fn resource(mut self, resource_type: &str, resource_id: &str) -> Self {
        self.resource_type = resource_type.to_owned();
        self.resource_id = resource_id.to_owned();
        self
    }

    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.to_owned();
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    pub fn attribute(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }

    /// The event as `service` sends it: `evt_` id, time now, trace and
    /// span id of the current span.
    pub fn into_event(self, service: &str) -> Result<Event, ApiError> {
        let now = Utc::now();
        let cause = crate::telemetry::current_trace_ids();
        Ok(Event {
            id: crate::ids::new_id("evt_")
                .map_err(|err| ApiError::internal("audit event id", err))?,
            time: Some(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: now.timestamp_subsec_nanos() as i32,
            }),
            service: service.to_owned(),
            kind: self.kind.to_owned(),
            tenant: self.tenant,
            agent_id: self.agent_id,
            person_subject: self.person_subject,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            audience: self.audience,
            outcome: self.outcome as i32,
            reason: self.reason,
            action: self.action,
            actor_chain: self.actor_chain,
            decision_id: self.decision_id,
            policy_ids: self.policy_ids,
            trace_id: cause.trace_id,
            span_id: cause.span_id,
            attributes: self.attributes,
        })
    }
}

/// Queues `record` as `service`. A full queue (fail mode) or a closed
/// client is UNAVAILABLE: the caller refuses its action.
pub async fn record(
    client: &AuditClient,
    service: &str,
    record: AuditRecord,
) -> Result<(), ApiError> {
    client
        .record(record.into_event(service)?)
        .await
        .map_err(|err| match err {
            AuditClientError::QueueFull { .. } | AuditClientError::Closed => {
                ApiError::Unavailable {
                    what: "the audit trail (its queue is full)".to_owned(),
                }
            }
            other => ApiError::internal("audit event", other),
        })
}
