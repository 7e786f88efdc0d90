//! What a service tells the rest of the system: audit events through its
//! audit client, and invalidation events (Redis pub/sub or in process).

use crate::audit::client::AuditClient;
use crate::audit::record::AuditRecord;
use crate::error::ApiError;
use crate::invalidation::{Invalidation, Publisher};

/// Sends a service's audit and invalidation events.
#[derive(Clone)]
pub struct Events {
    service: &'static str,
    audit: AuditClient,
    invalidations: Publisher,
}

impl Events {
    /// `service` names the sender in audit events.
    pub fn new(service: &'static str, audit: AuditClient, invalidations: Publisher) -> Self {
        Self {
            service,
            audit,
            invalidations,
        }
    }

    /// Queues an audit event. An error (queue full in fail mode) means the
    /// action must not go ahead: nothing happens unaudited.
    pub async fn audit(&self, record: AuditRecord) -> Result<(), ApiError> {
        crate::audit::record::record(&self.audit, self.service, record).await
    }

    /// Publishes an invalidation event (see [`Publisher::publish`]).
    pub async fn invalidate(&self, invalidation: Invalidation) {
        self.invalidations.publish(&invalidation).await;
    }
}
