//! policy-svc's CheckToken: a decision on a bearer token instead of a
//! principal. An identity-svc agent token is allowed per policy for its own
//! audience and denied when replayed at another one; tampered, expired,
//! foreign and oversized tokens are refused; a delegated token (nested
//! `act`) from a trusted issuer gives the person, the acting agent and the
//! actor chain (delegation depth).

use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use agentsec_integration_tests::cluster::{extra_token_issuer_key, EXTRA_TOKEN_ISSUER};
use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::common::v1::Effect;
use agentsec_proto::policy::v1::{
    CheckTokenRequest, CheckTokenResponse, PolicyRule, PolicySet, RequestContext,
};
use anyhow::Context as _;
use serde_json::json;
use tonic::Code;

use crate::identity_support::{get_token, test_client, SCOPES};
use crate::policy_sets::{assert_code, decision_event, policy, put, rule, Policy, AGENT, STRANGER};

const GITHUB: &str = "mcp:github";
const JIRA: &str = "mcp:jira";
const PERSON: &str = "alice@example.com";
/// A third agent, for three-deep actor chains.
const THIRD: &str = "agt_01JTESTAGENT0000000000000C";

pub(crate) use agentsec_integration_tests::check_token;

async fn decide(
    client: &mut Policy,
    request: CheckTokenRequest,
) -> anyhow::Result<CheckTokenResponse> {
    Ok(client.check_token(request).await?.into_inner())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// A token signed by `key` with `claims` over sensible defaults.
fn sign(key: &SigningKey, issuer: &str, claims: serde_json::Value) -> anyhow::Result<String> {
    let now = unix_now();
    let mut full = json!({
        "iss": issuer, "sub": AGENT, "aud": GITHUB, "tenant": "acme",
        "iat": now, "nbf": now, "exp": now + 300, "jti": format!("jti-{now}"),
    });
    if let Some(extra) = claims.as_object() {
        for (name, value) in extra {
            full[name] = value.clone();
        }
    }
    Ok(key.sign("at+jwt", &full)?)
}

/// `token` with one character of its signature changed.
fn tampered(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let at = token.rfind('.').map_or(0, |dot| dot + 5);
    if let Some(c) = chars.get_mut(at) {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

#[tokio::test]
async fn policy_check_token_allows_per_policy_and_denies_another_audience() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    let agent = test_client(
        &cluster,
        &admin,
        "acme",
        "token-agent",
        &[GITHUB, JIRA],
        SCOPES,
    )
    .await?;
    let agent_id = agent.agent.id.clone();
    // Any audience: the replay at another audience is denied by the token
    // check, not by the policy.
    let set = PolicySet {
        rules: vec![
            rule(
                "token-agent-github",
                Effect::Allow,
                &format!("agent:{agent_id}"),
                "mcp:github/*",
                "tools/call",
            ),
            rule(
                "token-agent-jira",
                Effect::Allow,
                &format!("agent:{agent_id}"),
                "mcp:jira/*",
                "tools/call",
            ),
        ],
        ..PolicySet::default()
    };
    put(&mut client, &admin, "acme", set).await?;
    let token = get_token(&cluster, &agent, &[("audience", GITHUB)]).await?;

    // Its own audience: allowed per policy, the principal from the token.
    let allowed = decide(
        &mut client,
        check_token(&token, GITHUB, "mcp:github/create_issue"),
    )
    .await?;
    let decision = allowed.decision.clone().unwrap_or_default();
    assert_eq!(decision.effect, Effect::Allow as i32, "{decision:?}");
    assert_eq!(decision.policy_ids, ["token-agent-github"]);
    assert!(decision.decision_id.starts_with("dec_"));
    let principal = allowed.principal.clone().unwrap_or_default();
    assert_eq!(principal.tenant, "acme");
    assert_eq!(principal.agent_id, agent_id);
    assert!(principal.person_subject.is_empty());
    let actors = principal.actor_chain.unwrap_or_default().actors;
    assert_eq!(actors.len(), 1);
    assert_eq!(actors[0].agent_id, agent_id);
    assert_eq!(actors[0].issuer, cluster.issuer(Service::Identity));

    // The same token replayed at another audience: a DENY, not an error.
    let replayed = decide(
        &mut client,
        check_token(&token, JIRA, "mcp:jira/create_issue"),
    )
    .await?;
    let denied = replayed.decision.unwrap_or_default();
    assert_eq!(denied.effect, Effect::Deny as i32, "{denied:?}");
    assert!(denied.reason.contains("audience"), "{}", denied.reason);
    assert!(denied.policy_ids.is_empty());
    assert!(!denied.evaluation_error);

    // The policy still decides within the audience: another resource is
    // denied by default.
    let other = decide(&mut client, check_token(&token, GITHUB, "repo:x")).await?;
    assert_eq!(
        other.decision.unwrap_or_default().effect,
        Effect::Deny as i32
    );

    // Tampered, foreign (own key, untrusted issuer), expired (trusted
    // issuer), not yet valid, and tenant-less (admin) tokens: UNAUTHENTICATED.
    let own_key = SigningKey::generate(SigningAlgorithm::EdDsa)?;
    let trusted = extra_token_issuer_key().context("no test issuer key")?;
    let now = unix_now();
    let refused = [
        ("tampered", tampered(&token)),
        (
            "foreign",
            sign(&own_key, "https://attacker.test", json!({"exp": now - 600}))?,
        ),
        (
            "foreign issuer name",
            sign(&own_key, &cluster.issuer(Service::Identity), json!({}))?,
        ),
        (
            "expired",
            sign(trusted, EXTRA_TOKEN_ISSUER, json!({"exp": now - 600}))?,
        ),
        (
            "not yet valid",
            sign(trusted, EXTRA_TOKEN_ISSUER, json!({"nbf": now + 600}))?,
        ),
        ("admin token without tenant", admin.clone()),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, bad) in refused {
        assert_code(
            client
                .check_token(check_token(&bad, GITHUB, "mcp:github/create_issue"))
                .await,
            Code::Unauthenticated,
            what,
        )?;
    }

    // Oversized or missing: INVALID_ARGUMENT naming `token`.
    for bad in ["x".repeat(8 * 1024 + 1), String::new()] {
        let status = assert_code(
            client
                .check_token(check_token(&bad, GITHUB, "mcp:github/create_issue"))
                .await,
            Code::InvalidArgument,
            "oversized or missing token",
        )?;
        assert!(status.message().contains("token"), "{}", status.message());
    }

    // A tenant without a policy set names the token.
    let globex = sign(trusted, EXTRA_TOKEN_ISSUER, json!({"tenant": "globex"}))?;
    let status = assert_code(
        client
            .check_token(check_token(&globex, GITHUB, "mcp:github/x"))
            .await,
        Code::InvalidArgument,
        "tenant without a policy set",
    )?;
    assert!(status.message().contains("token"), "{}", status.message());

    // The allowed decision is audited under its id, with the derived agent.
    let event = decision_event(&cluster, &decision.decision_id).await?;
    assert_eq!(event.kind, "decision");
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.agent_id, agent_id);
    assert_eq!(event.policy_ids, ["token-agent-github"]);
    cluster.shutdown().await
}

#[tokio::test]
async fn policy_check_token_derives_person_and_actor_chain_from_act() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    let set = PolicySet {
        rules: vec![
            PolicyRule {
                person: format!("person:{PERSON}"),
                ..rule(
                    "alice-via-agent",
                    Effect::Allow,
                    &format!("agent:{AGENT}"),
                    "mcp:github/*",
                    "tools/call",
                )
            },
            PolicyRule {
                condition: "context.delegation_depth > 2".to_owned(),
                ..rule("max-delegation-depth", Effect::Deny, "*", "*", "*")
            },
        ],
        ..PolicySet::default()
    };
    put(&mut client, &admin, "acme", set).await?;
    let key = extra_token_issuer_key().context("no test issuer key")?;

    // Alice -> STRANGER -> AGENT (AGENT presents the token).
    let two_deep = sign(
        key,
        EXTRA_TOKEN_ISSUER,
        json!({"sub": PERSON,
               "act": {"sub": AGENT, "act": {"sub": STRANGER, "iss": "https://id.test"}}}),
    )?;
    let answer = decide(&mut client, check_token(&two_deep, GITHUB, "mcp:github/x")).await?;
    let decision = answer.decision.unwrap_or_default();
    assert_eq!(decision.effect, Effect::Allow as i32, "{decision:?}");
    assert_eq!(decision.policy_ids, ["alice-via-agent"]);
    let principal = answer.principal.unwrap_or_default();
    assert_eq!(principal.person_subject, PERSON);
    assert_eq!(principal.agent_id, AGENT);
    let actors = principal.actor_chain.unwrap_or_default().actors;
    let chain: Vec<(&str, &str)> = actors
        .iter()
        .map(|actor| (actor.agent_id.as_str(), actor.issuer.as_str()))
        .collect();
    assert_eq!(
        chain,
        [(AGENT, EXTRA_TOKEN_ISSUER), (STRANGER, "https://id.test")]
    );

    // Three deep: the depth comes from the chain (a supplied value is
    // ignored), so the depth limit denies.
    let three_deep = sign(
        key,
        EXTRA_TOKEN_ISSUER,
        json!({"sub": PERSON,
               "act": {"sub": AGENT, "act": {"sub": STRANGER, "act": {"sub": THIRD}}}}),
    )?;
    let mut request = check_token(&three_deep, GITHUB, "mcp:github/x");
    request.context = Some(RequestContext {
        delegation_depth: 1,
        ..RequestContext::default()
    });
    let decision = decide(&mut client, request)
        .await?
        .decision
        .unwrap_or_default();
    assert_eq!(decision.effect, Effect::Deny as i32, "{decision:?}");
    assert_eq!(decision.policy_ids, ["max-delegation-depth"]);

    // Another person through the same agent: no rule allows it.
    let bob = sign(
        key,
        EXTRA_TOKEN_ISSUER,
        json!({"sub": "bob@example.com", "act": {"sub": AGENT}}),
    )?;
    let decision = decide(&mut client, check_token(&bob, GITHUB, "mcp:github/x"))
        .await?
        .decision
        .unwrap_or_default();
    assert_eq!(decision.effect, Effect::Deny as i32, "{decision:?}");
    cluster.shutdown().await
}

