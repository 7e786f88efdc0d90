//! What a service tells the rest of the system: audit events through its
//! audit client, and invalidation events on Redis pub/sub.

use crate::audit::client::AuditClient;
use crate::audit::record::AuditRecord;
use crate::error::ApiError;
use crate::invalidation::Invalidation;
use crate::redis::RedisHandle;

/// Sends a service's audit and invalidation events.
#[derive(Clone)]
pub struct Events {
    service: &'static str,
    audit: AuditClient,
    redis: Option<RedisHandle>,
    issuer: String,
}

impl Events {
    /// `service` names the sender in audit events; `issuer` in
    /// invalidation events.
    pub fn new(
        service: &'static str,
        audit: AuditClient,
        redis: Option<RedisHandle>,
        issuer: String,
    ) -> Self {
        Self {
            service,
            audit,
            redis,
            issuer,
        }
    }

    /// Queues an audit event. An error (queue full in fail mode) means the
    /// action must not go ahead: nothing happens unaudited.
    pub async fn audit(&self, record: AuditRecord) -> Result<(), ApiError> {
        crate::audit::record::record(&self.audit, self.service, record).await
    }

    /// Publishes an invalidation event. The database already holds the
    /// change, so a Redis failure is logged, not returned: subscribers
    /// re-read the database when they reconnect.
    pub async fn invalidate(&self, invalidation: Invalidation) {
        if let Some(redis) = &self.redis {
            invalidation.publish(redis, &self.issuer).await;
        }
    }
}
