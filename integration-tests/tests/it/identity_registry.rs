//! identity-svc's registry over gRPC: registration with validation, reads,
//! filtered and paged listing, updates, the suspend/reactivate/revoke
//! lifecycle, admin authorization (global and tenant-scoped) and the
//! credentials of an agent (client secrets, public keys).
//!
//! The helpers at the top are shared with `identity_tokens` and
//! `identity_http`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentsec_common::keys;
use agentsec_integration_tests::cluster::ADMIN_AUDIENCE;
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::{Jwk, PageRequest};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    credential, AddPublicKeyRequest, Agent, AgentStatus, Ceiling, CreateClientSecretRequest,
    CreateClientSecretResponse, CredentialType, DeleteCredentialRequest, GetAgentRequest,
    ListAgentsRequest, ListCredentialsRequest, ReactivateAgentRequest, RegisterAgentRequest,
    RevokeAgentRequest, SuspendAgentRequest, UpdateAgentRequest,
};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sea_orm::ConnectionTrait;
use tonic::transport::Channel;
use tonic::{Code, Status};

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The owner of every test agent unless a test says otherwise.
pub(crate) const OWNER: &str = "alice@example.com";
/// The audience most test agents get tokens for.
pub(crate) const AUDIENCE: &str = "mcp:github";
/// The scopes of most test agents' ceilings.
pub(crate) const SCOPES: &[&str] = &["repo:read", "repo:write"];
/// The scope that makes a token an admin token.
pub(crate) const ADMIN_SCOPE: &str = "agentsec:admin";
/// How long to wait for something asynchronous (audit delivery, pub/sub).
pub(crate) const ASYNC_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) type Identity = IdentityServiceClient<Channel>;

/// A gRPC client of the cluster's identity-svc.
pub(crate) async fn identity(cluster: &TestCluster) -> anyhow::Result<Identity> {
    Ok(IdentityServiceClient::new(
        cluster.channel(Service::Identity).await?,
    ))
}

/// A valid agent (not yet registered).
pub(crate) fn new_agent(tenant: &str, name: &str, audiences: &[&str], scopes: &[&str]) -> Agent {
    Agent {
        tenant: tenant.to_owned(),
        owner: OWNER.to_owned(),
        name: name.to_owned(),
        description: format!("test agent {name}"),
        model: "claude-sonnet-4".to_owned(),
        provider: "anthropic".to_owned(),
        attributes: HashMap::from([("project".to_owned(), "apollo".to_owned())]),
        ceiling: Some(Ceiling {
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        }),
        ..Agent::default()
    }
}

/// Registers `agent` as `admin` and returns it as stored.
pub(crate) async fn register(
    cluster: &TestCluster,
    admin: &str,
    agent: Agent,
) -> anyhow::Result<Agent> {
    identity(cluster)
        .await?
        .register_agent(with_bearer(
            RegisterAgentRequest { agent: Some(agent) },
            admin,
        ))
        .await?
        .into_inner()
        .agent
        .context("RegisterAgent answered without an agent")
}

/// Creates a client secret for `agent_id` as `admin`.
pub(crate) async fn create_secret(
    cluster: &TestCluster,
    admin: &str,
    agent_id: &str,
) -> anyhow::Result<CreateClientSecretResponse> {
    Ok(identity(cluster)
        .await?
        .create_client_secret(with_bearer(
            CreateClientSecretRequest {
                agent_id: agent_id.to_owned(),
                ..CreateClientSecretRequest::default()
            },
            admin,
        ))
        .await?
        .into_inner())
}

/// A registered agent with one client secret.
#[derive(Debug, Clone)]
pub(crate) struct TestClient {
    pub agent: Agent,
    pub id: String,
    pub secret: String,
    pub credential_id: String,
}

/// Registers an agent and gives it a client secret.
pub(crate) async fn test_client(
    cluster: &TestCluster,
    admin: &str,
    tenant: &str,
    name: &str,
    audiences: &[&str],
    scopes: &[&str],
) -> anyhow::Result<TestClient> {
    let agent = register(cluster, admin, new_agent(tenant, name, audiences, scopes)).await?;
    let created = create_secret(cluster, admin, &agent.id).await?;
    Ok(TestClient {
        id: created.client_id,
        secret: created.client_secret,
        credential_id: created.credential.unwrap_or_default().id,
        agent,
    })
}

