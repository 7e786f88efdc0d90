//! exchange-svc delegation grants: a person, authenticated by a token of a
//! trusted user-token issuer, grants an agent the right to act for them;
//! gets, lists (filters, paging) and revokes their grants; every change
//! reaches audit-svc, and a revocation is announced on Redis.

use std::pin::pin;
use std::time::Duration;

use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use agentsec_integration_tests::audit_trail::agent_events;
use agentsec_integration_tests::cluster::{
    test_user_issuer_key, TEST_USER_AUDIENCE, TEST_USER_ISSUER,
};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::PageRequest;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::{
    CreateGrantRequest, GetGrantRequest, Grant, GrantStatus, ListGrantsRequest, RevokeGrantRequest,
};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel;
use tonic::Code;

use crate::identity_http::suspend;
use crate::identity_support::{new_agent, register};

pub(crate) const ASYNC_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) type Client = ExchangeServiceClient<Channel>;

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

pub(crate) fn key() -> anyhow::Result<&'static SigningKey> {
    test_user_issuer_key().context("no test user-issuer key")
}

/// Standard person-token claims for `sub`, with `extra` merged in (a null
/// removes a claim).
pub(crate) fn claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut claims = json!({
        "iss": TEST_USER_ISSUER,
        "sub": sub,
        "aud": TEST_USER_AUDIENCE,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 600,
    });
    if let (Some(map), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        for (name, value) in extra {
            if value.is_null() {
                map.remove(name);
            } else {
                map.insert(name.clone(), value.clone());
            }
        }
    }
    claims
}

/// A person token for `sub` from the cluster's trusted user issuer.
pub(crate) fn person_token(sub: &str) -> anyhow::Result<String> {
    Ok(key()?.sign("JWT", &claims(sub, json!({"tenant": "acme"})))?)
}

/// A new ACTIVE agent of tenant acme (the person tokens' tenant).
async fn agent_id(cluster: &TestCluster) -> anyhow::Result<String> {
    agent_in(cluster, "acme").await
}

async fn agent_in(cluster: &TestCluster, tenant: &str) -> anyhow::Result<String> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "grantee-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let admin = cluster.admin_token().await?;
    let agent = new_agent(tenant, &name, &["github-mcp"], &["repo:read"]);
    Ok(register(cluster, &admin, agent).await?.id)
}

