//! What exchange-svc tells the rest of the system: audit events through the
//! audit client, and invalidation events on Redis pub/sub.

use agentsec_common::audit::client::AuditClient;
pub use agentsec_common::audit::record::AuditRecord;
use agentsec_common::error::ApiError;
use agentsec_common::invalidation::Invalidation;
use agentsec_common::redis::RedisHandle;

const SERVICE: &str = "exchange-svc";

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
        agentsec_common::audit::record::record(&self.audit, SERVICE, record).await
    }

    /// Publishes an invalidation event. The database already holds the
    /// change, so a Redis failure is logged, not returned.
    pub async fn invalidate(&self, invalidation: Invalidation) {
        if let Some(redis) = &self.redis {
            invalidation.publish(redis, &self.issuer).await;
        }
    }
}
