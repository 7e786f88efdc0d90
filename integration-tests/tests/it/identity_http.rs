//! identity-svc's other OAuth endpoints and side effects: authorization
//! server metadata, introspection (HTTP and gRPC), revocation, the effect of
//! suspending and revoking agents on live tokens, the audit trail at
//! audit-svc, and Redis invalidation events.

use std::pin::pin;

use agentsec_common::keys;
use agentsec_integration_tests::audit_trail::agent_events;
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::Outcome;
use agentsec_proto::identity::v1::{
    IntrospectTokenRequest, IntrospectTokenResponse, ReactivateAgentRequest, RevokeAgentRequest,
    RevokeTokenRequest, SuspendAgentRequest,
};
use anyhow::{bail, Context as _};
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::identity_support::{
    assert_code, assert_oauth_error, b64url, basic, bearer, default_client, get_token, identity,
    introspect, introspect_raw, is_active, post_token, test_client, token_endpoint,
    unverified_claims, verify_access_token, TestClient, ASYNC_DEADLINE, AUDIENCE, OWNER, SCOPES,
};

/// `POST /oauth2/revoke` as the caller named by `authorization`.
async fn revoke_raw(
    cluster: &TestCluster,
    authorization: &str,
    token: &str,
) -> anyhow::Result<HttpResponse> {
    post_token(cluster, "/oauth2/revoke", authorization, token).await
}

pub(crate) async fn suspend(
    cluster: &TestCluster,
    admin: &str,
    agent_id: &str,
) -> anyhow::Result<()> {
    identity(cluster)
        .await?
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: agent_id.to_owned(),
                reason: "suspicious activity".into(),
            },
            admin,
        ))
        .await?;
    Ok(())
}

pub(crate) async fn reactivate(
    cluster: &TestCluster,
    admin: &str,
    agent_id: &str,
) -> anyhow::Result<()> {
    identity(cluster)
        .await?
        .reactivate_agent(with_bearer(
            ReactivateAgentRequest {
                agent_id: agent_id.to_owned(),
                reason: "cleared".into(),
            },
            admin,
        ))
        .await?;
    Ok(())
}

/// RFC 7009 revocation of `token` over gRPC, as `admin`.
pub(crate) async fn revoke_token(
    cluster: &TestCluster,
    admin: &str,
    token: &str,
) -> anyhow::Result<()> {
    identity(cluster)
        .await?
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

/// A token with our claims signed by a key identity-svc never published,
/// once under a fresh kid and once under identity-svc's own kid.
fn forged_tokens(like: &str) -> anyhow::Result<Vec<String>> {
    let claims = unverified_claims(like)?;
    let forger = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let fresh_kid = forger.sign("at+jwt", &claims)?;
    let real_kid = jsonwebtoken::decode_header(like)?
        .kid
        .context("no kid in a real token")?;
    let own_kid = {
        let parts: Vec<&str> = fresh_kid.split('.').collect();
        let header = serde_json::json!({"alg": "EdDSA", "kid": real_kid, "typ": "at+jwt"});
        format!(
            "{}.{}.{}",
            b64url(header.to_string().as_bytes()),
            parts[1],
            parts[2]
        )
    };
    let none = format!(
        "{}.{}.",
        b64url(
            serde_json::json!({"alg": "none", "kid": real_kid})
                .to_string()
                .as_bytes()
        ),
        b64url(claims.to_string().as_bytes())
    );
    let tampered = {
        let parts: Vec<&str> = like.split('.').collect();
        let mut changed = claims.clone();
        changed["scope"] = serde_json::Value::String("repo:read repo:write repo:admin".into());
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(changed.to_string().as_bytes()),
            parts[2]
        )
    };
    Ok(vec![fresh_kid, own_kid, none, tampered])
}

