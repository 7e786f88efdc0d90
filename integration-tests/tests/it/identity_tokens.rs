//! identity-svc's token endpoint (`POST /oauth2/token`) and its gRPC form
//! `IssueToken`: client_credentials with client_secret_basic,
//! client_secret_post and private_key_jwt; the access token it signs; and the
//! RFC 6749 errors (and their gRPC mapping) for every broken request.

use std::collections::BTreeSet;

use agentsec_common::keys;
use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::Jwk;
use agentsec_proto::identity::v1::issue_token_request::ClientAuthentication;
use agentsec_proto::identity::v1::{
    AddPublicKeyRequest, DeleteCredentialRequest, GrantType, IssueTokenRequest, IssueTokenResponse,
    SuspendAgentRequest,
};
use anyhow::Context as _;
use tonic::Code;

use crate::identity_support::{
    assert_code, assert_oauth_error, b64url, basic, create_secret, default_client, form_body,
    get_token, identity, is_active, new_agent, now, random_id, refused, register, test_client,
    token_endpoint, token_response, verify_access_token, TestClient, AUDIENCE, OWNER, SCOPES,
};

/// Header or form name/value pairs.
type Params<'a> = Vec<(&'a str, &'a str)>;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Asserts that nothing in `response` repeats any of `secrets`.
fn assert_no_leak(response: &HttpResponse, secrets: &[&str], what: &str) {
    let body = String::from_utf8_lossy(&response.body);
    for secret in secrets {
        assert!(!body.contains(secret), "{what}: the body repeats a secret");
        assert!(
            response
                .headers
                .iter()
                .all(|(_, value)| !value.contains(secret)),
            "{what}: a header repeats a secret"
        );
    }
}

/// `secret` with its last character changed.
fn altered(secret: &str) -> String {
    let mut chars: Vec<char> = secret.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == 'x' { 'y' } else { 'x' };
    }
    chars.into_iter().collect()
}

fn scope_set(scope: &str) -> BTreeSet<String> {
    scope.split(' ').map(str::to_owned).collect()
}

fn set(scopes: &[&str]) -> BTreeSet<String> {
    scopes.iter().map(|s| (*s).to_owned()).collect()
}

/// A raw form POST to the token endpoint (duplicate parameters allowed).
async fn raw_token_request(
    cluster: &TestCluster,
    extra_headers: &[(&str, &str)],
    params: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    let mut headers = vec![FORM];
    headers.extend_from_slice(extra_headers);
    http::request(
        cluster.addr(Service::Identity),
        "POST",
        "/oauth2/token",
        &headers,
        form_body(params).as_bytes(),
    )
    .await
}

fn issue_request(client_id: &str, secret: &str, audience: &str, scope: &str) -> IssueTokenRequest {
    IssueTokenRequest {
        grant_type: GrantType::ClientCredentials as i32,
        client_id: client_id.to_owned(),
        client_authentication: Some(ClientAuthentication::ClientSecret(secret.to_owned())),
        audience: audience.to_owned(),
        scope: scope.to_owned(),
        ..IssueTokenRequest::default()
    }
}

/// A `private_key_jwt` client assertion signed with `key`.
fn assertion(
    key: &keys::SigningKey,
    client_id: &str,
    aud: &str,
    exp_in: i64,
) -> anyhow::Result<String> {
    Ok(key.sign(
        "JWT",
        &serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "exp": now() + exp_in,
            "iat": now(),
            "jti": random_id()?,
        }),
    )?)
}

/// The token endpoint with a client assertion and `extra` parameters.
async fn token_with_assertion(
    cluster: &TestCluster,
    assertion: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    params.extend_from_slice(extra);
    token_endpoint(cluster, &[], &params).await
}

