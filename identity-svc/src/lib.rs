//! identity-svc: the registry of agents as first-class identities and the
//! OAuth 2.0 authorization server that issues their tokens.
//!
//! This release serves the v1 contract's `GetJwks` (gRPC) and
//! `/.well-known/jwks.json` (HTTP) from persisted signing keys; the registry,
//! credentials and token endpoints answer UNIMPLEMENTED until the
//! identity-svc issue lands them.

mod api;
mod config;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::identity::v1::identity_service_server::IdentityServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::Config;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str =
    <IdentityServiceServer<api::grpc::IdentityApi> as NamedService>::NAME;

/// Runs identity-svc on `listener` until `shutdown` resolves: connects the
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

    let api = api::grpc::IdentityApi::new(jwks.clone());
    let endpoints = ServiceEndpoints {
        name: "identity-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(IdentityServiceServer::new(api)),
        http: agentsec_common::keys::jwks_router(jwks),
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    agentsec_common::server::serve(endpoints, listener, shutdown, grace).await
}
