//! audit-svc load generator: sustained ingest (events/s, ack latency) and
//! verification speed, against audit-svc served in this process over real
//! gRPC on loopback, on SQLite or on PostgreSQL.
//!
//! ```sh
//! cargo bench -p agentsec-audit --bench ingest                  # SQLite
//! AGENTSEC_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!   cargo bench -p agentsec-audit --bench ingest                # PostgreSQL
//! ```
//! Knobs (environment): `BENCH_SECONDS` (10), `BENCH_CLIENTS` (8),
//! `BENCH_BATCH` (500), `BENCH_RUNS` (3). Each run starts on an empty chain;
//! the summary reports the median run. `RUST_LOG=agentsec_audit=debug`
//! prints the time spent in each group commit (chaining, id rows, blocks,
//! checkpoints and commit).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_audit::Config;
use agentsec_bench_support::{bearer, knob, median, BenchDatabase, Latencies};
use agentsec_common::admin_token::{AUDIT_APPEND_SCOPE, AUDIT_READ_SCOPE};
use agentsec_common::config::DatabaseConfig;
use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::{AppendEventsRequest, Event, VerifyChainRequest};
use agentsec_proto::common::v1::{Actor, ActorChain, Outcome};
use tonic::transport::{Channel, Endpoint};

fn event(client: u64, n: u64) -> Event {
    Event {
        id: format!("bench_{client}_{n}"),
        time: Some(prost_types::Timestamp {
            seconds: 1_790_000_000 + i64::try_from(n).unwrap_or(0),
            nanos: 0,
        }),
        service: "policy-svc".into(),
        kind: "decision".into(),
        tenant: format!("tenant_{}", n % 16),
        agent_id: format!("agt_{}", n % 1000),
        person_subject: format!("user{}@example.com", n % 5000),
        actor_chain: Some(ActorChain {
            actors: vec![Actor {
                agent_id: format!("agt_{}", n % 1000),
                issuer: "https://identity.example.com".into(),
            }],
        }),
        action: "tools/call".into(),
        resource_type: "mcp.tool".into(),
        resource_id: "mcp:github/create_issue".into(),
        audience: "mcp:github".into(),
        outcome: Outcome::Allow as i32,
        reason: "allowed by policy p-17: agent in project, within working hours".into(),
        policy_ids: vec!["p-17".into()],
        decision_id: format!("dec_{client}_{n}"),
        trace_id: format!("{:032x}", u128::from(n) * 7919 + u128::from(client)),
        span_id: format!("{:016x}", n),
        attributes: HashMap::from([("policy_version".into(), "42".into())]),
    }
}

struct RunResult {
    events_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    verify_first_per_sec: f64,
    verify_events_per_sec: f64,
    events: u64,
}

/// The `iss` of the bench's own tokens.
const BENCH_ISSUER: &str = "https://bench.test";

async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

async fn one_run(
    database: DatabaseConfig,
    seconds: u64,
    clients: u64,
    batch: u64,
) -> anyhow::Result<RunResult> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut config = Config::for_test(database);
    config.chain.checkpoint_every_events = 10_000;
    // Callers are authenticated as in production: a key set trusted inline
    // and one token that appends and reads.
    let key = SigningKey::generate(SigningAlgorithm::EdDsa)?;
    config.admin.jwks = Some(serde_json::json!({ "keys": [key.public_jwk()] }).to_string());
    config.admin.issuer = Some(BENCH_ISSUER.to_owned());
    let now = chrono::Utc::now().timestamp();
    let token = key.sign(
        "at+jwt",
        &serde_json::json!({
            "iss": BENCH_ISSUER, "sub": "bench", "aud": config.audience,
            "scope": format!("{AUDIT_APPEND_SCOPE} {AUDIT_READ_SCOPE}"),
            "iat": now, "nbf": now, "exp": now + 3_600,
        }),
    )?;
    let server = tokio::spawn(agentsec_audit::serve(config, listener, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));
    // Wait for the service to answer before the clock starts.
    let mut probe = AuditServiceClient::new(loop {
        if let Ok(channel) = channel(addr).await {
            break channel;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    });
    while probe
        .verify_chain(bearer(&token, VerifyChainRequest::default()))
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for client_id in 0..clients {
        let channel = channel(addr).await?;
        let token = token.clone();
        workers.push(tokio::spawn(async move {
            let mut client = AuditServiceClient::new(channel);
            let mut latencies = Vec::new();
            let mut sent = 0u64;
            while Instant::now() < deadline {
                let events: Vec<Event> =
                    (sent..sent + batch).map(|n| event(client_id, n)).collect();
                let began = Instant::now();
                client
                    .append_events(bearer(&token, AppendEventsRequest { events }))
                    .await?;
                latencies.push(began.elapsed());
                sent += batch;
            }
            anyhow::Ok((sent, latencies))
        }));
    }
    let mut total = 0;
    let mut latencies = Vec::new();
    for worker in workers {
        let (sent, mut lat) = worker.await??;
        total += sent;
        latencies.append(&mut lat);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = Latencies::new(latencies);

    // The first pass over fresh rows also pays PostgreSQL's one-time hint
    // bit writes; the second is what re-verifying a stored chain costs.
    let mut verify_rates = Vec::new();
    for _ in 0..2 {
        let verify_started = Instant::now();
        let report = probe
            .verify_chain(bearer(&token, VerifyChainRequest::default()))
            .await?
            .into_inner();
        let verify_elapsed = verify_started.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.ok && report.events_verified == total,
            "verification failed: {report:?}"
        );
        verify_rates.push(total as f64 / verify_elapsed);
    }

    let _ = stop_tx.send(true);
    server.await??;
    Ok(RunResult {
        events_per_sec: total as f64 / elapsed,
        p50_ms: latencies.percentile_ms(0.50),
        p99_ms: latencies.percentile_ms(0.99),
        verify_first_per_sec: verify_rates[0],
        verify_events_per_sec: verify_rates[1],
        events: total,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let seconds = knob("BENCH_SECONDS", 10);
    let clients = knob("BENCH_CLIENTS", 8);
    let batch = knob("BENCH_BATCH", 500);
    let runs = knob("BENCH_RUNS", 3);
    let mut results = Vec::new();
    let mut backend = "";
    for run in 0..runs {
        let database = BenchDatabase::fresh("audit", run)?;
        backend = database.backend;
        let result = one_run(database.config.clone(), seconds, clients, batch).await;
        database.drop().await?;
        let result = result?;
        println!(
            "run {}: {} events, ingest {:.0} events/s, ack p50 {:.1} ms p99 {:.1} ms, verify {:.0} events/s (first pass {:.0})",
            run + 1,
            result.events,
            result.events_per_sec,
            result.p50_ms,
            result.p99_ms,
            result.verify_events_per_sec,
            result.verify_first_per_sec
        );
        results.push(result);
    }
    println!(
        "median of {runs} runs on {backend} ({clients} clients x {batch}-event batches, {seconds} s): ingest {:.0} events/s, ack p50 {:.1} ms, p99 {:.1} ms; verify {:.0} events/s (first pass {:.0})",
        median(results.iter().map(|r| r.events_per_sec).collect()),
        median(results.iter().map(|r| r.p50_ms).collect()),
        median(results.iter().map(|r| r.p99_ms).collect()),
        median(results.iter().map(|r| r.verify_events_per_sec).collect()),
        median(results.iter().map(|r| r.verify_first_per_sec).collect()),
    );
    Ok(())
}
