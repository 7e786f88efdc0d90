//! What exchange-svc tells the rest of the system: audit events through the
//! audit client, and invalidation events on Redis pub/sub.

use std::collections::HashMap;

use agentsec_common::audit::client::{AuditClient, AuditClientError};
use agentsec_common::error::ApiError;
use agentsec_common::invalidation::Invalidation;
use agentsec_common::redis::RedisHandle;
use agentsec_proto::audit::v1::Event;
use agentsec_proto::common::v1::Outcome;
use chrono::Utc;

const SERVICE: &str = "exchange-svc";

/// One audit event.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub kind: &'static str,
    pub tenant: String,
    pub agent_id: String,
    pub person_subject: String,
    pub grant_id: String,
    pub outcome: Outcome,
    pub reason: String,
    pub attributes: HashMap<String, String>,
}

impl AuditRecord {
    pub fn new(kind: &'static str, tenant: &str, agent_id: &str, outcome: Outcome) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            agent_id: agent_id.to_owned(),
            person_subject: String::new(),
            grant_id: String::new(),
            outcome,
            reason: String::new(),
            attributes: HashMap::new(),
        }
    }

    pub fn person(mut self, subject: &str) -> Self {
        self.person_subject = subject.to_owned();
        self
    }

    pub fn grant(mut self, grant_id: &str) -> Self {
        self.grant_id = grant_id.to_owned();
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
}

/// Sends audit and invalidation events.
#[derive(Clone)]
pub struct Events {
    audit: AuditClient,
    redis: Option<RedisHandle>,
    issuer: String,
}

impl Events {
    pub fn new(audit: AuditClient, redis: Option<RedisHandle>, issuer: String) -> Self {
        Self {
            audit,
            redis,
            issuer,
        }
    }

    /// Queues an audit event. An error (queue full in fail mode) means the
    /// action must not go ahead: nothing happens unaudited.
    pub async fn audit(&self, record: AuditRecord) -> Result<(), ApiError> {
        let id = agentsec_common::ids::ulid()
            .map_err(|err| ApiError::internal("audit event id", err))?;
        let event = Event {
            id: format!("evt_{id}"),
            time: Some(crate::grants::timestamp(Utc::now())),
            service: SERVICE.to_owned(),
            kind: record.kind.to_owned(),
            tenant: record.tenant,
            agent_id: record.agent_id,
            person_subject: record.person_subject,
            resource_type: if record.grant_id.is_empty() {
                String::new()
            } else {
                "grant".to_owned()
            },
            resource_id: record.grant_id,
            outcome: record.outcome as i32,
            reason: record.reason,
            trace_id: agentsec_common::telemetry::current_trace_id().unwrap_or_default(),
            attributes: record.attributes,
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

    /// Publishes an invalidation event. The database already holds the
    /// change, so a Redis failure is logged, not returned.
    pub async fn invalidate(&self, invalidation: Invalidation) {
        if let Some(redis) = &self.redis {
            invalidation.publish(redis, &self.issuer).await;
        }
    }
}
