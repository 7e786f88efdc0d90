//! exchange-svc load generator: RFC 8693 exchanges over HTTP/1.1 keep-alive
//! connections against all four services served in this process (every
//! exchange verifies the person token, verifies the actor token and
//! introspects it at identity-svc, reads the grant, asks policy-svc, signs,
//! and audits to audit-svc), on SQLite or PostgreSQL.
//!
//! ```sh
//! cargo bench -p agentsec-exchange --bench exchange                 # SQLite
//! AGENTSEC_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//! AGENTSEC_BENCH_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo bench -p agentsec-exchange --bench exchange               # PostgreSQL + Redis
//! ```
//! Knobs (environment): `BENCH_SECONDS` (10), `BENCH_CLIENTS` (16
//! connections), `BENCH_RUNS` (3). The summary reports the median run.

use std::net::SocketAddr;

use agentsec_bench_support::{
    bearer, bench_agent, channel, client_credentials, hammer, knob, BenchDatabase, Phase,
    BENCH_ADMIN_ID, BENCH_ADMIN_SECRET, BENCH_EXCHANGE_SECRET as EXCHANGE_SECRET,
    BENCH_POLICY_SECRET,
};
use agentsec_common::config::RedisConfig;
use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use agentsec_common::server::StartError;
use agentsec_proto::common::v1::Effect;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::{CreateGrantRequest, Grant};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{PolicyRule, PolicySet, PutPolicySetRequest};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const USER_ISSUER: &str = "https://users.bench";
const USER_AUDIENCE: &str = "agentsec-bench";
const TARGET: &str = "https://api.bench";
const TENANT: &str = "bench";

struct Cluster {
    identity: SocketAddr,
    policy: SocketAddr,
    exchange: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), StartError>>>,
    databases: Vec<BenchDatabase>,
}

/// The services' Redis, or without one the in-process bus they share (as
/// in `agentctl dev`).
fn redis(run: u64) -> RedisConfig {
    let url = std::env::var("AGENTSEC_BENCH_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    RedisConfig {
        local_bus: url
            .is_none()
            .then(agentsec_common::invalidation::LocalBus::new),
        url,
        key_prefix: format!("bench{}-{run}:", std::process::id()),
    }
}

async fn start(run: u64, user_key: &SigningKey) -> anyhow::Result<Cluster> {
    let (stop, _) = watch::channel(false);
    let shutdown = |stop: &watch::Sender<bool>| {
        let mut receiver = stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    };
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    ];
    let [identity, policy, exchange, audit] = [
        listeners[0].local_addr()?,
        listeners[1].local_addr()?,
        listeners[2].local_addr()?,
        listeners[3].local_addr()?,
    ];
    let [identity_listener, policy_listener, exchange_listener, audit_listener] = listeners;
    let databases = vec![
        BenchDatabase::fresh("exchange_identity", run)?,
        BenchDatabase::fresh("exchange_policy", run)?,
        BenchDatabase::fresh("exchange", run)?,
        BenchDatabase::fresh("exchange_audit", run)?,
    ];
    let identity_url = format!("http://{identity}");
    let identity_jwks = format!("{identity_url}/.well-known/jwks.json");
    let audit_url = format!("http://{audit}");

    let redis_config = redis(run);
    let mut identity_config =
        agentsec_identity::Config::for_test(databases[0].config.clone(), redis_config.clone());
    identity_config.issuer = identity_url.clone();
    identity_config.credentials.pepper = Some("bench-pepper-0123456789abcdef0123456789".into());
    identity_config.bootstrap_admin.client_id = Some(BENCH_ADMIN_ID.into());
    identity_config.bootstrap_admin.client_secret = Some(BENCH_ADMIN_SECRET.into());
    identity_config.service_clients.insert(
        agentsec_identity::EXCHANGE_SVC_CLIENT_ID.to_owned(),
        agentsec_identity::ServiceClientConfig::exchange_svc(
            EXCHANGE_SECRET.to_owned(),
            "agentsec",
            "agentsec-policy",
            "agentsec-audit",
        ),
    );
    identity_config.audit.endpoint = audit_url.clone();

    let mut policy_config =
        agentsec_policy::Config::for_test(databases[1].config.clone(), redis_config.clone());
    policy_config.admin.jwks_uri = Some(identity_jwks.clone());
    policy_config.admin.issuer = Some(identity_url.clone());
    policy_config.audit.endpoint = audit_url.clone();
    policy_config.identity.endpoint = Some(identity_url.clone());
    policy_config.identity.client_id = agentsec_identity::POLICY_SVC_CLIENT_ID.into();
    policy_config.identity.client_secret = BENCH_POLICY_SECRET.into();
    identity_config.service_clients.insert(
        agentsec_identity::POLICY_SVC_CLIENT_ID.to_owned(),
        agentsec_identity::ServiceClientConfig::policy_svc(
            BENCH_POLICY_SECRET.to_owned(),
            "agentsec",
            "agentsec-audit",
        ),
    );

    let mut exchange_config =
        agentsec_exchange::Config::for_test(databases[2].config.clone(), redis_config);
    exchange_config.issuer = format!("http://{exchange}");
    exchange_config.audit.endpoint = audit_url;
    exchange_config.admin.jwks_uri = Some(identity_jwks);
    exchange_config.admin.issuer = Some(identity_url.clone());
    exchange_config.identity.endpoint = Some(identity_url);
    exchange_config.identity.client_id = agentsec_identity::EXCHANGE_SVC_CLIENT_ID.into();
    exchange_config.identity.client_secret = EXCHANGE_SECRET.into();
    exchange_config.policy.endpoint = Some(format!("http://{policy}"));
    exchange_config.targets = vec![agentsec_exchange::TargetConfig {
        audience: TARGET.into(),
        allow_impersonation: false,
    }];
    exchange_config.user_issuers = vec![agentsec_exchange::UserIssuerConfig {
        issuer: USER_ISSUER.into(),
        jwks: Some(serde_json::json!({ "keys": [user_key.public_jwk()] }).to_string()),
        jwks_uri: None,
        audience: USER_AUDIENCE.into(),
        algorithms: vec!["EdDSA".into()],
        jwks_cache_secs: 300,
    }];
    let mut audit_config = agentsec_audit::Config::for_test(databases[3].config.clone());
    audit_config.trust_identity(&identity_config.issuer);

    let tasks = vec![
        tokio::spawn(agentsec_audit::serve(
            audit_config,
            audit_listener,
            shutdown(&stop),
        )),
        tokio::spawn(agentsec_identity::serve(
            identity_config,
            identity_listener,
            shutdown(&stop),
        )),
        tokio::spawn(agentsec_policy::serve(
            policy_config,
            policy_listener,
            shutdown(&stop),
        )),
        tokio::spawn(agentsec_exchange::serve(
            exchange_config,
            exchange_listener,
            shutdown(&stop),
        )),
    ];
    Ok(Cluster {
        identity,
        policy,
        exchange,
        stop,
        tasks,
        databases,
    })
}

