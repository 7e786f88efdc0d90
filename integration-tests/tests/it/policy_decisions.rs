//! policy-svc's decisions over gRPC: allow, deny, default deny and deny
//! overrides through Check, BatchCheck (and its 1,000-item limit), Explain
//! (an admin call) showing the rules that matched, decision ids, cache TTLs,
//! and the `decision` audit event.

use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::{Decision, Effect, Outcome};
use agentsec_proto::policy::v1::{BatchCheckRequest, ConditionResult, ExplainRequest};
use sea_orm::ConnectionTrait as _;
use tonic::Code;

use agentsec_integration_tests::cluster::ADMIN_AUDIENCE;

use crate::identity_support::{agentsec_token, test_client, ADMIN_SCOPE};
use crate::policy_sets::{
    assert_code, check_request, decision_event, github_set, policy, put, rule, Policy, AGENT,
    STRANGER,
};

async fn decide(
    client: &mut Policy,
    tenant: &str,
    agent: &str,
    resource: &str,
) -> anyhow::Result<Decision> {
    Ok(client
        .check(check_request(tenant, agent, resource, "tools/call"))
        .await?
        .into_inner()
        .decision
        .unwrap_or_default())
}

fn is_decision_id(id: &str) -> bool {
    id.len() == 30 && id.starts_with("dec_")
}

#[tokio::test]
async fn checks_allow_deny_by_default_and_let_deny_override() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;

    // No policy set yet: the tenant is unknown.
    let status = assert_code(
        client
            .check(check_request(
                "acme",
                AGENT,
                "mcp:github/create_issue",
                "tools/call",
            ))
            .await,
        Code::InvalidArgument,
        "tenant without a policy set",
    )?;
    assert!(
        status.message().contains("principal.tenant"),
        "{}",
        status.message()
    );

    put(&mut client, &admin, "acme", github_set()).await?;

    let allowed = decide(&mut client, "acme", AGENT, "mcp:github/create_issue").await?;
    assert_eq!(allowed.effect, Effect::Allow as i32, "{allowed:?}");
    assert_eq!(allowed.policy_ids, ["github-tools"]);
    assert_eq!(allowed.policy_version, 1);
    assert!(
        is_decision_id(&allowed.decision_id),
        "{}",
        allowed.decision_id
    );
    assert!(!allowed.cached);
    assert_eq!(allowed.cache_ttl.map(|ttl| ttl.seconds), Some(30));
    assert!(!allowed.evaluation_error);

    // Deny overrides the matching allow.
    let denied = decide(&mut client, "acme", AGENT, "mcp:github/delete_repo").await?;
    assert_eq!(denied.effect, Effect::Deny as i32, "{denied:?}");
    assert_eq!(denied.policy_ids, ["no-delete"]);
    assert_ne!(denied.decision_id, allowed.decision_id);

    // Default deny: no rule allows a stranger.
    let default = decide(&mut client, "acme", STRANGER, "mcp:github/create_issue").await?;
    assert_eq!(default.effect, Effect::Deny as i32, "{default:?}");
    assert!(default.policy_ids.is_empty());
    assert!(
        default.reason.contains("default deny"),
        "{}",
        default.reason
    );

    // A malformed request names its field.
    let status = assert_code(
        client
            .check(check_request(
                "acme",
                "not-an-agent",
                "mcp:github/x",
                "tools/call",
            ))
            .await,
        Code::InvalidArgument,
        "bad agent id",
    )?;
    assert!(
        status.message().contains("principal.agent_id"),
        "{}",
        status.message()
    );

    // A new version is used at once.
    let mut open = github_set();
    open.rules.push(rule(
        "strangers",
        Effect::Allow,
        &format!("agent:{STRANGER}"),
        "mcp:github/*",
        "tools/call",
    ));
    put(&mut client, &admin, "acme", open).await?;
    let now_allowed = decide(&mut client, "acme", STRANGER, "mcp:github/create_issue").await?;
    assert_eq!(now_allowed.effect, Effect::Allow as i32, "{now_allowed:?}");
    assert_eq!(now_allowed.policy_version, 2);

    // The decision is audited with its id, principal, action and outcome.
    let event = decision_event(&cluster, &denied.decision_id).await?;
    assert_eq!(event.kind, "decision");
    assert_eq!(event.service, "policy-svc");
    assert_eq!(event.tenant, "acme");
    assert_eq!(event.agent_id, AGENT);
    assert_eq!(event.action, "tools/call");
    assert_eq!(event.resource_id, "mcp:github/delete_repo");
    assert_eq!(event.outcome, Outcome::Deny as i32);
    assert_eq!(event.policy_ids, ["no-delete"]);
    cluster.shutdown().await
}