/// The commented-out `[[token_issuers]]` example of policy-svc, once
/// uncommented, is a valid configuration.
#[test]
fn policy_check_token_issuer_example_is_valid_when_uncommented() -> anyhow::Result<()> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/config/policy-svc.toml");
    let text = std::fs::read_to_string(&path)?;
    let start = text
        .find("# [[token_issuers]]")
        .context("no token_issuers example")?;
    let uncommented: Vec<&str> = text[start..]
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.strip_prefix("# "))
        .collect();
    let dir = tempfile::tempdir()?;
    let example = dir.path().join("policy-svc.toml");
    std::fs::write(&example, format!("{text}\n{}\n", uncommented.join("\n")))?;
    let loaded: agentsec_policy::Config = agentsec_common::config::load_from(
        Some(&example),
        crate::example_configs::identity_keys_env(),
    )?;
    assert_eq!(loaded.token_issuers.len(), 1);
    let issuer = &loaded.token_issuers[0];
    assert_eq!(issuer.issuer, "http://127.0.0.1:7401");
    assert!(issuer.jwks_uri.is_some() && issuer.jwks.is_none());
    assert_eq!(issuer.algorithms, ["EdDSA", "ES256"]);
    Ok(())
}

#[tokio::test]
async fn policy_check_token_lets_conditions_read_the_tokens_scope() -> anyhow::Result<()> {
    use agentsec_proto::common::v1::{attribute_value, AttributeValue, StringList};
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    let mut writers = rule(
        "writers",
        Effect::Allow,
        &format!("agent:{AGENT}"),
        "mcp:github/*",
        "tools/call",
    );
    writers.condition =
        "has(context.token_scope) && \"repo:write\" in context.token_scope".to_owned();
    put(
        &mut client,
        &admin,
        "acme",
        PolicySet {
            rules: vec![writers],
            ..PolicySet::default()
        },
    )
    .await?;
    let key = extra_token_issuer_key().context("no test issuer key")?;
    let effect = |response: CheckTokenResponse| response.decision.unwrap_or_default().effect;
    for (scope, expected) in [
        (Some("repo:read repo:write"), Effect::Allow),
        (Some("repo:read"), Effect::Deny),
        (None, Effect::Deny),
    ] {
        let claims = scope.map_or_else(|| json!({}), |scope| json!({ "scope": scope }));
        let token = sign(key, EXTRA_TOKEN_ISSUER, claims)?;
        let answer = decide(
            &mut client,
            check_token(&token, GITHUB, "mcp:github/create_issue"),
        )
        .await?;
        assert_eq!(effect(answer), expected as i32, "scope {scope:?}");
    }
    // A caller cannot lend a token scopes it does not carry.
    let token = sign(key, EXTRA_TOKEN_ISSUER, json!({"scope": "repo:read"}))?;
    let mut request = check_token(&token, GITHUB, "mcp:github/create_issue");
    request.context = Some(RequestContext {
        attributes: [(
            "token_scope".to_owned(),
            AttributeValue {
                kind: Some(attribute_value::Kind::StringListValue(StringList {
                    values: vec!["repo:write".to_owned()],
                })),
            },
        )]
        .into(),
        ..RequestContext::default()
    });
    assert_eq!(
        effect(decide(&mut client, request).await?),
        Effect::Deny as i32
    );
    cluster.shutdown().await
}
