//! policy-svc's decision cache: repeated decisions served from the cache
//! (`Decision.cached`) with their own decision id and audit event, never
//! for decisions that read the time, a policy change invalidating on the
//! same replica and (PostgreSQL + Redis) across replicas within a measured
//! delay, the Redis tier shared by replicas, an agent suspension evicting
//! that agent's decisions, and decisions going on uncached and correct
//! while Redis is unreachable.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agentsec_integration_tests::relay::TcpRelay;
use agentsec_integration_tests::{eventually, http, with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::{Decision, Effect};
use agentsec_proto::identity::v1::SuspendAgentRequest;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{BatchCheckRequest, CheckRequest, PolicySet};
use anyhow::Context as _;

use crate::identity_support::{default_client, identity, ASYNC_DEADLINE};
use crate::policy_sets::{
    check_request, decision_event, github_set, policy, put, rule, Policy, AGENT, STRANGER,
};

fn request() -> CheckRequest {
    check_request("acme", AGENT, "mcp:github/create_issue", "tools/call")
}

async fn check(client: &mut Policy, request: CheckRequest) -> anyhow::Result<Decision> {
    client
        .check(request)
        .await?
        .into_inner()
        .decision
        .context("no decision")
}

/// Checks `request` until the answer comes from the cache (with Redis the
/// cache is on once the replica follows the invalidation events).
async fn until_cached(client: &Policy, request: &CheckRequest) -> anyhow::Result<Decision> {
    until_cache_says(client, request, true, "never served from the cache").await
}

/// Checks `request` until the answer is not from the cache.
async fn until_uncached(client: &Policy, request: &CheckRequest) -> anyhow::Result<Decision> {
    until_cache_says(client, request, false, "still served from the cache").await
}

/// Checks `request` until the answer's effect is `effect`.
async fn until_effect(
    client: &Policy,
    request: &CheckRequest,
    effect: Effect,
) -> anyhow::Result<Decision> {
    eventually(&format!("a decision {effect:?}"), ASYNC_DEADLINE, || {
        let (mut client, request) = (client.clone(), request.clone());
        async move {
            let decision = check(&mut client, request).await?;
            Ok((decision.effect == effect as i32).then_some(decision))
        }
    })
    .await
}

/// Checks `request` until an answer's `cached` is `cached`; `otherwise`
/// describes the last answer if none is.
async fn until_cache_says(
    client: &Policy,
    request: &CheckRequest,
    cached: bool,
    otherwise: &str,
) -> anyhow::Result<Decision> {
    let last = RefCell::new(None);
    eventually(
        &format!("a decision with cached = {cached}"),
        ASYNC_DEADLINE,
        || {
            let (mut client, request, last) = (client.clone(), request.clone(), &last);
            async move {
                let decision = check(&mut client, request).await?;
                if decision.cached == cached {
                    return Ok(Some(decision));
                }
                last.replace(Some(decision));
                Ok(None)
            }
        },
    )
    .await
    .with_context(|| format!("{otherwise}: {:?}", last.borrow()))
}

async fn metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let response = http::get(addr, "/metrics").await?;
    anyhow::ensure!(response.status == 200, "/metrics: {}", response.status);
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// The value of the metric line starting with `name` (labels included).
fn metric(text: &str, name: &str) -> anyhow::Result<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .with_context(|| format!("no {name} in {text}"))?
        .parse()
        .context("not a number")
}

