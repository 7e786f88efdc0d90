//! What every service's `serve` starts from and ends with: TLS, its
//! database with migrations run (or checked, with
//! `database.migrate_on_start = false`), Redis when configured, its metrics
//! registry, the audit client, the invalidation publisher and the readiness
//! it reports; and, after serving, the audit events still queued flushed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;

use crate::audit::client::{AuditClient, AuditSender};
use crate::config::ServiceConfig;
use crate::invalidation::Publisher;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::redis::RedisHandle;
use crate::server::{ServiceEndpoints, StartError};
use crate::tls::ServiceTls;
use crate::upstream::TokenSource;

/// A service's connections, made before anything else starts.
pub struct Foundation {
    pub tls: ServiceTls,
    pub db: DatabaseConnection,
    /// `None` when the service has no Redis section or no `redis.url`.
    pub redis: Option<RedisHandle>,
    /// Ready while the database answers; services add their own conditions.
    pub readiness: Readiness,
    /// The service's metrics, served on `/metrics`.
    pub metrics: Metrics,
}

impl Foundation {
    /// Starts TLS, connects the database and runs `M`'s migrations (or
    /// checks that none is pending), and connects Redis.
    pub async fn start<M: MigratorTrait>(config: &impl ServiceConfig) -> Result<Self, StartError> {
        let sections = config.sections();
        let tls = ServiceTls::start(sections.tls)?;
        let db = crate::db::connect_for_service::<M>(sections.database).await?;
        let redis = match sections.redis {
            Some(redis) => crate::redis::connect(redis).await?,
            None => None,
        };
        let readiness = Readiness::new(
            db.clone(),
            Duration::from_millis(sections.database.acquire_timeout_ms),
        );
        Ok(Self {
            tls,
            db,
            redis,
            readiness,
            metrics: Metrics::new(),
        })
    }

    /// The audit client of a service with an `[audit]` section, sending
    /// with tokens from `tokens`.
    pub fn audit_client(
        &self,
        config: &impl ServiceConfig,
        tokens: Option<Arc<dyn TokenSource>>,
    ) -> Result<(AuditClient, AuditSender), StartError> {
        let audit = config
            .sections()
            .audit
            .ok_or_else(|| StartError::setup("audit", "this service has no [audit] section"))?;
        let (client, sender) = AuditClient::start(audit.clone(), tokens, &self.tls.client)
            .map_err(|err| StartError::setup("audit", err))?;
        client.register_metrics(&self.metrics);
        Ok((client, sender))
    }

    /// The publisher of invalidation events signed as `issuer` ("" for a
    /// service that issues no tokens).
    pub fn publisher(&self, config: &impl ServiceConfig, issuer: &str) -> Publisher {
        let local_bus = config
            .sections()
            .redis
            .and_then(|redis| redis.local_bus.clone());
        Publisher::new(self.redis.clone(), local_bus, issuer.to_owned())
    }

    /// Serves `endpoints` until `shutdown` resolves, with the configured
    /// grace period for requests in flight.
    pub async fn serve(
        &self,
        config: &impl ServiceConfig,
        endpoints: ServiceEndpoints,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let grace = Duration::from_secs(config.server().shutdown_grace_secs);
        let readiness = self.readiness.monitor().await;
        crate::server::serve(
            endpoints,
            listener,
            self.tls.server.clone(),
            shutdown,
            grace,
            readiness.ready(),
        )
        .await
    }
}

/// Runs `M`'s pending migrations on the configured database and returns:
/// what `<service> --migrate` does (a migrations Job, an init container).
pub async fn migrate_only<M: MigratorTrait>(config: &impl ServiceConfig) -> Result<(), StartError> {
    let db = crate::db::connect_and_migrate::<M>(config.sections().database).await?;
    db.close().await.ok();
    Ok(())
}

/// Delivers the audit events still queued, within
/// `audit.shutdown_flush_timeout_secs`; what could not be delivered is
/// logged with its count.
pub async fn flush_audit(sender: AuditSender) {
    if let Err(err) = sender.shutdown().await {
        tracing::error!(error = %err, "audit events not delivered at shutdown");
    }
}