fn allow(id: &str, resource: &str) -> PolicyRule {
    PolicyRule {
        id: id.into(),
        description: "@match-all".into(),
        effect: Effect::Allow as i32,
        agent: "*".into(),
        resource: resource.into(),
        actions: vec!["token:exchange".into()],
        ..Default::default()
    }
}

/// Registers the acting agent, the policy and the person's grant; returns
/// the exchange request body.
async fn prepare(cluster: &Cluster, user_key: &SigningKey) -> anyhow::Result<String> {
    let exchange_issuer = format!("http://{}", cluster.exchange);
    let (admin, client_id, client_secret) = bench_agent(
        channel(cluster.identity).await?,
        "exchange-load",
        &[&exchange_issuer],
        &["repo:read", "issues:write"],
    )
    .await?;
    let mut identity = IdentityServiceClient::new(channel(cluster.identity).await?);
    let actor = identity
        .issue_token(client_credentials(
            &client_id,
            &client_secret,
            &exchange_issuer,
        ))
        .await?
        .into_inner()
        .access_token;

    let mut policy = PolicyServiceClient::new(channel(cluster.policy).await?);
    policy
        .put_policy_set(bearer(
            &admin,
            PutPolicySetRequest {
                tenant: TENANT.into(),
                policy_set: Some(PolicySet {
                    rules: vec![allow("exchange", "audience:*"), allow("scopes", "scope:*")],
                    ..Default::default()
                }),
                expected_version: None,
                description: "bench".into(),
            },
        ))
        .await?;

    let now = chrono::Utc::now().timestamp();
    let person = user_key.sign(
        "JWT",
        &serde_json::json!({
            "iss": USER_ISSUER, "sub": "alice", "aud": USER_AUDIENCE, "tenant": TENANT,
            "iat": now, "nbf": now, "exp": now + 3600,
        }),
    )?;
    let mut exchange = ExchangeServiceClient::new(channel(cluster.exchange).await?);
    exchange
        .create_grant(bearer(
            &person,
            CreateGrantRequest {
                grant: Some(Grant {
                    agent_id: client_id,
                    audiences: vec![TARGET.into()],
                    scopes: vec!["repo:read".into(), "issues:write".into()],
                    expire_time: Some(prost_types::Timestamp {
                        seconds: now + 3600,
                        nanos: 0,
                    }),
                    max_chain_depth: 1,
                    purpose: "load test".into(),
                    ..Default::default()
                }),
            },
        ))
        .await?;
    Ok(form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair("subject_token", &person)
        .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
        .append_pair("actor_token", &actor)
        .append_pair(
            "actor_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .append_pair("audience", TARGET)
        .append_pair("scope", "repo:read")
        .finish())
}

async fn one_run(run: u64, seconds: u64, clients: u64) -> anyhow::Result<(Phase, &'static str)> {
    let user_key = SigningKey::generate(SigningAlgorithm::EdDsa)?;
    let cluster = start(run, &user_key).await?;
    let backend = cluster.databases[0].backend;
    let body = prepare(&cluster, &user_key).await?;
    let phase = hammer(
        cluster.exchange,
        clients,
        seconds,
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        String::new(),
        vec![body],
    )
    .await?;
    let _ = cluster.stop.send(true);
    for task in cluster.tasks {
        task.await??;
    }
    for database in cluster.databases {
        database.drop().await?;
    }
    Ok((phase, backend))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = knob("BENCH_SECONDS", 10);
    let clients = knob("BENCH_CLIENTS", 16);
    let runs = knob("BENCH_RUNS", 3);
    let mut phases = Vec::new();
    let mut backend = "";
    for run in 0..runs {
        let (phase, name) = one_run(run, seconds, clients).await?;
        backend = name;
        println!("run {}: {}", run + 1, phase.show("exchange"));
        phases.push(phase);
    }
    println!(
        "median of {runs} runs on {backend} ({clients} keep-alive connections, {seconds} s): {}",
        Phase::median_of(&phases).show("exchange")
    );
    Ok(())
}
