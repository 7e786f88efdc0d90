//! Invalidation events (identity.proto `InvalidationEvent`): what a service
//! publishes on Redis when a change must take effect everywhere at once,
//! as canonical proto3 JSON on `<key_prefix>agentsec:invalidation`.
//! Publishing is best effort next to the database, which stays the source
//! of truth.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::redis::RedisHandle;

/// The channel, before the deployment's key prefix.
pub const INVALIDATION_CHANNEL: &str = "agentsec:invalidation";
/// Publishing is a fast path next to the database: never hold a request
/// longer than this on a slow Redis.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

/// What an invalidation event says (see identity.proto `InvalidationEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationKind {
    AgentSuspended,
    AgentRevoked,
    AgentReactivated,
    AgentUpdated,
    CredentialDeleted,
    TokenRevoked,
    GrantRevoked,
    PolicyChanged,
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
            Self::GrantRevoked => "INVALIDATION_KIND_GRANT_REVOKED",
            Self::PolicyChanged => "INVALIDATION_KIND_POLICY_CHANGED",
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
    pub grant_id: String,
    pub credential_id: String,
    pub policy_version: u64,
    pub token_expire_time: Option<DateTime<Utc>>,
}

impl Invalidation {
    pub fn new(kind: InvalidationKind, tenant: &str, agent_id: &str) -> Self {
        Self {
            kind,
            tenant: tenant.to_owned(),
            agent_id: agent_id.to_owned(),
            token_jti: String::new(),
            grant_id: String::new(),
            credential_id: String::new(),
            policy_version: 0,
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
    grant_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    credential_id: &'a str,
    /// uint64 is a decimal string in proto3 JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_expire_time: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
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
            grant_id: &self.grant_id,
            credential_id: &self.credential_id,
            policy_version: (self.policy_version != 0).then(|| self.policy_version.to_string()),
            token_expire_time: self.token_expire_time.map(rfc3339),
            issuer,
            time: rfc3339(time),
        };
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// Publishes this event as `issuer`. A failure is logged, not returned:
    /// the change is already committed, and subscribers re-read the
    /// database when they reconnect.
    pub async fn publish(&self, redis: &RedisHandle, issuer: &str) {
        let payload = self.to_json(issuer, Utc::now());
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

    fn time() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn invalidation_json_is_canonical_proto3_json() {
        let json = Invalidation::new(InvalidationKind::AgentSuspended, "acme", "agt_1")
            .to_json("http://id", time());
        assert_eq!(
            json,
            r#"{"kind":"INVALIDATION_KIND_AGENT_SUSPENDED","tenant":"acme","agentId":"agt_1","issuer":"http://id","time":"2025-01-02T03:04:05Z"}"#
        );
    }

    #[test]
    fn a_policy_version_is_a_decimal_string() {
        let mut event = Invalidation::new(InvalidationKind::PolicyChanged, "acme", "");
        event.policy_version = 42;
        assert_eq!(
            event.to_json("", time()),
            r#"{"kind":"INVALIDATION_KIND_POLICY_CHANGED","tenant":"acme","policyVersion":"42","time":"2025-01-02T03:04:05Z"}"#,
            "a service that issues nothing leaves `issuer` out"
        );
    }
}
