//! exchange-svc's RFC 8693 token exchange, over gRPC and HTTP: a person's
//! token plus an agent's token become a delegated token (`sub` = person,
//! nested `act`), a second agent goes one hop deeper, scopes and lifetimes
//! only shrink, `may_act` and grants authorize, policy-svc decides, and
//! revoking a grant or suspending an agent makes every token derived
//! through it inactive at once. Bad input is refused with its RFC error and
//! issues nothing.

use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use agentsec_integration_tests::audit_trail::agent_events;
use agentsec_integration_tests::cluster::{
    TEST_IMPERSONATION_TARGET, TEST_OTHER_TARGET, TEST_TARGET,
};
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{eventually, with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::{Effect, Outcome};
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::{
    ExchangeRequest, ExchangeResponse, Grant, IntrospectTokenRequest,
};
use agentsec_proto::policy::v1::{CheckTokenRequest, PolicySet};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use tonic::Code;

use crate::exchange_grants::{
    claims, create, key, now, person_token, revoke, timestamp, Client, ASYNC_DEADLINE,
};
use crate::identity_http::suspend;
use crate::identity_support::{get_token, test_client, unverified_claims, TestClient};
use crate::policy_sets::{policy, put, rule};

const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SCOPES: &[&str] = &["repo:read", "repo:write", "repo:admin"];

/// A cluster with a `token:exchange` policy for tenant `acme` and two
/// agents able to present actor tokens to exchange-svc.
pub(crate) struct Fixture {
    pub(crate) cluster: TestCluster,
    pub(crate) admin: String,
    pub(crate) exchange: Client,
    pub(crate) a: TestClient,
    pub(crate) b: TestClient,
}

/// Exchanges are allowed for any audience except [`TEST_OTHER_TARGET`], and
/// for every `repo:` scope except `repo:admin`.
pub(crate) fn exchange_policy() -> PolicySet {
    let mut deny_other = rule(
        "no-other-api",
        Effect::Deny,
        "*",
        "audience:*",
        "token:exchange",
    );
    deny_other.audience = TEST_OTHER_TARGET.to_owned();
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
            any_audience,
            rule(
                "repo-scopes",
                Effect::Allow,
                "*",
                "scope:repo:*",
                "token:exchange",
            ),
            rule(
                "no-admin-scope",
                Effect::Deny,
                "*",
                "scope:repo:admin",
                "token:exchange",
            ),
            deny_other,
        ],
        ..PolicySet::default()
    }
}