#[tokio::test]
async fn repeated_decisions_come_from_the_cache_until_the_policy_changes() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;

    let first = check(&mut client, request()).await?;
    assert!(!first.cached, "{first:?}");
    let cached = until_cached(&client, &request()).await?;
    // The same answer, as its own decision.
    assert_eq!(cached.effect, Effect::Allow as i32, "{cached:?}");
    assert_eq!(cached.policy_ids, first.policy_ids);
    assert_eq!(cached.policy_version, 1);
    assert_eq!(cached.reason, first.reason);
    assert_eq!(cached.cache_ttl, first.cache_ttl);
    assert_ne!(cached.decision_id, first.decision_id);
    // Attribute maps in another order are the same request.
    let denied = check_request("acme", AGENT, "mcp:github/delete_repo", "tools/call");
    check(&mut client, denied.clone()).await?;
    let denied = until_cached(&client, &denied).await?;
    assert_eq!(denied.effect, Effect::Deny as i32, "{denied:?}");
    assert_eq!(denied.policy_ids, ["no-delete"]);

    // The cached decision is audited under its own decision id.
    let event = decision_event(&cluster, &cached.decision_id).await?;
    assert_eq!(event.kind, "decision");
    assert_eq!(
        event.attributes.get("cached").map(String::as_str),
        Some("true")
    );

    // BatchCheck is served from the same cache.
    let batch = client
        .batch_check(BatchCheckRequest {
            items: vec![
                request(),
                check_request("acme", STRANGER, "mcp:github/x", "tools/call"),
            ],
        })
        .await?
        .into_inner()
        .results;
    let flags: Vec<bool> = batch
        .iter()
        .map(|result| result.decision.as_ref().is_some_and(|d| d.cached))
        .collect();
    assert_eq!(flags, [true, false]);

    // A decision that reads the time is never cached, nor cacheable by the
    // caller.
    let mut timed = github_set();
    let mut daytime = rule(
        "any-hour",
        Effect::Allow,
        &format!("agent:{STRANGER}"),
        "mcp:github/*",
        "tools/call",
    );
    daytime.condition = "hour(context.time) >= 0".to_owned();
    timed.rules.push(daytime);
    assert_eq!(put(&mut client, &admin, "acme", timed).await?.version, 2);
    let stranger = check_request("acme", STRANGER, "mcp:github/create_issue", "tools/call");
    for _ in 0..5 {
        let decision = check(&mut client, stranger.clone()).await?;
        assert_eq!(decision.effect, Effect::Allow as i32, "{decision:?}");
        assert!(!decision.cached, "a time-dependent decision was cached");
        assert_eq!(decision.cache_ttl.map(|ttl| ttl.seconds).unwrap_or(0), 0);
    }

    // The change is version 2: the first request is decided again, and
    // with the new version.
    let after = check(&mut client, request()).await?;
    assert!(!after.cached, "{after:?}");
    assert_eq!(after.policy_version, 2);
    // A change of outcome is seen at once.
    let mut closed = github_set();
    closed.role_assignments.clear();
    assert_eq!(put(&mut client, &admin, "acme", closed).await?.version, 3);
    let now_denied = check(&mut client, request()).await?;
    assert_eq!(now_denied.effect, Effect::Deny as i32, "{now_denied:?}");
    assert!(!now_denied.cached);
    assert_eq!(now_denied.policy_version, 3);

    let text = metrics(cluster.addr(Service::Policy)).await?;
    assert!(
        metric(
            &text,
            "agentsec_policy_decision_cache_hits_total{tier=\"local\"}"
        )? >= 2.0,
        "{text}"
    );
    assert!(metric(&text, "agentsec_policy_decision_cache_misses_total")? >= 3.0);
    cluster.shutdown().await
}

#[tokio::test]
async fn a_disabled_cache_serves_nothing_cached() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;
    let replica = cluster
        .start_policy_replica_with(|config| config.cache.enabled = false)
        .await?;
    let mut uncached =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(replica).await?);
    for _ in 0..5 {
        let decision = check(&mut uncached, request()).await?;
        assert_eq!(decision.effect, Effect::Allow as i32, "{decision:?}");
        assert!(!decision.cached);
    }
    cluster.shutdown().await
}

