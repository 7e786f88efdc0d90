//! Revocation reaches every enforcement point: after a token is revoked, a
//! credential deleted, an agent suspended or revoked (first or middle of
//! an actor chain) or a grant revoked, policy-svc's CheckToken and Envoy
//! ext_authz refuse the affected tokens on every policy-svc replica
//! (decisions cached before and tokens never seen alike), leave the others
//! alone, and a reactivated agent does not revive its old tokens.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Duration;

use agentsec_integration_tests::cluster::TEST_TARGET;
use agentsec_integration_tests::{eventually, with_bearer, with_optional_bearer, Service};
use agentsec_proto::common::v1::Effect;
use agentsec_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use agentsec_proto::identity::v1::{DeleteCredentialRequest, RevokeAgentRequest};
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::PolicySet;
use anyhow::{bail, Context as _};
use tonic::transport::Channel;
use tonic::Code;

use crate::exchange_grants::{person_token, revoke};
use crate::exchange_tokens::{request, Fixture};
use crate::identity_http::{reactivate, revoke_token, suspend};
use crate::identity_support::{identity, test_client, TestClient};
use crate::policy_check_token::check_token;
use crate::policy_ext_authz::{ask, denial, http_check, mcp_call};
use crate::policy_sets::{policy, put, rule};
use agentsec_integration_tests::relay::TcpRelay;

/// How long a revocation may take to reach a replica in these tests; the
/// measured delay is in BENCHMARKS.md.
const DEADLINE: Duration = Duration::from_secs(10);

/// One policy-svc replica, asked both ways.
#[derive(Clone)]
struct Point {
    check: PolicyServiceClient<Channel>,
    envoy: AuthorizationClient<Channel>,
}

/// What an enforcement point answered for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// ALLOW; for CheckToken, whether it came from the decision cache.
    Allowed { cached: bool },
    /// Refused as inactive (UNAUTHENTICATED / HTTP 401).
    Refused,
}

#[derive(Clone)]
struct Enforcement {
    points: Vec<Point>,
}

impl Enforcement {
    /// The policy-svc replicas at `addrs`.
    async fn at(addrs: &[SocketAddr]) -> anyhow::Result<Self> {
        let mut points = Vec::new();
        for addr in addrs {
            let channel = agentsec_integration_tests::cluster::channel(*addr).await?;
            points.push(Point {
                check: PolicyServiceClient::new(channel.clone()),
                envoy: AuthorizationClient::new(channel),
            });
        }
        Ok(Self { points })
    }

    /// Each replica's CheckToken and ext_authz verdicts for `token` at
    /// `audience`.
    async fn verdicts(&mut self, token: &str, audience: &str) -> anyhow::Result<Vec<Verdict>> {
        let mut verdicts = Vec::new();
        for point in &mut self.points {
            let checked = point
                .check
                .check_token(check_token(token, audience, "mcp:github/list_issues"))
                .await;
            verdicts.push(match checked {
                Ok(response) => {
                    let decision = response.into_inner().decision.unwrap_or_default();
                    if decision.effect != Effect::Allow as i32 {
                        bail!("CheckToken denied by policy: {}", decision.reason);
                    }
                    Verdict::Allowed {
                        cached: decision.cached,
                    }
                }
                Err(status) if status.code() == Code::Unauthenticated => Verdict::Refused,
                Err(status) => bail!("CheckToken failed: {status:?}"),
            });
            let envoy = ask(
                &mut point.envoy,
                http_check(
                    "POST",
                    "/mcp",
                    Some(format!("Bearer {token}")),
                    &mcp_call("list_issues"),
                    &[
                        ("agentsec_audience", audience),
                        ("agentsec_mcp_server", "github"),
                    ],
                ),
            )
            .await?;
            verdicts.push(
                if envoy.status.as_ref().map(|status| status.code) == Some(0) {
                    Verdict::Allowed { cached: false }
                } else {
                    let (code, _, body) = denial(&envoy)?;
                    if code != 401 {
                        bail!("ext_authz refused with {code}, not as inactive: {body}");
                    }
                    Verdict::Refused
                },
            );
        }
        Ok(verdicts)
    }