impl Fixture {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        Self::on(TestCluster::start().await?).await
    }

    /// The fixture on a cluster started by the caller.
    pub(crate) async fn on(cluster: TestCluster) -> anyhow::Result<Self> {
        let admin = cluster.admin_token().await?;
        let exchange_issuer = cluster.issuer(Service::Exchange);
        let a = test_client(
            &cluster,
            &admin,
            "acme",
            "agent-a",
            &[&exchange_issuer],
            SCOPES,
        )
        .await?;
        let b = test_client(
            &cluster,
            &admin,
            "acme",
            "agent-b",
            &[&exchange_issuer],
            SCOPES,
        )
        .await?;
        let mut policy_client = policy(&cluster).await?;
        put(&mut policy_client, &admin, "acme", exchange_policy()).await?;
        let exchange = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
        Ok(Self {
            cluster,
            admin,
            exchange,
            a,
            b,
        })
    }

    pub(crate) fn exchange_issuer(&self) -> String {
        self.cluster.issuer(Service::Exchange)
    }

    /// An actor token of `agent` for exchange-svc (all its ceiling scopes).
    pub(crate) async fn actor_token(&self, agent: &TestClient) -> anyhow::Result<String> {
        get_token(
            &self.cluster,
            agent,
            &[("audience", &self.exchange_issuer())],
        )
        .await
    }

    /// alice's grant to `agent` for [`TEST_TARGET`], [`TEST_OTHER_TARGET`],
    /// the impersonation target and further delegation.
    pub(crate) async fn grant(
        &mut self,
        person: &str,
        agent: &str,
        scopes: &[&str],
        depth: u32,
    ) -> anyhow::Result<Grant> {
        let audiences = vec![
            TEST_TARGET.to_owned(),
            TEST_OTHER_TARGET.to_owned(),
            TEST_IMPERSONATION_TARGET.to_owned(),
            self.exchange_issuer(),
        ];
        Ok(create(
            &mut self.exchange,
            &person_token(person)?,
            Grant {
                agent_id: agent.to_owned(),
                audiences,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expire_time: Some(timestamp(now() + 3600)),
                max_chain_depth: depth,
                purpose: "work on my repositories".to_owned(),
                ..Grant::default()
            },
        )
        .await?)
    }

    pub(crate) async fn exchange(
        &mut self,
        request: ExchangeRequest,
    ) -> Result<ExchangeResponse, tonic::Status> {
        self.exchange
            .exchange(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn introspect(
        &mut self,
        token: &str,
    ) -> anyhow::Result<agentsec_proto::exchange::v1::IntrospectTokenResponse> {
        let admin = self.admin.clone();
        self.introspect_as(token, &admin).await
    }

    /// gRPC introspection of `token`, asked with `caller`'s bearer token.
    async fn introspect_as(
        &mut self,
        token: &str,
        caller: &str,
    ) -> anyhow::Result<agentsec_proto::exchange::v1::IntrospectTokenResponse> {
        Ok(self
            .exchange
            .introspect_token(with_bearer(
                IntrospectTokenRequest {
                    token: token.to_owned(),
                    token_type_hint: String::new(),
                },
                caller,
            ))
            .await?
            .into_inner())
    }

    async fn http_introspect(&self, token: &str) -> anyhow::Result<serde_json::Value> {
        self.http_introspect_as(token, &self.admin).await
    }

    /// RFC 7662 introspection of `token`, asked with `caller`'s bearer token.
    async fn http_introspect_as(
        &self,
        token: &str,
        caller: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let bearer = format!("Bearer {caller}");
        let response = http::post_form(
            self.cluster.addr(Service::Exchange),
            "/oauth2/introspect",
            &[("Authorization", bearer.as_str())],
            &[("token", token)],
        )
        .await?;
        if response.status != 200 {
            bail!("introspection answered {}", response.status);
        }
        response.json()
    }
}

pub(crate) fn request(subject: &str, actor: &str, audience: &str, scope: &str) -> ExchangeRequest {
    ExchangeRequest {
        subject_token: subject.to_owned(),
        subject_token_type: JWT.to_owned(),
        actor_token: actor.to_owned(),
        actor_token_type: ACCESS_TOKEN.to_owned(),
        audience: vec![audience.to_owned()],
        scope: scope.to_owned(),
        ..ExchangeRequest::default()
    }
}

/// The OAuth code at the start of a refused exchange's gRPC message.
fn refused(
    result: Result<ExchangeResponse, tonic::Status>,
    code: Code,
    error: &str,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => bail!("{what}: a token was issued"),
        Err(status) => {
            if status.code() != code || !status.message().starts_with(&format!("{error}:")) {
                bail!(
                    "{what}: expected {code:?} {error}, got {:?} {}",
                    status.code(),
                    status.message()
                );
            }
            Ok(())
        }
    }
}

