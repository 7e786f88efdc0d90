//! What identity-svc tells the rest of the system: audit events through the
//! audit client, and invalidation events on Redis pub/sub.

use std::collections::HashMap;
use std::time::Duration;

use agentsec_common::audit::client::{AuditClient, AuditClientError};
use agentsec_common::error::ApiError;
use agentsec_common::redis::RedisHandle;
use agentsec_proto::audit::v1::Event;
use agentsec_proto::common::v1::Outcome;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// The Redis channel of invalidation events (identity.proto), before the
/// deployment's key prefix.
pub const INVALIDATION_CHANNEL: &str = "agentsec:invalidation";
/// Publishing is a fast path next to the database: never hold a request
/// longer than this on a slow Redis.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);
const SERVICE: &str = "identity-svc";

/// One audit event about an agent (or a client that is not one).
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub kind: &'static str,
    pub tenant: String,
    pub agent_id: String,
    pub outcome: Outcome,
    pub reason: String,
    pub audience: String,
    pub attributes: HashMap<String, String>,
}

impl AuditRecord {
    pub fn new(kind: &'static str, tenant: &str, agent_id: &str, outcome: Outcome) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            agent_id: agent_id.to_owned(),
            outcome,
            reason: String::new(),
            audience: String::new(),
            attributes: HashMap::new(),
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = audience.to_owned();
        self
    }

    pub fn attribute(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(key.to_owned(), value.into());
        self
    }
}

/// What an invalidation event says (see identity.proto `InvalidationEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationKind {
    AgentSuspended,
    AgentRevoked,
    AgentReactivated,
    AgentUpdated,
    CredentialDeleted,
    TokenRevoked,
}

impl InvalidationKind {
    fn proto_name(self) -> &'static str {
        match self {
            Self::AgentSuspended => "INVALIDATION_KIND_AGENT_SUSPENDED",
            Self::AgentRevoked => "INVALIDATION_KIND_AGENT_REVOKED",
            Self::AgentReactivated => "INVALIDATION_KIND_AGENT_REACTIVATED",
            Self::AgentUpdated => "INVALIDATION_KIND_AGENT_UPDATED",
            Self::CredentialDeleted => "INVALIDATION_KIND_CREDENTIAL_DELETED",
            Self::TokenRevoked => "INVALIDATION_KIND_TOKEN_REVOKED",
        }
    }
}

/// An invalidation event before publication.
#[derive(Debug, Clone)]
pub struct Invalidation {
    pub kind: InvalidationKind,
    pub tenant: String,
    pub agent_id: String,
    pub token_jti: String,
    pub credential_id: String,
    pub token_expire_time: Option<DateTime<Utc>>,
}

impl Invalidation {
    pub fn new(kind: InvalidationKind, tenant: &str, agent_id: &str) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            agent_id: agent_id.to_owned(),
            token_jti: String::new(),
            credential_id: String::new(),
            token_expire_time: None,
        }
    }
}

/// The proto3 JSON form of `InvalidationEvent`: lowerCamelCase names,
/// default values omitted, RFC 3339 UTC times.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvalidationJson<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    tenant: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    agent_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    token_jti: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    credential_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_expire_time: Option<String>,
    issuer: &'a str,
    time: String,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Invalidation {
    pub fn to_json(&self, issuer: &str, time: DateTime<Utc>) -> String {
        let json = InvalidationJson {
            kind: self.kind.proto_name(),
            tenant: &self.tenant,
            agent_id: &self.agent_id,
            token_jti: &self.token_jti,
            credential_id: &self.credential_id,
            token_expire_time: self.token_expire_time.map(rfc3339),
            issuer,
            time: rfc3339(time),
        };
        serde_json::to_string(&json).unwrap_or_default()
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
        let id = crate::ids::ulid().map_err(|err| ApiError::internal("audit event id", err))?;
        let now = Utc::now();
        let event = Event {
            id: format!("evt_{id}"),
            time: Some(crate::domain::agent::timestamp(now)),
            service: SERVICE.to_owned(),
            kind: record.kind.to_owned(),
            tenant: record.tenant,
            agent_id: record.agent_id,
            audience: record.audience,
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
    /// change, so a Redis failure is logged, not returned: subscribers
    /// re-read the database when they reconnect.
    pub async fn invalidate(&self, invalidation: Invalidation) {
        let Some(redis) = &self.redis else {
            return;
        };
        let payload = invalidation.to_json(&self.issuer, Utc::now());
        let channel = redis.key(INVALIDATION_CHANNEL);
        let mut connection = redis.connection.clone();
        let mut command = redis::cmd("PUBLISH");
        command.arg(&channel).arg(&payload);
        let publish = command.query_async::<i64>(&mut connection);
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => {
                tracing::warn!(%channel, error = %err, "invalidation event not published")
            }
            Err(_) => tracing::warn!(%channel, "invalidation event not published: Redis timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_json_is_canonical_proto3_json() {
        let time = DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let json = Invalidation::new(InvalidationKind::AgentSuspended, "acme", "agt_1")
            .to_json("http://id", time);
        assert_eq!(
            json,
            r#"{"kind":"INVALIDATION_KIND_AGENT_SUSPENDED","tenant":"acme","agentId":"agt_1","issuer":"http://id","time":"2025-01-02T03:04:05Z"}"#
        );
    }
}