/// The usual test client: tenant `acme`, audience [`AUDIENCE`], [`SCOPES`].
pub(crate) async fn default_client(
    cluster: &TestCluster,
    admin: &str,
    name: &str,
) -> anyhow::Result<TestClient> {
    test_client(cluster, admin, "acme", name, &[AUDIENCE], SCOPES).await
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
pub(crate) fn basic(client_id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(secret)
        ))
    )
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub(crate) fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A form body from pairs, keeping duplicates (for raw requests).
pub(crate) fn form_body(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(key, value)| format!("{}={}", form_encode(key), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `POST /oauth2/token` with form parameters.
pub(crate) async fn token_endpoint(
    cluster: &TestCluster,
    headers: &[(&str, &str)],
    params: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    http::post_form(
        cluster.addr(Service::Identity),
        "/oauth2/token",
        headers,
        params,
    )
    .await
}

/// client_credentials with client_secret_post plus `extra` parameters;
/// fails unless the answer is 200. Returns the whole JSON answer.
pub(crate) async fn token_response(
    cluster: &TestCluster,
    client: &TestClient,
    extra: &[(&str, &str)],
) -> anyhow::Result<serde_json::Value> {
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client.id.as_str()),
        ("client_secret", client.secret.as_str()),
    ];
    params.extend_from_slice(extra);
    let response = token_endpoint(cluster, &[], &params).await?;
    if response.status != 200 {
        bail!(
            "token request refused: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    response.json()
}

/// An access token for `client` (client_secret_post, `extra` parameters).
pub(crate) async fn get_token(
    cluster: &TestCluster,
    client: &TestClient,
    extra: &[(&str, &str)],
) -> anyhow::Result<String> {
    let json = token_response(cluster, client, extra).await?;
    json["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the token response")
}

/// A token with audience `agentsec` (for calls to AgentSec itself).
pub(crate) async fn agentsec_token(
    cluster: &TestCluster,
    client: &TestClient,
    scope: &str,
) -> anyhow::Result<String> {
    get_token(
        cluster,
        client,
        &[("audience", ADMIN_AUDIENCE), ("scope", scope)],
    )
    .await
}

/// The JWKS published at `/.well-known/jwks.json`.
pub(crate) async fn published_jwks(cluster: &TestCluster) -> anyhow::Result<keys::Jwks> {
    let response = http::get(cluster.addr(Service::Identity), "/.well-known/jwks.json").await?;
    assert_eq!(response.status, 200);
    Ok(serde_json::from_slice(&response.body)?)
}

/// Verifies an access token of identity-svc against its published JWKS
/// (EdDSA, `kid` in the header, issuer, audience, exp/nbf) and returns the
/// claims.
pub(crate) async fn verify_access_token(
    cluster: &TestCluster,
    token: &str,
    audience: &str,
) -> anyhow::Result<serde_json::Value> {
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let kid = header.kid.context("the access token header has no kid")?;
    let jwks = published_jwks(cluster).await?;
    assert!(jwks.find(&kid).is_some(), "kid `{kid}` is not published");
    // jsonwebtoken's own checks, independent of AgentSec's verifier.
    let key = jwks.find(&kid).context("published above")?.decoding_key()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&[cluster.issuer(Service::Identity)]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    Ok(jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)?.claims)
}

/// `POST /oauth2/introspect` as the caller named by `authorization`;
/// fails unless the answer is 200.
pub(crate) async fn introspect(
    cluster: &TestCluster,
    authorization: &str,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    let response = introspect_raw(cluster, authorization, token).await?;
    if response.status != 200 {
        bail!(
            "introspection answered {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    response.json()
}

/// `POST /oauth2/introspect`, any answer.
pub(crate) async fn introspect_raw(
    cluster: &TestCluster,
    authorization: &str,
    token: &str,
) -> anyhow::Result<HttpResponse> {
    let headers: Vec<(&str, &str)> = if authorization.is_empty() {
        Vec::new()
    } else {
        vec![("authorization", authorization)]
    };
    http::post_form(
        cluster.addr(Service::Identity),
        "/oauth2/introspect",
        &headers,
        &[("token", token)],
    )
    .await
}

/// Whether introspection (as the global admin) says the token is active.
pub(crate) async fn is_active(
    cluster: &TestCluster,
    admin: &str,
    token: &str,
) -> anyhow::Result<bool> {
    let answer = introspect(cluster, &bearer(admin), token).await?;
    match answer["active"].as_bool() {
        Some(true) => Ok(true),
        Some(false) => {
            assert_eq!(
                answer,
                serde_json::json!({"active": false}),
                "an inactive answer has nothing but active=false"
            );
            Ok(false)
        }
        None => bail!("introspection answer has no boolean `active`: {answer}"),
    }
}

/// The claims of a JWT, NOT verified (to read `jti` and the like).
pub(crate) fn unverified_claims(token: &str) -> anyhow::Result<serde_json::Value> {
    let payload = token.split('.').nth(1).context("not a JWT")?;
    Ok(serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?)
}

pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A fresh random id (for `jti`s and names).
pub(crate) fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random: {err}"))?;
    Ok(b64url(&bytes))
}

/// The error of a call that must fail.
pub(crate) fn refused<T: Debug>(result: Result<T, Status>) -> anyhow::Result<Status> {
    match result {
        Ok(ok) => bail!("expected an error status, got {ok:?}"),
        Err(status) => Ok(status),
    }
}

/// Asserts a failed call's code and returns the status.
pub(crate) fn assert_code<T: Debug>(
    result: Result<T, Status>,
    code: Code,
    what: &str,
) -> anyhow::Result<Status> {
    let status = refused(result).with_context(|| what.to_owned())?;
    assert_eq!(
        status.code(),
        code,
        "{what}: unexpected status {:?}: {}",
        status.code(),
        status.message()
    );
    Ok(status)
}

/// Asserts an OAuth error answer over HTTP: status and `error`, with a
/// string `error_description`. Returns the JSON body.
pub(crate) fn assert_oauth_error(
    response: &HttpResponse,
    status: u16,
    error: &str,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let body = String::from_utf8_lossy(&response.body).into_owned();
    let json: serde_json::Value = serde_json::from_slice(&response.body)
        .with_context(|| format!("{what}: the answer is not JSON: {} {body}", response.status))?;
    assert_eq!(
        (response.status, json["error"].as_str().unwrap_or_default()),
        (status, error),
        "{what}: body {body}"
    );
    assert!(
        json["error_description"].is_string(),
        "{what}: no error_description in {body}"
    );
    Ok(json)
}

/// Asserts `id` is `prefix` + a 26-character Crockford base32 ULID.
pub(crate) fn assert_prefixed_ulid(id: &str, prefix: &str) {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let ulid = id.strip_prefix(prefix).unwrap_or_default();
    assert!(
        ulid.len() == 26 && ulid.chars().all(|c| CROCKFORD.contains(c)),
        "`{id}` is not `{prefix}` + a ULID"
    );
}

/// Every agent id matching `request`, following next_page_token.
async fn list_ids(
    client: &mut Identity,
    token: &str,
    request: ListAgentsRequest,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let mut page_request = request.clone();
        page_request.page = Some(PageRequest {
            page_size: request.page.as_ref().map_or(0, |p| p.page_size),
            page_token,
        });
        let response = client
            .list_agents(with_bearer(page_request, token))
            .await?
            .into_inner();
        ids.extend(response.agents.into_iter().map(|agent| agent.id));
        page_token = response.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            return Ok(ids);
        }
    }
    bail!("ListAgents never reached its last page")
}

fn ids(agents: &[&Agent]) -> Vec<String> {
    agents.iter().map(|agent| agent.id.clone()).collect()
}

fn without_times(agent: &Agent) -> Agent {
    Agent {
        create_time: None,
        update_time: None,
        ..agent.clone()
    }
}

fn millis(time: &Option<prost_types::Timestamp>) -> i64 {
    time.as_ref()
        .map_or(0, |t| t.seconds * 1_000 + i64::from(t.nanos) / 1_000_000)
}