    /// Every point allows `token`.
    async fn allowed(&mut self, token: &str, audience: &str, what: &str) -> anyhow::Result<()> {
        let verdicts = self.verdicts(token, audience).await?;
        if verdicts.contains(&Verdict::Refused) {
            bail!("{what}: refused somewhere: {verdicts:?}");
        }
        Ok(())
    }

    /// Every point refuses `token`, within [`DEADLINE`] of the revoking
    /// RPC's return.
    async fn refused(&self, token: &str, audience: &str, what: &str) -> anyhow::Result<()> {
        let last = RefCell::new(Vec::new());
        eventually(&format!("{what}: refused everywhere"), DEADLINE, || {
            let (mut points, last) = (self.clone(), &last);
            async move {
                let verdicts = points.verdicts(token, audience).await?;
                if verdicts.iter().all(|verdict| *verdict == Verdict::Refused) {
                    return Ok(Some(()));
                }
                last.replace(verdicts);
                Ok(None)
            }
        })
        .await
        .with_context(|| format!("{what}: still allowed: {:?}", last.borrow()))
    }

    /// Asks until CheckToken answers from the decision cache on every
    /// replica that has one on (so a later refusal is not a cache miss).
    async fn cached(&mut self, token: &str, audience: &str) -> anyhow::Result<()> {
        for _ in 0..3 {
            self.verdicts(token, audience).await?;
        }
        let verdicts = self.verdicts(token, audience).await?;
        if !verdicts.contains(&Verdict::Allowed { cached: true }) {
            bail!("no replica served the decision from its cache: {verdicts:?}");
        }
        Ok(())
    }
}

/// Any agent may call the github tools at any audience, and exchange for
/// any audience and `repo:` scope: every refusal below is the view's.
fn tools_policy() -> PolicySet {
    let mut any_audience = rule(
        "exchange",
        Effect::Allow,
        "*",
        "audience:*",
        "token:exchange",
    );
    any_audience.description = "@match-all: any audience the grant covers".to_owned();
    PolicySet {
        rules: vec![
            rule(
                "github-tools",
                Effect::Allow,
                "*",
                "mcp:github/*",
                "tools/call",
            ),
            any_audience,
            rule(
                "repo-scopes",
                Effect::Allow,
                "*",
                "scope:repo:*",
                "token:exchange",
            ),
        ],
        ..PolicySet::default()
    }
}

async fn setup() -> anyhow::Result<(Fixture, Enforcement)> {
    let mut fx = Fixture::start().await?;
    let mut policies = policy(&fx.cluster).await?;
    put(&mut policies, &fx.admin, "acme", tools_policy()).await?;
    // A second replica on the same database, Redis or in-process bus.
    let replica = fx.cluster.start_replica(Service::Policy).await?;
    let enforcement = Enforcement::at(&[fx.cluster.addr(Service::Policy), replica]).await?;
    Ok((fx, enforcement))
}

async fn agent(fx: &Fixture, name: &str) -> anyhow::Result<TestClient> {
    let issuer = fx.exchange_issuer();
    test_client(
        &fx.cluster,
        &fx.admin,
        "acme",
        name,
        &[&issuer],
        &["repo:read"],
    )
    .await
}