/// p-th percentile (0-1) of sorted `values`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[tokio::test]
async fn replicas_share_decisions_and_stop_serving_old_ones_after_a_change() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    if !(cluster.backend.is_postgres() && cluster.backend.has_redis()) {
        // Replicas share PostgreSQL and Redis; SQLite is one process only.
        return cluster.shutdown().await;
    }
    let admin = cluster.admin_token().await?;
    let mut first = policy(&cluster).await?;
    put(&mut first, &admin, "acme", github_set()).await?;
    let replica = cluster.start_replica(Service::Policy).await?;
    let mut second =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(replica).await?);
    // Both replicas serve from the cache once they follow the events.
    until_cached(&first, &request()).await?;
    until_cached(&second, &request()).await?;

    // A decision made on one replica is served from Redis on the other
    // (each attempt with a request neither has seen: the first replica's
    // write to Redis runs in the background).
    let mut attempt = 0;
    eventually(
        "the other replica serving a decision from Redis",
        ASYNC_DEADLINE,
        || {
            let shared = check_request(
                "acme",
                AGENT,
                &format!("mcp:github/list_issues_{attempt}"),
                "tools/call",
            );
            attempt += 1;
            let (mut first, mut second) = (first.clone(), second.clone());
            async move {
                let made = check(&mut first, shared.clone()).await?;
                assert!(!made.cached);
                let elsewhere = check(&mut second, shared).await?;
                if !elsewhere.cached {
                    return Ok(None);
                }
                assert_eq!(elsewhere.effect, made.effect);
                assert_eq!(elsewhere.policy_ids, made.policy_ids);
                assert_eq!(elsewhere.policy_version, made.policy_version);
                Ok(Some(()))
            }
        },
    )
    .await?;
    let text = metrics(replica).await?;
    assert!(
        metric(
            &text,
            "agentsec_policy_decision_cache_hits_total{tier=\"redis\"}"
        )? >= 1.0
    );

    // Changes on the first replica: once PutPolicySet has returned, how long
    // the second one goes on answering with the previous version (cached).
    // Measured, not asserted (timing belongs to BENCHMARKS.md).
    let changes = 50;
    let mut delays = Vec::new();
    let mut open = github_set();
    open.rules.push(rule(
        "strangers",
        Effect::Allow,
        &format!("agent:{STRANGER}"),
        "mcp:github/*",
        "tools/call",
    ));
    let stranger = check_request("acme", STRANGER, "mcp:github/create_issue", "tools/call");
    until_cached(&second, &stranger).await?;
    for change in 0..changes {
        let set: PolicySet = if change % 2 == 0 {
            open.clone()
        } else {
            github_set()
        };
        let allowed = change % 2 == 0;
        let version = put(&mut first, &admin, "acme", set).await?.version;
        let returned = Instant::now();
        let deadline = returned + ASYNC_DEADLINE;
        loop {
            let decision = check(&mut second, stranger.clone()).await?;
            if decision.policy_version >= version {
                delays.push(returned.elapsed());
                assert_eq!(
                    decision.effect == Effect::Allow as i32,
                    allowed,
                    "{decision:?}"
                );
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "version {version} never reached the replica"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Warm again, so the next change must evict a cached decision.
        until_cached(&second, &stranger).await?;
    }
    delays.sort_unstable();
    eprintln!(
        "cross-replica invalidation over {changes} changes: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        percentile(&delays, 1.0),
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn an_agent_suspension_evicts_that_agents_decisions() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    if !cluster.backend.has_redis() {
        // identity-svc's invalidation events travel on Redis.
        return cluster.shutdown().await;
    }
    let admin = cluster.admin_token().await?;
    let agent = default_client(&cluster, &admin, "cached-agent")
        .await?
        .agent
        .id;
    let mut client = policy(&cluster).await?;
    let mut set = github_set();
    set.rules.push(rule(
        "registered",
        Effect::Allow,
        &format!("agent:{agent}"),
        "mcp:github/*",
        "tools/call",
    ));
    put(&mut client, &admin, "acme", set).await?;
    let mut replicas = vec![client];
    if cluster.backend.is_postgres() {
        let replica = cluster.start_replica(Service::Policy).await?;
        replicas.push(PolicyServiceClient::new(
            agentsec_integration_tests::cluster::channel(replica).await?,
        ));
    }
    // One request per replica: once one replica decides again after the
    // event, its fresh decision is in Redis for the others (rightly).
    let suspended = |replica: usize| {
        check_request(
            "acme",
            &agent,
            &format!("mcp:github/create_issue_{replica}"),
            "tools/call",
        )
    };
    let other = request();
    for (index, replica) in replicas.iter_mut().enumerate() {
        until_cached(replica, &suspended(index)).await?;
        until_cached(replica, &other).await?;
    }

    identity(&cluster)
        .await?
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: agent.clone(),
                reason: "cache test".into(),
            },
            &admin,
        ))
        .await?;
    for (index, replica) in replicas.iter_mut().enumerate() {
        // Suspended: denied before the cache is read (docs/revocation.md),
        // and only that agent's decisions went.
        let denied = until_effect(replica, &suspended(index), Effect::Deny).await?;
        assert!(
            denied.reason.contains("is suspended or revoked") && !denied.cached,
            "{denied:?}"
        );
        assert!(check(replica, other.clone()).await?.cached);
    }
    crate::identity_http::reactivate(&cluster, &admin, &agent).await?;
    for (index, replica) in replicas.iter_mut().enumerate() {
        // Reactivated: allowed again, decided afresh, because the
        // suspension evicted the cached ALLOW.
        let allowed = until_effect(replica, &suspended(index), Effect::Allow).await?;
        assert!(!allowed.cached, "{allowed:?}");
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn decisions_go_on_uncached_and_correct_while_redis_does_not_answer() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let Some(redis_url) = cluster.backend.redis().url else {
        return cluster.shutdown().await;
    };
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;
    let upstream = redis::Client::open(redis_url.as_str())?
        .get_connection_info()
        .addr()
        .to_string();
    let relay = TcpRelay::start(upstream).await?;
    let relayed_url = format!("redis://{}", relay.addr);
    let replica = cluster
        .start_policy_replica_with(|config| config.redis.url = Some(relayed_url))
        .await?;
    let mut client =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(replica).await?);
    let allowed = until_cached(&client, &request()).await?;
    let denied_request = check_request("acme", STRANGER, "mcp:github/create_issue", "tools/call");
    let denied = until_cached(&client, &denied_request).await?;

    relay.black_hole();
    // A request not cached here waits for Redis at most the cache's
    // timeout, then is decided.
    let fresh = check(
        &mut client,
        check_request("acme", AGENT, "mcp:github/merge_pr", "tools/call"),
    )
    .await?;
    assert_eq!(fresh.effect, Effect::Allow as i32, "{fresh:?}");
    assert!(!fresh.cached);
    // Local hits need no Redis: the replica notices on its next Redis
    // command or health check, then serves nothing cached.
    until_uncached(&client, &request()).await?;
    for _ in 0..20 {
        let decision = check(&mut client, request()).await?;
        assert!(!decision.cached, "{decision:?}");
        assert_eq!(decision.effect, allowed.effect);
        assert_eq!(decision.policy_ids, allowed.policy_ids);
        let decision = check(&mut client, denied_request.clone()).await?;
        assert!(!decision.cached, "{decision:?}");
        assert_eq!(decision.effect, denied.effect);
        // A request never seen before is decided too.
        let fresh = check(
            &mut client,
            check_request("acme", AGENT, "mcp:github/delete_repo", "tools/call"),
        )
        .await?;
        assert_eq!(fresh.effect, Effect::Deny as i32);
        assert!(!fresh.cached);
    }
    let text = metrics(replica).await?;
    assert_eq!(
        metric(&text, "agentsec_policy_decision_cache_on")?,
        0.0,
        "{text}"
    );
    assert!(
        metric(&text, "agentsec_policy_decision_cache_bypassed_total")? >= 40.0,
        "{text}"
    );

    // Redis answers again: the cache comes back.
    relay.restore();
    until_cached(&client, &request()).await?;
    drop(relay);
    cluster.shutdown().await
}
