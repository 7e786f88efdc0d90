//! Invalidation events (identity.proto `InvalidationEvent`): what a service
//! publishes on Redis when a change must take effect everywhere at once,
//! as canonical proto3 JSON on `<key_prefix>agentsec:invalidation`.
//! Publishing is best effort next to the database, which stays the source
//! of truth.
//!
//! Services that share one process without Redis (`agentctl dev`, the test
//! harness) share a [`LocalBus`] instead: the same JSON payloads, delivered
//! in process.

use std::time::Duration;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

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
    const ALL: [Self; 8] = [
        Self::AgentSuspended,
        Self::AgentRevoked,
        Self::AgentReactivated,
        Self::AgentUpdated,
        Self::CredentialDeleted,
        Self::TokenRevoked,
        Self::GrantRevoked,
        Self::PolicyChanged,
    ];

    fn from_proto_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.proto_name() == name)
    }

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
    /// The agent's token generation after an agent status change.
    pub token_generation: i64,
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
            token_generation: 0,
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
    /// int64 is a decimal string in proto3 JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_generation: Option<String>,
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
            token_generation: (self.token_generation != 0)
                .then(|| self.token_generation.to_string()),
        };
        serde_json::to_string(&json).unwrap_or_default()
    }
}

/// Where a service's invalidation events go: Redis when it has one, and
/// the in-process bus when it shares a process with its subscribers.
#[derive(Clone, Default)]
pub struct Publisher {
    redis: Option<RedisHandle>,
    local: Option<LocalBus>,
    /// The `iss` of the publishing service ("" when it issues no tokens).
    issuer: String,
}

impl Publisher {
    pub fn new(redis: Option<RedisHandle>, local: Option<LocalBus>, issuer: String) -> Self {
        Self {
            redis,
            local,
            issuer,
        }
    }

    /// Publishes `event`. A failure is logged, not returned: the change is
    /// already committed, and subscribers re-read the owners' state when
    /// they reconnect.
    pub async fn publish(&self, event: &Invalidation) {
        if self.redis.is_none() && self.local.is_none() {
            return;
        }
        let payload = event.to_json(&self.issuer, Utc::now());
        if let Some(local) = &self.local {
            local.publish(&payload);
        }
        let Some(redis) = &self.redis else {
            return;
        };
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

/// An invalidation event as a subscriber reads it (unknown fields are
/// ignored; an unknown kind is no event).
#[derive(Debug, Clone)]
pub struct ReceivedInvalidation {
    pub event: Invalidation,
    /// The `iss` of the service that published it ("" when it issues no
    /// tokens).
    pub issuer: String,
    /// When the change was committed.
    pub time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceivedJson {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    agent_id: String,
    #[serde(default)]
    token_jti: String,
    #[serde(default)]
    grant_id: String,
    #[serde(default)]
    credential_id: String,
    #[serde(default)]
    policy_version: Option<String>,
    #[serde(default)]
    token_expire_time: Option<String>,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    token_generation: Option<String>,
}

fn parse_time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

impl ReceivedInvalidation {
    /// Reads the proto3 JSON of an `InvalidationEvent`; `None` when it is
    /// not one, or of a kind this build does not know.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let json: ReceivedJson = serde_json::from_slice(payload).ok()?;
        let kind = InvalidationKind::from_proto_name(&json.kind)?;
        Some(Self {
            event: Invalidation {
                kind,
                tenant: json.tenant,
                agent_id: json.agent_id,
                token_jti: json.token_jti,
                grant_id: json.grant_id,
                credential_id: json.credential_id,
                policy_version: json
                    .policy_version
                    .and_then(|version| version.parse().ok())
                    .unwrap_or(0),
                token_expire_time: parse_time(json.token_expire_time.as_deref()),
                token_generation: json
                    .token_generation
                    .and_then(|generation| generation.parse().ok())
                    .unwrap_or(0),
            },
            issuer: json.issuer,
            time: parse_time(json.time.as_deref()),
        })
    }
}

/// How many events a slow in-process subscriber may fall behind before it
/// is told it lagged (and reloads).
const LOCAL_BUS_CAPACITY: usize = 4096;

/// The invalidation channel of services sharing one process without Redis.
#[derive(Clone)]
pub struct LocalBus {
    sender: broadcast::Sender<Arc<[u8]>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalBus")
            .field("subscribers", &self.sender.receiver_count())
            .finish()
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(LOCAL_BUS_CAPACITY);
        Self { sender }
    }

    /// Delivers `payload` to every current subscriber.
    pub fn publish(&self, payload: &str) {
        // No subscriber is not an error: nobody needs to hear it.
        let _ = self.sender.send(Arc::from(payload.as_bytes()));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[u8]>> {
        self.sender.subscribe()
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
    fn a_published_event_reads_back() {
        let mut event = Invalidation::new(InvalidationKind::TokenRevoked, "acme", "agt_1");
        event.token_jti = "jti-1".to_owned();
        event.token_expire_time = Some(time());
        event.token_generation = 3;
        let received =
            ReceivedInvalidation::parse(event.to_json("http://id", time()).as_bytes()).unwrap();
        assert_eq!(received.event.kind, InvalidationKind::TokenRevoked);
        assert_eq!(received.event.token_jti, "jti-1");
        assert_eq!(received.event.token_expire_time, Some(time()));
        assert_eq!(received.event.token_generation, 3);
        assert_eq!(received.issuer, "http://id");
        assert_eq!(received.time, Some(time()));
        assert!(
            ReceivedInvalidation::parse(br#"{"kind":"INVALIDATION_KIND_NEW_THING"}"#).is_none()
        );
        assert!(ReceivedInvalidation::parse(b"not json").is_none());
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