#[tokio::test]
async fn exchange_chains_person_agent_agent_with_nested_act_and_only_shrinks() -> anyhow::Result<()>
{
    let mut fx = Fixture::start().await?;
    let (a_id, b_id) = (fx.a.agent.id.clone(), fx.b.agent.id.clone());
    let grant = fx
        .grant(
            "alice",
            &a_id,
            &["repo:read", "repo:write", "repo:admin"],
            2,
        )
        .await?;
    let person = person_token("alice")?;
    let person_exp = unverified_claims(&person)?["exp"].as_i64().context("exp")?;
    let actor_a = fx.actor_token(&fx.a.clone()).await?;
    let actor_b = fx.actor_token(&fx.b.clone()).await?;
    let exchange_issuer = fx.exchange_issuer();
    let identity_issuer = fx.cluster.issuer(Service::Identity);

    // Hop 1: alice -> A, a token for further delegation.
    let first = fx
        .exchange(request(
            &person,
            &actor_a,
            &exchange_issuer,
            "repo:read repo:write",
        ))
        .await?;
    assert_eq!(first.token_type, "Bearer");
    assert_eq!(first.issued_token_type, ACCESS_TOKEN);
    assert_eq!(first.scope, "repo:read repo:write");
    let t1 = unverified_claims(&first.access_token)?;
    assert_eq!(t1["iss"], exchange_issuer.as_str());
    assert_eq!(t1["sub"], "alice");
    assert_eq!(t1["aud"], exchange_issuer.as_str());
    assert_eq!(t1["azp"], a_id.as_str());
    assert_eq!(t1["tenant"], "acme");
    assert_eq!(t1["grant_id"], grant.id.as_str());
    assert_eq!(t1["act"], json!({"sub": a_id, "iss": identity_issuer}));
    assert!(
        t1["exp"].as_i64().context("exp")? <= person_exp,
        "never outlives the person token"
    );
    assert!(first.expires_in > 0 && first.expires_in <= 600);

    // Hop 2: A's token -> B, for the target; no scope asked = what is left.
    let second = fx
        .exchange(request(&first.access_token, &actor_b, TEST_TARGET, ""))
        .await?;
    assert_eq!(
        second.scope, "repo:read repo:write",
        "never widened to the grant's repo:admin"
    );
    let t2 = unverified_claims(&second.access_token)?;
    assert_eq!(t2["sub"], "alice");
    assert_eq!(t2["aud"], TEST_TARGET);
    assert_eq!(t2["azp"], b_id.as_str());
    assert_eq!(t2["grant_id"], grant.id.as_str());
    assert_eq!(
        t2["act"],
        json!({"sub": b_id, "iss": identity_issuer, "act": {"sub": a_id, "iss": identity_issuer}})
    );
    assert!(
        t2["exp"].as_i64() <= t1["exp"].as_i64(),
        "lifetimes only shrink"
    );

    // Asking beyond the subject token is invalid_scope, never narrowed.
    refused(
        fx.exchange(request(
            &first.access_token,
            &actor_b,
            TEST_TARGET,
            "repo:read repo:admin",
        ))
        .await,
        Code::PermissionDenied,
        "invalid_scope",
        "scope beyond the subject token",
    )?;
    // A third agent would exceed the grant's max_chain_depth of 2.
    let c = test_client(
        &fx.cluster,
        &fx.admin,
        "acme",
        "agent-c",
        &[&exchange_issuer],
        SCOPES,
    )
    .await?;
    let actor_c = fx.actor_token(&c).await?;
    let for_delegation = fx
        .exchange(request(
            &first.access_token,
            &actor_b,
            &exchange_issuer,
            "repo:read",
        ))
        .await?;
    refused(
        fx.exchange(request(
            &for_delegation.access_token,
            &actor_c,
            TEST_TARGET,
            "",
        ))
        .await,
        Code::PermissionDenied,
        "invalid_grant",
        "chain deeper than the grant",
    )?;
    // A token for the target is not a subject token for another agent.
    refused(
        fx.exchange(request(&second.access_token, &actor_c, TEST_TARGET, ""))
            .await,
        Code::InvalidArgument,
        "invalid_request",
        "subject token for another audience",
    )?;

    // Introspection shows the whole chain and the grant.
    let introspected = fx.introspect(&second.access_token).await?;
    assert!(introspected.active);
    assert_eq!(introspected.sub, "alice");
    assert_eq!(introspected.client_id, b_id);
    assert_eq!(introspected.grant_id, grant.id);
    let chain: Vec<String> = introspected
        .act
        .unwrap_or_default()
        .actors
        .into_iter()
        .map(|a| a.agent_id)
        .collect();
    assert_eq!(chain, [b_id.clone(), a_id.clone()]);
    let over_http = fx.http_introspect(&second.access_token).await?;
    assert_eq!(over_http["active"], true);
    assert_eq!(over_http["act"]["act"]["sub"], a_id.as_str());
    assert_eq!(over_http["grant_id"], grant.id.as_str());
    // An agent of the token's tenant sees it; one of another tenant learns
    // nothing of acme's person and agents: not active, over gRPC and HTTP.
    let insider = fx.actor_token(&fx.a).await?;
    assert!(
        fx.introspect_as(&second.access_token, &insider)
            .await?
            .active
    );
    let outsider = test_client(
        &fx.cluster,
        &fx.admin,
        "globex",
        "outsider",
        &[TEST_TARGET],
        SCOPES,
    )
    .await?;
    let outsider = get_token(&fx.cluster, &outsider, &[("audience", TEST_TARGET)]).await?;
    let hidden = fx.introspect_as(&second.access_token, &outsider).await?;
    assert_eq!(
        hidden,
        agentsec_proto::exchange::v1::IntrospectTokenResponse::default(),
        "another tenant's agent: active=false and nothing else"
    );
    assert_eq!(
        fx.http_introspect_as(&second.access_token, &outsider)
            .await?,
        json!({"active": false})
    );

    // policy-svc's token check: the delegated token is the person and the
    // chain at its own audience, and is refused when replayed elsewhere.
    let mut policy_client = policy(&fx.cluster).await?;
    let check = |audience: &str| CheckTokenRequest {
        token: second.access_token.clone(),
        audience: audience.to_owned(),
        action: "token:exchange".to_owned(),
        resource: Some(agentsec_proto::common::v1::Resource {
            r#type: "audience".to_owned(),
            id: "audience:x".to_owned(),
            ..Default::default()
        }),
        context: None,
    };
    let at_target = policy_client
        .check_token(check(TEST_TARGET))
        .await?
        .into_inner();
    assert_eq!(
        at_target.decision.unwrap_or_default().effect,
        Effect::Allow as i32
    );
    let principal = at_target.principal.unwrap_or_default();
    assert_eq!(principal.person_subject, "alice");
    assert_eq!(principal.agent_id, b_id);
    let replayed = policy_client
        .check_token(check("https://elsewhere.test"))
        .await?
        .into_inner();
    assert_eq!(
        replayed.decision.unwrap_or_default().effect,
        Effect::Deny as i32
    );

    // Every exchange is audited with the person, the chain and the decision.
    let events = agent_events(&fx.cluster, &b_id, &["token.exchanged"], ASYNC_DEADLINE).await?;
    let issued = events
        .iter()
        .filter_map(|stored| stored.event.as_ref())
        .find(|event| {
            event.kind == "token.exchanged"
                && event.outcome == Outcome::Allow as i32
                && event.audience == TEST_TARGET
        })
        .context("no audit event for the second hop")?;
    assert_eq!(issued.person_subject, "alice");
    assert_eq!(issued.action, "token:exchange");
    assert!(
        issued.decision_id.starts_with("dec_"),
        "{}",
        issued.decision_id
    );
    assert_eq!(issued.policy_ids, ["exchange"]);
    let audited_chain: Vec<&str> = issued
        .actor_chain
        .as_ref()
        .context("chain")?
        .actors
        .iter()
        .map(|a| a.agent_id.as_str())
        .collect();
    assert_eq!(audited_chain, [b_id.as_str(), a_id.as_str()]);
    assert_eq!(issued.attributes.get("grant_id"), Some(&grant.id));
    assert_eq!(
        issued.attributes.get("scope_issued").map(String::as_str),
        Some("repo:read repo:write")
    );
    let refusals = events
        .iter()
        .filter_map(|stored| stored.event.as_ref())
        .filter(|event| event.kind == "token.exchanged" && event.outcome == Outcome::Deny as i32)
        .count();
    assert!(refusals >= 1, "refused exchanges are audited too");
    fx.cluster.shutdown().await
}