async fn get_agent(client: &mut Identity, token: &str, id: &str) -> Result<Agent, Status> {
    client
        .get_agent(with_bearer(
            GetAgentRequest {
                agent_id: id.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn suspend(
    client: &mut Identity,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<Agent, Status> {
    client
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn reactivate(
    client: &mut Identity,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<Agent, Status> {
    client
        .reactivate_agent(with_bearer(
            ReactivateAgentRequest {
                agent_id: id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn revoke(
    client: &mut Identity,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<Agent, Status> {
    client
        .revoke_agent(with_bearer(
            RevokeAgentRequest {
                agent_id: id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn update(
    client: &mut Identity,
    token: &str,
    id: &str,
    agent: Agent,
    paths: &[&str],
) -> Result<Agent, Status> {
    client
        .update_agent(with_bearer(
            UpdateAgentRequest {
                agent_id: id.to_owned(),
                agent: Some(agent),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

const UNKNOWN_AGENT: &str = "agt_01JD8X3Q6V6K2T1M9Q0Z7W4B5C";

// ---------------------------------------------------------------------------
// Registration and reads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn register_assigns_an_agent_id_and_active_status_and_get_returns_it() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;

    let mut input = new_agent("acme", "triage-bot", &[AUDIENCE, "jira"], SCOPES);
    input.attributes.insert("environment".into(), "prod".into());
    // Output-only fields are ignored.
    let mut sent = input.clone();
    sent.id = "agt_chosen_by_the_caller".into();
    sent.status = AgentStatus::Revoked as i32;
    sent.status_reason = "made up".into();
    sent.create_time = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let agent = register(&cluster, &admin, sent).await?;

    assert_prefixed_ulid(&agent.id, "agt_");
    assert_eq!(agent.status, AgentStatus::Active as i32);
    assert_eq!(agent.status_reason, "");
    assert_eq!(
        without_times(&Agent {
            id: String::new(),
            status: 0,
            ..agent.clone()
        }),
        input,
        "every input field is stored as given"
    );
    let created = millis(&agent.create_time);
    assert!(
        (created / 1_000 - now()).abs() < 60,
        "create_time is now: {:?}",
        agent.create_time
    );
    assert!(millis(&agent.update_time) >= created);

    let fetched = get_agent(&mut client, &admin, &agent.id).await?;
    assert_eq!(without_times(&fetched), without_times(&agent));
    assert!((millis(&fetched.create_time) - created).abs() <= 1);

    let second = register(
        &cluster,
        &admin,
        new_agent("acme", "second-bot", &[AUDIENCE], SCOPES),
    )
    .await?;
    assert_ne!(second.id, agent.id);

    assert_code(
        get_agent(&mut client, &admin, UNKNOWN_AGENT).await,
        Code::NotFound,
        "GetAgent of an unknown id",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn names_are_unique_within_a_tenant_only() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    register(
        &cluster,
        &admin,
        new_agent("acme", "builder", &[AUDIENCE], SCOPES),
    )
    .await?;
    let duplicate = identity(&cluster)
        .await?
        .register_agent(with_bearer(
            RegisterAgentRequest {
                agent: Some(new_agent("acme", "builder", &["other"], &["x"])),
            },
            &admin,
        ))
        .await;
    assert_code(duplicate, Code::AlreadyExists, "same name, same tenant")?;
    let elsewhere = register(
        &cluster,
        &admin,
        new_agent("globex", "builder", &[AUDIENCE], SCOPES),
    )
    .await?;
    assert_eq!(elsewhere.tenant, "globex");
    cluster.shutdown().await
}

#[tokio::test]
async fn invalid_registrations_are_refused_naming_the_field() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let valid = || new_agent("acme", "valid", &[AUDIENCE], SCOPES);
    let with = |change: &dyn Fn(&mut Agent)| {
        let mut agent = valid();
        change(&mut agent);
        agent
    };
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, &str, Agent)> = vec![
        (
            "empty tenant",
            "agent.tenant",
            with(&|a| a.tenant = String::new()),
        ),
        (
            "upper-case tenant",
            "agent.tenant",
            with(&|a| a.tenant = "Acme".into()),
        ),
        (
            "tenant starting with -",
            "agent.tenant",
            with(&|a| a.tenant = "-acme".into()),
        ),
        (
            "tenant starting with _",
            "agent.tenant",
            with(&|a| a.tenant = "_acme".into()),
        ),
        (
            "tenant with a space",
            "agent.tenant",
            with(&|a| a.tenant = "ac me".into()),
        ),
        (
            "65-char tenant",
            "agent.tenant",
            with(&|a| a.tenant = "a".repeat(65)),
        ),
        (
            "empty name",
            "agent.name",
            with(&|a| a.name = String::new()),
        ),
        ("257-char name", "agent.name", with(&|a| a.name = long(257))),
        (
            "empty owner",
            "agent.owner",
            with(&|a| a.owner = String::new()),
        ),
        (
            "257-char owner",
            "agent.owner",
            with(&|a| a.owner = long(257)),
        ),
        (
            "2049-char description",
            "agent.description",
            with(&|a| a.description = long(2_049)),
        ),
        (
            "257-char model",
            "agent.model",
            with(&|a| a.model = long(257)),
        ),
        (
            "257-char provider",
            "agent.provider",
            with(&|a| a.provider = long(257)),
        ),
        (
            "upper-case attribute key",
            "agent.attributes",
            with(&|a| {
                a.attributes.insert("Tier".into(), "1".into());
            }),
        ),
        (
            "attribute key starting with a digit",
            "agent.attributes",
            with(&|a| {
                a.attributes.insert("1tier".into(), "1".into());
            }),
        ),
        (
            "65-char attribute key",
            "agent.attributes",
            with(&|a| {
                a.attributes
                    .insert(format!("a{}", "b".repeat(64)), "1".into());
            }),
        ),
        (
            "257-char attribute value",
            "agent.attributes",
            with(&|a| {
                a.attributes.insert("tier".into(), long(257));
            }),
        ),
        (
            "65 attributes",
            "agent.attributes",
            with(&|a| {
                a.attributes = (0..65).map(|n| (format!("k{n}"), "v".to_owned())).collect();
            }),
        ),
        ("no ceiling", "agent.ceiling", with(&|a| a.ceiling = None)),
        (
            "empty audience",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![String::new()],
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "257-char audience",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![long(257)],
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "duplicate audience",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into(), AUDIENCE.into()],
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "65 audiences",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: (0..65).map(|n| format!("aud-{n}")).collect(),
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "scope with a space",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec!["repo read".into()],
                });
            }),
        ),
        (
            "scope with a quote",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec!["repo\"read".into()],
                });
            }),
        ),
        (
            "empty scope",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec![String::new()],
                });
            }),
        ),
        (
            "129-char scope",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec![long(129)],
                });
            }),
        ),
        (
            "duplicate scope",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec!["repo:read".into(), "repo:read".into()],
                });
            }),
        ),
        (
            "129 scopes",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: (0..129).map(|n| format!("scope:{n}")).collect(),
                });
            }),
        ),
    ];
    for (what, field, agent) in cases {
        let status = assert_code(
            client
                .register_agent(with_bearer(
                    RegisterAgentRequest { agent: Some(agent) },
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
            what,
        )?;
        assert!(
            status.message().contains(field),
            "{what}: the message should name `{field}`: {}",
            status.message()
        );
    }
    let status = assert_code(
        client
            .register_agent(with_bearer(RegisterAgentRequest { agent: None }, &admin))
            .await,
        Code::InvalidArgument,
        "no agent at all",
    )?;
    assert!(status.message().contains("agent"), "{}", status.message());

    // Nothing was stored.
    assert!(
        list_ids(
            &mut client,
            &admin,
            ListAgentsRequest {
                tenant: "acme".into(),
                ..ListAgentsRequest::default()
            }
        )
        .await?
        .is_empty(),
        "refused registrations store nothing"
    );

    // Every limit is inclusive.
    let maximal = Agent {
        tenant: format!("a{}", "-".repeat(63)),
        owner: long(256),
        name: long(256),
        description: long(2_048),
        model: long(256),
        provider: long(256),
        attributes: (0..64)
            .map(|n| (format!("k{n}{}", "x".repeat(60)), long(256)))
            .collect(),
        ceiling: Some(Ceiling {
            audiences: (0..64)
                .map(|n| format!("{n:03}{}", "a".repeat(253)))
                .collect(),
            scopes: (0..128)
                .map(|n| format!("{n:03}{}", "s".repeat(125)))
                .collect(),
        }),
        ..Agent::default()
    };
    let stored = register(&cluster, &admin, maximal.clone()).await?;
    assert_eq!(stored.attributes, maximal.attributes);
    assert_eq!(stored.ceiling, maximal.ceiling);
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_agents_applies_every_filter_together() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let make = |tenant: &str, name: &str, owner: &str, project: &str, env: &str| {
        let mut agent = new_agent(tenant, name, &[AUDIENCE], SCOPES);
        agent.owner = owner.to_owned();
        agent.attributes = HashMap::from([
            ("project".to_owned(), project.to_owned()),
            ("environment".to_owned(), env.to_owned()),
        ]);
        agent
    };
    let a1 = register(
        &cluster,
        &admin,
        make("acme", "a1", "alice", "apollo", "prod"),
    )
    .await?;
    let a2 = register(&cluster, &admin, make("acme", "a2", "bob", "apollo", "dev")).await?;
    let a3 = register(
        &cluster,
        &admin,
        make("acme", "a3", "alice", "zeus", "prod"),
    )
    .await?;
    let o1 = register(
        &cluster,
        &admin,
        make("other", "o1", "alice", "apollo", "prod"),
    )
    .await?;
    let before_suspension = prost_types::Timestamp::from(std::time::SystemTime::now());
    suspend(&mut client, &admin, &a3.id, "investigating").await?;
    let later = prost_types::Timestamp {
        seconds: before_suspension.seconds + 3600,
        nanos: 0,
    };

    let attrs = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let cases: Vec<(&str, ListAgentsRequest, Vec<String>)> = vec![
        (
            "tenant",
            ListAgentsRequest {
                tenant: "acme".into(),
                ..Default::default()
            },
            ids(&[&a1, &a2, &a3]),
        ),
        (
            "owner",
            ListAgentsRequest {
                owner: "alice".into(),
                ..Default::default()
            },
            ids(&[&a1, &a3, &o1]),
        ),
        (
            "tenant and owner",
            ListAgentsRequest {
                tenant: "acme".into(),
                owner: "alice".into(),
                ..Default::default()
            },
            ids(&[&a1, &a3]),
        ),
        (
            "status suspended",
            ListAgentsRequest {
                status: AgentStatus::Suspended as i32,
                ..Default::default()
            },
            ids(&[&a3]),
        ),
        (
            "tenant and status active",
            ListAgentsRequest {
                tenant: "acme".into(),
                status: AgentStatus::Active as i32,
                ..Default::default()
            },
            ids(&[&a1, &a2]),
        ),
        (
            "one attribute",
            ListAgentsRequest {
                attributes: attrs(&[("project", "apollo")]),
                ..Default::default()
            },
            ids(&[&a1, &a2, &o1]),
        ),
        (
            "two attributes (both must match)",
            ListAgentsRequest {
                attributes: attrs(&[("project", "apollo"), ("environment", "prod")]),
                ..Default::default()
            },
            ids(&[&a1, &o1]),
        ),
        (
            "tenant, owner, status and attributes",
            ListAgentsRequest {
                tenant: "acme".into(),
                owner: "alice".into(),
                status: AgentStatus::Active as i32,
                attributes: attrs(&[("project", "apollo"), ("environment", "prod")]),
                ..Default::default()
            },
            ids(&[&a1]),
        ),
        (
            "attribute value nobody has",
            ListAgentsRequest {
                attributes: attrs(&[("environment", "staging")]),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            "unknown tenant",
            ListAgentsRequest {
                tenant: "nobody".into(),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            "updated since the suspension",
            ListAgentsRequest {
                updated_since: Some(before_suspension),
                ..Default::default()
            },
            ids(&[&a3]),
        ),
        (
            "tenant and updated since the suspension",
            ListAgentsRequest {
                tenant: "other".into(),
                updated_since: Some(before_suspension),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            "updated since an hour from now",
            ListAgentsRequest {
                updated_since: Some(later),
                ..Default::default()
            },
            Vec::new(),
        ),
    ];
    for (what, request, mut expected) in cases {
        expected.sort();
        assert_eq!(
            list_ids(&mut client, &admin, request).await?,
            expected,
            "filter: {what}"
        );
    }
    let not_a_time = ListAgentsRequest {
        updated_since: Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        }),
        ..Default::default()
    };
    let status = client
        .list_agents(with_bearer(not_a_time, &admin))
        .await
        .expect_err("an invalid updated_since is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("updated_since"),
        "{}",
        status.message()
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn list_agents_pages_in_creation_order_with_a_cursor() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let mut registered = Vec::new();
    for n in 0..7 {
        let agent = register(
            &cluster,
            &admin,
            new_agent("paging", &format!("agent-{n}"), &[AUDIENCE], SCOPES),
        )
        .await?;
        registered.push(agent.id);
    }
    let mut sorted = registered.clone();
    sorted.sort();
    assert_eq!(sorted, registered, "ids sort in creation order");

    let request = |page_size: i32, page_token: String| ListAgentsRequest {
        tenant: "paging".into(),
        page: Some(PageRequest {
            page_size,
            page_token,
        }),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    let mut first_token = String::new();
    loop {
        let response = client
            .list_agents(with_bearer(request(3, page_token), &admin))
            .await?
            .into_inner();
        pages += 1;
        assert!(response.agents.len() <= 3, "page_size is a maximum");
        seen.extend(response.agents.iter().map(|agent| agent.id.clone()));
        page_token = response.page.unwrap_or_default().next_page_token;
        if pages == 1 {
            first_token = page_token.clone();
        }
        if page_token.is_empty() || pages > 10 {
            break;
        }
    }
    assert_eq!(
        seen, registered,
        "pages join up to every agent once, in order"
    );
    assert!(pages >= 3, "7 agents in pages of at most 3");
    assert!(!first_token.is_empty());

    let everything = client
        .list_agents(with_bearer(request(0, String::new()), &admin))
        .await?
        .into_inner();
    assert_eq!(
        everything
            .agents
            .iter()
            .map(|agent| agent.id.clone())
            .collect::<Vec<_>>(),
        registered,
        "the default page size (50) holds all 7"
    );
    assert_eq!(everything.page.unwrap_or_default().next_page_token, "");

    assert_code(
        client
            .list_agents(with_bearer(request(-1, String::new()), &admin))
            .await,
        Code::InvalidArgument,
        "negative page_size",
    )?;
    assert_code(
        client
            .list_agents(with_bearer(request(3, "forged".into()), &admin))
            .await,
        Code::InvalidArgument,
        "forged page token",
    )?;
    let mut other_filter = request(3, first_token);
    other_filter.owner = "bob".into();
    assert_code(
        client.list_agents(with_bearer(other_filter, &admin)).await,
        Code::InvalidArgument,
        "page token reused with another filter",
    )?;
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Updates and lifecycle
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_agent_replaces_exactly_the_masked_fields() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let original = register(
        &cluster,
        &admin,
        new_agent("acme", "updatable", &[AUDIENCE], SCOPES),
    )
    .await?;
    let neighbour = register(
        &cluster,
        &admin,
        new_agent("acme", "neighbour", &[AUDIENCE], SCOPES),
    )
    .await?;

    // Fields outside the mask are ignored, even invalid ones.
    let change = Agent {
        tenant: "Not A Tenant".into(),
        name: "renamed-but-not-masked".into(),
        owner: String::new(),
        description: "new description".into(),
        attributes: HashMap::from([("environment".to_owned(), "staging".to_owned())]),
        ceiling: Some(Ceiling {
            audiences: vec!["jira".into()],
            scopes: vec!["issues:read".into()],
        }),
        status: AgentStatus::Revoked as i32,
        ..Agent::default()
    };
    let updated = update(
        &mut client,
        &admin,
        &original.id,
        change.clone(),
        &["description", "attributes", "ceiling"],
    )
    .await?;
    let expected = Agent {
        description: change.description.clone(),
        attributes: change.attributes.clone(),
        ceiling: change.ceiling.clone(),
        ..original.clone()
    };
    assert_eq!(without_times(&updated), without_times(&expected));
    assert!(
        (millis(&updated.create_time) - millis(&original.create_time)).abs() <= 1,
        "create_time does not change"
    );
    assert!(millis(&updated.update_time) >= millis(&original.update_time));
    let fetched = get_agent(&mut client, &admin, &original.id).await?;
    assert_eq!(without_times(&fetched), without_times(&expected));

    let renamed = update(
        &mut client,
        &admin,
        &original.id,
        Agent {
            owner: "bob".into(),
            name: "renamed".into(),
            model: "gpt-x".into(),
            provider: "elsewhere".into(),
            ..Agent::default()
        },
        &["owner", "name", "model", "provider"],
    )
    .await?;
    assert_eq!(
        (
            renamed.owner.as_str(),
            renamed.name.as_str(),
            renamed.model.as_str(),
            renamed.provider.as_str(),
            renamed.description.as_str()
        ),
        ("bob", "renamed", "gpt-x", "elsewhere", "new description")
    );

    assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent {
                name: neighbour.name.clone(),
                ..Agent::default()
            },
            &["name"],
        )
        .await,
        Code::AlreadyExists,
        "renaming to a name taken in the tenant",
    )?;
    for path in ["tenant", "status", "id", "create_time", "nonsense"] {
        let status = assert_code(
            update(&mut client, &admin, &original.id, original.clone(), &[path]).await,
            Code::InvalidArgument,
            &format!("update_mask path `{path}`"),
        )?;
        assert!(
            status.message().contains("update_mask"),
            "path {path}: {}",
            status.message()
        );
    }
    assert_code(
        update(&mut client, &admin, &original.id, original.clone(), &[]).await,
        Code::InvalidArgument,
        "empty update_mask",
    )?;
    let status = assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent {
                attributes: HashMap::from([("Bad Key".to_owned(), "v".to_owned())]),
                ..Agent::default()
            },
            &["attributes"],
        )
        .await,
        Code::InvalidArgument,
        "invalid attribute key in an update",
    )?;
    assert!(
        status.message().contains("agent.attributes"),
        "{}",
        status.message()
    );
    let status = assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent::default(),
            &["name"],
        )
        .await,
        Code::InvalidArgument,
        "empty name in an update",
    )?;
    assert!(
        status.message().contains("agent.name"),
        "{}",
        status.message()
    );
    assert_code(
        update(
            &mut client,
            &admin,
            UNKNOWN_AGENT,
            original.clone(),
            &["description"],
        )
        .await,
        Code::NotFound,
        "update of an unknown agent",
    )?;

    revoke(&mut client, &admin, &original.id, "retired").await?;
    assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent {
                description: "too late".into(),
                ..Agent::default()
            },
            &["description"],
        )
        .await,
        Code::FailedPrecondition,
        "update of a revoked agent",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn suspend_reactivate_and_revoke_follow_the_lifecycle() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "lifecycle", &[AUDIENCE], SCOPES),
    )
    .await?;
    let id = agent.id.as_str();

    for (what, result) in [
        ("suspend", suspend(&mut client, &admin, id, "").await),
        ("reactivate", reactivate(&mut client, &admin, id, "").await),
        ("revoke", revoke(&mut client, &admin, id, "").await),
    ] {
        let status = assert_code(
            result,
            Code::InvalidArgument,
            &format!("{what} without a reason"),
        )?;
        assert!(status.message().contains("reason"), "{}", status.message());
    }
    assert_code(
        suspend(&mut client, &admin, id, &"x".repeat(1_025)).await,
        Code::InvalidArgument,
        "a 1,025-char reason",
    )?;
    assert_eq!(
        get_agent(&mut client, &admin, id).await?.status,
        AgentStatus::Active as i32,
        "refused calls change nothing"
    );

    let suspended = suspend(&mut client, &admin, id, "key leaked").await?;
    assert_eq!(suspended.status, AgentStatus::Suspended as i32);
    assert_eq!(suspended.status_reason, "key leaked");
    assert!(millis(&suspended.update_time) >= millis(&agent.update_time));
    let again = suspend(&mut client, &admin, id, "still leaked").await?;
    assert_eq!(again.status, AgentStatus::Suspended as i32, "idempotent");

    let active = reactivate(&mut client, &admin, id, "key rotated").await?;
    assert_eq!(
        (active.status, active.status_reason.as_str()),
        (AgentStatus::Active as i32, "key rotated")
    );
    let still_active = reactivate(&mut client, &admin, id, "again").await?;
    assert_eq!(
        still_active.status,
        AgentStatus::Active as i32,
        "idempotent"
    );

    let revoked = revoke(&mut client, &admin, id, "decommissioned").await?;
    assert_eq!(
        (revoked.status, revoked.status_reason.as_str()),
        (AgentStatus::Revoked as i32, "decommissioned")
    );
    let revoked_again = revoke(&mut client, &admin, id, "really").await?;
    assert_eq!(
        revoked_again.status,
        AgentStatus::Revoked as i32,
        "idempotent"
    );
    assert_code(
        reactivate(&mut client, &admin, id, "undo").await,
        Code::FailedPrecondition,
        "reactivating a revoked agent",
    )?;
    assert_code(
        suspend(&mut client, &admin, id, "pause").await,
        Code::FailedPrecondition,
        "suspending a revoked agent",
    )?;
    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: id.to_owned(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
        "a client secret for a revoked agent",
    )?;
    assert_eq!(
        get_agent(&mut client, &admin, id).await?.status,
        AgentStatus::Revoked as i32
    );
    assert_code(
        suspend(&mut client, &admin, UNKNOWN_AGENT, "who").await,
        Code::NotFound,
        "suspending an unknown agent",
    )?;
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registry_calls_need_an_admin_token() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let existing = register(
        &cluster,
        &admin,
        new_agent("acme", "existing", &[AUDIENCE], SCOPES),
    )
    .await?;
    let register_request = || RegisterAgentRequest {
        agent: Some(new_agent("acme", "intruder", &[AUDIENCE], SCOPES)),
    };
    let get_request = || GetAgentRequest {
        agent_id: existing.id.clone(),
    };

    // No authorization metadata at all.
    assert_code(
        client.register_agent(register_request()).await,
        Code::Unauthenticated,
        "RegisterAgent without a token",
    )?;
    assert_code(
        client.get_agent(get_request()).await,
        Code::Unauthenticated,
        "GetAgent without a token",
    )?;
    assert_code(
        client.list_agents(ListAgentsRequest::default()).await,
        Code::Unauthenticated,
        "ListAgents without a token",
    )?;
    assert_code(
        client
            .suspend_agent(SuspendAgentRequest {
                agent_id: existing.id.clone(),
                reason: "r".into(),
            })
            .await,
        Code::Unauthenticated,
        "SuspendAgent without a token",
    )?;
    assert_code(
        client
            .create_client_secret(CreateClientSecretRequest {
                agent_id: existing.id.clone(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "CreateClientSecret without a token",
    )?;

    // A bearer that is not a token of ours, and a forged admin token.
    assert_code(
        client
            .get_agent(with_bearer(get_request(), "not-a-token"))
            .await,
        Code::Unauthenticated,
        "garbage bearer",
    )?;
    let forger = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let forged = forger.sign(
        "at+jwt",
        &serde_json::json!({
            "iss": cluster.issuer(Service::Identity),
            "sub": "agt_forged",
            "aud": ADMIN_AUDIENCE,
            "exp": now() + 300,
            "iat": now(),
            "nbf": now(),
            "jti": random_id()?,
            "scope": ADMIN_SCOPE,
        }),
    )?;
    assert_code(
        client.get_agent(with_bearer(get_request(), &forged)).await,
        Code::Unauthenticated,
        "admin token signed by a foreign key",
    )?;

    // A real agent token without `agentsec:admin`.
    let reader = test_client(
        &cluster,
        &admin,
        "acme",
        "reader",
        &[ADMIN_AUDIENCE],
        &["agents:read"],
    )
    .await?;
    let token = agentsec_token(&cluster, &reader, "agents:read").await?;
    assert_code(
        client
            .register_agent(with_bearer(register_request(), &token))
            .await,
        Code::PermissionDenied,
        "RegisterAgent with a non-admin token",
    )?;
    assert_code(
        client.get_agent(with_bearer(get_request(), &token)).await,
        Code::PermissionDenied,
        "GetAgent with a non-admin token",
    )?;
    assert_code(
        client
            .list_agents(with_bearer(ListAgentsRequest::default(), &token))
            .await,
        Code::PermissionDenied,
        "ListAgents with a non-admin token",
    )?;
    assert_code(
        suspend(&mut client, &token, &existing.id, "r").await,
        Code::PermissionDenied,
        "SuspendAgent with a non-admin token",
    )?;
    assert_eq!(
        list_ids(
            &mut client,
            &admin,
            ListAgentsRequest {
                tenant: "acme".into(),
                ..Default::default()
            }
        )
        .await?,
        {
            let mut expected = vec![existing.id.clone(), reader.id.clone()];
            expected.sort();
            expected
        },
        "nothing was registered by the refused calls"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn tenant_scoped_admin_sees_and_changes_only_its_tenant() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let acme_admin = test_client(
        &cluster,
        &admin,
        "acme",
        "acme-admin",
        &[ADMIN_AUDIENCE],
        &[ADMIN_SCOPE],
    )
    .await?;
    let foreign = register(
        &cluster,
        &admin,
        new_agent("other", "foreign", &[AUDIENCE], SCOPES),
    )
    .await?;
    let token = agentsec_token(&cluster, &acme_admin, ADMIN_SCOPE).await?;
    let claims = unverified_claims(&token)?;
    assert_eq!(claims["tenant"], "acme", "{claims}");

    let mine = identity(&cluster)
        .await?
        .register_agent(with_bearer(
            RegisterAgentRequest {
                agent: Some(new_agent("acme", "made-by-acme", &[AUDIENCE], SCOPES)),
            },
            &token,
        ))
        .await?
        .into_inner()
        .agent
        .unwrap_or_default();
    assert_eq!(mine.tenant, "acme");
    assert_eq!(get_agent(&mut client, &token, &mine.id).await?.id, mine.id);

    assert_code(
        client
            .register_agent(with_bearer(
                RegisterAgentRequest {
                    agent: Some(new_agent("other", "smuggled", &[AUDIENCE], SCOPES)),
                },
                &token,
            ))
            .await,
        Code::PermissionDenied,
        "tenant admin registering in another tenant",
    )?;
    assert_code(
        get_agent(&mut client, &token, &foreign.id).await,
        Code::NotFound,
        "tenant admin reading another tenant's agent",
    )?;
    assert_code(
        suspend(&mut client, &token, &foreign.id, "mine now").await,
        Code::NotFound,
        "tenant admin suspending another tenant's agent",
    )?;
    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: foreign.id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::NotFound,
        "tenant admin creating a secret for another tenant's agent",
    )?;
    let mut expected = vec![acme_admin.id.clone(), mine.id.clone()];
    expected.sort();
    assert_eq!(
        list_ids(&mut client, &token, ListAgentsRequest::default()).await?,
        expected,
        "an unfiltered list is this tenant's agents only"
    );
    assert_eq!(
        list_ids(
            &mut client,
            &token,
            ListAgentsRequest {
                tenant: "acme".into(),
                ..Default::default()
            }
        )
        .await?,
        expected
    );
    assert_code(
        client
            .list_agents(with_bearer(
                ListAgentsRequest {
                    tenant: "other".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::PermissionDenied,
        "tenant admin listing another tenant",
    )?;
    assert_eq!(
        get_agent(&mut client, &admin, &foreign.id).await?.status,
        AgentStatus::Active as i32,
        "the foreign agent was not touched"
    );
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_secrets_are_shown_once_listed_by_prefix_and_capped_at_five() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "secretive", &[AUDIENCE], SCOPES),
    )
    .await?;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create_secret(&cluster, &admin, &agent.id).await?);
    }
    for response in &created {
        assert_eq!(response.client_id, agent.id, "client_id is the agent id");
        let secret = &response.client_secret;
        assert!(
            (43..=128).contains(&secret.len()),
            "256 bits of entropy, at most 128 chars: {} chars",
            secret.len()
        );
        assert!(
            secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
            "URL-safe characters only"
        );
        let credential = response.credential.clone().unwrap_or_default();
        assert_prefixed_ulid(&credential.id, "cred_");
        assert_eq!(credential.agent_id, agent.id);
        assert_eq!(credential.r#type, CredentialType::ClientSecret as i32);
        assert!(credential.create_time.is_some());
        let Some(credential::Details::ClientSecret(info)) = credential.details else {
            bail!("a client secret credential without client_secret details");
        };
        assert_eq!(info.prefix, secret[..8]);
    }
    let mut secrets: Vec<&str> = created.iter().map(|c| c.client_secret.as_str()).collect();
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 5, "every secret is new");

    let listed = client
        .list_credentials(with_bearer(
            ListCredentialsRequest {
                agent_id: agent.id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    let mut expected_ids: Vec<String> = created
        .iter()
        .map(|c| c.credential.clone().unwrap_or_default().id)
        .collect();
    expected_ids.sort();
    assert_eq!(
        listed
            .credentials
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
        expected_ids,
        "ordered by id"
    );
    let listing = format!("{listed:?}");
    for response in &created {
        assert!(
            !listing.contains(&response.client_secret),
            "ListCredentials never shows a secret"
        );
    }
    for credential in &listed.credentials {
        assert_eq!(credential.r#type, CredentialType::ClientSecret as i32);
        let Some(credential::Details::ClientSecret(info)) = &credential.details else {
            bail!("listed secret without details");
        };
        assert_eq!(info.prefix.len(), 8);
    }

    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: agent.id.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
        "a sixth client secret",
    )?;

    // Deleting one makes room again; deleting it twice is NOT_FOUND.
    let first = created[0].credential.clone().unwrap_or_default().id;
    let delete = |credential_id: String| DeleteCredentialRequest {
        agent_id: agent.id.clone(),
        credential_id,
    };
    client
        .delete_credential(with_bearer(delete(first.clone()), &admin))
        .await?;
    assert_code(
        client
            .delete_credential(with_bearer(delete(first), &admin))
            .await,
        Code::NotFound,
        "deleting a deleted credential",
    )?;
    assert_code(
        client
            .delete_credential(with_bearer(
                delete("cred_01JD8X3Q6V6K2T1M9Q0Z7W4B5C".into()),
                &admin,
            ))
            .await,
        Code::NotFound,
        "deleting an unknown credential",
    )?;
    create_secret(&cluster, &admin, &agent.id).await?;
    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: UNKNOWN_AGENT.into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::NotFound,
        "a secret for an unknown agent",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn the_database_never_holds_a_client_secret() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let first = default_client(&cluster, &admin, "stored-1").await?;
    let second = create_secret(&cluster, &admin, &first.id).await?;
    // A token was issued: the secret was checked against what is stored.
    get_token(&cluster, &first, &[]).await?;

    let db = cluster.database(Service::Identity).await?;
    let rows = db
        .query_all(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT * FROM credentials",
        ))
        .await?;
    assert!(rows.len() >= 2, "both secrets have a row");
    let mut text_values = 0;
    for row in &rows {
        for index in 0..64 {
            if let Ok(Some(text)) = row.try_get_by_index::<Option<String>>(index) {
                text_values += 1;
                for secret in [&first.secret, &second.client_secret] {
                    assert!(
                        !text.contains(secret.as_str()),
                        "column {index} holds a client secret"
                    );
                }
            }
            if let Ok(Some(bytes)) = row.try_get_by_index::<Option<Vec<u8>>>(index) {
                for secret in [&first.secret, &second.client_secret] {
                    assert!(
                        !bytes
                            .windows(secret.len())
                            .any(|window| window == secret.as_bytes()),
                        "column {index} holds a client secret as bytes"
                    );
                }
            }
        }
    }
    assert!(text_values > 0, "the rows were readable as text");
    cluster.shutdown().await
}

#[tokio::test]
async fn public_keys_are_validated_registered_and_listed() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "keyholder", &[AUDIENCE], SCOPES),
    )
    .await?;
    let key = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let jwk = Jwk::from(key.public_jwk());
    let add = |jwk: Jwk| AddPublicKeyRequest {
        agent_id: agent.id.clone(),
        jwk: Some(jwk),
        description: "laptop key".into(),
        ..Default::default()
    };
    let credential = client
        .add_public_key(with_bearer(add(jwk.clone()), &admin))
        .await?
        .into_inner()
        .credential
        .unwrap_or_default();
    assert_prefixed_ulid(&credential.id, "cred_");
    assert_eq!(credential.r#type, CredentialType::PublicKey as i32);
    assert_eq!(credential.description, "laptop key");
    let Some(credential::Details::PublicKey(info)) = &credential.details else {
        bail!("a public key credential without public_key details");
    };
    assert_eq!(info.thumbprint, key.public_jwk().thumbprint());
    let stored = info.jwk.clone().unwrap_or_default();
    assert_eq!(
        (stored.kty.as_str(), stored.kid.as_str(), stored.x.as_str()),
        ("OKP", key.kid(), jwk.x.as_str())
    );

    assert_code(
        client
            .add_public_key(with_bearer(add(jwk.clone()), &admin))
            .await,
        Code::AlreadyExists,
        "the same kid again",
    )?;

    // No kid: the RFC 7638 thumbprint becomes the kid. P-256 is accepted.
    let ec = keys::SigningKey::generate(keys::SigningAlgorithm::Es256)?;
    let ec_jwk = Jwk {
        kid: String::new(),
        ..Jwk::from(ec.public_jwk())
    };
    let ec_credential = client
        .add_public_key(with_bearer(add(ec_jwk), &admin))
        .await?
        .into_inner()
        .credential
        .unwrap_or_default();
    let Some(credential::Details::PublicKey(ec_info)) = &ec_credential.details else {
        bail!("no public_key details");
    };
    assert_eq!(
        ec_info.jwk.clone().unwrap_or_default().kid,
        ec.public_jwk().thumbprint()
    );

    let other = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let base = Jwk::from(other.public_jwk());
    let bad: Vec<(&str, Jwk)> = vec![
        (
            "symmetric key type",
            Jwk {
                kty: "oct".into(),
                crv: String::new(),
                ..base.clone()
            },
        ),
        (
            "unknown key type",
            Jwk {
                kty: "XYZ".into(),
                ..base.clone()
            },
        ),
        (
            "OKP on X25519 (not a signing curve)",
            Jwk {
                crv: "X25519".into(),
                ..base.clone()
            },
        ),
        (
            "no alg",
            Jwk {
                alg: String::new(),
                ..base.clone()
            },
        ),
        (
            "x that is not base64url",
            Jwk {
                x: "***".into(),
                ..base.clone()
            },
        ),
    ];
    for (what, jwk) in bad {
        assert_code(
            client.add_public_key(with_bearer(add(jwk), &admin)).await,
            Code::InvalidArgument,
            what,
        )?;
    }

    create_secret(&cluster, &admin, &agent.id).await?;
    let list = |r#type: CredentialType| ListCredentialsRequest {
        agent_id: agent.id.clone(),
        r#type: r#type as i32,
        ..Default::default()
    };
    let keys_only = client
        .list_credentials(with_bearer(list(CredentialType::PublicKey), &admin))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(keys_only.len(), 2, "two keys registered");
    assert!(keys_only
        .iter()
        .all(|c| c.r#type == CredentialType::PublicKey as i32));
    let all = client
        .list_credentials(with_bearer(list(CredentialType::Unspecified), &admin))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(all.len(), 3, "two keys and a secret");
    let secrets_only = client
        .list_credentials(with_bearer(list(CredentialType::ClientSecret), &admin))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(secrets_only.len(), 1);
    cluster.shutdown().await
}