// ---------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authorization_server_metadata_names_the_endpoints_and_methods() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let response = http::get(
        cluster.addr(Service::Identity),
        "/.well-known/oauth-authorization-server",
    )
    .await?;
    assert_eq!(response.status, 200);
    let metadata = response.json()?;
    let issuer = cluster.issuer(Service::Identity);
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(
        metadata["token_endpoint"],
        format!("{issuer}/oauth2/token").as_str()
    );
    assert_eq!(
        metadata["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json").as_str()
    );
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{issuer}/oauth2/introspect").as_str()
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        format!("{issuer}/oauth2/revoke").as_str()
    );
    let strings = |name: &str| -> Vec<String> {
        metadata[name]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        strings("grant_types_supported").contains(&"client_credentials".to_owned()),
        "{metadata}"
    );
    let mut methods = strings("token_endpoint_auth_methods_supported");
    methods.sort();
    assert_eq!(
        methods,
        [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ],
        "{metadata}"
    );

    // The advertised jwks_uri serves the key that signs tokens.
    let jwks = http::get(cluster.addr(Service::Identity), "/.well-known/jwks.json").await?;
    assert_eq!(jwks.status, 200);
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn introspection_reports_an_active_token_with_its_claims() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "introspected").await?;
    let caller = default_client(&cluster, &admin, "resource-server").await?;
    let token = get_token(&cluster, &client, &[("scope", "repo:read")]).await?;
    let caller_token = get_token(&cluster, &caller, &[]).await?;
    let claims = verify_access_token(&cluster, &token, AUDIENCE).await?;

    for (what, authorization) in [
        (
            "Basic client credentials",
            basic(&caller.id, &caller.secret),
        ),
        ("an agent's bearer token", bearer(&caller_token)),
        ("an admin bearer token", bearer(&admin)),
        ("the token itself", bearer(&token)),
    ] {
        let answer = introspect(&cluster, &authorization, &token).await?;
        assert_eq!(answer["active"], true, "{what}: {answer}");
        assert_eq!(answer["scope"], "repo:read", "{what}");
        assert_eq!(answer["client_id"], client.id.as_str(), "{what}");
        assert_eq!(answer["token_type"], "Bearer", "{what}");
        assert_eq!(answer["sub"], client.id.as_str(), "{what}");
        assert_eq!(
            answer["iss"],
            cluster.issuer(Service::Identity).as_str(),
            "{what}"
        );
        assert_eq!(answer["tenant"], "acme", "{what}");
        assert_eq!(answer["owner"], OWNER, "{what}");
        for name in ["exp", "iat", "nbf", "jti"] {
            assert_eq!(answer[name], claims[name], "{what}: {name}");
        }
        assert!(
            answer["aud"] == AUDIENCE || answer["aud"] == serde_json::json!([AUDIENCE]),
            "{what}: aud {}",
            answer["aud"]
        );
    }

    let mut grpc = identity(&cluster).await?;
    for (what, authorization) in [("admin", admin.as_str()), ("agent", caller_token.as_str())] {
        let answer = grpc
            .introspect_token(with_bearer(
                IntrospectTokenRequest {
                    token: token.clone(),
                    token_type_hint: "access_token".into(),
                },
                authorization,
            ))
            .await?
            .into_inner();
        assert!(answer.active, "{what}");
        assert_eq!(answer.scope, "repo:read");
        assert_eq!(answer.client_id, client.id);
        assert_eq!(answer.sub, client.id);
        assert_eq!(answer.token_type, "Bearer");
        assert_eq!(answer.aud, vec![AUDIENCE.to_owned()]);
        assert_eq!(answer.iss, cluster.issuer(Service::Identity));
        assert_eq!(answer.tenant, "acme");
        assert_eq!(answer.owner, OWNER);
        assert_eq!(Some(answer.jti.as_str()), claims["jti"].as_str());
        assert_eq!(
            answer.exp.map(|t| t.seconds),
            claims["exp"].as_i64(),
            "{what}"
        );
        assert_eq!(answer.iat.map(|t| t.seconds), claims["iat"].as_i64());
        assert_eq!(answer.nbf.map(|t| t.seconds), claims["nbf"].as_i64());
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn introspection_shows_no_caller_another_tenants_token() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "acme-agent").await?;
    let token = get_token(&cluster, &client, &[]).await?;
    let outsider = test_client(&cluster, &admin, "globex", "outsider", &[AUDIENCE], SCOPES).await?;
    let outsider_token = get_token(&cluster, &outsider, &[]).await?;
    let neighbour = default_client(&cluster, &admin, "acme-neighbour").await?;

    // Another tenant's agent, by client credentials or its bearer token:
    // exactly active=false, as for a token that does not exist.
    for (what, authorization) in [
        ("Basic", basic(&outsider.id, &outsider.secret)),
        ("bearer", bearer(&outsider_token)),
    ] {
        let answer = introspect(&cluster, &authorization, &token).await?;
        assert_eq!(answer, serde_json::json!({"active": false}), "{what}");
    }
    let mut grpc = identity(&cluster).await?;
    let hidden = grpc
        .introspect_token(with_bearer(
            IntrospectTokenRequest {
                token: token.clone(),
                ..Default::default()
            },
            &outsider_token,
        ))
        .await?
        .into_inner();
    assert_eq!(hidden, IntrospectTokenResponse::default(), "gRPC");
    // The same token is active for an agent of its own tenant.
    let seen = introspect(&cluster, &basic(&neighbour.id, &neighbour.secret), &token).await?;
    assert_eq!(seen["active"], true, "{seen}");
    // Nor does an agent learn of tokens without a tenant (admins'):
    let admin_seen = introspect(&cluster, &basic(&client.id, &client.secret), &admin).await?;
    assert_eq!(admin_seen, serde_json::json!({"active": false}));
    cluster.shutdown().await
}

