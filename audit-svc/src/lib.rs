//! audit-svc: the append-only, hash-chained audit trail of every action,
//! with signed checkpoints, verification, query, tail and export.
//!
//! Layers: `api` (gRPC handlers and conversions), `chain` (preparing events
//! and the group-commit writer), `domain` (canonical encoding, hashing,
//! checkpoints, verification), `store` (sea-orm tables and queries).

mod api;
mod chain;
mod config;
mod domain;
mod error;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::foundation::Foundation;
use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::audit::v1::audit_service_server::AuditServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::{ChainConfig, Config};
/// This service's database migrations (run at start and by `--migrate`).
pub use store::Migrator;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str = <AuditServiceServer<api::grpc::AuditApi> as NamedService>::NAME;

/// Runs audit-svc on `listener` until `shutdown` resolves; then stops taking
/// requests and lets the chain writer commit what it has queued.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let foundation = Foundation::start::<store::Migrator>(&config).await?;
    let db = foundation.db.clone();
    let keys = agentsec_common::keys::store::load_or_create(&db, &config.signing).await?;
    tracing::info!(kid = keys.active.kid(), "checkpoint signing key loaded");
    let active_key_id = keys.active.kid().to_owned();
    let (writer, writer_task) = chain::writer::ChainWriter::start(
        db.clone(),
        Arc::new(keys.active),
        config.chain.clone(),
        &foundation.metrics,
    )
    .await
    .map_err(|err| {
        StartError::Database(agentsec_common::db::DbError::StartupRead {
            reason: err.to_string(),
        })
    })?;

    // Long-lived streams (tail, export) end when shutdown starts, so that
    // draining does not wait for readers who never hang up.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    let callers = api::auth::Callers::new(&config.admin, &config.audience, &foundation.tls.client)
        .map_err(|reason| StartError::setup("admin", reason))?;
    let api = api::grpc::AuditApi::new(db, writer, active_key_id, stopping, callers);
    // tonic's default 4 MiB decoding limit is the contract's request limit.
    let service = AuditServiceServer::new(api);
    let endpoints = ServiceEndpoints {
        name: "audit-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(service),
        http: axum::Router::new(),
        metrics: foundation.metrics.clone(),
    };
    let served = foundation
        .serve(&config, endpoints, listener, shutdown)
        .await;
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    // The server dropped every handle to the writer; it drains its queue.
    if tokio::time::timeout(grace, writer_task).await.is_err() {
        tracing::warn!("chain writer did not drain within the grace period");
    }
    served
}
