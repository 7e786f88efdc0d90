//! policy-svc load generator over gRPC: `Check` from concurrent clients
//! against policy-svc served in this process (with identity-svc for the
//! admin token that stores the policy sets, and audit-svc receiving every
//! `decision` event), on SQLite. The decision cache does not exist yet, so
//! every call is decided by the engine.
//!
//! ```sh
//! cargo bench -p agentsec-policy --bench check_grpc
//! BENCH_RULES=10000 BENCH_CLIENTS=64 cargo bench -p agentsec-policy --bench check_grpc
//! ```
//! Knobs: `BENCH_RULES` (1,000 over `BENCH_TENANTS` = 4 tenants),
//! `BENCH_CLIENTS` (32), `BENCH_SECONDS` (10), `BENCH_RUNS` (3).

mod workload;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_bench_support::{knob, median, BenchDatabase, Latencies};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, GrantType, IssueTokenRequest,
};
use agentsec_proto::policy::v1 as pb;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use workload::{check_request, policy_set, Lcg};

const ADMIN_ID: &str = "bench-admin";
const ADMIN_SECRET: &str = "bench-admin-secret-0123456789abcdef0123";

struct Run {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    allowed: f64,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    for _ in 0..500 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            return Ok(channel);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{addr} did not answer")
}

async fn one_run(run: u64) -> anyhow::Result<Run> {
    let tenants = knob("BENCH_TENANTS", 4).max(1) as usize;
    let rules = knob("BENCH_RULES", 1000).max(1) as usize;
    let clients = knob("BENCH_CLIENTS", 32).max(1);
    let seconds = knob("BENCH_SECONDS", 10);
    let databases = [
        BenchDatabase::fresh("policy_grpc_identity", run)?,
        BenchDatabase::fresh("policy_grpc_policy", run)?,
        BenchDatabase::fresh("policy_grpc_audit", run)?,
    ];
    let (stop, _) = tokio::sync::watch::channel(false);
    let shutdown = |stop: &tokio::sync::watch::Sender<bool>| {
        let mut receiver = stop.subscribe();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    };
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    ];
    let [identity_addr, policy_addr, audit_addr] = [
        listeners[0].local_addr()?,
        listeners[1].local_addr()?,
        listeners[2].local_addr()?,
    ];
    let [identity_listener, policy_listener, audit_listener] = listeners;
    let issuer = format!("http://{identity_addr}");
    let mut identity =
        agentsec_identity::Config::for_test(databases[0].config.clone(), Default::default());
    identity.issuer = issuer.clone();
    identity.credentials.pepper = Some("bench-pepper-0123456789abcdef0123456789".into());
    identity.bootstrap_admin.client_id = Some(ADMIN_ID.into());
    identity.bootstrap_admin.client_secret = Some(ADMIN_SECRET.into());
    identity.audit.endpoint = format!("http://{audit_addr}");
    let mut policy =
        agentsec_policy::Config::for_test(databases[1].config.clone(), Default::default());
    policy.admin.jwks_uri = Some(format!("{issuer}/.well-known/jwks.json"));
    policy.admin.issuer = Some(issuer);
    policy.audit.endpoint = format!("http://{audit_addr}");
    let tasks = vec![
        tokio::spawn(agentsec_audit::serve(
            agentsec_audit::Config::for_test(databases[2].config.clone()),
            audit_listener,
            shutdown(&stop),
        )),
        tokio::spawn(agentsec_identity::serve(
            identity,
            identity_listener,
            shutdown(&stop),
        )),
        tokio::spawn(agentsec_policy::serve(
            policy,
            policy_listener,
            shutdown(&stop),
        )),
    ];

    let admin = IdentityServiceClient::new(connect(identity_addr).await?)
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
    let channel = connect(policy_addr).await?;
    let mut client = PolicyServiceClient::new(channel.clone());
    for tenant in 0..tenants {
        let mut request = tonic::Request::new(pb::PutPolicySetRequest {
            tenant: format!("t{tenant}"),
            policy_set: Some(policy_set(tenant, rules / tenants)),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {admin}").parse()?);
        client.put_policy_set(request).await?;
    }

    let mut random = Lcg(7);
    let requests: std::sync::Arc<Vec<pb::CheckRequest>> = std::sync::Arc::new(
        (0..4096)
            .map(|_| check_request(&mut random, tenants, rules / tenants))
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..clients {
        // A few HTTP/2 connections, shared by several clients each, as a
        // sidecar fleet would hold them.
        let channel = if worker % 8 == 0 {
            connect(policy_addr).await?
        } else {
            channel.clone()
        };
        let requests = requests.clone();
        workers.push(tokio::spawn(async move {
            let mut client = PolicyServiceClient::new(channel);
            let mut latencies = Vec::new();
            let mut allowed = 0u64;
            let mut next = worker as usize * 97;
            while Instant::now() < deadline {
                let request = requests[next % requests.len()].clone();
                next += 1;
                let began = Instant::now();
                let decision = client.check(request).await?.into_inner().decision;
                latencies.push(began.elapsed());
                if decision
                    .is_some_and(|d| d.effect == agentsec_proto::common::v1::Effect::Allow as i32)
                {
                    allowed += 1;
                }
            }
            anyhow::Ok((latencies, allowed))
        }));
    }
    let mut all = Vec::new();
    let mut allowed = 0;
    for worker in workers {
        let (mut latencies, count) = worker.await??;
        all.append(&mut latencies);
        allowed += count;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = Latencies::new(all);
    let _ = stop.send(true);
    for task in tasks {
        task.await??;
    }
    for database in databases {
        database.drop().await?;
    }
    Ok(Run {
        per_sec: latencies.len() as f64 / elapsed,
        p50_ms: latencies.percentile_ms(0.50),
        p99_ms: latencies.percentile_ms(0.99),
        p999_ms: latencies.percentile_ms(0.999),
        allowed: allowed as f64 / latencies.len().max(1) as f64,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = knob("BENCH_RUNS", 3);
    let mut results = Vec::new();
    for run in 0..runs {
        let result = one_run(run).await?;
        println!(
            "run {}: {:.0} decisions/s, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms ({:.0}% allowed)",
            run + 1,
            result.per_sec,
            result.p50_ms,
            result.p99_ms,
            result.p999_ms,
            result.allowed * 100.0
        );
        results.push(result);
    }
    println!(
        "median of {runs} runs ({} rules, {} clients, cache: none): {:.0} decisions/s, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
        knob("BENCH_RULES", 1000),
        knob("BENCH_CLIENTS", 32),
        median(results.iter().map(|r| r.per_sec).collect()),
        median(results.iter().map(|r| r.p50_ms).collect()),
        median(results.iter().map(|r| r.p99_ms).collect()),
        median(results.iter().map(|r| r.p999_ms).collect()),
    );
    Ok(())
}