/// Registers an agent with an Ed25519 public key; returns its id and key.
async fn agent_with_key(
    cluster: &TestCluster,
    admin: &str,
    name: &str,
    algorithm: keys::SigningAlgorithm,
) -> anyhow::Result<(String, keys::SigningKey)> {
    let agent = register(cluster, admin, new_agent("acme", name, &[AUDIENCE], SCOPES)).await?;
    let key = keys::SigningKey::generate(algorithm)?;
    identity(cluster)
        .await?
        .add_public_key(with_bearer(
            AddPublicKeyRequest {
                agent_id: agent.id.clone(),
                jwk: Some(Jwk::from(key.public_jwk())),
                ..Default::default()
            },
            admin,
        ))
        .await?;
    Ok((agent.id, key))
}

fn token_endpoint_url(cluster: &TestCluster) -> String {
    format!("{}/oauth2/token", cluster.issuer(Service::Identity))
}

// ---------------------------------------------------------------------------
// Successful issuance
// ---------------------------------------------------------------------------

#[tokio::test]
async fn client_secret_basic_issues_a_verifiable_eddsa_access_token() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "basic-bot").await?;
    let authorization = basic(&client.id, &client.secret);
    let response = token_endpoint(
        &cluster,
        &[("authorization", &authorization)],
        &[("grant_type", "client_credentials"), ("scope", "repo:read")],
    )
    .await?;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response
            .header("cache-control")
            .is_some_and(|value| value.contains("no-store")),
        "cache-control: {:?}",
        response.header("cache-control")
    );
    assert!(response
        .header("content-type")
        .is_some_and(|value| value.starts_with("application/json")));
    let json = response.json()?;
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 600);
    assert_eq!(json["scope"], "repo:read");
    let token = json["access_token"].as_str().unwrap_or_default();

    let claims = verify_access_token(&cluster, token, AUDIENCE).await?;
    assert_eq!(claims["iss"], cluster.issuer(Service::Identity).as_str());
    assert_eq!(claims["sub"], client.id.as_str());
    assert_eq!(claims["aud"], AUDIENCE, "aud is a single string: {claims}");
    assert_eq!(claims["client_id"], client.id.as_str());
    assert_eq!(claims["scope"], "repo:read");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["owner"], OWNER);
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap_or_default(),
        claims["nbf"].as_i64().unwrap_or_default(),
        claims["exp"].as_i64().unwrap_or_default(),
    );
    assert!((iat - now()).abs() < 60, "iat is now: {claims}");
    assert!(nbf <= iat + 1, "{claims}");
    assert_eq!(exp - iat, 600, "{claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()),
        "{claims}"
    );

    let second = get_token(&cluster, &client, &[("scope", "repo:read")]).await?;
    let second_claims = verify_access_token(&cluster, &second, AUDIENCE).await?;
    assert_ne!(
        second_claims["jti"], claims["jti"],
        "every token has its own jti"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn scope_audience_and_resource_parameters_shape_the_token() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let ceiling_scopes = ["repo:read", "repo:write", "issues:read"];
    let single = test_client(
        &cluster,
        &admin,
        "acme",
        "single",
        &[AUDIENCE],
        &ceiling_scopes,
    )
    .await?;

    // No scope: every ceiling scope; one audience in the ceiling: that one.
    let json = token_response(&cluster, &single, &[]).await?;
    assert_eq!(
        scope_set(json["scope"].as_str().unwrap_or_default()),
        set(&ceiling_scopes)
    );
    let token = json["access_token"].as_str().unwrap_or_default();
    let claims = verify_access_token(&cluster, token, AUDIENCE).await?;
    assert_eq!(
        scope_set(claims["scope"].as_str().unwrap_or_default()),
        set(&ceiling_scopes)
    );

    let json = token_response(
        &cluster,
        &single,
        &[("scope", "repo:write repo:read"), ("audience", AUDIENCE)],
    )
    .await?;
    assert_eq!(
        scope_set(json["scope"].as_str().unwrap_or_default()),
        set(&["repo:read", "repo:write"])
    );

    let several = test_client(
        &cluster,
        &admin,
        "acme",
        "several",
        &[AUDIENCE, "jira"],
        &ceiling_scopes,
    )
    .await?;
    for params in [
        vec![("audience", "jira")],
        vec![("resource", "jira")],
        vec![("audience", "jira"), ("resource", "jira")],
    ] {
        let token = get_token(&cluster, &several, &params).await?;
        let claims = verify_access_token(&cluster, &token, "jira").await?;
        assert_eq!(claims["aud"], "jira", "{params:?}");
    }
    let token = get_token(&cluster, &several, &[("resource", AUDIENCE)]).await?;
    verify_access_token(&cluster, &token, AUDIENCE).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn deleting_a_client_secret_deactivates_its_tokens_and_refuses_it() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let first = default_client(&cluster, &admin, "rotating").await?;
    let created = create_secret(&cluster, &admin, &first.id).await?;
    let second = TestClient {
        secret: created.client_secret.clone(),
        credential_id: created.credential.clone().unwrap_or_default().id,
        ..first.clone()
    };
    let old_token = get_token(&cluster, &first, &[]).await?;
    let new_token = get_token(&cluster, &second, &[]).await?;
    assert!(is_active(&cluster, &admin, &old_token).await?);
    assert!(is_active(&cluster, &admin, &new_token).await?);

    identity(&cluster)
        .await?
        .delete_credential(with_bearer(
            DeleteCredentialRequest {
                agent_id: first.id.clone(),
                credential_id: first.credential_id.clone(),
            },
            &admin,
        ))
        .await?;
    assert!(
        !is_active(&cluster, &admin, &old_token).await?,
        "a token of a deleted credential is inactive at once"
    );
    assert!(
        is_active(&cluster, &admin, &new_token).await?,
        "the other secret's tokens stay active"
    );
    let response = token_endpoint(
        &cluster,
        &[("authorization", &basic(&first.id, &first.secret))],
        &[("grant_type", "client_credentials")],
    )
    .await?;
    assert_oauth_error(&response, 401, "invalid_client", "the deleted secret")?;
    get_token(&cluster, &second, &[]).await?;
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Errors over HTTP
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_client_and_wrong_secret_get_the_same_invalid_client_answer() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = default_client(&cluster, &admin, "target").await?;
    let other = default_client(&cluster, &admin, "bystander").await?;
    let unknown_id = "agt_01JD8X3Q6V6K2T1M9Q0Z7W4B5C";
    let wrong_secret = altered(&client.secret);
    let grant = [("grant_type", "client_credentials")];
    let secrets = [
        client.secret.as_str(),
        other.secret.as_str(),
        wrong_secret.as_str(),
    ];

    let mut descriptions = Vec::new();
    for (what, id, secret) in [
        ("Basic, unknown client", unknown_id, client.secret.as_str()),
        (
            "Basic, wrong secret",
            client.id.as_str(),
            wrong_secret.as_str(),
        ),
        (
            "Basic, another agent's secret",
            client.id.as_str(),
            other.secret.as_str(),
        ),
    ] {
        let response =
            token_endpoint(&cluster, &[("authorization", &basic(id, secret))], &grant).await?;
        let json = assert_oauth_error(&response, 401, "invalid_client", what)?;
        assert!(
            response
                .header("www-authenticate")
                .is_some_and(|value| value.starts_with("Basic")),
            "{what}: www-authenticate {:?}",
            response.header("www-authenticate")
        );
        assert_no_leak(&response, &secrets, what);
        descriptions.push(json["error_description"].clone());
    }
    for (what, id, secret) in [
        ("post, unknown client", unknown_id, client.secret.as_str()),
        (
            "post, wrong secret",
            client.id.as_str(),
            wrong_secret.as_str(),
        ),
    ] {
        let response = token_endpoint(
            &cluster,
            &[],
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
        )
        .await?;
        let json = assert_oauth_error(&response, 401, "invalid_client", what)?;
        assert_no_leak(&response, &secrets, what);
        descriptions.push(json["error_description"].clone());
    }
    assert!(
        descriptions.windows(2).all(|pair| pair[0] == pair[1]),
        "an unknown client and a wrong secret must not be told apart: {descriptions:?}"
    );

    let response = token_endpoint(&cluster, &[], &grant).await?;
    assert_oauth_error(&response, 401, "invalid_client", "no client authentication")?;
    // The real secret still works.
    get_token(&cluster, &client, &[]).await?;
    cluster.shutdown().await
}