#[tokio::test]
async fn exchange_revoked_grant_or_suspended_agent_deactivates_derived_tokens() -> anyhow::Result<()>
{
    let mut fx = Fixture::start().await?;
    let (a_id, b_id) = (fx.a.agent.id.clone(), fx.b.agent.id.clone());
    let grant = fx.grant("alice", &a_id, &["repo:read"], 2).await?;
    let person = person_token("alice")?;
    let actor_a = fx.actor_token(&fx.a.clone()).await?;
    let actor_b = fx.actor_token(&fx.b.clone()).await?;
    let exchange_issuer = fx.exchange_issuer();
    let t1 = fx
        .exchange(request(&person, &actor_a, &exchange_issuer, ""))
        .await?
        .access_token;
    let t2 = fx
        .exchange(request(&t1, &actor_b, TEST_TARGET, ""))
        .await?
        .access_token;
    assert!(fx.introspect(&t1).await?.active);
    assert!(fx.introspect(&t2).await?.active);

    // Suspending B: B's token is inactive as soon as the call returns, and
    // so is B's actor token; A's token is not affected.
    suspend(&fx.cluster, &fx.admin, &b_id).await?;
    assert!(
        !fx.introspect(&t2).await?.active,
        "derived through a suspended agent"
    );
    assert!(fx.introspect(&t1).await?.active);
    refused(
        fx.exchange(request(&t1, &actor_b, TEST_TARGET, "")).await,
        Code::InvalidArgument,
        "invalid_request",
        "suspended actor",
    )?;

    // Revoking the grant: every token issued under it is inactive at once,
    // and no new one is issued.
    revoke(&mut fx.exchange, &person, &grant.id, "done").await?;
    assert!(
        !fx.introspect(&t1).await?.active,
        "issued under a revoked grant"
    );
    let over_http = fx.http_introspect(&t1).await?;
    assert_eq!(over_http, json!({"active": false}));
    refused(
        fx.exchange(request(&person, &actor_a, TEST_TARGET, ""))
            .await,
        Code::PermissionDenied,
        "invalid_grant",
        "revoked grant",
    )?;

    // An expired grant authorizes nothing (polled: the grant lives 2 s).
    let short = create(
        &mut fx.exchange,
        &person,
        Grant {
            agent_id: a_id.clone(),
            audiences: vec![TEST_TARGET.to_owned()],
            scopes: vec!["repo:read".to_owned()],
            expire_time: Some(timestamp(now() + 2)),
            max_chain_depth: 1,
            purpose: "a moment".to_owned(),
            ..Grant::default()
        },
    )
    .await?;
    let issued = fx
        .exchange(request(&person, &actor_a, TEST_TARGET, ""))
        .await?;
    assert!(issued.expires_in <= 2, "never outlives the grant");
    let status = eventually(
        &format!("grant {} refused after it expired", short.id),
        ASYNC_DEADLINE,
        || {
            let mut exchange = fx.exchange.clone();
            let request = request(&person, &actor_a, TEST_TARGET, "");
            async move { Ok(exchange.exchange(request).await.err()) }
        },
    )
    .await?;
    assert!(
        status.message().starts_with("invalid_grant:"),
        "{}",
        status.message()
    );
    fx.cluster.shutdown().await
}