#[tokio::test]
async fn revocation_of_tokens_credentials_and_agents_reaches_every_replica() -> anyhow::Result<()> {
    let (fx, mut points) = setup().await?;
    let audience = fx.exchange_issuer();
    let mut identity = identity(&fx.cluster).await?;

    // RFC 7009 revocation: that token is refused, a fresh one is not.
    let holder = agent(&fx, "token-holder").await?;
    let revoked = fx.actor_token(&holder).await?;
    points
        .allowed(&revoked, &audience, "before revocation")
        .await?;
    points.cached(&revoked, &audience).await?;
    revoke_token(&fx.cluster, &fx.admin, &revoked).await?;
    points.refused(&revoked, &audience, "revoked token").await?;
    let fresh = fx.actor_token(&holder).await?;
    points
        .allowed(&fresh, &audience, "a token not revoked")
        .await?;

    // A deleted credential: every token obtained with it, seen or not.
    let deleted = agent(&fx, "deleted-credential").await?;
    let seen = fx.actor_token(&deleted).await?;
    let unseen = fx.actor_token(&deleted).await?;
    points.allowed(&seen, &audience, "before deletion").await?;
    identity
        .delete_credential(with_bearer(
            DeleteCredentialRequest {
                agent_id: deleted.agent.id.clone(),
                credential_id: deleted.credential_id.clone(),
            },
            &fx.admin,
        ))
        .await?;
    points
        .refused(&seen, &audience, "credential deleted")
        .await?;
    points
        .refused(&unseen, &audience, "credential deleted, token unseen")
        .await?;

    // A revoked agent.
    let revoked_agent = agent(&fx, "revoked-agent").await?;
    let token = fx.actor_token(&revoked_agent).await?;
    points
        .allowed(&token, &audience, "before revoking the agent")
        .await?;
    points.cached(&token, &audience).await?;
    identity
        .revoke_agent(with_bearer(
            RevokeAgentRequest {
                agent_id: revoked_agent.agent.id.clone(),
                reason: "retired".to_owned(),
            },
            &fx.admin,
        ))
        .await?;
    points.refused(&token, &audience, "agent revoked").await?;

    // A suspended agent, reactivated: its old tokens stay refused, new ones
    // are allowed.
    let suspended = agent(&fx, "suspended-agent").await?;
    let old = fx.actor_token(&suspended).await?;
    points.allowed(&old, &audience, "before suspension").await?;
    suspend(&fx.cluster, &fx.admin, &suspended.agent.id).await?;
    points.refused(&old, &audience, "agent suspended").await?;
    reactivate(&fx.cluster, &fx.admin, &suspended.agent.id).await?;
    let renewed = fx.actor_token(&suspended).await?;
    points
        .allowed(&renewed, &audience, "a token after reactivation")
        .await?;
    points
        .refused(&old, &audience, "an old token after reactivation")
        .await?;
    fx.cluster.shutdown().await
}

#[tokio::test]
async fn revocation_of_grants_and_chain_agents_reaches_every_replica() -> anyhow::Result<()> {
    let (mut fx, mut points) = setup().await?;
    let hop = fx.exchange_issuer();
    let person = person_token("alice")?;
    let (first, middle) = (fx.a.clone(), fx.b.clone());
    let last = agent(&fx, "chain-last").await?;

    // alice -> first -> middle -> last, each hop a delegated token.
    fx.grant("alice", &first.agent.id, &["repo:read"], 3)
        .await?;
    let actor_first = fx.actor_token(&first).await?;
    let actor_middle = fx.actor_token(&middle).await?;
    let actor_last = fx.actor_token(&last).await?;
    let one = fx
        .exchange(request(&person, &actor_first, &hop, ""))
        .await?
        .access_token;
    let two = fx
        .exchange(request(&one, &actor_middle, &hop, ""))
        .await?
        .access_token;
    let three = fx
        .exchange(request(&two, &actor_last, TEST_TARGET, ""))
        .await?
        .access_token;
    let direct = fx
        .exchange(request(&person, &actor_first, TEST_TARGET, ""))
        .await?
        .access_token;
    points.allowed(&one, &hop, "first hop").await?;
    points.allowed(&two, &hop, "second hop").await?;
    points.allowed(&three, TEST_TARGET, "third hop").await?;
    points.cached(&three, TEST_TARGET).await?;

    // The middle agent suspended: the tokens it is in go, the first hop's
    // stays; reactivated, its old tokens stay refused.
    suspend(&fx.cluster, &fx.admin, &middle.agent.id).await?;
    points
        .refused(&three, TEST_TARGET, "middle agent suspended")
        .await?;
    points.refused(&two, &hop, "middle agent suspended").await?;
    points
        .allowed(&one, &hop, "a hop before the middle agent")
        .await?;
    reactivate(&fx.cluster, &fx.admin, &middle.agent.id).await?;
    points
        .refused(&three, TEST_TARGET, "middle agent reactivated")
        .await?;

    // The first agent suspended: every token of the chain goes.
    suspend(&fx.cluster, &fx.admin, &first.agent.id).await?;
    points.refused(&one, &hop, "first agent suspended").await?;
    points
        .refused(&direct, TEST_TARGET, "first agent suspended, token unseen")
        .await?;

    // A revoked grant, with a fresh chain of other agents under it.
    let other = agent(&fx, "grant-holder").await?;
    let grant_of_other = fx
        .grant("alice", &other.agent.id, &["repo:read"], 1)
        .await?;
    let actor_other = fx.actor_token(&other).await?;
    let under_grant = fx
        .exchange(request(&person, &actor_other, TEST_TARGET, ""))
        .await?
        .access_token;
    let unseen = fx
        .exchange(request(&person, &actor_other, TEST_TARGET, ""))
        .await?
        .access_token;
    points
        .allowed(&under_grant, TEST_TARGET, "before the grant is revoked")
        .await?;
    points.cached(&under_grant, TEST_TARGET).await?;
    revoke(&mut fx.exchange, &person, &grant_of_other.id, "done").await?;
    points
        .refused(&under_grant, TEST_TARGET, "grant revoked")
        .await?;
    points
        .refused(&unseen, TEST_TARGET, "grant revoked, token unseen")
        .await?;
    fx.cluster.shutdown().await
}