pub(crate) fn timestamp(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn grant_for(agent: &str, audiences: &[&str]) -> Grant {
    Grant {
        agent_id: agent.to_owned(),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        scopes: vec!["repo:read".to_owned(), "issues:write".to_owned()],
        expire_time: Some(timestamp(now() + 3600)),
        max_chain_depth: 2,
        purpose: "triage my issues while I am away".to_owned(),
        ..Grant::default()
    }
}

pub(crate) async fn create(
    client: &mut Client,
    token: &str,
    grant: Grant,
) -> Result<Grant, tonic::Status> {
    client
        .create_grant(with_bearer(
            CreateGrantRequest { grant: Some(grant) },
            token,
        ))
        .await
        .map(|response| response.into_inner().grant.unwrap_or_default())
}

async fn list(
    client: &mut Client,
    token: &str,
    request: ListGrantsRequest,
) -> Result<(Vec<String>, String), tonic::Status> {
    let response = client
        .list_grants(with_bearer(request, token))
        .await?
        .into_inner();
    Ok((
        response.grants.into_iter().map(|grant| grant.id).collect(),
        response.page.unwrap_or_default().next_page_token,
    ))
}

pub(crate) async fn revoke(
    client: &mut Client,
    token: &str,
    grant_id: &str,
    reason: &str,
) -> Result<Grant, tonic::Status> {
    client
        .revoke_grant(with_bearer(
            RevokeGrantRequest {
                grant_id: grant_id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().grant.unwrap_or_default())
}

/// A Redis subscription to the cluster's invalidation channel, when the
/// backend has Redis.
async fn subscribe(cluster: &TestCluster) -> anyhow::Result<Option<redis::aio::PubSub>> {
    let config = cluster.backend.redis();
    match (&config.url, cluster.backend.has_redis()) {
        (Some(url), true) => {
            let mut pubsub = redis::Client::open(url.as_str())?
                .get_async_pubsub()
                .await?;
            pubsub
                .subscribe(format!("{}agentsec:invalidation", config.key_prefix))
                .await?;
            Ok(Some(pubsub))
        }
        _ => Ok(None),
    }
}

async fn next_invalidation(
    pubsub: &mut redis::aio::PubSub,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + ASYNC_DEADLINE;
    let mut messages = pin!(pubsub.on_message());
    loop {
        let message = match tokio::time::timeout_at(deadline, messages.next()).await {
            Err(_) => bail!("no matching invalidation event within {ASYNC_DEADLINE:?}"),
            Ok(None) => bail!("the Redis subscription ended"),
            Ok(Some(message)) => message,
        };
        let payload: String = message.get_payload()?;
        let event: serde_json::Value = serde_json::from_str(&payload)?;
        if matches(&event) {
            return Ok(event);
        }
    }
}

#[tokio::test]
async fn exchange_grants_create_get_list_revoke() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut client = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let alice = person_token("alice")?;
    let planner = agent_id(&cluster).await?;
    let coder = agent_id(&cluster).await?;
    let mut pubsub = subscribe(&cluster).await?;

    let created = create(&mut client, &alice, grant_for(&planner, &["github-mcp"])).await?;
    assert!(
        created.id.starts_with("grt_") && created.id.len() == 30,
        "{}",
        created.id
    );
    assert_eq!(created.person_subject, "alice");
    assert_eq!(created.person_issuer, TEST_USER_ISSUER);
    assert_eq!(created.tenant, "acme");
    assert_eq!(created.agent_id, planner);
    assert_eq!(created.status, GrantStatus::Active as i32);
    assert_eq!(created.max_chain_depth, 2);
    assert!(created.create_time.is_some() && created.revoke_time.is_none());

    let fetched = client
        .get_grant(with_bearer(
            GetGrantRequest {
                grant_id: created.id.clone(),
            },
            &alice,
        ))
        .await?
        .into_inner()
        .grant
        .context("no grant")?;
    assert_eq!(fetched, created);

    // Two more for the coder agent, one with the default chain depth.
    let mut second = grant_for(&coder, &["jira", "github-mcp"]);
    second.max_chain_depth = 0;
    let second = create(&mut client, &alice, second).await?;
    assert_eq!(second.max_chain_depth, 1, "0 at creation means 1");
    let third = create(&mut client, &alice, grant_for(&coder, &["slack"])).await?;

    // Newest first; by agent; paging.
    let (all, next) = list(&mut client, &alice, ListGrantsRequest::default()).await?;
    assert_eq!(
        all,
        [third.id.clone(), second.id.clone(), created.id.clone()]
    );
    assert_eq!(next, "");
    let (for_coder, _) = list(
        &mut client,
        &alice,
        ListGrantsRequest {
            agent_id: coder.clone(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(for_coder, [third.id.clone(), second.id.clone()]);
    let (own, _) = list(
        &mut client,
        &alice,
        ListGrantsRequest {
            person_subject: "alice".to_owned(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(own.len(), 3);
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let (ids, next) = list(
            &mut client,
            &alice,
            ListGrantsRequest {
                page: Some(PageRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                }),
                ..Default::default()
            },
        )
        .await?;
        assert!(ids.len() <= 2);
        paged.extend(ids);
        if next.is_empty() {
            break;
        }
        page_token = next;
    }
    assert_eq!(paged, all);
    // A cursor only works with the filter it was made with.
    let (_, cursor) = list(
        &mut client,
        &alice,
        ListGrantsRequest {
            page: Some(PageRequest {
                page_size: 1,
                page_token: String::new(),
            }),
            ..Default::default()
        },
    )
    .await?;
    let status = list(
        &mut client,
        &alice,
        ListGrantsRequest {
            agent_id: coder.clone(),
            page: Some(PageRequest {
                page_size: 1,
                page_token: cursor,
            }),
            ..Default::default()
        },
    )
    .await
    .expect_err("a cursor of another filter");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("page.page_token"),
        "{}",
        status.message()
    );

    // Revoke: REVOKED, out of the active list, still in the full list.
    let revoked = revoke(&mut client, &alice, &second.id, "no longer needed").await?;
    assert_eq!(revoked.status, GrantStatus::Revoked as i32);
    assert_eq!(revoked.revoked_by, "alice");
    assert_eq!(revoked.revoke_reason, "no longer needed");
    assert!(revoked.revoke_time.is_some());
    let (active, _) = list(&mut client, &alice, ListGrantsRequest::default()).await?;
    assert_eq!(active, [third.id.clone(), created.id.clone()]);
    let (everything, _) = list(
        &mut client,
        &alice,
        ListGrantsRequest {
            include_inactive: true,
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(everything, all);
    // Idempotent: the same revoked grant, unchanged.
    let again = revoke(&mut client, &alice, &second.id, "other reason").await?;
    assert_eq!(again, revoked);

    let events = agent_events(
        &cluster,
        &coder,
        &["grant.created", "grant.revoked"],
        ASYNC_DEADLINE,
    )
    .await?;
    let created_event = events
        .iter()
        .filter_map(|stored| stored.event.as_ref())
        .find(|event| event.kind == "grant.created" && event.resource_id == second.id)
        .context("no grant.created for the second grant")?;
    assert_eq!(created_event.service, "exchange-svc");
    assert_eq!(created_event.tenant, "acme");
    assert_eq!(created_event.person_subject, "alice");
    assert_eq!(created_event.resource_type, "grant");
    assert_eq!(created_event.attributes["audiences"], "jira github-mcp");
    assert_eq!(created_event.attributes["person_issuer"], TEST_USER_ISSUER);
    let revoked_events: Vec<_> = events
        .iter()
        .filter_map(|stored| stored.event.as_ref())
        .filter(|event| event.kind == "grant.revoked")
        .collect();
    assert_eq!(revoked_events.len(), 1, "a second revoke audits nothing");
    assert_eq!(revoked_events[0].resource_id, second.id);
    assert_eq!(revoked_events[0].reason, "no longer needed");
    assert_eq!(revoked_events[0].attributes["audiences"], "jira github-mcp");
    assert!(
        events
            .iter()
            .filter_map(|stored| stored.event.as_ref())
            .all(|event| !format!("{event:?}").contains(&alice)),
        "the audit trail never holds the person's token"
    );

    if let Some(pubsub) = pubsub.as_mut() {
        let event = next_invalidation(pubsub, |event| {
            event["kind"] == "INVALIDATION_KIND_GRANT_REVOKED"
                && event["grantId"] == second.id.as_str()
        })
        .await?;
        assert_eq!(event["tenant"], "acme");
        assert_eq!(event["agentId"], coder.as_str());
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn exchange_grants_of_another_person_are_invisible() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut client = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let alice = person_token("alice")?;
    let bob = person_token("bob")?;
    let agent = agent_id(&cluster).await?;
    let grant = create(&mut client, &alice, grant_for(&agent, &["github-mcp"])).await?;

    let status = client
        .get_grant(with_bearer(
            GetGrantRequest {
                grant_id: grant.id.clone(),
            },
            &bob,
        ))
        .await
        .expect_err("bob cannot see alice's grant");
    assert_eq!(status.code(), Code::NotFound);
    let status = revoke(&mut client, &bob, &grant.id, "")
        .await
        .expect_err("bob cannot revoke alice's grant");
    assert_eq!(status.code(), Code::NotFound);
    let (bobs, _) = list(
        &mut client,
        &bob,
        ListGrantsRequest {
            agent_id: agent.clone(),
            include_inactive: true,
            ..Default::default()
        },
    )
    .await?;
    assert!(bobs.is_empty(), "{bobs:?}");
    let status = list(
        &mut client,
        &bob,
        ListGrantsRequest {
            person_subject: "alice".to_owned(),
            ..Default::default()
        },
    )
    .await
    .expect_err("a person lists only their own grants");
    assert_eq!(status.code(), Code::PermissionDenied);

    // The same `sub` from the same issuer is the same person.
    let alice_again = person_token("alice")?;
    let (alices, _) = list(&mut client, &alice_again, ListGrantsRequest::default()).await?;
    assert_eq!(alices, [grant.id.as_str()]);
    let status = client
        .get_grant(with_bearer(
            GetGrantRequest {
                grant_id: "grt_00000000000000000000000000".to_owned(),
            },
            &alice,
        ))
        .await
        .expect_err("unknown grant");
    assert_eq!(status.code(), Code::NotFound);
    cluster.shutdown().await
}

#[tokio::test]
async fn exchange_grants_bad_inputs_name_the_field() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut client = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let alice = person_token("alice")?;
    let agent = agent_id(&cluster).await?;
    let base = || grant_for(&agent, &["github-mcp"]);
    let too_many = |n: usize| (0..n).map(|i| format!("a{i}")).collect::<Vec<_>>();
    let cases: Vec<(Option<Grant>, &str)> = vec![
        (None, "grant"),
        (
            Some(Grant {
                agent_id: String::new(),
                ..base()
            }),
            "grant.agent_id",
        ),
        (
            Some(Grant {
                agent_id: "planner".into(),
                ..base()
            }),
            "grant.agent_id",
        ),
        (
            Some(Grant {
                audiences: Vec::new(),
                ..base()
            }),
            "grant.audiences",
        ),
        (
            Some(Grant {
                audiences: too_many(33),
                ..base()
            }),
            "grant.audiences",
        ),
        (
            Some(Grant {
                audiences: vec!["a".into(), "a".into()],
                ..base()
            }),
            "grant.audiences[1]",
        ),
        (
            Some(Grant {
                audiences: vec!["x".repeat(257)],
                ..base()
            }),
            "grant.audiences[0]",
        ),
        (
            Some(Grant {
                scopes: Vec::new(),
                ..base()
            }),
            "grant.scopes",
        ),
        (
            Some(Grant {
                scopes: too_many(129),
                ..base()
            }),
            "grant.scopes",
        ),
        (
            Some(Grant {
                scopes: vec!["repo:read repo:write".into()],
                ..base()
            }),
            "grant.scopes[0]",
        ),
        (
            Some(Grant {
                expire_time: None,
                ..base()
            }),
            "grant.expire_time",
        ),
        (
            Some(Grant {
                expire_time: Some(timestamp(now() - 10)),
                ..base()
            }),
            "grant.expire_time",
        ),
        (
            Some(Grant {
                expire_time: Some(timestamp(now() + 400 * 24 * 3600)),
                ..base()
            }),
            "grant.expire_time",
        ),
        (
            Some(Grant {
                max_chain_depth: 17,
                ..base()
            }),
            "grant.max_chain_depth",
        ),
        (
            Some(Grant {
                purpose: String::new(),
                ..base()
            }),
            "grant.purpose",
        ),
        (
            Some(Grant {
                purpose: "p".repeat(1025),
                ..base()
            }),
            "grant.purpose",
        ),
    ];
    for (grant, field) in cases {
        let status = client
            .create_grant(with_bearer(CreateGrantRequest { grant }, &alice))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(&format!("`{field}`")),
            "{field}: {}",
            status.message()
        );
    }
    let status = revoke(&mut client, &alice, "", "")
        .await
        .expect_err("no grant id");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("grant_id"),
        "{}",
        status.message()
    );
    let status = revoke(&mut client, &alice, "grt_x", &"r".repeat(1025))
        .await
        .expect_err("reason too long");
    assert!(
        status.message().contains("`reason`"),
        "{}",
        status.message()
    );
    let (none, _) = list(
        &mut client,
        &alice,
        ListGrantsRequest {
            include_inactive: true,
            ..Default::default()
        },
    )
    .await?;
    assert!(none.is_empty(), "nothing invalid was stored: {none:?}");
    cluster.shutdown().await
}

fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn exchange_grants_go_only_to_active_agents_of_the_persons_tenant() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let mut client = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let admin = cluster.admin_token().await?;
    let alice = person_token("alice")?;
    let suspended = agent_id(&cluster).await?;
    suspend(&cluster, &admin, &suspended).await?;
    let cases = [
        ("unknown agent", agentsec_common::ids::new_id("agt_")?),
        ("suspended agent", suspended),
        (
            "agent of another tenant",
            agent_in(&cluster, "globex").await?,
        ),
    ];
    for (case, agent) in &cases {
        let status = create(&mut client, &alice, grant_for(agent, &["github-mcp"]))
            .await
            .expect_err(case);
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{case}: {status:?}"
        );
        assert!(
            status.message().contains(agent.as_str()),
            "{case}: {status:?}"
        );
    }
    let everything = ListGrantsRequest {
        include_inactive: true,
        ..ListGrantsRequest::default()
    };
    let (stored, _) = list(&mut client, &alice, everything).await?;
    assert!(stored.is_empty(), "nothing was granted: {stored:?}");

    // identity-svc unreachable: nothing is granted either.
    let active = agent_id(&cluster).await?;
    cluster.kill(Service::Identity).await?;
    let status = create(&mut client, &alice, grant_for(&active, &["github-mcp"]))
        .await
        .expect_err("identity-svc is down");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    cluster.shutdown().await
}

#[tokio::test]
async fn exchange_grants_refuse_untrusted_person_tokens() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut client = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let agent = agent_id(&cluster).await?;
    let stranger = SigningKey::generate(SigningAlgorithm::EdDsa)?;
    let kid = key()?.kid().to_owned();
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".to_owned())),
        (
            "untrusted issuer",
            Some(stranger.sign("JWT", &claims("alice", json!({"iss": "https://evil.test"})))?),
        ),
        (
            "trusted issuer, unknown key",
            Some(stranger.sign("JWT", &claims("alice", json!({})))?),
        ),
        (
            "expired",
            Some(key()?.sign(
                "JWT",
                &claims(
                    "alice",
                    json!({"exp": now() - 600, "iat": now() - 1200, "nbf": now() - 1200}),
                ),
            )?),
        ),
        (
            "wrong audience",
            Some(key()?.sign("JWT", &claims("alice", json!({"aud": "someone-else"})))?),
        ),
        (
            "no audience",
            Some(key()?.sign("JWT", &claims("alice", json!({"aud": null})))?),
        ),
        (
            "not yet valid",
            Some(key()?.sign("JWT", &claims("alice", json!({"nbf": now() + 600})))?),
        ),
        (
            "no sub",
            Some(key()?.sign("JWT", &claims("alice", json!({"sub": null})))?),
        ),
        (
            "alg none",
            Some(unsigned(
                json!({"alg": "none", "kid": kid, "typ": "JWT"}),
                &claims("alice", json!({})),
            )),
        ),
        (
            "HMAC",
            Some(unsigned(
                json!({"alg": "HS256", "kid": kid, "typ": "JWT"}),
                &claims("alice", json!({})),
            )),
        ),
    ];
    for (case, token) in tokens {
        let mut request = tonic::Request::new(CreateGrantRequest {
            grant: Some(grant_for(&agent, &["github-mcp"])),
        });
        if let Some(token) = &token {
            request = with_bearer(request.into_inner(), token);
        }
        let status = client.create_grant(request).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        if let Some(token) = &token {
            assert!(
                !status.message().contains(token.as_str()),
                "{case}: the message never echoes the token"
            );
        }
        let mut list_request = tonic::Request::new(ListGrantsRequest::default());
        if let Some(token) = &token {
            list_request = with_bearer(list_request.into_inner(), token);
        }
        let status = client.list_grants(list_request).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    }
    // The trusted issuer's own token still works.
    create(
        &mut client,
        &person_token("alice")?,
        grant_for(&agent, &["github-mcp"]),
    )
    .await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn exchange_grants_admins_read_and_revoke_but_never_create() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut client = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let admin = cluster.admin_token().await?;
    let alice = person_token("alice")?;
    let bob = person_token("bob")?;
    let agent = agent_id(&cluster).await?;
    let alices = create(&mut client, &alice, grant_for(&agent, &["github-mcp"])).await?;
    let bobs = create(&mut client, &bob, grant_for(&agent, &["jira"])).await?;

    let status = create(&mut client, &admin, grant_for(&agent, &["github-mcp"]))
        .await
        .expect_err("a grant is the person's own consent");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // A global admin sees every grant, and filters by person.
    let (all, _) = list(
        &mut client,
        &admin,
        ListGrantsRequest {
            agent_id: agent.clone(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(all, [bobs.id.clone(), alices.id.clone()]);
    let (only_alice, _) = list(
        &mut client,
        &admin,
        ListGrantsRequest {
            person_subject: "alice".to_owned(),
            agent_id: agent.clone(),
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(only_alice, [alices.id.as_str()]);
    let fetched = client
        .get_grant(with_bearer(
            GetGrantRequest {
                grant_id: bobs.id.clone(),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .grant
        .context("no grant")?;
    assert_eq!(fetched, bobs);

    let revoked = revoke(&mut client, &admin, &bobs.id, "offboarding").await?;
    assert_eq!(revoked.status, GrantStatus::Revoked as i32);
    assert_eq!(
        revoked.revoked_by,
        agentsec_integration_tests::cluster::ADMIN_CLIENT_ID
    );
    let (bobs_active, _) = list(&mut client, &bob, ListGrantsRequest::default()).await?;
    assert!(bobs_active.is_empty(), "{bobs_active:?}");
    cluster.shutdown().await
}
