//! The OAuth 2.0 HTTP endpoints: `POST /oauth2/token`, `/oauth2/introspect`,
//! `/oauth2/revoke`, and the RFC 8414 metadata. Bodies are
//! `application/x-www-form-urlencoded`; a parameter given twice is refused
//! (RFC 6749 §3.1), as is any body that is not a well-formed form.

use std::sync::Arc;

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::http_boundary::{guard, oauth_error, BodyRules};
use agentsec_common::oauth_http::{
    authorization, form_decode, json_no_store, no_store, Form, Introspection,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use super::assertion::ASSERTION_TYPE;
use super::{
    Caller, ClientCredentials, TokenRequest, TokenService, CLIENT_CREDENTIALS, JWT_BEARER,
};

/// Largest form body accepted: room for an 8 KiB assertion plus the rest.
const MAX_BODY: usize = 16 * 1024;
const FORM: &str = "application/x-www-form-urlencoded";

pub fn router(service: Arc<TokenService>) -> Router {
    let routes = Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/revoke", post(revoke))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/jwks.json", get(jwks));
    guard(
        routes,
        BodyRules {
            max_bytes: MAX_BODY,
            media_type: FORM,
            post_paths: &["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"],
            render: oauth_error,
        },
    )
    .with_state(service)
}

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, description)
}

/// `Authorization: Basic` per RFC 6749 §2.3.1: both halves form-urlencoded.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(encoded) = authorization(headers, "Basic") else {
        return Ok(None);
    };
    let malformed = || {
        let mut err = OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "malformed HTTP Basic credentials",
        );
        err.basic_auth_challenge = true;
        err
    };
    let decoded = STANDARD.decode(encoded).map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let unescape = |part: &str| form_decode(part.as_bytes()).ok_or_else(malformed);
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

/// The client authentication in a request: exactly one method or none.
fn client_credentials(
    headers: &HeaderMap,
    form: &mut Form,
) -> Result<Option<ClientCredentials>, OAuthError> {
    let basic = basic_credentials(headers)?;
    let client_id = form.take("client_id");
    let secret = form.take("client_secret");
    let assertion = form.take("client_assertion");
    let assertion_type = form.take("client_assertion_type");
    let methods = usize::from(basic.is_some())
        + usize::from(secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(invalid_request(
            "use exactly one client authentication method",
        ));
    }
    if let Some((id, secret)) = basic {
        if client_id.as_ref().is_some_and(|body_id| *body_id != id) {
            return Err(invalid_request(
                "client_id in the body differs from the HTTP Basic client id",
            ));
        }
        return Ok(Some(ClientCredentials::Secret {
            client_id: id,
            secret,
            basic: true,
        }));
    }
    if let Some(secret) = secret {
        let client_id =
            client_id.ok_or_else(|| invalid_request("client_secret needs client_id"))?;
        return Ok(Some(ClientCredentials::Secret {
            client_id,
            secret,
            basic: false,
        }));
    }
    if let Some(assertion) = assertion {
        if assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(invalid_request(format!(
                "client_assertion_type must be {ASSERTION_TYPE}"
            )));
        }
        return Ok(Some(ClientCredentials::Assertion {
            client_id,
            assertion,
        }));
    }
    if assertion_type.is_some() {
        return Err(invalid_request(
            "client_assertion_type without client_assertion",
        ));
    }
    Ok(None)
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

async fn token(
    State(service): State<Arc<TokenService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let mut form = Form::parse(&headers, &body, &[])?;
        let client_id = form.get("client_id").unwrap_or_default().to_owned();
        let credentials = client_credentials(&headers, &mut form)?;
        let request = TokenRequest {
            grant_type: form.take("grant_type").unwrap_or_default(),
            client_id,
            credentials,
            assertion: form.take("assertion").unwrap_or_default(),
            scope: form.take("scope").unwrap_or_default(),
            audience: form.take("audience").unwrap_or_default(),
            resource: form.take("resource").unwrap_or_default(),
        };
        service.issue(request).await
    }
    .await;
    match result {
        Ok(issued) => json_no_store(&TokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: issued.scope,
        }),
        Err(err) => err.into_response(),
    }
}