/// A CheckToken answer: the decision's effect, or the refusal's code.
async fn check_tool(
    point: &mut Point,
    token: &str,
    audience: &str,
    tool: &str,
) -> Result<Effect, Code> {
    point
        .check
        .check_token(check_token(token, audience, tool))
        .await
        .map(|response| {
            let effect = response.into_inner().decision.unwrap_or_default().effect;
            Effect::try_from(effect).unwrap_or(Effect::Unspecified)
        })
        .map_err(|status| status.code())
}

/// Replaces `agent`'s registry attributes with `project = <project>`.
async fn set_project(fx: &Fixture, agent: &TestClient, project: &str) -> anyhow::Result<()> {
    set_attribute(fx, agent, "project", project).await
}

/// Replaces `agent`'s registry attributes with `name = value`.
async fn set_attribute(
    fx: &Fixture,
    agent: &TestClient,
    name: &str,
    value: &str,
) -> anyhow::Result<()> {
    use agentsec_proto::identity::v1::{Agent, UpdateAgentRequest};
    identity(&fx.cluster)
        .await?
        .update_agent(with_bearer(
            UpdateAgentRequest {
                agent_id: agent.agent.id.clone(),
                agent: Some(Agent {
                    attributes: [(name.to_owned(), value.to_owned())].into(),
                    ..Agent::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["attributes".to_owned()],
                }),
            },
            &fx.admin,
        ))
        .await?;
    Ok(())
}

/// Polls `point` until `tool` is answered `expected`, within [`DEADLINE`].
async fn until_answer(
    point: &Point,
    token: &str,
    audience: &str,
    tool: &str,
    expected: Result<Effect, Code>,
    what: &str,
) -> anyhow::Result<()> {
    let answered = Cell::new(None);
    eventually(&format!("{what}: answered {expected:?}"), DEADLINE, || {
        let (mut point, answered) = (point.clone(), &answered);
        async move {
            let answer = check_tool(&mut point, token, audience, tool).await;
            answered.set(Some(answer));
            Ok((answer == expected).then_some(()))
        }
    })
    .await
    .with_context(|| format!("{what}: answered {:?}", answered.get()))
}

