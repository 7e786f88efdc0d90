//! policy-svc load generator over gRPC: `Check` from concurrent clients
//! against policy-svc served in this process (with identity-svc for the
//! admin token that stores the policy sets, and audit-svc receiving every
//! `decision` event), on SQLite.
//!
//! ```sh
//! cargo bench -p agentsec-policy --bench check_grpc              # warm cache
//! BENCH_CACHE=0 cargo bench -p agentsec-policy --bench check_grpc   # engine only
//! BENCH_RULES=10000 BENCH_FILL=1 cargo bench -p agentsec-policy --bench check_grpc
//! ```
//! Knobs: `BENCH_RULES` (1,000 over `BENCH_TENANTS` = 4 tenants),
//! `BENCH_CLIENTS` (32), `BENCH_SECONDS` (10), `BENCH_RUNS` (3),
//! `BENCH_CACHE` (1: the decision cache on and warmed with every request
//! before the timed part; 0: off, every call decided by the engine),
//! `BENCH_FILL` (1: first fill the in-process tier to its capacity with
//! distinct decisions through BatchCheck, and report the process's RSS
//! before and after), `BENCH_REDIS_URL` (the Redis tier too; unset: the
//! in-process tier alone), `BENCH_TOKEN` (1: CheckToken instead of Check,
//! with 64 tokens of one registered agent in tenant `bench`, whose policy
//! set is tenant 0's; the revocation view follows identity-svc unless
//! `BENCH_VIEW=0`).
//!
//!
//! ```sh
//! BENCH_TOKEN=1 cargo bench -p agentsec-policy --bench check_grpc            # view on
//! BENCH_TOKEN=1 BENCH_VIEW=0 cargo bench -p agentsec-policy --bench check_grpc
//! ```
//!
//! `BENCH_AUTHZEN=1`: the same requests as AuthZEN evaluations
//! (`POST /access/v1/evaluation`, JSON, the mapping of docs/authzen.md) over
//! `BENCH_CLIENTS` keep-alive HTTP/1.1 connections, as a PEP sends them.
//!
//! ```sh
//! BENCH_AUTHZEN=1 BENCH_CLIENTS=12 cargo bench -p agentsec-policy --bench check_grpc
//! ```

mod workload;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_bench_support::{knob, median, rss_mib, BenchDatabase, Latencies};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, GrantType, IssueTokenRequest,
};
use agentsec_proto::policy::v1 as pb;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use workload::{check_request, policy_set, Lcg};

/// The audience of the tokens CheckToken is asked about.
const TOKEN_AUDIENCE: &str = "mcp:bench";

/// One decision request of the load.
enum Call {
    Check(pb::CheckRequest),
    Token(pb::CheckTokenRequest),
}

impl Call {
    async fn send(
        &self,
        client: &mut PolicyServiceClient<Channel>,
    ) -> anyhow::Result<Option<agentsec_proto::common::v1::Decision>> {
        Ok(match self {
            Self::Check(request) => client.check(request.clone()).await?.into_inner().decision,
            Self::Token(request) => {
                client
                    .check_token(request.clone())
                    .await?
                    .into_inner()
                    .decision
            }
        })
    }
}

/// Registers an agent of tenant `bench` (whose policy set is tenant 0's)
/// and returns 64 of its tokens for [`TOKEN_AUDIENCE`].
async fn bench_tokens(
    identity: SocketAddr,
    policies: &mut PolicyServiceClient<Channel>,
    admin: &str,
    rules_per_tenant: usize,
) -> anyhow::Result<Vec<String>> {
    let channel = connect(identity).await?;
    let (_, client_id, secret) = agentsec_bench_support::bench_agent(
        channel.clone(),
        "bench-token-agent",
        &[TOKEN_AUDIENCE],
        &["repo:read"],
    )
    .await?;
    policies
        .put_policy_set(agentsec_bench_support::bearer(
            admin,
            pb::PutPolicySetRequest {
                tenant: "bench".to_owned(),
                policy_set: Some(policy_set(0, rules_per_tenant)),
                ..Default::default()
            },
        ))
        .await?;
    let mut identity = IdentityServiceClient::new(channel);
    let mut tokens = Vec::new();
    for _ in 0..64 {
        tokens.push(
            identity
                .issue_token(agentsec_bench_support::client_credentials(
                    &client_id,
                    &secret,
                    TOKEN_AUDIENCE,
                ))
                .await?
                .into_inner()
                .access_token,
        );
    }
    Ok(tokens)
}