#[tokio::test]
async fn broken_token_requests_get_rfc6749_errors() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let client = test_client(
        &cluster,
        &admin,
        "acme",
        "picky",
        &[AUDIENCE, "jira"],
        &["repo:read"],
    )
    .await?;
    let id = client.id.as_str();
    let secret = client.secret.as_str();
    let authorization = basic(id, secret);
    let post_auth = [("client_id", id), ("client_secret", secret)];
    let with_post = |extra: &[(&'static str, &'static str)]| {
        let mut params = post_auth.to_vec();
        params.extend_from_slice(extra);
        params
    };
    let key = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let stray_assertion = assertion(&key, id, &token_endpoint_url(&cluster), 60)?;

    // (what, HTTP status, OAuth error, headers, form parameters)
    let cases: Vec<(&str, u16, &str, Params, Params)> = vec![
        (
            "scope beyond the ceiling",
            400,
            "invalid_scope",
            vec![],
            with_post(&[
                ("grant_type", "client_credentials"),
                ("audience", AUDIENCE),
                ("scope", "repo:read repo:admin"),
            ]),
        ),
        (
            "audience not in the ceiling",
            400,
            "invalid_target",
            vec![],
            with_post(&[("grant_type", "client_credentials"), ("audience", "slack")]),
        ),
        (
            "resource not in the ceiling",
            400,
            "invalid_target",
            vec![],
            with_post(&[("grant_type", "client_credentials"), ("resource", "slack")]),
        ),
        (
            "no audience while the ceiling has two",
            400,
            "invalid_request",
            vec![],
            with_post(&[("grant_type", "client_credentials")]),
        ),
        (
            "audience and resource differ",
            400,
            "invalid_request",
            vec![],
            with_post(&[
                ("grant_type", "client_credentials"),
                ("audience", AUDIENCE),
                ("resource", "jira"),
            ]),
        ),
        (
            "no grant_type",
            400,
            "invalid_request",
            vec![],
            with_post(&[("audience", AUDIENCE)]),
        ),
        (
            "grant_type password",
            400,
            "unsupported_grant_type",
            vec![],
            with_post(&[
                ("grant_type", "password"),
                ("audience", AUDIENCE),
                ("username", "alice"),
                ("password", "hunter2"),
            ]),
        ),
        (
            "Basic and client_secret_post at once",
            400,
            "invalid_request",
            vec![("authorization", authorization.as_str())],
            with_post(&[("grant_type", "client_credentials"), ("audience", AUDIENCE)]),
        ),
        (
            "client_secret and client_assertion at once",
            400,
            "invalid_request",
            vec![],
            with_post(&[
                ("grant_type", "client_credentials"),
                ("audience", AUDIENCE),
                ("client_assertion_type", ASSERTION_TYPE),
            ])
            .into_iter()
            .chain([("client_assertion", stray_assertion.as_str())])
            .collect(),
        ),
    ];
    for (what, status, error, headers, params) in cases {
        let response = token_endpoint(&cluster, &headers, &params).await?;
        assert_oauth_error(&response, status, error, what)?;
        assert_no_leak(&response, &[secret, stray_assertion.as_str()], what);
    }

    // A parameter given twice (raw bodies: the form helper cannot repeat).
    for (what, params) in [
        (
            "scope twice",
            with_post(&[
                ("grant_type", "client_credentials"),
                ("audience", AUDIENCE),
                ("scope", "repo:read"),
                ("scope", "repo:read"),
            ]),
        ),
        (
            "grant_type twice",
            with_post(&[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("audience", AUDIENCE),
            ]),
        ),
        (
            "client_secret twice",
            with_post(&[("grant_type", "client_credentials"), ("audience", AUDIENCE)])
                .into_iter()
                .chain([("client_secret", secret)])
                .collect(),
        ),
    ] {
        let response = raw_token_request(&cluster, &[], &params).await?;
        assert_oauth_error(&response, 400, "invalid_request", what)?;
        assert_no_leak(&response, &[secret], what);
    }

    // None of this locked the client out.
    get_token(&cluster, &client, &[("audience", "jira")]).await?;

    // A suspended agent gets nothing.
    identity(&cluster)
        .await?
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: client.id.clone(),
                reason: "on hold".into(),
            },
            &admin,
        ))
        .await?;
    let response = token_endpoint(
        &cluster,
        &[],
        &with_post(&[("grant_type", "client_credentials"), ("audience", AUDIENCE)]),
    )
    .await?;
    assert_oauth_error(&response, 400, "unauthorized_client", "suspended agent")?;
    assert_no_leak(&response, &[secret], "suspended agent");
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// gRPC IssueToken
// ---------------------------------------------------------------------------

