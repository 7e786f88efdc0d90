//! identity-svc load generator: client_credentials issuance and RFC 7662
//! introspection over HTTP/1.1 keep-alive connections, against identity-svc
//! (with audit-svc receiving its audit events) served in this process, on
//! SQLite or PostgreSQL.
//!
//! ```sh
//! cargo bench -p agentsec-identity --bench tokens                   # SQLite
//! AGENTSEC_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//! AGENTSEC_BENCH_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo bench -p agentsec-identity --bench tokens                 # PostgreSQL + Redis
//! ```
//! Knobs (environment): `BENCH_SECONDS` (10 per phase), `BENCH_CLIENTS`
//! (16 connections), `BENCH_TOKENS` (1,000 distinct tokens introspected in
//! turn), `BENCH_RUNS` (3). The summary reports the median run.

use std::net::SocketAddr;

use agentsec_bench_support::{
    bench_agent, channel, hammer, knob, BenchDatabase, Phase, BENCH_ADMIN_ID, BENCH_ADMIN_SECRET,
};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, GrantType, IssueTokenRequest,
};
use base64::Engine as _;
use tokio::net::TcpListener;
use tonic::transport::Channel;

struct Cluster {
    identity: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), agentsec_common::server::StartError>>>,
}

async fn start(identity_db: &BenchDatabase, audit_db: &BenchDatabase) -> anyhow::Result<Cluster> {
    let (stop, _) = tokio::sync::watch::channel(false);
    let shutdown = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut receiver = stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    };
    let audit_listener = TcpListener::bind("127.0.0.1:0").await?;
    let identity_listener = TcpListener::bind("127.0.0.1:0").await?;
    let audit_addr = audit_listener.local_addr()?;
    let identity = identity_listener.local_addr()?;
    // With PostgreSQL, replicas follow each other through Redis, as in
    // production; AGENTSEC_BENCH_REDIS_URL names it.
    let redis = agentsec_common::config::RedisConfig {
        url: std::env::var("AGENTSEC_BENCH_REDIS_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        key_prefix: format!("bench{}:", std::process::id()),
        local_bus: None,
    };
    let mut config = agentsec_identity::Config::for_test(identity_db.config.clone(), redis);
    config.issuer = format!("http://{identity}");
    config.credentials.pepper = Some("bench-pepper-0123456789abcdef0123456789".into());
    config.bootstrap_admin.client_id = Some(BENCH_ADMIN_ID.into());
    config.bootstrap_admin.client_secret = Some(BENCH_ADMIN_SECRET.into());
    config.audit.endpoint = format!("http://{audit_addr}");
    let mut audit_config = agentsec_audit::Config::for_test(audit_db.config.clone());
    audit_config.trust_identity(&config.issuer);
    let tasks = vec![
        tokio::spawn(agentsec_audit::serve(
            audit_config,
            audit_listener,
            shutdown(&stop),
        )),
        tokio::spawn(agentsec_identity::serve(
            config,
            identity_listener,
            shutdown(&stop),
        )),
    ];
    Ok(Cluster {
        identity,
        stop,
        tasks,
    })
}

async fn grpc(addr: SocketAddr) -> anyhow::Result<IdentityServiceClient<Channel>> {
    Ok(IdentityServiceClient::new(channel(addr).await?))
}

async fn one_run(
    run: u64,
    seconds: u64,
    clients: u64,
) -> anyhow::Result<(Phase, Phase, &'static str)> {
    let identity_db = BenchDatabase::fresh("identity", run)?;
    let audit_db = BenchDatabase::fresh("identity_audit", run)?;
    let backend = identity_db.backend;
    let cluster = start(&identity_db, &audit_db).await?;
    let mut client = grpc(cluster.identity).await?;
    let (_, client_id, secret) = bench_agent(
        channel(cluster.identity).await?,
        "load-generator",
        &["github-mcp"],
        &["repo:read", "issues:write"],
    )
    .await?;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    );
    let issue = hammer(
        cluster.identity,
        clients,
        seconds,
        "/oauth2/token",
        "application/x-www-form-urlencoded",
        basic.clone(),
        vec!["grant_type=client_credentials&audience=github-mcp&scope=repo%3Aread".to_owned()],
    )
    .await?;
    let mut tokens = Vec::new();
    for _ in 0..knob("BENCH_TOKENS", 1000).max(1) {
        tokens.push(
            client
                .issue_token(IssueTokenRequest {
                    grant_type: GrantType::ClientCredentials as i32,
                    client_id: client_id.clone(),
                    client_authentication: Some(ClientAuthentication::ClientSecret(secret.clone())),
                    audience: "github-mcp".into(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .access_token,
        );
    }
    // The resource server asks with its own bearer token, as a gateway
    // holding an agent token would, about each token in turn.
    let introspect = hammer(
        cluster.identity,
        clients,
        seconds,
        "/oauth2/introspect",
        "application/x-www-form-urlencoded",
        format!("Bearer {}", tokens[0]),
        tokens
            .iter()
            .map(|token| format!("token={token}"))
            .collect(),
    )
    .await?;
    let _ = cluster.stop.send(true);
    for task in cluster.tasks {
        task.await??;
    }
    identity_db.drop().await?;
    audit_db.drop().await?;
    Ok((issue, introspect, backend))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = knob("BENCH_SECONDS", 10);
    let clients = knob("BENCH_CLIENTS", 16);
    let runs = knob("BENCH_RUNS", 3);
    let mut issues = Vec::new();
    let mut introspections = Vec::new();
    let mut backend = "";
    for run in 0..runs {
        let (issue, introspect, name) = one_run(run, seconds, clients).await?;
        backend = name;
        println!(
            "run {}: {}; {}",
            run + 1,
            issue.show("issue"),
            introspect.show("introspect")
        );
        issues.push(issue);
        introspections.push(introspect);
    }
    println!(
        "median of {runs} runs on {backend} ({clients} keep-alive connections, {seconds} s per phase): {}; {}",
        Phase::median_of(&issues).show("issue"),
        Phase::median_of(&introspections).show("introspect")
    );
    Ok(())
}
