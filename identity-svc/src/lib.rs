//! identity-svc: the registry of agents as first-class identities and the
//! OAuth 2.0 authorization server that issues their tokens.
//!
//! Served: the agent registry and its credentials (client secrets,
//! `private_key_jwt` keys, federated credentials) over gRPC; the
//! `client_credentials` grant and, with `[[trusted_issuers]]` configured,
//! the jwt-bearer grant of workload identity federation; RFC 7662
//! introspection and RFC 7009 revocation over HTTP and gRPC; JWKS (with
//! key rotation) and RFC 8414 metadata.

mod api;
mod config;
mod domain;
mod error;
mod events;
mod federation;
mod keyring;
mod oauth;
mod secrets;
mod standing;
mod store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::foundation::{flush_audit, Foundation};
use agentsec_common::server::{ServiceEndpoints, StartError};
use agentsec_proto::identity::v1::identity_service_server::IdentityServiceServer;
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tonic::server::NamedService;

pub use config::{
    Config, ServiceClientConfig, TrustedIssuerConfig, EXCHANGE_SVC_CLIENT_ID, POLICY_SVC_CLIENT_ID,
};
pub use events::INVALIDATION_CHANNEL;
/// This service's database migrations (run at start and by `--migrate`).
pub use store::Migrator;

/// The gRPC service this crate serves.
pub const GRPC_SERVICE_NAME: &str =
    <IdentityServiceServer<api::grpc::IdentityApi> as NamedService>::NAME;

/// The pepper from config, or generated beside the data; it must be the
/// one this database's secrets were hashed with.
async fn load_pepper(
    config: &Config,
    db: &DatabaseConnection,
) -> Result<secrets::Pepper, StartError> {
    let pepper = match (&config.credentials.pepper, &config.credentials.pepper_file) {
        (Some(pepper), _) => secrets::Pepper::new(pepper.as_bytes().to_vec()),
        (None, Some(path)) => secrets::Pepper::from_file(path, false)
            .map_err(|err| StartError::setup("credentials.pepper_file", err))?,
        (None, None) => secrets::Pepper::from_file(&config.generated_pepper_path(), true)
            .map_err(|err| StartError::setup("credentials.pepper", err))?,
    };
    let fingerprint = pepper.fingerprint();
    let stored = store::settings::get_or_init(db, "pepper_fingerprint", &fingerprint)
        .await
        .map_err(|err| StartError::setup("reading the pepper fingerprint", err))?;
    if stored != fingerprint {
        return Err(StartError::setup(
            "credentials.pepper",
            "differs from the pepper this database's client secrets were hashed with \
             (every replica must use the same pepper)",
        ));
    }
    Ok(pepper)
}

/// Without a subscription the standing answers from the database, so
/// there is nothing to catch up on; this only paces resubscribing.
const STANDING_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Lets introspection answer from memory where that stays exact: at once
/// on SQLite (this process owns the database); on PostgreSQL only while
/// following the other replicas' invalidation events on Redis.
async fn follow_invalidations(
    config: &Config,
    standing: &Arc<standing::Standing>,
    metrics: &agentsec_common::metrics::Metrics,
) -> Result<Option<tokio::task::JoinHandle<()>>, StartError> {
    let kind = agentsec_common::db::DatabaseKind::of_url(&config.database.url)
        .map_err(|reason| StartError::setup("database.url", reason))?;
    if kind == agentsec_common::db::DatabaseKind::Sqlite {
        standing
            .go_live()
            .await
            .map_err(|err| StartError::setup("loading the revocation list", err))?;
        return Ok(None);
    }
    if config.redis.url.is_none() {
        tracing::info!("no Redis: introspection reads the database on every call");
        return Ok(None);
    }
    let follower = standing::StandingFollower {
        standing: standing.clone(),
        issuer: config.issuer.clone(),
    };
    Ok(Some(tokio::spawn(agentsec_common::follower::follow(
        Arc::new(follower),
        agentsec_common::follower::Bus::of(&config.redis),
        STANDING_POLL_INTERVAL,
        agentsec_common::follower::FollowerMetrics::register(metrics),
    ))))
}