#[tokio::test]
async fn a_replica_cut_off_redis_follows_the_owners_and_fails_closed_without_them(
) -> anyhow::Result<()> {
    let mut fx = Fixture::start().await?;
    let Some(redis_url) = fx.cluster.backend.redis().url else {
        // The outage is of Redis: this runs in the PostgreSQL + Redis pass.
        return fx.cluster.shutdown().await;
    };
    let mut policies = policy(&fx.cluster).await?;
    put(&mut policies, &fx.admin, "acme", tools_policy()).await?;
    let upstream = redis::Client::open(redis_url.as_str())?
        .get_connection_info()
        .addr()
        .to_string();
    let relay = TcpRelay::start(upstream).await?;
    let relayed_url = format!("redis://{}", relay.addr);
    let replica = fx
        .cluster
        .start_policy_replica_with(|config| config.redis.url = Some(relayed_url))
        .await?;
    let mut cut_off = Enforcement::at(&[replica]).await?;
    let audience = fx.exchange_issuer();
    let holder = agent(&fx, "outage-holder").await?;
    let revoked = fx.actor_token(&holder).await?;
    let kept = fx.actor_token(&holder).await?;
    cut_off
        .allowed(&revoked, &audience, "before the outage")
        .await?;
    until_answer(
        &cut_off.points[0],
        &kept,
        &audience,
        "mcp:github/delete_repo",
        Ok(Effect::Allow),
        "before the policy change",
    )
    .await?;

    // Redis stops answering the replica; a revocation, a policy change and
    // an attribute change published meanwhile never reach it on Redis, yet
    // it follows them.
    relay.black_hole();
    revoke_token(&fx.cluster, &fx.admin, &revoked).await?;
    cut_off
        .refused(&revoked, &audience, "revoked while Redis is cut off")
        .await?;
    let mut set = tools_policy();
    set.rules.push(rule(
        "no-delete",
        Effect::Deny,
        "*",
        "mcp:github/delete_repo",
        "tools/call",
    ));
    let mut no_gemini = rule(
        "no-gemini",
        Effect::Deny,
        "*",
        "mcp:github/list_issues",
        "tools/call",
    );
    no_gemini.condition = "has(agent.project) && agent.project == \"gemini\"".to_owned();
    set.rules.push(no_gemini);
    put(&mut policies, &fx.admin, "acme", set).await?;
    let point = &mut cut_off.points[0];
    until_answer(
        point,
        &kept,
        &audience,
        "mcp:github/delete_repo",
        Ok(Effect::Deny),
        "policy changed while Redis is cut off",
    )
    .await?;
    assert_eq!(
        check_tool(point, &kept, &audience, "mcp:github/list_issues").await,
        Ok(Effect::Allow),
        "the holder is not in project gemini yet"
    );
    set_project(&fx, &holder, "gemini").await?;
    until_answer(
        point,
        &kept,
        &audience,
        "mcp:github/list_issues",
        Ok(Effect::Deny),
        "attributes changed while Redis is cut off",
    )
    .await?;

    // identity-svc unreachable as well: token decisions fail closed once
    // the view is older than the bound.
    fx.cluster.kill(Service::Identity).await?;
    until_answer(
        point,
        &kept,
        &audience,
        "mcp:github/list_issues",
        Err(Code::Unavailable),
        "neither Redis nor identity-svc",
    )
    .await?;
    let envoy = ask(
        &mut point.envoy,
        http_check(
            "POST",
            "/mcp",
            Some(format!("Bearer {kept}")),
            &mcp_call("list_issues"),
            &[
                ("agentsec_audience", audience.as_str()),
                ("agentsec_mcp_server", "github"),
            ],
        ),
    )
    .await?;
    assert_eq!(denial(&envoy)?.0, 503, "ext_authz fails closed too");

    // Both back: decisions resume.
    fx.cluster.restart(Service::Identity).await?;
    relay.restore();
    until_answer(
        point,
        &kept,
        &audience,
        "mcp:github/search_code",
        Ok(Effect::Allow),
        "Redis and identity-svc back",
    )
    .await?;
    cut_off
        .refused(&revoked, &audience, "still revoked after the outage")
        .await?;
    drop(relay);
    fx.cluster.shutdown().await
}

