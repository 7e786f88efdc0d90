//! policy-svc's revocation view, measured on a [`TestCluster`] (all four
//! services in this process, plus a second policy-svc replica):
//!
//! 1. delay: `BENCH_TRIALS` (50) times, a fresh agent token is allowed by
//!    the second replica's CheckToken, revoked at identity-svc (RFC 7009),
//!    and the second replica is asked in a loop until it refuses; the delay
//!    runs from the revoking RPC's return to the first refusal;
//! 2. load: `BENCH_CLIENTS` (16) clients call CheckToken on the first
//!    replica with 64 valid tokens for `BENCH_SECONDS` (10), `BENCH_RUNS`
//!    (3) times, with the view on (and holding the revocations of step 3
//!    when `BENCH_REVOKED` is set);
//! 3. memory: `BENCH_REVOKED` (0) tokens are issued and revoked first; the
//!    view's entry count (`/metrics`) and the process's RSS before and
//!    after are reported (RSS is an upper bound: identity-svc and audit-svc
//!    grow in the same process).
//!
//! ```sh
//! AGENTSEC_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//! AGENTSEC_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo bench -p agentsec-integration-tests --bench revocation
//! ```
//! Without those variables the cluster runs on SQLite with the in-process
//! bus (one process, as `agentctl dev`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_bench_support::{knob, rss_mib, Latencies, Phase};
use agentsec_integration_tests::cluster::{channel, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};
use agentsec_integration_tests::{http, with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::Effect;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::issue_token_request::ClientAuthentication;
use agentsec_proto::identity::v1::{
    Agent, Ceiling, CreateClientSecretRequest, GrantType, IssueTokenRequest, RegisterAgentRequest,
    RevokeTokenRequest,
};
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{CheckTokenRequest, PolicyRule, PolicySet, PutPolicySetRequest};
use anyhow::{bail, Context as _};
use tonic::transport::Channel;
use tonic::Code;

const AUDIENCE: &str = "mcp:github";
/// Concurrent clients that fill the view for the memory figure.
const REVOKERS: u64 = 8;

type Identity = IdentityServiceClient<Channel>;

/// A registered agent's client credentials.
struct Client {
    id: String,
    secret: String,
}

async fn admin_token(identity: &mut Identity) -> anyhow::Result<String> {
    Ok(identity
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: ADMIN_CLIENT_ID.to_owned(),
            client_authentication: Some(ClientAuthentication::ClientSecret(
                ADMIN_CLIENT_SECRET.to_owned(),
            )),
            audience: "agentsec".to_owned(),
            ..IssueTokenRequest::default()
        })
        .await?
        .into_inner()
        .access_token)
}

async fn register(identity: &mut Identity, admin: &str, name: &str) -> anyhow::Result<Client> {
    let agent = identity
        .register_agent(with_bearer(
            RegisterAgentRequest {
                agent: Some(Agent {
                    tenant: "bench".to_owned(),
                    owner: "alice".to_owned(),
                    name: name.to_owned(),
                    ceiling: Some(Ceiling {
                        audiences: vec![AUDIENCE.to_owned()],
                        scopes: vec!["repo:read".to_owned()],
                    }),
                    ..Agent::default()
                }),
            },
            admin,
        ))
        .await?
        .into_inner()
        .agent
        .context("no agent")?;
    let secret = identity
        .create_client_secret(with_bearer(
            CreateClientSecretRequest {
                agent_id: agent.id,
                ..CreateClientSecretRequest::default()
            },
            admin,
        ))
        .await?
        .into_inner();
    Ok(Client {
        id: secret.client_id,
        secret: secret.client_secret,
    })
}

async fn token(identity: &mut Identity, client: &Client) -> anyhow::Result<String> {
    Ok(identity
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: client.id.clone(),
            client_authentication: Some(ClientAuthentication::ClientSecret(client.secret.clone())),
            audience: AUDIENCE.to_owned(),
            ..IssueTokenRequest::default()
        })
        .await?
        .into_inner()
        .access_token)
}

async fn revoke(identity: &mut Identity, admin: &str, token: &str) -> anyhow::Result<()> {
    identity
        .revoke_token(with_bearer(
            RevokeTokenRequest {
                token: token.to_owned(),
                token_type_hint: String::new(),
            },
            admin,
        ))
        .await?;
    Ok(())
}

fn check(token: &str) -> CheckTokenRequest {
    agentsec_integration_tests::check_token(token, AUDIENCE, "mcp:github/list_issues")
}

/// Whether `replica` allows `token` (false: refused as inactive).
async fn allows(replica: &mut PolicyServiceClient<Channel>, token: &str) -> anyhow::Result<bool> {
    match replica.check_token(check(token)).await {
        Ok(response) => {
            let decision = response.into_inner().decision.unwrap_or_default();
            if decision.effect != Effect::Allow as i32 {
                bail!("denied by policy: {}", decision.reason);
            }
            Ok(true)
        }
        Err(status) if status.code() == Code::Unauthenticated => Ok(false),
        Err(status) => bail!("CheckToken failed: {status:?}"),
    }
}

async fn delay_trials(
    identity: &mut Identity,
    admin: &str,
    client: &Client,
    replica: &mut PolicyServiceClient<Channel>,
    trials: u64,
) -> anyhow::Result<Latencies> {
    let mut delays = Vec::new();
    for _ in 0..trials {
        let token = token(identity, client).await?;
        if !allows(replica, &token).await? {
            bail!("a fresh token was refused");
        }
        revoke(identity, admin, &token).await?;
        let returned = Instant::now();
        loop {
            if !allows(replica, &token).await? {
                delays.push(returned.elapsed());
                break;
            }
            if returned.elapsed() > Duration::from_secs(10) {
                bail!("not refused within 10 s");
            }
        }
    }
    Ok(Latencies::new(delays))
}

