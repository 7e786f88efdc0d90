//! Workload identity federation in identity-svc: `[[trusted_issuers]]`,
//! `AddFederatedCredential`, and the jwt-bearer grant (RFC 7523 §2.1) over
//! HTTP and gRPC — with the issuer's JWKS inline, or served by a small HTTP
//! server in the test (`jwks_uri`), including key rotation at the issuer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::identity::v1::federated_credential_info::SubjectMatch;
use agentsec_proto::identity::v1::{
    credential, AddFederatedCredentialRequest, Agent, Credential, CredentialType,
    DeleteCredentialRequest, FederatedCredentialInfo, GrantType, IssueTokenRequest,
    ListCredentialsRequest, SuspendAgentRequest,
};
use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use tonic::{Code, Status};

use crate::identity_support::{
    assert_code, assert_oauth_error, identity, is_active, new_agent, now, random_id, refused,
    register, token_endpoint, unverified_claims, verify_access_token, AUDIENCE, SCOPES,
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The issuer of the inline-configured tests (its keys are in the config).
const K8S_ISSUER: &str = "https://kubernetes.cluster.test";
/// The audience the external tokens are minted for.
const FED_AUDIENCE: &str = "agentsec-identity";
const PLANNER_SA: &str = "system:serviceaccount:agents:planner";

/// An external issuer as a test plays it: its signing key and `iss`.
struct TestIssuer {
    issuer: String,
    key: SigningKey,
}

impl TestIssuer {
    fn new(issuer: &str, algorithm: SigningAlgorithm) -> anyhow::Result<Self> {
        Ok(Self {
            issuer: issuer.to_owned(),
            key: SigningKey::generate(algorithm)?,
        })
    }

    /// A token of this issuer for `sub` and `aud`, valid for `exp_in` seconds.
    fn token(&self, sub: &str, aud: &[&str], exp_in: i64) -> anyhow::Result<String> {
        self.sign(&self.claims(sub, aud, exp_in)?)
    }

    fn claims(&self, sub: &str, aud: &[&str], exp_in: i64) -> anyhow::Result<serde_json::Value> {
        Ok(json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "exp": now() + exp_in,
            "iat": now(),
            "nbf": now(),
            "jti": random_id()?,
        }))
    }

    fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        Ok(self.key.sign("JWT", claims)?)
    }
}

