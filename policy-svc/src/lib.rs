//! policy-svc: the run-time policy decision point (PBAC on Casbin).
//!
//! Served in this release: versioned policy sets per tenant (stored in
//! its own database, every change a new version, audited as
//! `policy.changed` and published as POLICY_CHANGED on Redis), their
//! administration (Put, Validate, Test, List, Get, Diff, Rollback; admin
//! tokens of identity-svc verified against its JWKS), and decisions
//! (Check, BatchCheck, Explain, CheckToken) from every tenant's current
//! compiled set, each audited as `decision` off the hot path; with Redis,
//! replicas follow each other's changes. Repeated decisions are served from
//! the decision cache (in-process tier in front of Redis, see `cache`).
//! Decisions by outcome, the cache's counters, the revocation view's state
//! and the follower's are on `GET /metrics` with the request metrics. The same port serves the OpenID AuthZEN
//! API over HTTP (`api::authzen`) and Envoy ext_authz v3 over gRPC
//! (`api::ext_authz`); every decision API decides through the decision
//! service (`decisions`). Decision callers are authenticated when
//! `decisions.callers = "bearer"` (see `auth`).

mod api;
mod auth;
mod cache;
mod config;
mod decisions;
pub mod domain;
mod error;
mod events;
mod follower;
mod policies;
mod revocations;
mod store;
mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::foundation::{flush_audit, Foundation};
use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use agentsec_proto::policy::v1::policy_service_server::PolicyServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use domain::engine;

pub use config::{
    AdminConfig, CacheConfig, Config, DecisionCallers, DecisionConfig, IdentityConfig,
    RevocationConfig, TokenIssuerConfig,
};
/// This service's database migrations (run at start and by `--migrate`).
pub use store::Migrator;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str =
    <PolicyServiceServer<api::grpc::PolicyApi> as NamedService>::NAME;
/// Envoy's external authorization service, on the same port.
pub const EXT_AUTHZ_SERVICE_NAME: &str =
    <AuthorizationServer<api::ext_authz::ExtAuthz> as NamedService>::NAME;