async fn load(
    addr: SocketAddr,
    tokens: &[String],
    clients: u64,
    seconds: u64,
) -> anyhow::Result<Phase> {
    let tokens = std::sync::Arc::new(tokens.to_vec());
    let shared = channel(addr).await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..clients {
        // A few HTTP/2 connections, each shared by several clients, as a
        // sidecar fleet would hold them.
        let connection = if worker % 8 == 0 {
            channel(addr).await?
        } else {
            shared.clone()
        };
        let tokens = tokens.clone();
        workers.push(tokio::spawn(async move {
            let mut client = PolicyServiceClient::new(connection);
            let mut latencies = Vec::new();
            let mut next = worker as usize * 7;
            while Instant::now() < deadline {
                let request = check(&tokens[next % tokens.len()]);
                next += 1;
                let began = Instant::now();
                let decision = client.check_token(request).await?.into_inner().decision;
                latencies.push(began.elapsed());
                if decision.is_none_or(|decision| decision.effect != Effect::Allow as i32) {
                    bail!("a valid token was not allowed");
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    Phase::of_workers(workers, started).await
}

async fn view_entries(addr: SocketAddr) -> anyhow::Result<f64> {
    let response = http::get(addr, "/metrics").await?;
    let text = String::from_utf8_lossy(&response.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("agentsec_policy_revocation_entries "))
        .and_then(|value| value.trim().parse().ok())
        .context("no agentsec_policy_revocation_entries in /metrics")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let trials = knob("BENCH_TRIALS", 50);
    let clients = knob("BENCH_CLIENTS", 16);
    let seconds = knob("BENCH_SECONDS", 10);
    let runs = knob("BENCH_RUNS", 3);
    let revoked = knob("BENCH_REVOKED", 0);

    // Tokens live an hour, so that every revoked one stays in the view
    // while it is measured.
    let mut cluster =
        TestCluster::start_with_identity(|config| config.tokens.lifetime_secs = 3600).await?;
    let backend = if cluster.backend.is_postgres() {
        "PostgreSQL + Redis"
    } else {
        "SQLite, in-process bus"
    };
    let replica_addr = cluster.start_replica(Service::Policy).await?;
    let mut identity = IdentityServiceClient::new(cluster.channel(Service::Identity).await?);
    let admin = admin_token(&mut identity).await?;
    let mut policies = PolicyServiceClient::new(cluster.channel(Service::Policy).await?);
    policies
        .put_policy_set(with_bearer(
            PutPolicySetRequest {
                tenant: "bench".to_owned(),
                policy_set: Some(PolicySet {
                    rules: vec![PolicyRule {
                        id: "github-tools".to_owned(),
                        effect: Effect::Allow as i32,
                        agent: "*".to_owned(),
                        resource: "mcp:github/*".to_owned(),
                        actions: vec!["tools/call".to_owned()],
                        ..PolicyRule::default()
                    }],
                    ..PolicySet::default()
                }),
                ..PutPolicySetRequest::default()
            },
            &admin,
        ))
        .await?;
    let mut replica = PolicyServiceClient::new(channel(replica_addr).await?);

    // 3. The view filled with revocations first, when asked.
    let policy_addr = cluster.addr(Service::Policy);
    let rss_before = rss_mib();
    if revoked > 0 {
        let began = Instant::now();
        let mut workers = Vec::new();
        for worker in 0..REVOKERS {
            let mut identity = identity.clone();
            let client =
                register(&mut identity, &admin, &format!("bench-revoked-{worker}")).await?;
            let admin = admin.clone();
            workers.push(tokio::spawn(async move {
                for _ in 0..revoked / REVOKERS {
                    let token = token(&mut identity, &client).await?;
                    revoke(&mut identity, &admin, &token).await?;
                }
                anyhow::Ok(())
            }));
        }
        for worker in workers {
            worker.await??;
        }
        println!(
            "memory: {revoked} tokens issued and revoked in {:.1} s",
            began.elapsed().as_secs_f64()
        );
    }
    let entries = view_entries(policy_addr).await?;
    let rss_after = rss_mib();
    if revoked > 0 {
        println!(
            "memory: the view holds {entries:.0} entries; process RSS {rss_before:.0} MiB before, {rss_after:.0} MiB after (+{:.0} MiB, an upper bound for the view)",
            rss_after - rss_before
        );
    }

    // 1. Delay from the revoking RPC's return to the other replica's refusal.
    let admin = admin_token(&mut identity).await?;
    let client = register(&mut identity, &admin, "bench-delay").await?;
    let delays = delay_trials(&mut identity, &admin, &client, &mut replica, trials).await?;
    println!(
        "delay ({backend}, {trials} trials, RevokeToken return -> first refusal on the second replica): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        delays.percentile_ms(0.50),
        delays.percentile_ms(0.99),
        delays.percentile_ms(1.0),
    );

    // 2. CheckToken under load with the view on.
    let holder = register(&mut identity, &admin, "bench-load").await?;
    let mut tokens = Vec::new();
    for _ in 0..64 {
        tokens.push(token(&mut identity, &holder).await?);
    }
    let mut phases = Vec::new();
    for run in 0..runs {
        let phase = load(policy_addr, &tokens, clients, seconds).await?;
        println!("{}", phase.show(&format!("run {}: CheckToken", run + 1)));
        phases.push(phase);
    }
    let summary = Phase::median_of(&phases);
    println!(
        "{}",
        summary.show(&format!(
            "median of {runs} runs ({backend}, {clients} clients, view on with {entries:.0} entries): CheckToken"
        ))
    );
    cluster.shutdown().await
}