/// The JWKS of `keys`, as JSON.
fn jwks(keys: &[&SigningKey]) -> serde_json::Value {
    json!({ "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>() })
}

/// A `[[trusted_issuers]]` entry with the keys inline.
fn inline_issuer(
    issuer: &str,
    keys: &[&SigningKey],
) -> anyhow::Result<agentsec_identity::TrustedIssuerConfig> {
    Ok(serde_json::from_value(json!({
        "issuer": issuer,
        "jwks": jwks(keys).to_string(),
    }))?)
}

/// Starts a cluster whose identity-svc trusts `issuers`.
async fn cluster_trusting(
    issuers: Vec<agentsec_identity::TrustedIssuerConfig>,
) -> anyhow::Result<TestCluster> {
    TestCluster::start_with_identity(move |config| {
        config.trusted_issuers = issuers.clone();
    })
    .await
}

fn federated(issuer: &str, subject: SubjectMatch, audience: &str) -> FederatedCredentialInfo {
    FederatedCredentialInfo {
        issuer: issuer.to_owned(),
        subject_match: Some(subject),
        audience: audience.to_owned(),
    }
}

fn exact(subject: &str) -> SubjectMatch {
    SubjectMatch::Subject(subject.to_owned())
}

fn pattern(pattern: &str) -> SubjectMatch {
    SubjectMatch::SubjectPattern(pattern.to_owned())
}

/// AddFederatedCredential as `admin`.
async fn add_federated(
    cluster: &TestCluster,
    admin: &str,
    agent_id: &str,
    info: FederatedCredentialInfo,
) -> anyhow::Result<Result<Credential, Status>> {
    Ok(identity(cluster)
        .await?
        .add_federated_credential(with_bearer(
            AddFederatedCredentialRequest {
                agent_id: agent_id.to_owned(),
                federated: Some(info),
                description: "kubernetes workload".to_owned(),
                expire_time: None,
            },
            admin,
        ))
        .await
        .and_then(|response| {
            response
                .into_inner()
                .credential
                .ok_or_else(|| Status::internal("no credential in the answer"))
        }))
}

/// Registers an agent (tenant `acme`, audience [`AUDIENCE`]) with one
/// federated credential; returns both.
async fn federated_agent(
    cluster: &TestCluster,
    admin: &str,
    name: &str,
    info: FederatedCredentialInfo,
) -> anyhow::Result<(Agent, Credential)> {
    let agent = register(cluster, admin, new_agent("acme", name, &[AUDIENCE], SCOPES)).await?;
    let credential = add_federated(cluster, admin, &agent.id, info).await??;
    Ok((agent, credential))
}

/// The jwt-bearer grant over HTTP with `extra` parameters.
async fn jwt_bearer(
    cluster: &TestCluster,
    assertion: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    let mut params = vec![("grant_type", JWT_BEARER), ("assertion", assertion)];
    params.extend_from_slice(extra);
    token_endpoint(cluster, &[], &params).await
}

/// An access token through the jwt-bearer grant; fails unless 200.
async fn jwt_bearer_token(
    cluster: &TestCluster,
    assertion: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<String> {
    let response = jwt_bearer(cluster, assertion, extra).await?;
    if response.status != 200 {
        bail!(
            "jwt-bearer refused: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    response.json()?["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the token response")
}

/// The grant types RFC 8414 metadata advertises.
async fn advertised_grant_types(cluster: &TestCluster) -> anyhow::Result<Vec<String>> {
    let response = http::get(
        cluster.addr(Service::Identity),
        "/.well-known/oauth-authorization-server",
    )
    .await?;
    Ok(response.json()?["grant_types_supported"]
        .as_array()
        .context("no grant_types_supported")?
        .iter()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn exact_and_pattern_subjects_get_the_agents_token() -> anyhow::Result<()> {
    let k8s = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::EdDsa)?;
    let cluster = cluster_trusting(vec![inline_issuer(K8S_ISSUER, &[&k8s.key])?]).await?;
    let admin = cluster.admin_token().await?;
    let (planner, planner_credential) = federated_agent(
        &cluster,
        &admin,
        "planner",
        federated(K8S_ISSUER, exact(PLANNER_SA), FED_AUDIENCE),
    )
    .await?;
    let (runner, runner_credential) = federated_agent(
        &cluster,
        &admin,
        "ci-runner",
        federated(
            K8S_ISSUER,
            pattern("system:serviceaccount:ci:runner-*"),
            FED_AUDIENCE,
        ),
    )
    .await?;

    // The stored credential is shown with its match rules.
    assert_eq!(planner_credential.r#type, CredentialType::Federated as i32);
    assert_eq!(
        planner_credential.details,
        Some(credential::Details::Federated(federated(
            K8S_ISSUER,
            exact(PLANNER_SA),
            FED_AUDIENCE
        )))
    );
    assert!(planner_credential.id.starts_with("cred_"));

    // Exact subject; the external token may carry other audiences too.
    let external = k8s.token(
        PLANNER_SA,
        &["https://kubernetes.default.svc", FED_AUDIENCE],
        600,
    )?;
    let token = jwt_bearer_token(&cluster, &external, &[]).await?;
    let claims = verify_access_token(&cluster, &token, AUDIENCE).await?;
    assert_eq!(claims["sub"], planner.id.as_str());
    assert_eq!(claims["client_id"], planner.id.as_str());
    assert_eq!(claims["cred"], planner_credential.id.as_str());
    assert_eq!(claims["tenant"], "acme");
    assert!(is_active(&cluster, &admin, &token).await?);

    // Pattern subject, with scope and audience requested.
    let external = k8s.token("system:serviceaccount:ci:runner-7", &[FED_AUDIENCE], 600)?;
    let response = jwt_bearer(
        &cluster,
        &external,
        &[("scope", "repo:read"), ("audience", AUDIENCE)],
    )
    .await?;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let answer = response.json()?;
    assert_eq!(answer["scope"], "repo:read");
    assert_eq!(answer["token_type"], "Bearer");
    let runner_token = answer["access_token"].as_str().context("no access_token")?;
    let claims = unverified_claims(runner_token)?;
    assert_eq!(claims["sub"], runner.id.as_str());
    assert_eq!(claims["cred"], runner_credential.id.as_str());
    assert!(is_active(&cluster, &admin, runner_token).await?);

    // The gRPC form behaves the same.
    let issued = identity(&cluster)
        .await?
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::JwtBearer as i32,
            assertion: k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?,
            ..IssueTokenRequest::default()
        })
        .await?
        .into_inner();
    assert_eq!(
        unverified_claims(&issued.access_token)?["sub"],
        planner.id.as_str()
    );
    assert_eq!(issued.scope.split(' ').count(), SCOPES.len());

    // Metadata advertises the grant.
    assert!(advertised_grant_types(&cluster)
        .await?
        .contains(&JWT_BEARER.to_owned()));

    // ListCredentials shows it, alone under the FEDERATED filter (times
    // compared apart: the database may keep fewer digits).
    let listed = identity(&cluster)
        .await?
        .list_credentials(with_bearer(
            ListCredentialsRequest {
                agent_id: planner.id.clone(),
                r#type: CredentialType::Federated as i32,
                page: None,
            },
            &admin,
        ))
        .await?
        .into_inner()
        .credentials;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, planner_credential.id);
    assert_eq!(listed[0].r#type, CredentialType::Federated as i32);
    assert_eq!(listed[0].details, planner_credential.details);
    assert_eq!(listed[0].description, "kubernetes workload");
    let secrets_only = identity(&cluster)
        .await?
        .list_credentials(with_bearer(
            ListCredentialsRequest {
                agent_id: planner.id.clone(),
                r#type: CredentialType::ClientSecret as i32,
                page: None,
            },
            &admin,
        ))
        .await?
        .into_inner()
        .credentials;
    assert!(secrets_only.is_empty());

    // Deleting the federated credential ends the tokens obtained with it,
    // and the external token no longer gets new ones.
    identity(&cluster)
        .await?
        .delete_credential(with_bearer(
            DeleteCredentialRequest {
                agent_id: planner.id.clone(),
                credential_id: planner_credential.id.clone(),
            },
            &admin,
        ))
        .await?;
    assert!(!is_active(&cluster, &admin, &token).await?);
    assert!(!is_active(&cluster, &admin, &issued.access_token).await?);
    assert!(is_active(&cluster, &admin, runner_token).await?);
    let refused = jwt_bearer(&cluster, &k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_oauth_error(&refused, 400, "invalid_grant", "credential deleted")?;
    cluster.shutdown().await
}

/// `token` with its payload replaced by `claims` (signature left as is).
fn tampered(token: &str, claims: &serde_json::Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts.first().copied().unwrap_or_default(),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts.get(2).copied().unwrap_or_default()
    )
}

/// An unsigned JWT with this header.
fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn broken_or_foreign_assertions_get_the_rfc_7523_errors() -> anyhow::Result<()> {
    let k8s = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::EdDsa)?;
    let cluster = cluster_trusting(vec![inline_issuer(K8S_ISSUER, &[&k8s.key])?]).await?;
    let admin = cluster.admin_token().await?;
    let (planner, _) = federated_agent(
        &cluster,
        &admin,
        "planner",
        federated(K8S_ISSUER, exact(PLANNER_SA), FED_AUDIENCE),
    )
    .await?;
    // The baseline is accepted.
    jwt_bearer_token(&cluster, &k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;

    let good = k8s.claims(PLANNER_SA, &[FED_AUDIENCE], 600)?;
    let with = |name: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let stranger = TestIssuer::new("https://evil.test", SigningAlgorithm::EdDsa)?;
    let rotated_away = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::EdDsa)?;
    let hs256 = {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(k8s.key.kid().to_owned());
        // The classic key confusion: the public key as an HMAC secret.
        let secret = jsonwebtoken::EncodingKey::from_secret(k8s.key.public_jwk().x.as_bytes())?;
        jsonwebtoken::encode(&header, &good, &secret)?
    };
    let oversized = k8s.sign(&with("padding", json!("x".repeat(9 * 1024))))?;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "wrong audience",
            k8s.token(PLANNER_SA, &["someone-else"], 600)?,
            400,
            "invalid_grant",
        ),
        (
            "expired",
            k8s.sign(&with("exp", json!(now() - 120)))?,
            400,
            "invalid_grant",
        ),
        (
            "not valid yet",
            k8s.sign(&with("nbf", json!(now() + 600)))?,
            400,
            "invalid_grant",
        ),
        (
            "untrusted issuer",
            stranger.token(PLANNER_SA, &[FED_AUDIENCE], 600)?,
            400,
            "invalid_grant",
        ),
        (
            "alg none",
            unsigned(json!({"alg": "none", "kid": k8s.key.kid()}), &good),
            400,
            "invalid_grant",
        ),
        ("HS256 with the public key", hs256, 400, "invalid_grant"),
        (
            "tampered subject",
            tampered(
                &k8s.sign(&with("sub", json!("system:serviceaccount:agents:other")))?,
                &good,
            ),
            400,
            "invalid_grant",
        ),
        ("oversized", oversized, 400, "invalid_request"),
        (
            "unknown kid",
            rotated_away.token(PLANNER_SA, &[FED_AUDIENCE], 600)?,
            400,
            "invalid_grant",
        ),
        (
            "subject not matching",
            k8s.token(
                "system:serviceaccount:agents:planner2",
                &[FED_AUDIENCE],
                600,
            )?,
            400,
            "invalid_grant",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), 400, "invalid_grant"),
        ("no assertion", String::new(), 400, "invalid_request"),
    ];
    let mut mismatches = Vec::new();
    for (what, assertion, status, error) in &cases {
        let params: Vec<(&str, &str)> = if assertion.is_empty() {
            vec![("grant_type", JWT_BEARER)]
        } else {
            vec![
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ]
        };
        let response = token_endpoint(&cluster, &[], &params).await?;
        let json = response.json().unwrap_or_default();
        if response.status != *status || json["error"] != *error {
            mismatches.push(format!(
                "{what}: expected {status} {error}, got {} {json}",
                response.status
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // gRPC: invalid_grant is PERMISSION_DENIED, invalid_request INVALID_ARGUMENT.
    let mut grpc = identity(&cluster).await?;
    for (what, assertion, _, error) in &cases {
        let status = refused(
            grpc.issue_token(IssueTokenRequest {
                grant_type: GrantType::JwtBearer as i32,
                assertion: assertion.clone(),
                ..IssueTokenRequest::default()
            })
            .await,
        )?;
        let code = if *error == "invalid_grant" {
            Code::PermissionDenied
        } else {
            Code::InvalidArgument
        };
        assert_eq!(status.code(), code, "{what}: {}", status.message());
        assert!(
            status.message().starts_with(&format!("{error}: ")),
            "{what}: {}",
            status.message()
        );
    }

    // A suspended agent is an unauthorized client, as with client_credentials.
    identity(&cluster)
        .await?
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: planner.id.clone(),
                reason: "incident 42".to_owned(),
            },
            &admin,
        ))
        .await?;
    let response = jwt_bearer(&cluster, &k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_oauth_error(&response, 400, "unauthorized_client", "suspended agent")?;
    cluster.shutdown().await
}

#[tokio::test]
async fn an_assertion_matching_several_agents_needs_client_id() -> anyhow::Result<()> {
    let k8s = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::Es256)?;
    let cluster = cluster_trusting(vec![inline_issuer(K8S_ISSUER, &[&k8s.key])?]).await?;
    let admin = cluster.admin_token().await?;
    let shared = || {
        federated(
            K8S_ISSUER,
            pattern("system:serviceaccount:agents:*"),
            FED_AUDIENCE,
        )
    };
    let (first, _) = federated_agent(&cluster, &admin, "first", shared()).await?;
    let (second, second_credential) = federated_agent(&cluster, &admin, "second", shared()).await?;
    let unrelated = register(
        &cluster,
        &admin,
        new_agent("acme", "unrelated", &[AUDIENCE], SCOPES),
    )
    .await?;
    let external = k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?;

    let response = jwt_bearer(&cluster, &external, &[]).await?;
    let json = assert_oauth_error(&response, 400, "invalid_grant", "ambiguous")?;
    assert!(
        json["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("pass client_id"),
        "{json}"
    );

    for agent in [&first, &second] {
        let token = jwt_bearer_token(&cluster, &external, &[("client_id", &agent.id)]).await?;
        assert_eq!(unverified_claims(&token)?["sub"], agent.id.as_str());
    }
    let response = jwt_bearer(&cluster, &external, &[("client_id", &unrelated.id)]).await?;
    assert_oauth_error(&response, 400, "invalid_grant", "client_id without a match")?;

    // Over gRPC, client_id picks the agent as well.
    let issued = identity(&cluster)
        .await?
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::JwtBearer as i32,
            client_id: second.id.clone(),
            assertion: external.clone(),
            ..IssueTokenRequest::default()
        })
        .await?
        .into_inner();
    let claims = unverified_claims(&issued.access_token)?;
    assert_eq!(claims["sub"], second.id.as_str());
    assert_eq!(claims["cred"], second_credential.id.as_str());
    cluster.shutdown().await
}

#[tokio::test]
async fn federated_credentials_are_validated_and_capped() -> anyhow::Result<()> {
    let k8s = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::EdDsa)?;
    let cluster = cluster_trusting(vec![inline_issuer(K8S_ISSUER, &[&k8s.key])?]).await?;
    let admin = cluster.admin_token().await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "capped", &[AUDIENCE], SCOPES),
    )
    .await?;
    let add = |info: FederatedCredentialInfo| add_federated(&cluster, &admin, &agent.id, info);

    assert_code(
        add(federated(
            "https://unconfigured.test",
            exact(PLANNER_SA),
            FED_AUDIENCE,
        ))
        .await?,
        Code::FailedPrecondition,
        "unconfigured issuer",
    )?;
    let invalid = [
        (
            "leading star",
            federated(K8S_ISSUER, pattern("*:planner"), FED_AUDIENCE),
        ),
        (
            "empty subject",
            federated(K8S_ISSUER, exact(""), FED_AUDIENCE),
        ),
        (
            "long subject",
            federated(K8S_ISSUER, exact(&"s".repeat(513)), FED_AUDIENCE),
        ),
        (
            "empty audience",
            federated(K8S_ISSUER, exact(PLANNER_SA), ""),
        ),
        (
            "long audience",
            federated(K8S_ISSUER, exact(PLANNER_SA), &"a".repeat(257)),
        ),
        (
            "no subject",
            FederatedCredentialInfo {
                subject_match: None,
                ..federated(K8S_ISSUER, exact(PLANNER_SA), FED_AUDIENCE)
            },
        ),
    ];
    for (what, info) in invalid {
        assert_code(add(info).await?, Code::InvalidArgument, what)?;
    }
    let status = assert_code(
        identity(&cluster)
            .await?
            .add_federated_credential(with_bearer(
                AddFederatedCredentialRequest {
                    agent_id: agent.id.clone(),
                    federated: None,
                    ..AddFederatedCredentialRequest::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
        "no federated info",
    )?;
    assert!(
        status.message().contains("federated"),
        "{}",
        status.message()
    );

    for index in 0..20 {
        add(federated(
            K8S_ISSUER,
            exact(&format!("system:serviceaccount:agents:sa-{index}")),
            FED_AUDIENCE,
        ))
        .await??;
    }
    assert_code(
        add(federated(K8S_ISSUER, exact("one-too-many"), FED_AUDIENCE)).await?,
        Code::FailedPrecondition,
        "21st federated credential",
    )?;

    // Agents' own tokens are not admin tokens.
    let external = k8s.token("system:serviceaccount:agents:sa-3", &[FED_AUDIENCE], 600)?;
    let agent_token = jwt_bearer_token(&cluster, &external, &[]).await?;
    assert_code(
        add_federated(
            &cluster,
            &agent_token,
            &agent.id,
            federated(K8S_ISSUER, exact("x"), FED_AUDIENCE),
        )
        .await?,
        Code::PermissionDenied,
        "agent token",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn without_trusted_issuers_the_grant_is_not_offered() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let k8s = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::EdDsa)?;
    let response = jwt_bearer(&cluster, &k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_oauth_error(
        &response,
        400,
        "unsupported_grant_type",
        "no trusted issuers",
    )?;
    assert!(!advertised_grant_types(&cluster)
        .await?
        .contains(&JWT_BEARER.to_owned()));
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "lonely", &[AUDIENCE], SCOPES),
    )
    .await?;
    assert_code(
        add_federated(
            &cluster,
            &admin,
            &agent.id,
            federated(K8S_ISSUER, exact(PLANNER_SA), FED_AUDIENCE),
        )
        .await?,
        Code::FailedPrecondition,
        "no trusted issuers",
    )?;
    cluster.shutdown().await
}

/// An issuer's JWKS endpoint: serves the current key set (503 while it is
/// JSON null) and counts fetches.
struct JwksServer {
    addr: SocketAddr,
    keys: Arc<Mutex<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(keys: serde_json::Value) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served_keys, counted) = (keys.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/openid/v1/jwks",
            axum::routing::get(move || {
                let (keys, fetches) = (served_keys.clone(), counted.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let current = keys.lock().map(|keys| keys.clone()).unwrap_or_default();
                    let status = if current.is_null() {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    };
                    (status, axum::Json(current))
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            addr,
            keys,
            fetches,
            task,
        })
    }

    fn uri(&self) -> String {
        format!("http://{}/openid/v1/jwks", self.addr)
    }

    fn publish(&self, keys: serde_json::Value) {
        if let Ok(mut current) = self.keys.lock() {
            *current = keys;
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_remote_jwks_is_cached_and_refetched_when_the_issuer_rotates() -> anyhow::Result<()> {
    let old_key = SigningKey::generate(SigningAlgorithm::EdDsa)?;
    let server = JwksServer::start(jwks(&[&old_key])).await?;
    let issuer = format!("http://{}", server.addr);
    let old = TestIssuer {
        issuer: issuer.clone(),
        key: old_key,
    };
    let new = TestIssuer {
        issuer: issuer.clone(),
        key: SigningKey::generate(SigningAlgorithm::Es256)?,
    };
    let entry: agentsec_identity::TrustedIssuerConfig = serde_json::from_value(json!({
        "issuer": issuer,
        "jwks_uri": server.uri(),
        "algorithms": ["EdDSA", "ES256"],
        "jwks_cache_secs": 3600,
    }))?;
    let mut cluster = cluster_trusting(vec![entry]).await?;
    let admin = cluster.admin_token().await?;
    let (planner, _) = federated_agent(
        &cluster,
        &admin,
        "planner",
        federated(&issuer, exact(PLANNER_SA), FED_AUDIENCE),
    )
    .await?;
    assert_eq!(server.fetches(), 0, "fetched when first needed");

    let token =
        jwt_bearer_token(&cluster, &old.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_eq!(unverified_claims(&token)?["sub"], planner.id.as_str());
    jwt_bearer_token(&cluster, &old.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_eq!(server.fetches(), 1, "served from the cache");

    // The issuer rotates: a token with the new kid makes identity-svc fetch
    // the set again.
    server.publish(jwks(&[&old.key, &new.key]));
    let token =
        jwt_bearer_token(&cluster, &new.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_eq!(unverified_claims(&token)?["sub"], planner.id.as_str());
    assert_eq!(server.fetches(), 2);

    // Forged kids do not make it fetch again (at most once per 30 s).
    let forger = TestIssuer {
        issuer: issuer.clone(),
        key: SigningKey::generate(SigningAlgorithm::EdDsa)?,
    };
    for _ in 0..5 {
        let response = jwt_bearer(
            &cluster,
            &forger.token(PLANNER_SA, &[FED_AUDIENCE], 600)?,
            &[],
        )
        .await?;
        assert_oauth_error(&response, 400, "invalid_grant", "unknown kid")?;
    }
    assert_eq!(server.fetches(), 2, "unknown kids are rate limited");

    // A restarted identity-svc keeps its trusted issuers (the harness
    // applies the customization again) and fetches afresh.
    cluster.kill(Service::Identity).await?;
    cluster.restart(Service::Identity).await?;
    jwt_bearer_token(&cluster, &new.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_eq!(server.fetches(), 3);

    // With the endpoint gone, the cached set still serves.
    drop(server);
    jwt_bearer_token(&cluster, &old.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn an_unavailable_jwks_fails_closed() -> anyhow::Result<()> {
    let server = JwksServer::start(serde_json::Value::Null).await?;
    let issuer = format!("http://{}", server.addr);
    let entry: agentsec_identity::TrustedIssuerConfig = serde_json::from_value(json!({
        "issuer": issuer,
        "jwks_uri": server.uri(),
    }))?;
    let cluster = cluster_trusting(vec![entry]).await?;
    let admin = cluster.admin_token().await?;
    federated_agent(
        &cluster,
        &admin,
        "planner",
        federated(&issuer, exact(PLANNER_SA), FED_AUDIENCE),
    )
    .await?;
    let k8s = TestIssuer::new(&issuer, SigningAlgorithm::EdDsa)?;
    let response = jwt_bearer(&cluster, &k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_oauth_error(
        &response,
        503,
        "temporarily_unavailable",
        "no key set at all",
    )?;
    assert_eq!(server.fetches(), 1);
    // The issuer is not asked again at once (back-off after a failure).
    let response = jwt_bearer(&cluster, &k8s.token(PLANNER_SA, &[FED_AUDIENCE], 600)?, &[]).await?;
    assert_oauth_error(&response, 503, "temporarily_unavailable", "backing off")?;
    assert_eq!(server.fetches(), 1);
    cluster.shutdown().await
}

#[tokio::test]
async fn a_refused_workload_is_named_in_the_audit_trail() -> anyhow::Result<()> {
    use agentsec_integration_tests::audit_trail::first_event;
    use agentsec_proto::audit::v1::EventFilter;

    let issuer = TestIssuer::new(K8S_ISSUER, SigningAlgorithm::EdDsa)?;
    let cluster = cluster_trusting(vec![inline_issuer(K8S_ISSUER, &[&issuer.key])?]).await?;
    let stranger = "system:serviceaccount:other:intruder";
    let refused = jwt_bearer(
        &cluster,
        &issuer.token(stranger, &[FED_AUDIENCE], 300)?,
        &[],
    )
    .await?;
    assert_oauth_error(
        &refused,
        400,
        "invalid_grant",
        "no federated credential matches",
    )?;

    let event = first_event(
        &cluster,
        "a token.refused event at audit-svc",
        crate::identity_support::ASYNC_DEADLINE,
        EventFilter {
            kinds: vec!["token.refused".to_owned()],
            ..Default::default()
        },
    )
    .await?;
    assert_eq!(event.attributes["assertion_iss"], K8S_ISSUER);
    assert_eq!(event.attributes["assertion_sub"], stranger);
    assert!(
        event.reason.starts_with("invalid_grant: "),
        "{}",
        event.reason
    );
    cluster.shutdown().await
}