#[tokio::test]
async fn revocation_listings_answer_global_admins_only() -> anyhow::Result<()> {
    use agentsec_integration_tests::cluster::ADMIN_AUDIENCE;
    use agentsec_proto::exchange::v1::ListRevokedGrantsRequest;
    use agentsec_proto::identity::v1::ListRevocationsRequest;

    let mut fx = Fixture::start().await?;
    let mut identity = identity(&fx.cluster).await?;
    // A revoked token, to be listed.
    let holder = agent(&fx, "listed").await?;
    let revoked = fx.actor_token(&holder).await?;
    revoke_token(&fx.cluster, &fx.admin, &revoked).await?;
    let jti = crate::identity_support::unverified_claims(&revoked)?["jti"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let mut stream = identity
        .list_revocations(with_bearer(ListRevocationsRequest::default(), &fx.admin))
        .await?
        .into_inner();
    let mut jtis = Vec::new();
    let mut as_of = None;
    while let Some(batch) = stream.message().await? {
        jtis.extend(batch.revoked_tokens.into_iter().map(|token| token.jti));
        as_of = batch.as_of.or(as_of);
    }
    assert!(jtis.contains(&jti), "{jtis:?}");
    assert!(as_of.is_some(), "the last message says when it was read");

    let tenant_admin = test_client(
        &fx.cluster,
        &fx.admin,
        "acme",
        "acme-admin",
        &[ADMIN_AUDIENCE],
        &[crate::identity_support::ADMIN_SCOPE],
    )
    .await?;
    let tenant_admin =
        crate::identity_support::agentsec_token(&fx.cluster, &tenant_admin, "agentsec:admin")
            .await?;
    let agent_token = fx.actor_token(&holder).await?;
    for (who, token, code) in [
        ("an agent", agent_token.as_str(), Code::PermissionDenied),
        (
            "a tenant admin",
            tenant_admin.as_str(),
            Code::PermissionDenied,
        ),
        ("nobody", "", Code::Unauthenticated),
    ] {
        let request = with_optional_bearer(ListRevocationsRequest::default(), token);
        let status = identity
            .list_revocations(request)
            .await
            .err()
            .map(|status| status.code());
        assert_eq!(status, Some(code), "identity-svc listing for {who}");
    }
    let bad_since = ListRevocationsRequest {
        since: Some(prost_types::Timestamp {
            seconds: 1,
            nanos: -1,
        }),
    };
    let status = identity
        .list_revocations(with_bearer(bad_since, &fx.admin))
        .await
        .err()
        .map(|status| status.code());
    assert_eq!(status, Some(Code::InvalidArgument));

    // exchange-svc: a revoked grant is listed for the global admin only.
    let grant = fx
        .grant("alice", &fx.a.agent.id.clone(), &["repo:read"], 1)
        .await?;
    let person = person_token("alice")?;
    revoke(&mut fx.exchange, &person, &grant.id, "done").await?;
    let mut stream = fx
        .exchange
        .list_revoked_grants(with_bearer(ListRevokedGrantsRequest::default(), &fx.admin))
        .await?
        .into_inner();
    let mut grants = Vec::new();
    while let Some(batch) = stream.message().await? {
        grants.extend(batch.grants.into_iter().map(|grant| grant.grant_id));
    }
    assert_eq!(grants, vec![grant.id]);
    for (who, token, code) in [
        ("the person", person.as_str(), Code::PermissionDenied),
        (
            "a tenant admin",
            tenant_admin.as_str(),
            Code::PermissionDenied,
        ),
        ("nobody", "", Code::Unauthenticated),
    ] {
        let request = with_optional_bearer(ListRevokedGrantsRequest::default(), token);
        let status = fx
            .exchange
            .list_revoked_grants(request)
            .await
            .err()
            .map(|status| status.code());
        assert_eq!(status, Some(code), "exchange-svc listing for {who}");
    }
    fx.cluster.shutdown().await
}

#[tokio::test]
async fn token_principals_carry_the_agents_registry_attributes_on_every_replica(
) -> anyhow::Result<()> {
    let (fx, mut points) = setup().await?;
    let mut set = tools_policy();
    for rule in &mut set.rules {
        if rule.id == "github-tools" {
            rule.condition = "has(agent.project) && agent.project == \"apollo\"".to_owned();
        }
    }
    put(&mut policy(&fx.cluster).await?, &fx.admin, "acme", set).await?;
    let audience = fx.exchange_issuer();
    // Registered with project = apollo (the test agents' attribute).
    let member = agent(&fx, "apollo-member").await?;
    let token = fx.actor_token(&member).await?;
    for point in &mut points.points {
        until_answer(
            point,
            &token,
            &audience,
            "mcp:github/list_issues",
            Ok(Effect::Allow),
            "a registered agent's attributes",
        )
        .await?;
    }
    set_project(&fx, &member, "gemini").await?;
    for point in &mut points.points {
        until_answer(
            point,
            &token,
            &audience,
            "mcp:github/list_issues",
            Ok(Effect::Deny),
            "attributes updated",
        )
        .await?;
    }
    fx.cluster.shutdown().await
}

#[tokio::test]
async fn declared_registry_attributes_are_converted_for_token_decisions() -> anyhow::Result<()> {
    use agentsec_proto::common::v1::attribute_value::Kind;
    use agentsec_proto::policy::v1::{AttributeDefinition, AttributeSource, AttributeType};
    let (fx, mut points) = setup().await?;
    let mut set = tools_policy();
    set.attributes.push(AttributeDefinition {
        source: AttributeSource::Agent as i32,
        name: "trust_tier".to_owned(),
        r#type: AttributeType::Int as i32,
        description: String::new(),
    });
    for rule in &mut set.rules {
        if rule.id == "github-tools" {
            rule.condition = "agent.trust_tier >= 2".to_owned();
        }
    }
    put(&mut policy(&fx.cluster).await?, &fx.admin, "acme", set).await?;
    let audience = fx.exchange_issuer();
    let tiered = agent(&fx, "tiered").await?;
    let token = fx.actor_token(&tiered).await?;
    // Registry values are strings: converted to the declared INT; one that
    // does not convert is a DENY, never an error.
    for (tier, expected) in [
        ("2", Effect::Allow),
        ("1", Effect::Deny),
        ("high", Effect::Deny),
    ] {
        set_attribute(&fx, &tiered, "trust_tier", tier).await?;
        for point in &mut points.points {
            until_answer(
                point,
                &token,
                &audience,
                "mcp:github/list_issues",
                Ok(expected),
                &format!("trust_tier {tier}"),
            )
            .await?;
        }
    }
    // The answer names the principal with its registry attributes.
    let answered = points.points[0]
        .check
        .check_token(check_token(&token, &audience, "mcp:github/list_issues"))
        .await?
        .into_inner();
    let tier = answered
        .principal
        .unwrap_or_default()
        .agent_attributes
        .get("trust_tier")
        .and_then(|value| value.kind.clone());
    assert_eq!(tier, Some(Kind::StringValue("high".to_owned())));
    fx.cluster.shutdown().await
}

/// What each replica decides for `agent` (acting for alice, behind
/// `first` when given) calling a GitHub tool, stated by the caller: gRPC
/// Check, one BatchCheck item, and an AuthZEN evaluation with the person
/// as the subject and the agent in `context.agent`. True = allowed.
async fn stated_verdicts(
    addrs: &[SocketAddr],
    agent: &str,
    first: Option<&str>,
) -> anyhow::Result<Vec<(bool, String)>> {
    use agentsec_proto::common::v1::{Actor, ActorChain};
    let mut verdicts = Vec::new();
    for addr in addrs {
        let mut check = crate::policy_sets::check_request(
            "acme",
            agent,
            "mcp:github/list_issues",
            "tools/call",
        );
        let mut chain = vec![agent.to_owned()];
        chain.extend(first.map(str::to_owned));
        if let Some(principal) = check.principal.as_mut() {
            principal.person_subject = "alice".to_owned();
            principal.actor_chain = Some(ActorChain {
                actors: chain
                    .iter()
                    .map(|id| Actor {
                        agent_id: id.clone(),
                        issuer: String::new(),
                    })
                    .collect(),
            });
        }
        let mut client =
            PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(*addr).await?);
        let decision = client
            .check(check.clone())
            .await?
            .into_inner()
            .decision
            .unwrap_or_default();
        verdicts.push((decision.effect == Effect::Allow as i32, decision.reason));
        let item = client
            .batch_check(agentsec_proto::policy::v1::BatchCheckRequest { items: vec![check] })
            .await?
            .into_inner()
            .results
            .into_iter()
            .next()
            .and_then(|result| result.decision)
            .unwrap_or_default();
        verdicts.push((item.effect == Effect::Allow as i32, item.reason));
        let evaluation = serde_json::json!({
            "subject": {"type": "identity", "id": "alice", "properties": {"tenant": "acme"}},
            "action": {"name": "tools/call"},
            "resource": {"type": "mcp.tool", "id": "mcp:github/list_issues"},
            "context": {"agent": agent, "actor_chain": chain, "audience": "github-mcp"},
        });
        let answer = agentsec_integration_tests::http::request(
            *addr,
            "POST",
            "/access/v1/evaluation",
            &[("Content-Type", "application/json")],
            evaluation.to_string().as_bytes(),
        )
        .await?
        .json()?;
        verdicts.push((
            answer["decision"] == true,
            answer["context"]["reason_admin"]["en"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    Ok(verdicts)
}

/// Every stated decision for `agent` (behind `first`) is `allowed`, within
/// [`DEADLINE`].
async fn stated_everywhere(
    addrs: &[SocketAddr],
    agent: &str,
    first: Option<&str>,
    allowed: bool,
    what: &str,
) -> anyhow::Result<()> {
    let last = RefCell::new(Vec::new());
    eventually(what, DEADLINE, || {
        let last = &last;
        async move {
            let verdicts = stated_verdicts(addrs, agent, first).await?;
            if verdicts.iter().all(|(verdict, _)| *verdict == allowed) {
                return Ok(Some(verdicts));
            }
            last.replace(verdicts);
            Ok(None)
        }
    })
    .await
    .map(|verdicts| {
        if !allowed {
            for (_, reason) in verdicts {
                assert!(
                    reason.contains("is suspended or revoked"),
                    "{what}: {reason}"
                );
            }
        }
    })
    .with_context(|| format!("{what}: {:?}", last.borrow()))
}

#[tokio::test]
async fn a_suspended_agent_is_denied_where_the_caller_states_the_principal() -> anyhow::Result<()> {
    let mut fx = Fixture::start().await?;
    let mut policies = policy(&fx.cluster).await?;
    put(&mut policies, &fx.admin, "acme", tools_policy()).await?;
    let replica = fx.cluster.start_replica(Service::Policy).await?;
    let addrs = [fx.cluster.addr(Service::Policy), replica];
    let acting = agent(&fx, "stated-agent").await?;
    let first = agent(&fx, "stated-first").await?;
    let (acting, first) = (acting.agent.id, first.agent.id);

    stated_everywhere(&addrs, &acting, None, true, "before suspension").await?;
    stated_everywhere(&addrs, &acting, Some(&first), true, "a chain, before").await?;
    // The acting agent suspended: denied on every replica, every API.
    suspend(&fx.cluster, &fx.admin, &acting).await?;
    stated_everywhere(&addrs, &acting, None, false, "acting agent suspended").await?;
    reactivate(&fx.cluster, &fx.admin, &acting).await?;
    stated_everywhere(&addrs, &acting, None, true, "reactivated").await?;
    // An agent further down the chain suspended: the chain is denied.
    suspend(&fx.cluster, &fx.admin, &first).await?;
    stated_everywhere(
        &addrs,
        &acting,
        Some(&first),
        false,
        "chain agent suspended",
    )
    .await?;
    stated_everywhere(&addrs, &acting, None, true, "the acting agent alone").await?;
    fx.cluster.shutdown().await
}
