//! Helpers the identity-svc tests share (registry, tokens, HTTP,
//! federation): clients, registration, token requests, introspection,
//! decoding and assertions on answers.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agentsec_common::keys;
use agentsec_integration_tests::cluster::ADMIN_AUDIENCE;
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    Agent, Ceiling, CreateClientSecretRequest, CreateClientSecretResponse, RegisterAgentRequest,
};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
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
    post_token(cluster, "/oauth2/introspect", authorization, token).await
}

/// `POST path` of identity-svc with the form `token=...`, as the caller
/// named by `authorization` (none when empty); any answer.
pub(crate) async fn post_token(
    cluster: &TestCluster,
    path: &str,
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
        path,
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

pub(crate) const UNKNOWN_AGENT: &str = "agt_01JD8X3Q6V6K2T1M9Q0Z7W4B5C";