/// The caller of introspection or revocation: a bearer token of this
/// service, or client credentials.
async fn caller(
    service: &TokenService,
    headers: &HeaderMap,
    form: &mut Form,
) -> Result<Caller, OAuthError> {
    if let Some(token) = authorization(headers, "Bearer") {
        return service
            .bearer_caller(token)
            .await
            .map(|(caller, _)| caller)
            .map_err(|err| match err {
                ApiError::Unauthenticated { reason } => {
                    OAuthError::new(OAuthErrorCode::InvalidClient, reason)
                }
                other => OAuthError::from_api(other, "introspection"),
            });
    }
    match client_credentials(headers, form)? {
        Some(credentials) => service.client_caller(credentials).await,
        None => {
            let mut err = OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "authenticate with client credentials or a bearer token of this service",
            );
            err.basic_auth_challenge = true;
            Err(err)
        }
    }
}

#[derive(Serialize)]
struct ActiveClaims {
    scope: String,
    client_id: String,
    token_type: &'static str,
    exp: i64,
    iat: i64,
    nbf: i64,
    sub: String,
    aud: String,
    iss: String,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

async fn introspect(
    State(service): State<Arc<TokenService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let mut form = Form::parse(&headers, &body, &[])?;
        let caller = caller(&service, &headers, &mut form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| invalid_request("token is required"))?;
        let claims = service
            .introspect_for(&caller, token)
            .await
            .map_err(|err| OAuthError::from_api(err, "introspection"))?;
        Ok::<_, OAuthError>(Introspection::of(claims.map(|claims| ActiveClaims {
            scope: claims.scope,
            client_id: claims.client_id,
            token_type: "Bearer",
            exp: claims.exp,
            iat: claims.iat,
            nbf: claims.nbf,
            sub: claims.sub,
            aud: claims.aud,
            iss: claims.iss,
            jti: claims.jti,
            tenant: claims.tenant,
            owner: claims.owner,
        })))
    }
    .await;
    match result {
        Ok(answer) => json_no_store(&answer),
        Err(err) => err.into_response(),
    }
}

async fn revoke(
    State(service): State<Arc<TokenService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let mut form = Form::parse(&headers, &body, &[])?;
        let caller = caller(&service, &headers, &mut form).await?;
        let token = form
            .get("token")
            .ok_or_else(|| invalid_request("token is required"))?;
        service.revoke(&caller, token).await
    }
    .await;
    match result {
        Ok(()) => no_store(StatusCode::OK.into_response()),
        Err(err) => err.into_response(),
    }
}

/// The published signing keys. Verifiers may cache them for a minute; a
/// token with a kid they do not know should make them fetch again (keys
/// are rotated without pre-announcement).
async fn jwks(State(service): State<Arc<TokenService>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        Json(service.keys.current().jwks.as_ref().clone()),
    )
        .into_response()
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
    introspection_endpoint: String,
    revocation_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    response_types_supported: [&'static str; 0],
    token_endpoint_auth_methods_supported: [&'static str; 3],
    token_endpoint_auth_signing_alg_values_supported: [&'static str; 4],
    introspection_endpoint_auth_methods_supported: [&'static str; 4],
    revocation_endpoint_auth_methods_supported: [&'static str; 4],
}

const CLIENT_AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];
const CALLER_AUTH_METHODS: [&str; 4] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "bearer",
];

async fn metadata(State(service): State<Arc<TokenService>>) -> Response {
    let issuer = service.issuer.clone();
    let mut grant_types_supported = vec![CLIENT_CREDENTIALS];
    if service.federation.is_enabled() {
        grant_types_supported.push(JWT_BEARER);
    }
    Json(Metadata {
        token_endpoint: service.token_endpoint(),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        revocation_endpoint: format!("{issuer}/oauth2/revoke"),
        grant_types_supported,
        response_types_supported: [],
        token_endpoint_auth_methods_supported: CLIENT_AUTH_METHODS,
        token_endpoint_auth_signing_alg_values_supported: ["EdDSA", "ES256", "RS256", "PS256"],
        introspection_endpoint_auth_methods_supported: CALLER_AUTH_METHODS,
        revocation_endpoint_auth_methods_supported: CALLER_AUTH_METHODS,
        issuer,
    })
    .into_response()
}