#[tokio::test]
async fn batch_checks_decide_in_order_up_to_1000_items() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;

    let items = vec![
        check_request("acme", AGENT, "mcp:github/create_issue", "tools/call"),
        check_request("acme", AGENT, "mcp:github/delete_repo", "tools/call"),
        check_request("acme", STRANGER, "mcp:github/create_issue", "tools/call"),
    ];
    let results = client
        .batch_check(BatchCheckRequest { items })
        .await?
        .into_inner()
        .results;
    let effects: Vec<i32> = results
        .iter()
        .map(|result| result.decision.as_ref().map_or(0, |d| d.effect))
        .collect();
    assert_eq!(
        effects,
        [
            Effect::Allow as i32,
            Effect::Deny as i32,
            Effect::Deny as i32
        ]
    );

    let full = vec![check_request("acme", AGENT, "mcp:github/x", "tools/call"); 1000];
    let results = client
        .batch_check(BatchCheckRequest { items: full })
        .await?
        .into_inner()
        .results;
    assert_eq!(results.len(), 1000);

    let too_many = vec![check_request("acme", AGENT, "mcp:github/x", "tools/call"); 1001];
    let status = assert_code(
        client
            .batch_check(BatchCheckRequest { items: too_many })
            .await,
        Code::InvalidArgument,
        "1,001 items",
    )?;
    assert!(status.message().contains("items"), "{}", status.message());
    assert_code(
        client
            .batch_check(BatchCheckRequest { items: Vec::new() })
            .await,
        Code::InvalidArgument,
        "no items",
    )?;

    // One invalid item fails the whole call, naming it.
    let mut mixed = vec![check_request("acme", AGENT, "mcp:github/x", "tools/call"); 3];
    mixed[2].action.clear();
    let status = assert_code(
        client.batch_check(BatchCheckRequest { items: mixed }).await,
        Code::InvalidArgument,
        "invalid item",
    )?;
    assert!(
        status.message().contains("items[2].action"),
        "{}",
        status.message()
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn explain_shows_the_rules_considered_and_matched() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;

    let request = || {
        let check = check_request("acme", AGENT, "mcp:github/delete_repo", "tools/call");
        ExplainRequest {
            principal: check.principal,
            audience: check.audience,
            action: check.action,
            resource: check.resource,
            context: check.context,
        }
    };
    assert_code(
        client.explain(request()).await,
        Code::Unauthenticated,
        "explain without a token",
    )?;
    // A tenant-scoped admin of another tenant may not explain acme's.
    let globex_admin = test_client(
        &cluster,
        &admin,
        "globex",
        "globex-admin",
        &[ADMIN_AUDIENCE],
        &[ADMIN_SCOPE],
    )
    .await?;
    let globex_token = agentsec_token(&cluster, &globex_admin, ADMIN_SCOPE).await?;
    assert_code(
        client.explain(with_bearer(request(), &globex_token)).await,
        Code::PermissionDenied,
        "explain by another tenant's admin",
    )?;
    let explained = client
        .explain(with_bearer(request(), &admin))
        .await?
        .into_inner();
    let decision = explained.decision.unwrap_or_default();
    assert_eq!(decision.effect, Effect::Deny as i32);
    assert_eq!(decision.policy_ids, ["no-delete"]);
    assert!(!decision.cached);
    assert!(is_decision_id(&decision.decision_id));
    assert_eq!(explained.total_rules, 2);
    assert_eq!(explained.agent_roles, ["mcp-users"]);
    let matched: Vec<(&str, bool)> = explained
        .evaluations
        .iter()
        .map(|evaluation| (evaluation.policy_id.as_str(), evaluation.matched))
        .collect();
    assert_eq!(matched, [("github-tools", true), ("no-delete", true)]);
    assert!(explained
        .evaluations
        .iter()
        .all(|evaluation| evaluation.condition_result == ConditionResult::None as i32));

    // An explained decision is audited like a checked one.
    let event = decision_event(&cluster, &decision.decision_id).await?;
    assert_eq!(event.kind, "decision");
    assert_eq!(event.outcome, Outcome::Deny as i32);
    cluster.shutdown().await
}

#[tokio::test]
async fn a_stored_set_that_no_longer_loads_denies_its_tenant_only() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;
    put(&mut client, &admin, "globex", github_set()).await?;

    // Someone with database access damages acme's stored set; policy-svc
    // restarts on it.
    let db = cluster.database(Service::Policy).await?;
    let backend = db.get_database_backend();
    let placeholders = match backend {
        sea_orm::DbBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    db.execute(sea_orm::Statement::from_sql_and_values(
        backend,
        format!(
            "UPDATE policy_versions SET content = {} WHERE tenant = {}",
            placeholders.0, placeholders.1
        ),
        [vec![0xffu8, 0xff, 0xff].into(), "acme".into()],
    ))
    .await?;
    cluster.kill(Service::Policy).await?;
    cluster.restart(Service::Policy).await?;
    let mut client = policy(&cluster).await?;

    // acme: DENY with an evaluation error and version 0, never an allow.
    let damaged = decide(&mut client, "acme", AGENT, "mcp:github/create_issue").await?;
    assert_eq!(damaged.effect, Effect::Deny as i32);
    assert!(damaged.evaluation_error);
    assert_eq!(damaged.policy_version, 0);
    assert!(
        damaged.reason.contains("no policy is loaded"),
        "{}",
        damaged.reason
    );
    // globex is untouched.
    let intact = decide(&mut client, "globex", AGENT, "mcp:github/create_issue").await?;
    assert_eq!(intact.effect, Effect::Allow as i32);
    // A new version for acme loads again.
    put(&mut client, &admin, "acme", github_set()).await?;
    let repaired = decide(&mut client, "acme", AGENT, "mcp:github/create_issue").await?;
    assert_eq!(repaired.effect, Effect::Allow as i32);
    cluster.shutdown().await
}
