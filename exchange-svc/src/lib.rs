//! exchange-svc: RFC 8693 token exchange with explicit delegation grants and
//! agent chains (`act` nested per hop).
//!
//! Served: the exchange itself over gRPC (`Exchange`) and HTTP
//! (`POST /oauth2/token`, see `exchange`), introspection of the tokens it
//! issues (`IntrospectToken`, `POST /oauth2/introspect`), the delegation
//! grants (CreateGrant, GetGrant, ListGrants, RevokeGrant) for people
//! authenticated by a trusted user-token issuer, the JWKS and RFC 8414
//! metadata.
//!
//! Layers: `api` (gRPC and HTTP transports, contract conversions),
//! `exchange` (one exchange, its checks in order) and `grants` (grant
//! operations and the grant behind an exchange), `domain` (grants, callers,
//! token claims, hop rules), `store` (the grant store, sea-orm or in
//! memory), `error` (`ExchangeError`).

mod admin;
mod api;
mod config;
mod domain;
mod error;
mod events;
mod exchange;
mod grants;
mod person;
mod store;
mod upstream;

use std::future::Future;
use std::sync::Arc;

use agentsec_common::foundation::{flush_audit, Foundation};
use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::exchange::v1::exchange_service_server::ExchangeServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::{
    AdminConfig, Config, ExchangeConfig, GrantConfig, IdentityConfig, PolicyConfig, TargetConfig,
    UserIssuerConfig,
};
/// This service's database migrations (run at start and by `--migrate`).
pub use store::Migrator;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str =
    <ExchangeServiceServer<api::grpc::ExchangeApi> as NamedService>::NAME;

/// Runs exchange-svc on `listener` until `shutdown` resolves: connects the
/// database and runs migrations, loads or creates the signing key, serves,
/// then flushes the audit events still queued.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let foundation = Foundation::start::<store::Migrator>(&config).await?;
    let (tls, db) = (&foundation.tls, foundation.db.clone());
    let keys = agentsec_common::keys::store::load_or_create(&db, &config.signing).await?;
    tracing::info!(kid = keys.active.kid(), alg = %keys.active.algorithm(), "signing key loaded");
    let jwks = Arc::new(keys.published);

    let user_issuers = Arc::new(
        person::UserIssuers::new(&config.user_issuers, config.grants.leeway_secs)
            .map_err(|err| StartError::setup("user_issuers", err))?,
    );
    let admin = admin::admin_auth(&config.admin, &tls.client)
        .map_err(|err| StartError::setup("admin", err))?
        .map(Arc::new);
    let identity = upstream::identity::IdentityClient::new(
        &config.identity,
        &config.admin.audience,
        &config.policy.audience,
        &config.audit.audience,
        &tls.client,
    )
    .map_err(|err| StartError::setup("identity", err))?
    .map(Arc::new);
    if identity.is_none() {
        tracing::warn!(
            "identity.endpoint is not set: audit events are sent without a service token, which audit-svc refuses"
        );
    }
    let (audit, audit_sender) = foundation.audit_client(
        &config,
        identity.as_ref().map(|identity| identity.audit_token()),
    )?;
    let publisher = foundation.publisher(&config, &config.issuer);
    let events = events::Events::new(events::SERVICE, audit, publisher);
    let policy = upstream::policy::PolicyClient::new(&config.policy, &tls.client)
        .map_err(|err| StartError::setup("policy", err))?;
    let grants = Arc::new(grants::Grants::new(
        store::grants::SqlGrantStore::new(db),
        events.clone(),
        config.grants.clone(),
        identity.clone(),
    ));
    let exchanger = Arc::new(exchange::Exchanger::new(
        &config,
        Arc::new(keys.active),
        jwks.clone(),
        grants.clone(),
        events,
        user_issuers.clone(),
        exchange::Upstream {
            tokens: admin.clone(),
            identity,
            policy,
        },
    ));
    exchanger.register_metrics(&foundation.metrics);
    if exchanger.identity.is_none() || exchanger.policy.is_none() {
        tracing::warn!(
            "identity.endpoint or policy.endpoint is not set: exchanges answer temporarily_unavailable"
        );
    }
    let api =
        api::grpc::ExchangeApi::new(jwks.clone(), grants, user_issuers, admin, exchanger.clone());
    let endpoints = ServiceEndpoints {
        name: "exchange-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(ExchangeServiceServer::new(api)),
        http: api::http::router(exchanger),
        metrics: foundation.metrics.clone(),
    };
    let served = foundation
        .serve(&config, endpoints, listener, shutdown)
        .await;
    flush_audit(audit_sender).await;
    served
}
