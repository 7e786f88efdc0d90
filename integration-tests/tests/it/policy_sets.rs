//! policy-svc's policy sets over gRPC: versions (put, get, list with
//! paging, diff, rollback), validation with policy id and field, fixtures,
//! admin authentication (global and tenant-scoped admins), the
//! `policy.changed` audit event, the POLICY_CHANGED invalidation event on
//! Redis, and policy sets surviving a restart.
//!
//! The helpers at the top are shared with `policy_decisions`.

use std::cell::Cell;
use std::pin::pin;

use agentsec_integration_tests::audit_trail::{events_until, first_event};
use agentsec_integration_tests::cluster::ADMIN_AUDIENCE;
use agentsec_integration_tests::{eventually, with_bearer, Service, TestCluster};
use agentsec_proto::audit::v1::EventFilter;
use agentsec_proto::common::v1::{Decision, Effect, PageRequest, Principal, Resource};
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{
    test_policy_set_request, ChangeType, CheckRequest, DiffPolicyVersionsRequest,
    GetPolicySetRequest, ListPolicyVersionsRequest, PolicyRule, PolicySet, PolicySetVersion,
    PutPolicySetRequest, RoleAssignment, RollbackPolicySetRequest, TestCase, TestPolicySetRequest,
    ValidatePolicySetRequest,
};
use anyhow::{bail, Context as _};
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::Code;

use crate::identity_support::{agentsec_token, test_client, ADMIN_SCOPE, ASYNC_DEADLINE};

pub(crate) type Policy = PolicyServiceClient<Channel>;

/// The agent most test requests come from (holds role `mcp-users`).
pub(crate) const AGENT: &str = "agt_01JTESTAGENT0000000000000A";
/// An agent without roles.
pub(crate) const STRANGER: &str = "agt_01JTESTAGENT0000000000000B";

pub(crate) async fn policy(cluster: &TestCluster) -> anyhow::Result<Policy> {
    Ok(PolicyServiceClient::new(
        cluster.channel(Service::Policy).await?,
    ))
}

pub(crate) fn rule(
    id: &str,
    effect: Effect,
    agent: &str,
    resource: &str,
    action: &str,
) -> PolicyRule {
    PolicyRule {
        id: id.to_owned(),
        effect: effect as i32,
        agent: agent.to_owned(),
        resource: resource.to_owned(),
        actions: vec![action.to_owned()],
        ..PolicyRule::default()
    }
}

/// `mcp-users` may call GitHub tools; nobody may call a `delete_` tool.
pub(crate) fn github_set() -> PolicySet {
    PolicySet {
        rules: vec![
            rule(
                "github-tools",
                Effect::Allow,
                "role:mcp-users",
                "mcp:github/*",
                "tools/call",
            ),
            rule(
                "no-delete",
                Effect::Deny,
                "*",
                "mcp:*/delete_*",
                "tools/call",
            ),
        ],
        role_assignments: vec![RoleAssignment {
            member: format!("agent:{AGENT}"),
            role: "mcp-users".to_owned(),
        }],
        attributes: Vec::new(),
    }
}

pub(crate) fn check_request(
    tenant: &str,
    agent: &str,
    resource: &str,
    action: &str,
) -> CheckRequest {
    CheckRequest {
        principal: Some(Principal {
            tenant: tenant.to_owned(),
            agent_id: agent.to_owned(),
            ..Principal::default()
        }),
        audience: "github-mcp".to_owned(),
        action: action.to_owned(),
        resource: Some(Resource {
            r#type: "mcp.tool".to_owned(),
            id: resource.to_owned(),
            ..Resource::default()
        }),
        context: None,
    }
}

pub(crate) async fn put(
    client: &mut Policy,
    token: &str,
    tenant: &str,
    set: PolicySet,
) -> Result<PolicySetVersion, tonic::Status> {
    Ok(client
        .put_policy_set(with_bearer(
            PutPolicySetRequest {
                tenant: tenant.to_owned(),
                policy_set: Some(set),
                expected_version: None,
                description: "test change".to_owned(),
            },
            token,
        ))
        .await?
        .into_inner()
        .version
        .unwrap_or_default())
}

pub(crate) fn assert_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    what: &str,
) -> anyhow::Result<tonic::Status> {
    match result {
        Err(status) if status.code() == code => Ok(status),
        other => bail!("{what}: expected {code:?}, got {other:?}"),
    }
}

