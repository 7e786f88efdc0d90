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
use std::time::{Duration, Instant};

use agentsec_bench_support::{knob, median, BenchDatabase, KeepAlive, Latencies};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, Agent, Ceiling, CreateClientSecretRequest,
    GrantType, IssueTokenRequest, RegisterAgentRequest,
};
use anyhow::{ensure, Context as _};
use base64::Engine as _;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const ADMIN_ID: &str = "bench-admin";
const ADMIN_SECRET: &str = "bench-admin-secret-0123456789abcdef0123";

struct Phase {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    count: usize,
}

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
    };
    let mut config = agentsec_identity::Config::for_test(identity_db.config.clone(), redis);
    config.issuer = format!("http://{identity}");
    config.credentials.pepper = Some("bench-pepper-0123456789abcdef0123456789".into());
    config.bootstrap_admin.client_id = Some(ADMIN_ID.into());
    config.bootstrap_admin.client_secret = Some(ADMIN_SECRET.into());
    config.audit.endpoint = format!("http://{audit_addr}");
    let audit_config = agentsec_audit::Config::for_test(audit_db.config.clone());
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
    for _ in 0..250 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            let mut client = IdentityServiceClient::new(channel);
            if client
                .get_jwks(agentsec_proto::identity::v1::GetJwksRequest {})
                .await
                .is_ok()
            {
                return Ok(client);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("identity-svc did not start")
}

fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Registers an agent with a client secret; returns (client id, secret).
async fn agent(client: &mut IdentityServiceClient<Channel>) -> anyhow::Result<(String, String)> {
    let admin = client
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: ADMIN_ID.into(),
            client_authentication: Some(ClientAuthentication::ClientSecret(ADMIN_SECRET.into())),
            audience: "agentsec".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .access_token;
    let agent = client
        .register_agent(bearer(
            &admin,
            RegisterAgentRequest {
                agent: Some(Agent {
                    tenant: "bench".into(),
                    owner: "alice".into(),
                    name: "load-generator".into(),
                    ceiling: Some(Ceiling {
                        audiences: vec!["github-mcp".into()],
                        scopes: vec!["repo:read".into(), "issues:write".into()],
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await?
        .into_inner()
        .agent
        .context("no agent")?;
    let secret = client
        .create_client_secret(bearer(
            &admin,
            CreateClientSecretRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    Ok((secret.client_id, secret.client_secret))
}

/// `clients` connections send the `bodies` in turn to `path` until
/// `seconds` have passed.
async fn hammer(
    addr: SocketAddr,
    clients: u64,
    seconds: u64,
    path: &'static str,
    authorization: String,
    bodies: Vec<String>,
) -> anyhow::Result<Phase> {
    let bodies = std::sync::Arc::new(bodies);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let mut connection = KeepAlive::connect(addr).await?;
        let (authorization, bodies) = (authorization.clone(), bodies.clone());
        let offset = workers.len() * 61;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut sent = offset;
            while Instant::now() < deadline {
                let body = &bodies[sent % bodies.len()];
                sent += 1;
                let began = Instant::now();
                let (status, response) = connection
                    .post_form(path, &[("Authorization", &authorization)], body)
                    .await?;
                latencies.push(began.elapsed());
                ensure!(
                    status == 200,
                    "{path} answered {status}: {}",
                    String::from_utf8_lossy(&response)
                );
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.append(&mut worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = Latencies::new(all);
    Ok(Phase {
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: latencies.percentile_ms(0.50),
        p99_ms: latencies.percentile_ms(0.99),
        p999_ms: latencies.percentile_ms(0.999),
        count: latencies.len(),
    })
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
    let (client_id, secret) = agent(&mut client).await?;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    );
    let issue = hammer(
        cluster.identity,
        clients,
        seconds,
        "/oauth2/token",
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

fn show(name: &str, phase: &Phase) -> String {
    format!(
        "{name} {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, {} requests)",
        phase.per_sec, phase.p50_ms, phase.p99_ms, phase.p999_ms, phase.count
    )
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
            show("issue", &issue),
            show("introspect", &introspect)
        );
        issues.push(issue);
        introspections.push(introspect);
    }
    let summary = |phases: &[Phase]| Phase {
        per_sec: median(phases.iter().map(|p| p.per_sec).collect()),
        p50_ms: median(phases.iter().map(|p| p.p50_ms).collect()),
        p99_ms: median(phases.iter().map(|p| p.p99_ms).collect()),
        p999_ms: median(phases.iter().map(|p| p.p999_ms).collect()),
        count: phases.iter().map(|p| p.count).sum(),
    };
    println!(
        "median of {runs} runs on {backend} ({clients} keep-alive connections, {seconds} s per phase): {}; {}",
        show("issue", &summary(&issues)),
        show("introspect", &summary(&introspections))
    );
    Ok(())
}
