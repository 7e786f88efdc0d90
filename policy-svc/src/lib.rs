//! policy-svc: the run-time policy decision point (PBAC on Casbin), with a
//! decision cache and Envoy ext_authz on the same port.
//!
//! This release starts from config, runs its migrations and serves health and
//! reflection; every decision and administration RPC answers UNIMPLEMENTED
//! until the policy-svc issue lands it. Nothing here can answer "allow".

mod api;
mod config;
pub mod engine;
mod store;

use std::future::Future;
use std::time::Duration;

use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::policy::v1::policy_service_server::PolicyServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::Config;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str =
    <PolicyServiceServer<api::grpc::PolicyApi> as NamedService>::NAME;

/// Runs policy-svc on `listener` until `shutdown` resolves.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let _db = agentsec_common::db::connect_and_migrate::<store::Migrator>(&config.database).await?;
    let _redis = agentsec_common::redis::connect(&config.redis).await?;
    let endpoints = ServiceEndpoints {
        name: "policy-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(PolicyServiceServer::new(api::grpc::PolicyApi)),
        http: axum::Router::new(),
    };
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    agentsec_common::server::serve(endpoints, listener, shutdown, grace).await
}