fn sign_person(key: &SigningKey, claims: serde_json::Value) -> anyhow::Result<String> {
    Ok(key.sign("JWT", &claims)?)
}

/// A token with header `header` and claims `claims`, signed with `secret`
/// as HMAC-SHA256 (or unsigned for `alg: none`).
fn hand_made(header: serde_json::Value, claims: &serde_json::Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn exchange_over_http_refuses_every_bad_input_and_honours_may_act() -> anyhow::Result<()> {
    let mut fx = Fixture::start().await?;
    let (a_id, b_id) = (fx.a.agent.id.clone(), fx.b.agent.id.clone());
    fx.grant(
        "alice",
        &a_id,
        &["repo:read", "repo:write", "repo:admin"],
        1,
    )
    .await?;
    fx.grant("bob", &b_id, &["repo:read"], 1).await?;
    let person = person_token("alice")?;
    let actor_a = fx.actor_token(&fx.a.clone()).await?;
    let actor_b = fx.actor_token(&fx.b.clone()).await?;

    let params =
        |subject: &str, actor: &str, audience: &str, scope: &str| -> Vec<(String, String)> {
            vec![
                ("grant_type".into(), TOKEN_EXCHANGE.into()),
                ("subject_token".into(), subject.into()),
                ("subject_token_type".into(), JWT.into()),
                ("actor_token".into(), actor.into()),
                ("actor_token_type".into(), ACCESS_TOKEN.into()),
                ("audience".into(), audience.into()),
                ("scope".into(), scope.into()),
            ]
        };
    let send = |params: Vec<(String, String)>| {
        let addr = fx.cluster.addr(Service::Exchange);
        async move {
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            http::post_form(addr, "/oauth2/token", &[], &pairs).await
        }
    };
    let expect = |response: HttpResponse, error: &str, what: &str| -> anyhow::Result<()> {
        let body = response.json()?;
        if response.status != 400 || body["error"] != error {
            bail!(
                "{what}: expected 400 {error}, got {} {body}",
                response.status
            );
        }
        if body.get("access_token").is_some() {
            bail!("{what}: a token was issued");
        }
        Ok(())
    };

    // The happy path over HTTP, RFC 8693 §2.2.1 response, no caching.
    let ok = send(params(&person, &actor_a, TEST_TARGET, "repo:read")).await?;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let body = ok.json()?;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(body["scope"], "repo:read");

    // Subject tokens that are not a trusted person's valid token.
    let k = key()?;
    let foreign = SigningKey::generate(SigningAlgorithm::EdDsa)?;
    let jwk = serde_json::to_value(k.public_jwk())?;
    let base = claims("alice", json!({"tenant": "acme"}));
    let bad_subjects = [
        (
            "expired",
            sign_person(k, claims("alice", json!({"exp": now() - 600})))?,
        ),
        (
            "not yet valid",
            sign_person(k, claims("alice", json!({"nbf": now() + 600})))?,
        ),
        (
            "another audience",
            sign_person(k, claims("alice", json!({"aud": "someone-else"})))?,
        ),
        (
            "untrusted issuer",
            sign_person(
                &foreign,
                claims("alice", json!({"iss": "https://evil.test"})),
            )?,
        ),
        (
            "trusted issuer, unknown key",
            sign_person(&foreign, base.clone())?,
        ),
        (
            "alg none",
            hand_made(json!({"alg": "none", "kid": k.kid()}), &base, ""),
        ),
        (
            "HMAC with the public key",
            hand_made(
                json!({"alg": "HS256", "kid": k.kid()}),
                &base,
                &URL_SAFE_NO_PAD.encode(jwk.to_string()),
            ),
        ),
        ("tampered", {
            let token = person_token("alice")?;
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] =
                URL_SAFE_NO_PAD.encode(claims("mallory", json!({"tenant": "acme"})).to_string());
            parts.join(".")
        }),
        ("oversized", "x".repeat(8 * 1024 + 1)),
        ("an agent's own token", actor_b.clone()),
    ];
    for (what, subject) in bad_subjects {
        expect(
            send(params(&subject, &actor_a, TEST_TARGET, "")).await?,
            "invalid_request",
            what,
        )?;
    }
    // Actor tokens that are missing, not identity-svc's, or for elsewhere.
    let mut without_actor = params(&person, &actor_a, TEST_TARGET, "");
    without_actor.retain(|(name, _)| !name.starts_with("actor_token"));
    expect(
        send(without_actor).await?,
        "invalid_request",
        "no actor token: never impersonation",
    )?;
    let elsewhere = get_token(
        &fx.cluster,
        &fx.a,
        &[("audience", &fx.exchange_issuer()), ("scope", "repo:read")],
    )
    .await?;
    expect(
        send(params(&person, &person, TEST_TARGET, "")).await?,
        "invalid_request",
        "a person token as actor",
    )?;
    expect(
        send(params(&person, &format!("{elsewhere}x"), TEST_TARGET, "")).await?,
        "invalid_request",
        "tampered actor",
    )?;

    // Targets: unknown, or more than one.
    expect(
        send(params(&person, &actor_a, "https://unknown.test", "")).await?,
        "invalid_target",
        "unknown audience",
    )?;
    let mut two = params(&person, &actor_a, TEST_TARGET, "");
    two.push(("resource".into(), TEST_OTHER_TARGET.into()));
    expect(send(two).await?, "invalid_target", "two targets")?;
    // Scopes: beyond the grant, or denied by policy.
    expect(
        send(params(&person, &actor_a, TEST_TARGET, "issues:write")).await?,
        "invalid_scope",
        "beyond the grant",
    )?;
    expect(
        send(params(&person, &actor_a, TEST_TARGET, "repo:admin")).await?,
        "invalid_scope",
        "denied by policy",
    )?;
    // No scope asked: everything the grant and policy allow, never repo:admin.
    let all = send(params(&person, &actor_a, TEST_TARGET, ""))
        .await?
        .json()?;
    assert_eq!(all["scope"], "repo:read repo:write");
    // Policy denies the exchange for this audience.
    expect(
        send(params(&person, &actor_a, TEST_OTHER_TARGET, "")).await?,
        "unauthorized_client",
        "policy deny",
    )?;
    // bob's grant is to B, not for alice: B has no grant of alice.
    expect(
        send(params(&person, &actor_b, TEST_TARGET, "")).await?,
        "invalid_grant",
        "a grant of another person",
    )?;
    let mut wrong_grant = params(&person, &actor_a, TEST_TARGET, "");
    wrong_grant[0].1 = "client_credentials".into();
    expect(
        send(wrong_grant).await?,
        "unsupported_grant_type",
        "another grant type",
    )?;

    // may_act: naming B lets B act for alice without a grant; naming
    // someone else refuses A even though A has a grant.
    let may_act_b = sign_person(
        k,
        claims("alice", json!({"tenant": "acme", "may_act": {"sub": b_id}})),
    )?;
    let by_may_act = send(params(&may_act_b, &actor_b, TEST_TARGET, "repo:read")).await?;
    assert_eq!(
        by_may_act.status,
        200,
        "{}",
        String::from_utf8_lossy(&by_may_act.body)
    );
    let token = by_may_act.json()?["access_token"]
        .as_str()
        .context("token")?
        .to_owned();
    let claims_b = unverified_claims(&token)?;
    assert_eq!(claims_b["act"]["sub"], b_id.as_str());
    assert!(claims_b.get("grant_id").is_none(), "may_act, not a grant");
    expect(
        send(params(&may_act_b, &actor_a, TEST_TARGET, "")).await?,
        "invalid_request",
        "may_act names another agent",
    )?;

    // Impersonation is only for the target configured for it: no `act`.
    let impersonation = send(params(
        &person,
        &actor_a,
        TEST_IMPERSONATION_TARGET,
        "repo:read",
    ))
    .await?
    .json()?;
    let claims_i = unverified_claims(impersonation["access_token"].as_str().context("token")?)?;
    assert!(claims_i.get("act").is_none());
    assert_eq!(claims_i["azp"], a_id.as_str());
    assert_eq!(claims_i["sub"], "alice");

    // RFC 8414 metadata.
    let metadata = http::get(
        fx.cluster.addr(Service::Exchange),
        "/.well-known/oauth-authorization-server",
    )
    .await?
    .json()?;
    assert_eq!(metadata["issuer"], fx.exchange_issuer().as_str());
    assert_eq!(metadata["grant_types_supported"], json!([TOKEN_EXCHANGE]));
    assert_eq!(
        metadata["introspection_endpoint"],
        format!("{}/oauth2/introspect", fx.exchange_issuer())
    );
    // Introspection needs a caller.
    let anonymous = http::post_form(
        fx.cluster.addr(Service::Exchange),
        "/oauth2/introspect",
        &[],
        &[("token", &token)],
    )
    .await?;
    assert_eq!(anonymous.status, 401);
    assert_eq!(fx.introspect(&token).await?.sub, "alice");
    fx.cluster.shutdown().await
}