use agentsec_bench_support::{
    BENCH_ADMIN_ID as ADMIN_ID, BENCH_ADMIN_SECRET as ADMIN_SECRET,
    BENCH_POLICY_SECRET as POLICY_SECRET,
};

struct Run {
    rss_loaded_mib: f64,
    rss_filled_mib: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Shares of allowed and cached answers (gRPC: the load reads them).
    shares: Option<(f64, f64)>,
}

/// `request` as the AuthZEN evaluation a PEP would send for it: the agent
/// as the subject (docs/authzen.md, "Mapping").
fn authzen_body(request: &pb::CheckRequest) -> String {
    use agentsec_proto::common::v1::attribute_value::Kind;
    use serde_json::{json, Map, Value};
    let attributes = |attributes: &std::collections::HashMap<
        String,
        agentsec_proto::common::v1::AttributeValue,
    >| {
        attributes
            .iter()
            .filter_map(|(key, value)| {
                let value = match value.kind.as_ref()? {
                    Kind::StringValue(text) => json!(text),
                    Kind::IntValue(number) => json!(number),
                    Kind::DoubleValue(number) => json!(number),
                    Kind::BoolValue(flag) => json!(flag),
                    Kind::StringListValue(list) => json!(list.values),
                };
                Some((key.clone(), value))
            })
            .collect::<Map<String, Value>>()
    };
    let principal = request.principal.clone().unwrap_or_default();
    let mut subject = attributes(&principal.agent_attributes);
    subject.insert("tenant".into(), json!(principal.tenant));
    if !principal.person_subject.is_empty() {
        subject.insert("person".into(), json!(principal.person_subject));
    }
    let resource = request.resource.clone().unwrap_or_default();
    let context = request.context.clone().unwrap_or_default();
    let mut evaluation_context = attributes(&context.attributes);
    evaluation_context.insert("audience".into(), json!(request.audience));
    if let Some(time) = context.time {
        let time = chrono::DateTime::from_timestamp(time.seconds, 0).unwrap_or_default();
        evaluation_context.insert("time".into(), json!(time.to_rfc3339()));
    }
    evaluation_context.insert("environment".into(), json!(context.environment));
    evaluation_context.insert("delegation_depth".into(), json!(context.delegation_depth));
    if let Some(risk) = context.risk_score {
        evaluation_context.insert("risk_score".into(), json!(risk));
    }
    json!({
        "subject": {"type": "agent", "id": principal.agent_id, "properties": subject},
        "action": {"name": request.action},
        "resource": {"type": resource.r#type, "id": resource.id,
                     "properties": attributes(&resource.attributes)},
        "context": evaluation_context,
    })
    .to_string()
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
    let redis_url = std::env::var("BENCH_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    // Without Redis the two services share invalidation events in process,
    // as in `agentctl dev`.
    let local_bus = redis_url
        .is_none()
        .then(agentsec_common::invalidation::LocalBus::new);
    let redis = agentsec_common::config::RedisConfig {
        url: redis_url,
        key_prefix: format!("bench-{}-{run}:", std::process::id()),
        local_bus,
    };
    let mut identity =
        agentsec_identity::Config::for_test(databases[0].config.clone(), redis.clone());
    identity.issuer = issuer.clone();
    identity.credentials.pepper = Some("bench-pepper-0123456789abcdef0123456789".into());
    identity.bootstrap_admin.client_id = Some(ADMIN_ID.into());
    identity.bootstrap_admin.client_secret = Some(ADMIN_SECRET.into());
    identity.service_clients.insert(
        agentsec_identity::POLICY_SVC_CLIENT_ID.to_owned(),
        agentsec_identity::ServiceClientConfig::policy_svc(
            POLICY_SECRET.to_owned(),
            "agentsec",
            "agentsec-audit",
        ),
    );
    identity.audit.endpoint = format!("http://{audit_addr}");
    let cache = knob("BENCH_CACHE", 1) == 1;
    let mut policy = agentsec_policy::Config::for_test(databases[1].config.clone(), redis);
    policy.cache.enabled = cache;
    policy.admin.jwks_uri = Some(format!("{issuer}/.well-known/jwks.json"));
    policy.admin.issuer = Some(issuer);
    policy.audit.endpoint = format!("http://{audit_addr}");
    let by_token = knob("BENCH_TOKEN", 0) == 1;
    if by_token {
        policy
            .token_issuers
            .push(agentsec_policy::TokenIssuerConfig {
                issuer: format!("http://{identity_addr}"),
                jwks_uri: Some(format!("http://{identity_addr}/.well-known/jwks.json")),
                jwks: None,
                algorithms: vec!["EdDSA".to_owned()],
            });
        // BENCH_VIEW=0: policy-svc without identity-svc, so without the
        // revocation view (and without a token for its own audit events,
        // which audit-svc then refuses).
        if knob("BENCH_VIEW", 1) == 1 {
            policy.identity.endpoint = Some(format!("http://{identity_addr}"));
        }
    }
    if policy.identity.endpoint.is_none() && !by_token {
        // Its own audit events need policy-svc's service identity.
        policy.identity.endpoint = Some(format!("http://{identity_addr}"));
    }
    policy.identity.client_id = agentsec_identity::POLICY_SVC_CLIENT_ID.to_owned();
    policy.identity.client_secret = POLICY_SECRET.to_owned();
    let mut audit_config = agentsec_audit::Config::for_test(databases[2].config.clone());
    audit_config.trust_identity(&format!("http://{identity_addr}"));
    let tasks = vec![
        tokio::spawn(agentsec_audit::serve(
            audit_config,
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

    let rss_loaded_mib = rss_mib();
    if knob("BENCH_FILL", 0) == 1 {
        fill(&mut client, tenants, rules / tenants, policy_capacity()).await?;
    }
    let rss_filled_mib = rss_mib();

    let mut random = Lcg(7);
    let checks: Vec<pb::CheckRequest> = (0..4096)
        .map(|_| check_request(&mut random, tenants, rules / tenants))
        .collect();
    let authzen = knob("BENCH_AUTHZEN", 0) == 1;
    let bodies: Vec<String> = if authzen {
        checks.iter().map(authzen_body).collect()
    } else {
        Vec::new()
    };
    let requests: std::sync::Arc<Vec<Call>> = std::sync::Arc::new(if by_token {
        let tokens = bench_tokens(identity_addr, &mut client, &admin, rules / tenants).await?;
        checks
            .into_iter()
            .enumerate()
            .map(|(n, check)| {
                Call::Token(pb::CheckTokenRequest {
                    token: tokens[n % tokens.len()].clone(),
                    audience: TOKEN_AUDIENCE.to_owned(),
                    action: check.action,
                    resource: check.resource,
                    context: check.context,
                })
            })
            .collect()
    } else {
        checks.into_iter().map(Call::Check).collect()
    });
    if cache {
        // Warm: every request decided once (with Redis, the cache is on
        // once policy-svc follows the invalidation events).
        let warm_until = Instant::now() + Duration::from_secs(10);
        loop {
            let mut cached = 0;
            for request in requests.iter() {
                let decision = request.send(&mut client).await?;
                cached += usize::from(decision.is_some_and(|d| d.cached));
            }
            if cached > 0 || Instant::now() > warm_until {
                break;
            }
        }
    }
    let measured = if authzen {
        let phase = agentsec_bench_support::hammer(
            policy_addr,
            clients,
            seconds,
            "/access/v1/evaluation",
            "application/json",
            String::new(),
            bodies,
        )
        .await?;
        (
            phase.per_sec,
            [phase.p50_ms, phase.p99_ms, phase.p999_ms],
            None,
        )
    } else {
        grpc_load(&channel, policy_addr, requests, clients, seconds).await?
    };
    let _ = stop.send(true);
    for task in tasks {
        task.await??;
    }
    for database in databases {
        database.drop().await?;
    }
    let (per_sec, [p50_ms, p99_ms, p999_ms], shares) = measured;
    Ok(Run {
        rss_loaded_mib,
        rss_filled_mib,
        per_sec,
        p50_ms,
        p99_ms,
        p999_ms,
        shares,
    })
}

/// Decisions/s, latency percentiles (p50, p99, p999 in ms) and the shares
/// of allowed and cached answers.
type Measured = (f64, [f64; 3], Option<(f64, f64)>);

/// `clients` gRPC clients send `requests` in turn for `seconds`.
async fn grpc_load(
    channel: &Channel,
    policy_addr: SocketAddr,
    requests: std::sync::Arc<Vec<Call>>,
    clients: u64,
    seconds: u64,
) -> anyhow::Result<Measured> {
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
            let mut cached = 0u64;
            let mut next = worker as usize * 97;
            while Instant::now() < deadline {
                let request = &requests[next % requests.len()];
                next += 1;
                let began = Instant::now();
                let decision = request.send(&mut client).await?;
                latencies.push(began.elapsed());
                if let Some(decision) = decision {
                    if decision.effect == agentsec_proto::common::v1::Effect::Allow as i32 {
                        allowed += 1;
                    }
                    if decision.cached {
                        cached += 1;
                    }
                }
            }
            anyhow::Ok((latencies, allowed, cached))
        }));
    }
    let mut all = Vec::new();
    let mut allowed = 0;
    let mut cached = 0;
    for worker in workers {
        let (mut latencies, count, hits) = worker.await??;
        all.append(&mut latencies);
        allowed += count;
        cached += hits;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = Latencies::new(all);
    let count = latencies.len().max(1) as f64;
    Ok((
        latencies.len() as f64 / elapsed,
        [
            latencies.percentile_ms(0.50),
            latencies.percentile_ms(0.99),
            latencies.percentile_ms(0.999),
        ],
        Some((allowed as f64 / count, cached as f64 / count)),
    ))
}

/// The in-process tier's default capacity (policy-svc.toml `[cache]`).
fn policy_capacity() -> usize {
    agentsec_policy::CacheConfig::default().local_capacity
}

/// Fills the in-process tier: `entries` distinct cacheable decisions
/// (requests made distinct by their resource id), 1,000 per BatchCheck.
async fn fill(
    client: &mut PolicyServiceClient<Channel>,
    tenants: usize,
    rules_per_tenant: usize,
    entries: usize,
) -> anyhow::Result<()> {
    let mut random = Lcg(11);
    let mut made = 0;
    let mut batch_number = 0u64;
    while made < entries {
        let items: Vec<pb::CheckRequest> = (0..1000)
            .map(|n| {
                let mut request = check_request(&mut random, tenants, rules_per_tenant);
                if let Some(resource) = request.resource.as_mut() {
                    resource.id = format!("{}-fill{batch_number}-{n}", resource.id);
                }
                request
            })
            .collect();
        batch_number += 1;
        let results = client
            .batch_check(pb::BatchCheckRequest { items })
            .await?
            .into_inner()
            .results;
        made += results.len();
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = knob("BENCH_RUNS", 3);
    let mut results = Vec::new();
    for run in 0..runs {
        let result = one_run(run).await?;
        let shares = result.shares.map_or(String::new(), |(allowed, cached)| {
            format!(
                " ({:.0}% allowed, {:.0}% cached)",
                allowed * 100.0,
                cached * 100.0
            )
        });
        println!(
            "run {}: {:.0} decisions/s, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms{shares}; RSS {:.0} MiB with the policies loaded, {:.0} MiB after filling",
            run + 1,
            result.per_sec,
            result.p50_ms,
            result.p99_ms,
            result.p999_ms,
            result.rss_loaded_mib,
            result.rss_filled_mib,
        );
        results.push(result);
    }
    println!(
        "median of {runs} runs ({}, {} rules, {} clients, cache: {}): {:.0} decisions/s, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
        match (
            knob("BENCH_AUTHZEN", 0),
            knob("BENCH_TOKEN", 0),
            knob("BENCH_VIEW", 1)
        ) {
            (1, _, _) => "AuthZEN evaluation over HTTP/1.1",
            (_, 0, _) => "Check",
            (_, _, 0) => "CheckToken, revocation view off",
            _ => "CheckToken, revocation view on",
        },
        knob("BENCH_RULES", 1000),
        knob("BENCH_CLIENTS", 32),
        if knob("BENCH_CACHE", 1) == 1 { "warm" } else { "off" },
        median(results.iter().map(|r| r.per_sec).collect()),
        median(results.iter().map(|r| r.p50_ms).collect()),
        median(results.iter().map(|r| r.p99_ms).collect()),
        median(results.iter().map(|r| r.p999_ms).collect()),
    );
    Ok(())
}