/// Runs identity-svc on `listener` until `shutdown` resolves: connects the
/// database and runs migrations, loads or creates the signing key, serves,
/// then flushes the audit events still queued.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let foundation = Foundation::start::<store::Migrator>(&config).await?;
    let db = foundation.db.clone();
    let keys = keyring::LiveKeys::load(db.clone(), config.signing.clone()).await?;
    {
        let current = keys.current();
        tracing::info!(kid = current.active.kid(), alg = %current.active.algorithm(), "signing key loaded");
    }
    let key_refresher = tokio::spawn(keys.clone().follow());
    let pepper = load_pepper(&config, &db).await?;
    let bootstrap = match (
        &config.bootstrap_admin.client_id,
        &config.bootstrap_admin.client_secret,
    ) {
        (Some(client_id), Some(secret)) => Some(oauth::BootstrapAdmin {
            client_id: client_id.clone(),
            secret_hash: pepper.hash(secret),
        }),
        _ => None,
    };
    let service_clients = config
        .service_clients
        .iter()
        .map(|(client_id, client)| {
            let hashed = oauth::ServiceClient {
                client_id: client_id.clone(),
                secret_hash: pepper.hash(&client.client_secret),
                audiences: client.audiences.clone(),
                scopes: client.scopes.clone(),
            };
            (client_id.clone(), hashed)
        })
        .collect();
    let federation = Arc::new(
        federation::Federation::new(&config.trusted_issuers, config.tokens.leeway_secs)
            .map_err(|err| StartError::setup("trusted_issuers", err))?,
    );
    let (audit, audit_sender) = foundation.audit_client(
        &config,
        Some(Arc::new(oauth::own_token::OwnToken::new(
            keys.clone(),
            &config.issuer,
            &config.audit.audience,
            Duration::from_secs(config.tokens.lifetime_secs),
        ))),
    )?;
    let publisher = foundation.publisher(&config, &config.issuer);
    let events = events::Events::new(events::SERVICE, audit, publisher);
    let standing = standing::Standing::new(db.clone());
    let follower = follow_invalidations(&config, &standing, &foundation.metrics).await?;

    let registry_store = store::SqlRegistryStore::new(db.clone());
    let tokens = Arc::new(oauth::TokenService {
        db,
        store: registry_store.clone(),
        redis: foundation.redis.clone(),
        keys,
        issuer: config.issuer.clone(),
        config: config.tokens.clone(),
        pepper: pepper.clone(),
        bootstrap,
        service_clients,
        events: events.clone(),
        federation: federation.clone(),
        standing: standing.clone(),
        // The signature of a token of ours never changes its answer, and
        // no token lives longer than a day.
        verified: agentsec_common::verified::VerifiedTokens::new(Duration::from_secs(24 * 3600)),
        metrics: oauth::metrics::TokenMetrics::register(&foundation.metrics),
    });
    let registry = Arc::new(domain::registry::Registry {
        store: registry_store,
        events,
        pepper,
        federation,
        standing,
    });
    let api = api::grpc::IdentityApi::new(tokens.clone(), registry);
    let endpoints = ServiceEndpoints {
        name: "identity-svc",
        grpc_services: vec![GRPC_SERVICE_NAME],
        descriptor_sets: vec![agentsec_proto::FILE_DESCRIPTOR_SET],
        grpc: tonic::service::Routes::new(IdentityServiceServer::new(api)),
        http: oauth::http::router(tokens),
        metrics: foundation.metrics.clone(),
    };
    let served = foundation
        .serve(&config, endpoints, listener, shutdown)
        .await;
    if let Some(follower) = follower {
        follower.abort();
    }
    key_refresher.abort();
    flush_audit(audit_sender).await;
    served
}