/// Gives every span of this test process an OpenTelemetry context (no
/// exporter), as a service's telemetry does; installed once.
fn spans_with_trace_ids() {
    use tracing_subscriber::layer::SubscriberExt as _;
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        let tracers = agentsec_common::telemetry::Tracers::local();
        let subscriber = tracing_subscriber::registry().with(tracers.layer());
        // Another test may have installed one first; the test then fails
        // below rather than here.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

#[tokio::test]
async fn exchange_audit_event_and_its_policy_decision_share_the_callers_trace() -> anyhow::Result<()>
{
    spans_with_trace_ids();
    const TRACE_ID: &str = "5af7183fc1d7d1a9b0e2c4f6a8b0d2e4";
    let mut fx = Fixture::start().await?;
    let a_id = fx.a.agent.id.clone();
    fx.grant("alice", &a_id, &["repo:read"], 1).await?;
    let actor = fx.actor_token(&fx.a.clone()).await?;
    let mut traced = tonic::Request::new(request(
        &person_token("alice")?,
        &actor,
        TEST_TARGET,
        "repo:read",
    ));
    traced.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-b7ad6b7169203331-01").parse()?,
    );
    fx.exchange.exchange(traced).await?;

    let events = agent_events(
        &fx.cluster,
        &a_id,
        &["token.exchanged", "decision"],
        ASYNC_DEADLINE,
    )
    .await?;
    let traced_kinds: Vec<&str> = events
        .iter()
        .filter_map(|stored| stored.event.as_ref())
        .filter(|event| event.trace_id == TRACE_ID)
        .map(|event| event.kind.as_str())
        .collect();
    assert!(
        traced_kinds.contains(&"token.exchanged"),
        "{traced_kinds:?}"
    );
    assert!(
        traced_kinds
            .iter()
            .filter(|kind| **kind == "decision")
            .count()
            >= 2,
        "the exchange's policy decisions (audience and scope) carry its trace: {traced_kinds:?}"
    );
    fx.cluster.shutdown().await
}