#[tokio::test]
async fn grpc_issue_token_issues_tokens_and_maps_oauth_errors_to_status_codes() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut grpc = identity(&cluster).await?;
    let client = test_client(
        &cluster,
        &admin,
        "acme",
        "grpc-bot",
        &[AUDIENCE, "jira"],
        &["repo:read", "repo:write"],
    )
    .await?;
    let id = client.id.as_str();
    let secret = client.secret.as_str();

    let issued: IssueTokenResponse = grpc
        .issue_token(issue_request(id, secret, AUDIENCE, "repo:read"))
        .await?
        .into_inner();
    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(issued.expires_in, 600);
    assert_eq!(issued.scope, "repo:read");
    let claims = verify_access_token(&cluster, &issued.access_token, AUDIENCE).await?;
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["tenant"], "acme");
    let via_resource = grpc
        .issue_token(IssueTokenRequest {
            resource: "jira".into(),
            ..issue_request(id, secret, "", "")
        })
        .await?
        .into_inner();
    verify_access_token(&cluster, &via_resource.access_token, "jira").await?;
    assert_eq!(
        scope_set(&via_resource.scope),
        set(&["repo:read", "repo:write"]),
        "no scope = the whole ceiling"
    );

    let wrong_secret = altered(secret);
    let cases: Vec<(&str, IssueTokenRequest, Code, &str)> = vec![
        (
            "unknown client",
            issue_request("agt_01JD8X3Q6V6K2T1M9Q0Z7W4B5C", secret, AUDIENCE, ""),
            Code::Unauthenticated,
            "invalid_client",
        ),
        (
            "wrong secret",
            issue_request(id, &wrong_secret, AUDIENCE, ""),
            Code::Unauthenticated,
            "invalid_client",
        ),
        (
            "scope beyond the ceiling",
            issue_request(id, secret, AUDIENCE, "repo:read repo:admin"),
            Code::PermissionDenied,
            "invalid_scope",
        ),
        (
            "audience not in the ceiling",
            issue_request(id, secret, "slack", ""),
            Code::InvalidArgument,
            "invalid_target",
        ),
        (
            "no audience while the ceiling has two",
            issue_request(id, secret, "", ""),
            Code::InvalidArgument,
            "invalid_request",
        ),
        (
            "audience and resource differ",
            IssueTokenRequest {
                resource: "jira".into(),
                ..issue_request(id, secret, AUDIENCE, "")
            },
            Code::InvalidArgument,
            "invalid_request",
        ),
        (
            "grant type unspecified",
            IssueTokenRequest {
                grant_type: GrantType::Unspecified as i32,
                ..issue_request(id, secret, AUDIENCE, "")
            },
            Code::InvalidArgument,
            "unsupported_grant_type",
        ),
    ];
    // Every case is checked before failing, so one report shows them all.
    let mut mismatches = Vec::new();
    let mut invalid_client_messages = Vec::new();
    for (what, request, code, error) in cases {
        let status = refused(grpc.issue_token(request).await).context(what)?;
        let prefix = format!("{error}: ");
        if status.code() != code || !status.message().starts_with(&prefix) {
            mismatches.push(format!(
                "{what}: expected {code:?} `{prefix}...`, got {:?} `{}`",
                status.code(),
                status.message()
            ));
        }
        assert!(
            !status.message().contains(secret) && !status.message().contains(&wrong_secret),
            "{what}: the message repeats the secret"
        );
        if error == "invalid_client" {
            invalid_client_messages.push(status.message().to_owned());
        }
    }
    assert_eq!(
        invalid_client_messages[0], invalid_client_messages[1],
        "unknown client and wrong secret must not be told apart"
    );

    grpc.suspend_agent(with_bearer(
        SuspendAgentRequest {
            agent_id: id.to_owned(),
            reason: "paused".into(),
        },
        &admin,
    ))
    .await?;
    let status = refused(
        grpc.issue_token(issue_request(id, secret, AUDIENCE, ""))
            .await,
    )?;
    if status.code() != Code::PermissionDenied
        || !status.message().starts_with("unauthorized_client: ")
    {
        mismatches.push(format!(
            "suspended agent: expected PermissionDenied `unauthorized_client: ...`, got {:?} `{}`",
            status.code(),
            status.message()
        ));
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// private_key_jwt
// ---------------------------------------------------------------------------

#[tokio::test]
async fn private_key_jwt_authenticates_with_a_registered_key() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let (id, key) =
        agent_with_key(&cluster, &admin, "signer", keys::SigningAlgorithm::EdDsa).await?;
    let endpoint = token_endpoint_url(&cluster);
    let issuer = cluster.issuer(Service::Identity);

    for aud in [endpoint.as_str(), issuer.as_str()] {
        let signed = assertion(&key, &id, aud, 120)?;
        let response = token_with_assertion(&cluster, &signed, &[("scope", "repo:read")]).await?;
        assert_eq!(
            response.status,
            200,
            "aud {aud}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let json = response.json()?;
        let claims = verify_access_token(
            &cluster,
            json["access_token"].as_str().unwrap_or_default(),
            AUDIENCE,
        )
        .await?;
        assert_eq!(claims["sub"], id.as_str());
        assert_eq!(claims["client_id"], id.as_str());
        assert_eq!(claims["scope"], "repo:read");
    }

    // The same over gRPC.
    let signed = assertion(&key, &id, &endpoint, 120)?;
    let issued = identity(&cluster)
        .await?
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: id.clone(),
            client_authentication: Some(ClientAuthentication::ClientAssertion(signed.clone())),
            audience: AUDIENCE.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let claims = verify_access_token(&cluster, &issued.access_token, AUDIENCE).await?;
    assert_eq!(claims["sub"], id.as_str());

    // An assertion is single-use, whichever way it was presented first.
    let response = token_with_assertion(&cluster, &signed, &[]).await?;
    assert_oauth_error(
        &response,
        401,
        "invalid_client",
        "replayed assertion (HTTP)",
    )?;
    assert_no_leak(&response, &[signed.as_str()], "replayed assertion");
    let fresh = assertion(&key, &id, &endpoint, 120)?;
    assert_eq!(
        token_with_assertion(&cluster, &fresh, &[]).await?.status,
        200
    );
    let replay = identity(&cluster)
        .await?
        .issue_token(IssueTokenRequest {
            grant_type: GrantType::ClientCredentials as i32,
            client_id: id.clone(),
            client_authentication: Some(ClientAuthentication::ClientAssertion(fresh)),
            audience: AUDIENCE.into(),
            ..Default::default()
        })
        .await;
    let status = assert_code(replay, Code::Unauthenticated, "replayed assertion (gRPC)")?;
    assert!(status.message().starts_with("invalid_client: "));

    // P-256 keys work too.
    let (ec_id, ec_key) =
        agent_with_key(&cluster, &admin, "ec-signer", keys::SigningAlgorithm::Es256).await?;
    let signed = assertion(&ec_key, &ec_id, &endpoint, 120)?;
    let response = token_with_assertion(&cluster, &signed, &[]).await?;
    assert_eq!(
        response.status,
        200,
        "ES256 assertion: {}",
        String::from_utf8_lossy(&response.body)
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn forged_expired_and_misdirected_client_assertions_are_invalid_client() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let (id, key) =
        agent_with_key(&cluster, &admin, "target", keys::SigningAlgorithm::EdDsa).await?;
    let (other_id, _) =
        agent_with_key(&cluster, &admin, "other", keys::SigningAlgorithm::EdDsa).await?;
    let endpoint = token_endpoint_url(&cluster);
    let claims = |extra: serde_json::Value| -> anyhow::Result<serde_json::Value> {
        let mut claims = serde_json::json!({
            "iss": id,
            "sub": id,
            "aud": endpoint,
            "exp": now() + 120,
            "iat": now(),
            "jti": random_id()?,
        });
        if let (Some(map), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                map.insert(name.clone(), value.clone());
            }
        }
        Ok(claims)
    };
    let unsigned = |header: serde_json::Value, claims: &serde_json::Value| {
        format!(
            "{}.{}.",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        )
    };
    let hs256 = |secret: &[u8]| -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let encoding = jsonwebtoken::EncodingKey::from_secret(secret)?;
        Ok(jsonwebtoken::encode(
            &header,
            &claims(serde_json::json!({}))?,
            &encoding,
        )?)
    };
    let public_x = key.public_jwk().x.clone();
    let public_raw = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        public_x.as_bytes(),
    )?;
    let stranger = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let tampered = {
        let signed = key.sign("JWT", &claims(serde_json::json!({}))?)?;
        let parts: Vec<&str> = signed.split('.').collect();
        let forged = claims(serde_json::json!({"exp": now() + 86_400}))?;
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(forged.to_string().as_bytes()),
            parts[2]
        )
    };

    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            key.sign(
                "JWT",
                &claims(serde_json::json!({"exp": now() - 300, "iat": now() - 600}))?,
            )?,
        ),
        (
            "aud of another server",
            key.sign(
                "JWT",
                &claims(serde_json::json!({"aud": "https://elsewhere.example/oauth2/token"}))?,
            )?,
        ),
        (
            "kid nobody registered",
            stranger.sign("JWT", &claims(serde_json::json!({}))?)?,
        ),
        (
            "alg none",
            unsigned(
                serde_json::json!({"alg": "none", "kid": key.kid(), "typ": "JWT"}),
                &claims(serde_json::json!({}))?,
            ),
        ),
        (
            "HS256 keyed with the public key's x",
            hs256(public_x.as_bytes())?,
        ),
        ("HS256 keyed with the raw public key", hs256(&public_raw)?),
        ("tampered payload", tampered),
        (
            "iss and sub of another agent",
            key.sign(
                "JWT",
                &claims(serde_json::json!({"iss": other_id, "sub": other_id}))?,
            )?,
        ),
        (
            "iss differs from sub",
            key.sign("JWT", &claims(serde_json::json!({"iss": other_id}))?)?,
        ),
    ];
    for (what, assertion) in cases {
        let response = token_with_assertion(&cluster, &assertion, &[]).await?;
        assert_oauth_error(&response, 401, "invalid_client", what)?;
        assert_no_leak(&response, &[assertion.as_str()], what);
    }

    let mut padded = claims(serde_json::json!({}))?;
    padded["padding"] = serde_json::Value::String("p".repeat(9_000));
    let oversized = key.sign("JWT", &padded)?;
    assert!(oversized.len() > 8 * 1024);
    let response = token_with_assertion(&cluster, &oversized, &[]).await?;
    assert_oauth_error(&response, 400, "invalid_request", "assertion over 8 KiB")?;
    assert_no_leak(&response, &[oversized.as_str()], "oversized assertion");

    // The key itself is fine: a proper assertion is still accepted.
    let good = key.sign("JWT", &claims(serde_json::json!({}))?)?;
    let response = token_with_assertion(&cluster, &good, &[]).await?;
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    cluster.shutdown().await
}