#[tokio::test]
async fn introspection_answers_only_active_false_for_tokens_it_cannot_vouch_for(
) -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "vouched").await?;
    let token = get_token(&cluster, &client, &[]).await?;

    let mut bad: Vec<(String, String)> = vec![
        ("garbage".into(), "garbage".into()),
        ("three dots".into(), "a.b.c".into()),
        ("a JWKS-looking blob".into(), "{\"keys\":[]}".into()),
    ];
    for (n, forged) in forged_tokens(&token)?.into_iter().enumerate() {
        bad.push((format!("forged token #{n}"), forged));
    }
    let mut grpc = identity(&cluster).await?;
    for (what, candidate) in &bad {
        for authorization in [bearer(&admin), basic(&client.id, &client.secret)] {
            let answer = introspect(&cluster, &authorization, candidate).await?;
            assert_eq!(
                answer,
                serde_json::json!({"active": false}),
                "{what}: exactly active=false"
            );
        }
        let answer = grpc
            .introspect_token(with_bearer(
                IntrospectTokenRequest {
                    token: candidate.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await?
            .into_inner();
        assert_eq!(
            answer,
            IntrospectTokenResponse::default(),
            "{what}: active=false and nothing else"
        );
    }
    assert!(
        is_active(&cluster, &admin, &token).await?,
        "the genuine token is still active"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn introspection_and_revocation_need_an_authenticated_caller() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "guarded").await?;
    let token = get_token(&cluster, &client, &[]).await?;
    let revoked = get_token(&cluster, &client, &[]).await?;
    assert_eq!(
        revoke_raw(&cluster, &bearer(&admin), &revoked)
            .await?
            .status,
        200
    );

    let wrong_basic = basic(&client.id, "not-the-secret-at-all-not-the-secret-at-all");
    let garbage_bearer = bearer("garbage");
    let revoked_bearer = bearer(&revoked);
    for (what, authorization) in [
        ("no authorization", ""),
        ("wrong client secret", wrong_basic.as_str()),
        ("garbage bearer", garbage_bearer.as_str()),
        ("bearer of a revoked token", revoked_bearer.as_str()),
    ] {
        let response = introspect_raw(&cluster, authorization, &token).await?;
        assert_oauth_error(
            &response,
            401,
            "invalid_client",
            &format!("introspect, {what}"),
        )?;
        let response = revoke_raw(&cluster, authorization, &token).await?;
        assert_oauth_error(&response, 401, "invalid_client", &format!("revoke, {what}"))?;
    }
    assert!(
        is_active(&cluster, &admin, &token).await?,
        "refused revocations revoke nothing"
    );

    let mut grpc = identity(&cluster).await?;
    let request = || IntrospectTokenRequest {
        token: token.clone(),
        ..Default::default()
    };
    assert_code(
        grpc.introspect_token(request()).await,
        Code::Unauthenticated,
        "IntrospectToken without metadata",
    )?;
    assert_code(
        grpc.introspect_token(with_bearer(request(), "garbage"))
            .await,
        Code::Unauthenticated,
        "IntrospectToken with a garbage bearer",
    )?;
    assert_code(
        grpc.introspect_token(with_bearer(request(), &revoked))
            .await,
        Code::Unauthenticated,
        "IntrospectToken with a revoked bearer",
    )?;
    assert_code(
        grpc.revoke_token(RevokeTokenRequest {
            token: token.clone(),
            ..Default::default()
        })
        .await,
        Code::Unauthenticated,
        "RevokeToken without metadata",
    )?;
    assert!(is_active(&cluster, &admin, &token).await?);
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Suspension and revocation of agents
// ---------------------------------------------------------------------------

#[tokio::test]
async fn suspension_deactivates_tokens_at_once_and_reactivation_does_not_revive_them(
) -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "suspendable").await?;
    let bystander = default_client(&cluster, &admin, "bystander").await?;
    let token = get_token(&cluster, &client, &[]).await?;
    let other = get_token(&cluster, &bystander, &[]).await?;
    assert!(is_active(&cluster, &admin, &token).await?);

    suspend(&cluster, &admin, &client.id).await?;
    // No waiting: the very next introspection answers false.
    assert!(
        !is_active(&cluster, &admin, &token).await?,
        "suspension takes effect at once"
    );
    let answer = identity(&cluster)
        .await?
        .introspect_token(with_bearer(
            IntrospectTokenRequest {
                token: token.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(answer, IntrospectTokenResponse::default());
    assert!(
        is_active(&cluster, &admin, &other).await?,
        "other agents are unaffected"
    );
    let response = token_endpoint(
        &cluster,
        &[("authorization", &basic(&client.id, &client.secret))],
        &[("grant_type", "client_credentials")],
    )
    .await?;
    assert_oauth_error(&response, 400, "unauthorized_client", "suspended agent")?;

    identity(&cluster)
        .await?
        .reactivate_agent(with_bearer(
            ReactivateAgentRequest {
                agent_id: client.id.clone(),
                reason: "cleared".into(),
            },
            &admin,
        ))
        .await?;
    assert!(
        !is_active(&cluster, &admin, &token).await?,
        "tokens from before the suspension stay inactive"
    );
    let fresh = get_token(&cluster, &client, &[]).await?;
    assert!(
        is_active(&cluster, &admin, &fresh).await?,
        "a token issued after reactivation is active"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn revoking_an_agent_deactivates_its_tokens_and_credentials() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "doomed").await?;
    let token = get_token(&cluster, &client, &[]).await?;
    identity(&cluster)
        .await?
        .revoke_agent(with_bearer(
            RevokeAgentRequest {
                agent_id: client.id.clone(),
                reason: "decommissioned".into(),
            },
            &admin,
        ))
        .await?;
    assert!(!is_active(&cluster, &admin, &token).await?);
    let response = token_endpoint(
        &cluster,
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
        ],
    )
    .await?;
    let json = response.json()?;
    assert!(
        matches!(
            (response.status, json["error"].as_str()),
            (401, Some("invalid_client")) | (400, Some("unauthorized_client"))
        ),
        "a revoked agent's secret is refused: {} {json}",
        response.status
    );
    // A revoked agent can no longer call introspection: either its
    // credentials no longer authenticate it or it is refused as a client.
    let response = introspect_raw(&cluster, &basic(&client.id, &client.secret), &token).await?;
    let json = response.json()?;
    assert!(
        matches!(
            (response.status, json["error"].as_str()),
            (401, Some("invalid_client")) | (400, Some("unauthorized_client"))
        ),
        "a revoked agent's credentials as introspection caller: {} {json}",
        response.status
    );
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Token revocation
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revocation_deactivates_one_token_and_only_its_agent_or_an_admin_may_revoke(
) -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let owner = default_client(&cluster, &admin, "owner").await?;
    let intruder = default_client(&cluster, &admin, "intruder").await?;
    let t1 = get_token(&cluster, &owner, &[]).await?;
    let t2 = get_token(&cluster, &owner, &[]).await?;
    let t3 = get_token(&cluster, &owner, &[]).await?;
    let intruder_token = get_token(&cluster, &intruder, &[]).await?;

    for (what, authorization) in [
        ("Basic", basic(&intruder.id, &intruder.secret)),
        ("Bearer", bearer(&intruder_token)),
    ] {
        let response = revoke_raw(&cluster, &authorization, &t1).await?;
        assert_oauth_error(
            &response,
            400,
            "unauthorized_client",
            &format!("another agent revoking ({what})"),
        )?;
        assert!(
            is_active(&cluster, &admin, &t1).await?,
            "{what}: the token stays active"
        );
    }

    let response = revoke_raw(&cluster, &basic(&owner.id, &owner.secret), &t1).await?;
    assert_eq!(response.status, 200);
    assert!(!is_active(&cluster, &admin, &t1).await?, "revoked at once");
    assert!(
        is_active(&cluster, &admin, &t2).await?,
        "only the named token is revoked"
    );
    let response = revoke_raw(&cluster, &bearer(&t2), &t2).await?;
    assert_eq!(response.status, 200, "a token may revoke itself");
    assert!(!is_active(&cluster, &admin, &t2).await?);
    let response = revoke_raw(&cluster, &bearer(&admin), &t3).await?;
    assert_eq!(response.status, 200, "an admin revokes any token");
    assert!(!is_active(&cluster, &admin, &t3).await?);

    for (what, token) in [
        ("garbage", "garbage".to_owned()),
        ("already revoked", t1.clone()),
    ] {
        let response = revoke_raw(&cluster, &basic(&owner.id, &owner.secret), &token).await?;
        assert_eq!(response.status, 200, "{what}: RFC 7009 §2.2");
    }

    // gRPC: the agent's own bearer may revoke its token; another agent may not.
    let mut grpc = identity(&cluster).await?;
    let t4 = get_token(&cluster, &owner, &[]).await?;
    assert_code(
        grpc.revoke_token(with_bearer(
            RevokeTokenRequest {
                token: t4.clone(),
                ..Default::default()
            },
            &intruder_token,
        ))
        .await,
        Code::PermissionDenied,
        "another agent revoking over gRPC",
    )?;
    assert!(is_active(&cluster, &admin, &t4).await?);
    grpc.revoke_token(with_bearer(
        RevokeTokenRequest {
            token: t4.clone(),
            token_type_hint: "access_token".into(),
        },
        &t4,
    ))
    .await?;
    assert!(!is_active(&cluster, &admin, &t4).await?);
    grpc.revoke_token(with_bearer(
        RevokeTokenRequest {
            token: intruder_token.clone(),
            ..Default::default()
        },
        &admin,
    ))
    .await?;
    assert!(!is_active(&cluster, &admin, &intruder_token).await?);
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Audit trail
// ---------------------------------------------------------------------------

#[tokio::test]
async fn audit_trail_records_registration_credentials_and_token_decisions() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "audited").await?;
    let token = get_token(&cluster, &client, &[]).await?;
    let refused = token_endpoint(
        &cluster,
        &[],
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
            ("scope", "repo:admin"),
        ],
    )
    .await?;
    assert_oauth_error(&refused, 400, "invalid_scope", "scope beyond the ceiling")?;

    let wanted = [
        "agent.registered",
        "credential.created",
        "token.issued",
        "token.refused",
    ];
    let events = agent_events(&cluster, &client.id, &wanted, ASYNC_DEADLINE).await?;
    for kind in wanted {
        let event = events
            .iter()
            .filter_map(|stored| stored.event.as_ref())
            .find(|event| event.kind == kind)
            .context("checked above")?;
        assert_eq!(event.service, "identity-svc", "{kind}");
        assert_eq!(event.tenant, client.agent.tenant, "{kind}");
        assert_eq!(event.agent_id, client.id, "{kind}");
        let expected = if kind == "token.refused" {
            Outcome::Deny
        } else {
            Outcome::Allow
        };
        assert_eq!(event.outcome, expected as i32, "{kind}: {event:?}");
    }
    let everything = format!("{events:?}");
    assert!(
        !everything.contains(&client.secret),
        "the audit trail never holds a secret"
    );
    assert!(
        !everything.contains(&token),
        "the audit trail never holds a token"
    );
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Redis invalidation
// ---------------------------------------------------------------------------

/// Waits for the first invalidation event on `pubsub` that `matches`.
async fn next_invalidation(
    pubsub: &mut redis::aio::PubSub,
    matches: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<(String, serde_json::Value)> {
    let deadline = tokio::time::Instant::now() + ASYNC_DEADLINE;
    let mut messages = pin!(pubsub.on_message());
    loop {
        let message = match tokio::time::timeout_at(deadline, messages.next()).await {
            Err(_) => bail!("no matching invalidation event within {ASYNC_DEADLINE:?}"),
            Ok(None) => bail!("the Redis subscription ended"),
            Ok(Some(message)) => message,
        };
        let payload: String = message.get_payload()?;
        let event: serde_json::Value = serde_json::from_str(&payload)
            .with_context(|| format!("invalidation payload is not JSON: {payload}"))?;
        if matches(&event) {
            return Ok((payload, event));
        }
    }
}

fn assert_canonical(payload: &str, event: &serde_json::Value, tenant: &str, agent: &TestClient) {
    assert!(
        !payload.contains(char::is_whitespace),
        "no insignificant whitespace: {payload}"
    );
    assert_eq!(event["tenant"], tenant, "{payload}");
    assert_eq!(event["agentId"], agent.id.as_str(), "{payload}");
    assert!(
        event["time"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z') && time.contains('T')),
        "RFC 3339 UTC time: {payload}"
    );
    for absent in ["agent_id", "grantId", "policyVersion", "credentialId"] {
        assert!(
            event.get(absent).is_none(),
            "`{absent}` must not be there: {payload}"
        );
    }
}

#[tokio::test]
async fn invalidation_events_announce_suspensions_and_revoked_tokens() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let suspended = default_client(&cluster, &admin, "to-suspend").await?;
    let holder = default_client(&cluster, &admin, "token-holder").await?;
    let token = get_token(&cluster, &suspended, &[]).await?;
    let doomed_token = get_token(&cluster, &holder, &[]).await?;

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

    suspend(&cluster, &admin, &suspended.id).await?;
    // The database path works with or without Redis.
    assert!(!is_active(&cluster, &admin, &token).await?);
    let response = revoke_raw(&cluster, &bearer(&admin), &doomed_token).await?;
    assert_eq!(response.status, 200);
    assert!(!is_active(&cluster, &admin, &doomed_token).await?);

    let Some(pubsub) = pubsub.as_mut() else {
        // No Redis in this run: nothing is published, nothing else to check.
        return cluster.shutdown().await;
    };
    let (payload, event) = next_invalidation(pubsub, |event| {
        event["kind"] == "INVALIDATION_KIND_AGENT_SUSPENDED"
            && event["agentId"] == suspended.id.as_str()
    })
    .await?;
    assert_canonical(&payload, &event, "acme", &suspended);
    assert!(event.get("tokenJti").is_none(), "{payload}");

    let jti = unverified_claims(&doomed_token)?["jti"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (payload, event) = next_invalidation(pubsub, |event| {
        event["kind"] == "INVALIDATION_KIND_TOKEN_REVOKED"
    })
    .await?;
    assert_canonical(&payload, &event, "acme", &holder);
    assert_eq!(event["tokenJti"], jti.as_str(), "{payload}");
    assert_eq!(
        event["issuer"],
        cluster.issuer(Service::Identity).as_str(),
        "{payload}"
    );
    assert!(
        event["tokenExpireTime"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z')),
        "{payload}"
    );
    cluster.shutdown().await
}