/// policy.proto: requests carrying a PolicySet may be up to 16 MiB.
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// How long shutdown waits for queued decision events to reach the audit
/// client.
const DECISION_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs policy-svc on `listener` until `shutdown` resolves: connects the
/// database and runs migrations, loads and compiles every tenant's current
/// policy set, serves, then flushes the audit events still queued.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let foundation = Foundation::start::<store::Migrator>(&config).await?;
    let tls = &foundation.tls;
    let auth = auth::AdminAuth::new(&config.admin, &config.decisions, &tls.client)
        .map_err(|err| StartError::setup("admin", err))?;
    if config.decisions.callers == config::DecisionCallers::Any {
        tracing::warn!("decisions.callers = \"any\": decision requests are not authenticated; only trusted callers may reach this port");
    }
    if !config.admin.has_keys() {
        tracing::warn!("admin.jwks_uri is not set: every admin call answers FAILED_PRECONDITION");
    }
    let tokens = tokens::TokenVerifier::new(&config, &tls.client)
        .map_err(|err| StartError::setup("token_issuers", err))?;
    if !tokens.is_configured() {
        tracing::warn!(
            "no token issuer is trusted (token_issuers, admin.jwks_uri): CheckToken answers FAILED_PRECONDITION"
        );
    }
    let audit_token = revocations::owners::service_identity(
        &config.identity,
        &config.audit.audience,
        agentsec_common::admin_token::AUDIT_APPEND_SCOPE,
        &tls.client,
    )
    .map_err(|err| StartError::setup("identity", err))?;
    if audit_token.is_none() {
        tracing::warn!(
            "identity.endpoint is not set: audit events are sent without a service token, which audit-svc refuses"
        );
    }
    let (audit, audit_sender) = foundation.audit_client(
        &config,
        audit_token
            .map(|identity| Arc::new(identity) as Arc<dyn agentsec_common::upstream::TokenSource>),
    )?;
    let metrics = &foundation.metrics;
    let cache = Arc::new(cache::DecisionCache::new(
        &config.cache,
        foundation.redis.clone(),
    ));
    cache.register_metrics(metrics);
    let events = events::Events::new(audit.clone(), foundation.publisher(&config, ""));
    let owners = revocations::owners::Owners::new(
        &config.identity,
        &config.revocations,
        &config.admin.audience,
        &tls.client,
    )
    .map_err(|err| StartError::setup("revocations", err))?
    .map(Arc::new);
    if owners.is_none() {
        tracing::warn!(
            "identity.endpoint is not set: CheckToken and ext_authz accept revoked \
             tokens, tokens of suspended agents and of revoked grants until they expire"
        );
    }
    let max_staleness = Duration::from_millis(config.revocations.max_staleness_ms);
    let view = Arc::new(revocations::RevocationView::new(
        owners.is_some(),
        max_staleness,
    ));
    view.register_metrics(metrics);
    let (decision_audit, decision_forwarder) =
        events::DecisionAudit::start(audit, config.decisions.audit_backlog);
    let policies = Arc::new(
        policies::Policies::load(
            store::versions::SqlPolicyVersionStore::new(foundation.db.clone()),
            events,
        )
        .await
        .map_err(|err| StartError::setup("loading the policy sets", err))?,
    );
    let readiness_view = view.clone();
    foundation
        .readiness
        .require(move || readiness_view.readiness(chrono::Utc::now()));
    let bus = agentsec_common::follower::Bus::of(&config.redis);
    let follower = follower::PolicyFollower {
        policies: policies.clone(),
        cache: cache.clone(),
        view: view.clone(),
        owners,
        in_process: matches!(bus, agentsec_common::follower::Bus::Local(_)),
    };
    let follower = tokio::spawn(agentsec_common::follower::follow(
        Arc::new(follower),
        bus,
        max_staleness / 4,
        agentsec_common::follower::FollowerMetrics::register(metrics),
    ));
    let auth = Arc::new(auth);
    let decisions = Arc::new(decisions::DecisionService::new(
        policies.clone(),
        tokens,
        view.clone(),
        decision_audit.clone(),
        Duration::from_secs(config.decisions.cache_ttl_secs),
        cache.clone(),
        metrics,
    ));
    let api = Arc::new(api::grpc::PolicyApi::new(
        decisions.clone(),
        policies,
        auth.clone(),
    ));
    let endpoints = ServiceEndpoints {
        name: "policy-svc",
        grpc_services: vec![GRPC_SERVICE_NAME, EXT_AUTHZ_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(
            PolicyServiceServer::from_arc(api).max_decoding_message_size(MAX_REQUEST_BYTES),
        )
        .add_service(AuthorizationServer::new(api::ext_authz::ExtAuthz::new(
            decisions.clone(),
            auth.clone(),
        ))),
        http: api::authzen::router(api::authzen::Authzen {
            decisions,
            auth,
            rules: Arc::new(api::authzen::mapping::MappingRules {
                default_tenant: config.authzen.default_tenant.clone(),
            }),
            identity: match &config.authzen.pdp_url {
                Some(url) => api::authzen::PdpIdentity::Configured(url.as_str().into()),
                None => api::authzen::PdpIdentity::FromRequest {
                    tls: foundation.tls.server.is_some(),
                },
            },
        }),
        metrics: metrics.clone(),
    };
    let served = foundation
        .serve(&config, endpoints, listener, shutdown)
        .await;
    follower.abort();
    // The handlers are gone with the server: once this last handle is
    // dropped the forwarder drains the backlog into the audit client.
    let unaudited = decision_audit.unaudited_counter();
    drop(decision_audit);
    if tokio::time::timeout(DECISION_DRAIN_TIMEOUT, decision_forwarder)
        .await
        .is_err()
    {
        tracing::error!("decision audit events still queued at shutdown were not handed over");
    }
    let unaudited = unaudited.load(std::sync::atomic::Ordering::Relaxed);
    if unaudited > 0 {
        tracing::error!(
            unaudited,
            "decisions answered without an audit event since start"
        );
    }
    flush_audit(audit_sender).await;
    served
}
