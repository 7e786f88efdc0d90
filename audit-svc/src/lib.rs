//! audit-svc: the append-only, hash-chained audit trail of every action,
//! with signed checkpoints.
//!
//! This release starts from config, runs its migrations and serves health and
//! reflection, and publishes its checkpoint verification key; ingest, query,
//! tail, verification and export answer UNIMPLEMENTED until the audit-svc issue.

mod api;
mod config;
mod store;

use std::future::Future;
use std::time::Duration;

use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::audit::v1::audit_service_server::AuditServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::Config;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str = <AuditServiceServer<api::grpc::AuditApi> as NamedService>::NAME;

/// Runs audit-svc on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let db = agentsec_common::db::connect_and_migrate::<store::Migrator>(&config.database).await?;
    let keys = agentsec_common::keys::store::load_or_create(&db, &config.signing).await?;
    tracing::info!(kid = keys.active.kid(), "checkpoint signing key loaded");
    let api = api::grpc::AuditApi::new(keys.active.kid().to_owned(), keys.published);
    let endpoints = ServiceEndpoints {
        name: "audit-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(AuditServiceServer::new(api)),
        http: axum::Router::new(),
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    agentsec_common::server::serve(endpoints, listener, shutdown, grace).await
}
