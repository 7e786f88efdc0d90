//! exchange-svc: RFC 8693 token exchange with explicit delegation grants and
//! agent chains (`act` nested per hop).
//!
//! This release serves the v1 contract's `GetJwks` (gRPC) and
//! `/.well-known/jwks.json` (HTTP) from persisted signing keys; the registry,
//! credentials and token endpoints answer UNIMPLEMENTED until the
//! exchange-svc issue lands them.

mod api;
mod config;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::exchange::v1::exchange_service_server::ExchangeServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::Config;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str =
    <ExchangeServiceServer<api::grpc::ExchangeApi> as NamedService>::NAME;

/// Runs exchange-svc on `listener` until `shutdown` resolves: connects the
/// database and runs migrations, loads or creates the signing key, serves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let db = agentsec_common::db::connect_and_migrate::<store::Migrator>(&config.database).await?;
    let _redis = agentsec_common::redis::connect(&config.redis).await?;
    let keys = agentsec_common::keys::store::load_or_create(&db, &config.signing).await?;
    tracing::info!(kid = keys.active.kid(), alg = %keys.active.algorithm(), "signing key loaded");
    let jwks = Arc::new(keys.published);

    let api = api::grpc::ExchangeApi::new(jwks.clone());
    let endpoints = ServiceEndpoints {
        name: "exchange-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(ExchangeServiceServer::new(api)),
        http: agentsec_common::keys::jwks_router(jwks),
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    agentsec_common::server::serve(endpoints, listener, shutdown, grace).await
}