async fn current_version(client: &mut Policy, token: &str, tenant: &str) -> anyhow::Result<u64> {
    Ok(client
        .get_policy_set(with_bearer(
            GetPolicySetRequest {
                tenant: tenant.to_owned(),
                version: 0,
            },
            token,
        ))
        .await?
        .into_inner()
        .version
        .unwrap_or_default()
        .version)
}

#[tokio::test]
async fn versions_are_stored_listed_diffed_and_rolled_back() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;

    let first = put(&mut client, &admin, "acme", github_set()).await?;
    assert_eq!(first.version, 1);
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.rule_count, 2);
    assert_eq!(first.role_assignment_count, 1);
    assert_eq!(first.author, "bootstrap-admin");
    assert_eq!(first.content_sha256.len(), 64);

    // Version 2: one rule changed, one added, the role assignment removed.
    let mut second_set = github_set();
    second_set.rules[0].actions.push("tools/list".to_owned());
    second_set.rules.push(rule(
        "jira-read",
        Effect::Allow,
        "*",
        "mcp:jira/*",
        "tools/list",
    ));
    second_set.role_assignments.clear();
    let second = client
        .put_policy_set(with_bearer(
            PutPolicySetRequest {
                tenant: "acme".to_owned(),
                policy_set: Some(second_set.clone()),
                expected_version: Some(1),
                description: "jira".to_owned(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .version
        .unwrap_or_default();
    assert_eq!(second.version, 2);
    assert_ne!(second.content_sha256, first.content_sha256);

    // A stale expected_version changes nothing.
    assert_code(
        client
            .put_policy_set(with_bearer(
                PutPolicySetRequest {
                    tenant: "acme".to_owned(),
                    policy_set: Some(github_set()),
                    expected_version: Some(1),
                    description: String::new(),
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
        "stale expected_version",
    )?;
    assert_eq!(current_version(&mut client, &admin, "acme").await?, 2);

    // Get: current and a given version, with content.
    let got = client
        .get_policy_set(with_bearer(
            GetPolicySetRequest {
                tenant: "acme".to_owned(),
                version: 1,
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(got.policy_set, Some(github_set()));
    assert_eq!(got.version.unwrap_or_default(), first);
    assert_code(
        client
            .get_policy_set(with_bearer(
                GetPolicySetRequest {
                    tenant: "acme".to_owned(),
                    version: 9,
                },
                &admin,
            ))
            .await,
        Code::NotFound,
        "unknown version",
    )?;
    assert_code(
        client
            .get_policy_set(with_bearer(
                GetPolicySetRequest {
                    tenant: "nobody".to_owned(),
                    version: 0,
                },
                &admin,
            ))
            .await,
        Code::NotFound,
        "tenant without a policy set",
    )?;

    // Diff 1 -> current.
    let diff = client
        .diff_policy_versions(with_bearer(
            DiffPolicyVersionsRequest {
                tenant: "acme".to_owned(),
                from_version: 1,
                to_version: 0,
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!((diff.from_version, diff.to_version), (1, 2));
    let changes: Vec<(String, i32)> = diff
        .rule_changes
        .iter()
        .map(|change| (change.policy_id.clone(), change.change))
        .collect();
    assert_eq!(
        changes,
        [
            ("github-tools".to_owned(), ChangeType::Modified as i32),
            ("jira-read".to_owned(), ChangeType::Added as i32),
        ]
    );
    assert_eq!(diff.role_assignments_removed, github_set().role_assignments);
    assert!(diff.role_assignments_added.is_empty());

    // Rollback to 1 makes version 3 with version 1's content.
    let third = client
        .rollback_policy_set(with_bearer(
            RollbackPolicySetRequest {
                tenant: "acme".to_owned(),
                to_version: 1,
                expected_version: Some(2),
                description: "back".to_owned(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .version
        .unwrap_or_default();
    assert_eq!(third.version, 3);
    assert_eq!(third.rolled_back_from, 1);
    assert_eq!(third.content_sha256, first.content_sha256);
    let current = client
        .get_policy_set(with_bearer(
            GetPolicySetRequest {
                tenant: "acme".to_owned(),
                version: 0,
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(current.policy_set, Some(github_set()));
    assert_code(
        client
            .rollback_policy_set(with_bearer(
                RollbackPolicySetRequest {
                    tenant: "acme".to_owned(),
                    to_version: 42,
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::NotFound,
        "rollback to an unknown version",
    )?;

    // Paging, newest first: 3, 2 | 1.
    let page = client
        .list_policy_versions(with_bearer(
            ListPolicyVersionsRequest {
                tenant: "acme".to_owned(),
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: String::new(),
                }),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let versions: Vec<u64> = page.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [3, 2]);
    let token = page.page.unwrap_or_default().next_page_token;
    assert!(!token.is_empty());
    let last = client
        .list_policy_versions(with_bearer(
            ListPolicyVersionsRequest {
                tenant: "acme".to_owned(),
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let versions: Vec<u64> = last.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [1]);
    assert!(last.page.unwrap_or_default().next_page_token.is_empty());
    assert_code(
        client
            .list_policy_versions(with_bearer(
                ListPolicyVersionsRequest {
                    tenant: "globex".to_owned(),
                    page: Some(PageRequest {
                        page_size: 2,
                        page_token: token,
                    }),
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
        "a cursor of another tenant",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn invalid_sets_are_refused_with_policy_id_and_field_and_change_nothing() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;

    let mut invalid = github_set();
    invalid.rules[1].condition = "agent.tier <".to_owned();
    invalid
        .rules
        .push(rule("everything", Effect::Allow, "*", "*", "*"));
    let status = assert_code(
        put(&mut client, &admin, "acme", invalid.clone()).await,
        Code::InvalidArgument,
        "invalid set",
    )?;
    let message = status.message();
    assert!(message.contains("no-delete"), "{message}");
    assert!(
        message.contains("policy_set.rules[1].condition"),
        "{message}"
    );
    assert!(message.contains("everything"), "{message}");
    assert_eq!(current_version(&mut client, &admin, "acme").await?, 1);

    let report = client
        .validate_policy_set(with_bearer(
            ValidatePolicySetRequest {
                tenant: "acme".to_owned(),
                policy_set: Some(invalid),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert!(!report.valid);
    assert_eq!(report.error_count as usize, report.errors.len());
    let condition = report
        .errors
        .iter()
        .find(|error| error.policy_id == "no-delete")
        .context("an error for no-delete")?;
    assert_eq!(condition.field, "policy_set.rules[1].condition");
    assert!(
        condition.line >= 1 && condition.column >= 1,
        "{condition:?}"
    );
    assert!(report
        .errors
        .iter()
        .any(|error| error.policy_id == "everything"
            && error.field.starts_with("policy_set.rules[2]")));

    let valid = client
        .validate_policy_set(with_bearer(
            ValidatePolicySetRequest {
                tenant: "acme".to_owned(),
                policy_set: Some(github_set()),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert!(valid.valid && valid.errors.is_empty(), "{valid:?}");
    // Validating stores nothing.
    assert_eq!(current_version(&mut client, &admin, "acme").await?, 1);
    cluster.shutdown().await
}

#[tokio::test]
async fn fixtures_run_against_candidates_and_stored_versions() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;
    put(&mut client, &admin, "acme", github_set()).await?;
    let cases = vec![
        TestCase {
            name: "create issue".to_owned(),
            request: Some(check_request(
                "acme",
                AGENT,
                "mcp:github/create_issue",
                "tools/call",
            )),
            expected_effect: Effect::Allow as i32,
            expected_policy_ids: vec!["github-tools".to_owned()],
        },
        TestCase {
            name: "delete repo".to_owned(),
            request: Some(check_request(
                "acme",
                AGENT,
                "mcp:github/delete_repo",
                "tools/call",
            )),
            expected_effect: Effect::Deny as i32,
            expected_policy_ids: vec!["no-delete".to_owned()],
        },
        TestCase {
            name: "stranger wrongly expected allowed".to_owned(),
            request: Some(check_request(
                "acme",
                STRANGER,
                "mcp:github/create_issue",
                "tools/call",
            )),
            expected_effect: Effect::Allow as i32,
            expected_policy_ids: Vec::new(),
        },
    ];
    let stored = client
        .test_policy_set(with_bearer(
            TestPolicySetRequest {
                tenant: "acme".to_owned(),
                target: Some(test_policy_set_request::Target::Version(0)),
                cases: cases.clone(),
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!((stored.passed_count, stored.failed_count), (2, 1));
    let passed: Vec<bool> = stored.results.iter().map(|r| r.passed).collect();
    assert_eq!(passed, [true, true, false]);
    assert!(!stored.results[2].message.is_empty());

    // A candidate without the deny rule: the delete case now fails.
    let mut candidate = github_set();
    candidate.rules.truncate(1);
    let tested = client
        .test_policy_set(with_bearer(
            TestPolicySetRequest {
                tenant: "acme".to_owned(),
                target: Some(test_policy_set_request::Target::PolicySet(candidate)),
                cases,
            },
            &admin,
        ))
        .await?
        .into_inner();
    let passed: Vec<bool> = tested.results.iter().map(|r| r.passed).collect();
    assert_eq!(passed, [true, false, false]);
    // Testing applies nothing.
    assert_eq!(current_version(&mut client, &admin, "acme").await?, 1);
    cluster.shutdown().await
}

#[tokio::test]
async fn admin_calls_need_an_admin_token_for_the_tenant() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;

    let request = || PutPolicySetRequest {
        tenant: "acme".to_owned(),
        policy_set: Some(github_set()),
        ..Default::default()
    };
    assert_code(
        client.put_policy_set(request()).await,
        Code::Unauthenticated,
        "no token",
    )?;
    assert_code(
        client
            .put_policy_set(with_bearer(request(), "not-a-jwt"))
            .await,
        Code::Unauthenticated,
        "garbage token",
    )?;
    // A valid agent token without the admin scope.
    let agent = test_client(
        &cluster,
        &admin,
        "acme",
        "plain-agent",
        &["mcp:github"],
        &["repo:read"],
    )
    .await?;
    let agent_token = crate::identity_support::get_token(&cluster, &agent, &[]).await?;
    assert_code(
        client
            .put_policy_set(with_bearer(request(), &agent_token))
            .await,
        Code::PermissionDenied,
        "agent token",
    )?;

    // A tenant-scoped admin: its own tenant only.
    let acme_admin = test_client(
        &cluster,
        &admin,
        "acme",
        "acme-policy-admin",
        &[ADMIN_AUDIENCE],
        &[ADMIN_SCOPE],
    )
    .await?;
    let acme_token = agentsec_token(&cluster, &acme_admin, ADMIN_SCOPE).await?;
    let version = put(&mut client, &acme_token, "acme", github_set()).await?;
    assert_eq!(version.version, 1);
    assert_eq!(version.author, acme_admin.id);
    put(&mut client, &admin, "globex", github_set()).await?;
    assert_code(
        put(&mut client, &acme_token, "globex", github_set()).await,
        Code::PermissionDenied,
        "tenant admin changing another tenant",
    )?;
    assert_code(
        client
            .get_policy_set(with_bearer(
                GetPolicySetRequest {
                    tenant: "globex".to_owned(),
                    version: 0,
                },
                &acme_token,
            ))
            .await,
        Code::PermissionDenied,
        "tenant admin reading another tenant",
    )?;
    assert_code(
        client
            .list_policy_versions(with_bearer(
                ListPolicyVersionsRequest {
                    tenant: "globex".to_owned(),
                    page: None,
                },
                &acme_token,
            ))
            .await,
        Code::PermissionDenied,
        "tenant admin listing another tenant",
    )?;
    assert_eq!(current_version(&mut client, &admin, "globex").await?, 1);
    cluster.shutdown().await
}

#[tokio::test]
async fn changes_are_audited_published_and_survive_a_restart() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster).await?;

    let redis_config = cluster.backend.redis();
    let mut pubsub = match (&redis_config.url, cluster.backend.has_redis()) {
        (Some(url), true) => {
            let mut pubsub = redis::Client::open(url.as_str())?
                .get_async_pubsub()
                .await?;
            pubsub
                .subscribe(format!("{}agentsec:invalidation", redis_config.key_prefix))
                .await?;
            Some(pubsub)
        }
        _ => None,
    };

    put(&mut client, &admin, "acme", github_set()).await?;
    let mut second = github_set();
    second.rules.pop();
    put(&mut client, &admin, "acme", second).await?;

    // policy.changed reaches audit-svc, with tenant, version and actor.
    let events: Vec<_> = events_until(
        &cluster,
        "two policy.changed events at audit-svc",
        ASYNC_DEADLINE,
        EventFilter {
            tenant: "acme".to_owned(),
            kinds: vec!["policy.changed".to_owned()],
            ..Default::default()
        },
        |events| {
            events
                .iter()
                .filter(|stored| stored.event.is_some())
                .count()
                >= 2
        },
    )
    .await?
    .into_iter()
    .filter_map(|stored| stored.event)
    .collect();
    let mut versions: Vec<&str> = events
        .iter()
        .map(|event| event.attributes["policy_version"].as_str())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, ["1", "2"]);
    for event in &events {
        assert_eq!(event.service, "policy-svc");
        assert_eq!(event.tenant, "acme");
        assert_eq!(event.attributes["actor"], "bootstrap-admin");
    }

    if let Some(pubsub) = pubsub.as_mut() {
        let deadline = tokio::time::Instant::now() + ASYNC_DEADLINE;
        let mut messages = pin!(pubsub.on_message());
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let message = match tokio::time::timeout_at(deadline, messages.next()).await {
                Err(_) => bail!("POLICY_CHANGED events missing; seen {seen:?}"),
                Ok(None) => bail!("the Redis subscription ended"),
                Ok(Some(message)) => message,
            };
            let payload: String = message.get_payload()?;
            let event: serde_json::Value = serde_json::from_str(&payload)?;
            if event["kind"] == "INVALIDATION_KIND_POLICY_CHANGED" {
                assert_eq!(event["tenant"], "acme", "{payload}");
                seen.push(
                    event["policyVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        assert_eq!(seen, ["1", "2"]);
    }

    // Killed and restarted on the same data: version 2 is current and
    // decides (the deny rule is gone in version 2).
    cluster.kill(Service::Policy).await?;
    cluster.restart(Service::Policy).await?;
    let mut client = policy(&cluster).await?;
    assert_eq!(current_version(&mut client, &admin, "acme").await?, 2);
    let decision = client
        .check(check_request(
            "acme",
            AGENT,
            "mcp:github/delete_repo",
            "tools/call",
        ))
        .await?
        .into_inner()
        .decision
        .unwrap_or_default();
    assert_eq!(decision.effect, Effect::Allow as i32, "{decision:?}");
    assert_eq!(decision.policy_version, 2);
    let version = put(&mut client, &admin, "acme", github_set()).await?;
    assert_eq!(version.version, 3);
    cluster.shutdown().await
}

#[tokio::test]
async fn concurrent_changes_get_consecutive_versions() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = policy(&cluster).await?;
    let mut puts = Vec::new();
    for n in 0..8 {
        let (mut client, admin) = (client.clone(), admin.clone());
        puts.push(tokio::spawn(async move {
            let mut set = github_set();
            set.rules[0].description = format!("change {n}");
            put(&mut client, &admin, "acme", set).await
        }));
    }
    let mut versions = Vec::new();
    for handle in puts {
        versions.push(handle.await??.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    cluster.shutdown().await
}

/// Without `admin.jwks_uri`, admin calls are refused as not configured
/// (and decisions still work for nobody: no tenant has a policy).
#[tokio::test]
async fn admin_calls_fail_when_admin_authentication_is_not_configured() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = agentsec_policy::Config::in_data_dir(dir.path());
    let listener =
        agentsec_common::server::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(agentsec_policy::serve(config, listener, async move {
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }));
    eventually("policy-svc started", ASYNC_DEADLINE, || async {
        let status = agentsec_integration_tests::cluster::health_status(addr, "").await;
        Ok(status.is_ok().then_some(()))
    })
    .await?;
    let mut client =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(addr).await?);
    let status = assert_code(
        put(&mut client, "any-token", "acme", github_set()).await,
        Code::FailedPrecondition,
        "admin authentication not configured",
    )?;
    assert!(
        status
            .message()
            .contains("admin authentication is not configured"),
        "{}",
        status.message()
    );
    let _ = stop.send(true);
    server.await??;
    Ok(())
}

/// Checks `request` at `replica` (named `which`) until it decides with
/// policy version `version`.
async fn until_version(
    replica: &Policy,
    request: CheckRequest,
    version: u64,
    which: &str,
) -> anyhow::Result<Decision> {
    let decided_with = Cell::new(0);
    eventually(
        &format!("{which} deciding with version {version}"),
        ASYNC_DEADLINE,
        || {
            let (mut replica, request, decided_with) =
                (replica.clone(), request.clone(), &decided_with);
            async move {
                let decision = replica
                    .check(request)
                    .await?
                    .into_inner()
                    .decision
                    .unwrap_or_default();
                decided_with.set(decision.policy_version);
                Ok((decision.policy_version == version).then_some(decision))
            }
        },
    )
    .await
    .with_context(|| format!("{which} still decides with version {}", decided_with.get()))
}

/// With Redis, a second replica on the same database follows the first
/// one's changes (POLICY_CHANGED), and its own changes take the next
/// version. Without Redis (SQLite runs) there is nothing to follow.
#[tokio::test]
async fn replicas_follow_each_others_changes() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    if !cluster.backend.is_postgres() || !cluster.backend.has_redis() {
        return cluster.shutdown().await;
    }
    let admin = cluster.admin_token().await?;
    let mut first = policy(&cluster).await?;
    put(&mut first, &admin, "acme", github_set()).await?;
    let replica = cluster.start_replica(Service::Policy).await?;
    let mut second =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(replica).await?);
    let request = || check_request("acme", STRANGER, "mcp:github/create_issue", "tools/call");
    // Loaded at start.
    let decision = second.check(request()).await?.into_inner().decision;
    assert_eq!(decision.map(|d| d.policy_version), Some(1));

    let mut open = github_set();
    open.rules.push(rule(
        "strangers",
        Effect::Allow,
        &format!("agent:{STRANGER}"),
        "mcp:github/*",
        "tools/call",
    ));
    put(&mut first, &admin, "acme", open).await?;
    let decision = until_version(&second, request(), 2, "the replica").await?;
    assert_eq!(decision.effect, Effect::Allow as i32, "{decision:?}");
    // The replica's own change is version 3, and the first follows it.
    assert_eq!(
        put(&mut second, &admin, "acme", github_set())
            .await?
            .version,
        3
    );
    let decision = until_version(&first, request(), 3, "the first replica").await?;
    assert_eq!(decision.effect, Effect::Deny as i32, "{decision:?}");

    // Both replicas racing: every change gets its own version.
    let mut puts = Vec::new();
    for n in 0..8 {
        let mut client = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let admin = admin.clone();
        puts.push(tokio::spawn(async move {
            let mut set = github_set();
            set.rules[0].description = format!("race {n}");
            put(&mut client, &admin, "acme", set).await
        }));
    }
    let mut versions = Vec::new();
    for handle in puts {
        versions.push(handle.await??.version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (4..=11).collect::<Vec<u64>>());
    cluster.shutdown().await
}

/// A policy set beyond tonic's default 4 MiB message limit is accepted
/// (policy.proto allows 16 MiB) and read back whole.
#[tokio::test]
async fn policy_sets_larger_than_4_mib_are_accepted() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = policy(&cluster)
        .await?
        .max_decoding_message_size(16 * 1024 * 1024)
        .max_encoding_message_size(16 * 1024 * 1024);
    let mut set = github_set();
    for n in 0..5_000 {
        let mut extra = rule(
            &format!("tool-{n}"),
            Effect::Allow,
            "role:mcp-users",
            &format!("mcp:server-{n}/*"),
            "tools/call",
        );
        extra.description = "x".repeat(1_000);
        set.rules.push(extra);
    }
    let version = put(&mut client, &admin, "acme", set.clone()).await?;
    assert_eq!(version.rule_count, 5_002);
    let got = client
        .get_policy_set(with_bearer(
            GetPolicySetRequest {
                tenant: "acme".to_owned(),
                version: 0,
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(got.policy_set, Some(set));
    let decision = client
        .check(check_request(
            "acme",
            AGENT,
            "mcp:server-4321/anything",
            "tools/call",
        ))
        .await?
        .into_inner()
        .decision
        .unwrap_or_default();
    assert_eq!(decision.policy_ids, ["tool-4321"]);
    cluster.shutdown().await
}

/// The audit event of decision `decision_id`, once audit-svc has it.
pub(crate) async fn decision_event(
    cluster: &TestCluster,
    decision_id: &str,
) -> anyhow::Result<agentsec_proto::audit::v1::Event> {
    first_event(
        cluster,
        &format!("an audit event for decision {decision_id}"),
        ASYNC_DEADLINE,
        EventFilter {
            decision_id: decision_id.to_owned(),
            ..Default::default()
        },
    )
    .await
}
