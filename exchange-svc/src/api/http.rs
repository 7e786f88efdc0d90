//! The OAuth 2.0 HTTP endpoints of exchange-svc: `POST /oauth2/token`
//! (RFC 8693 token exchange only), `POST /oauth2/introspect` (RFC 7662,
//! the caller authenticated by a bearer token of identity-svc), RFC 8414
//! metadata and the JWKS.
//!
//! The token endpoint does not authenticate clients: the actor token
//! authenticates the agent. A `client_id` parameter (sent by public-client
//! libraries) is accepted and ignored; client secrets and assertions are
//! refused rather than silently ignored.

use std::sync::Arc;

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::http_boundary::{guard, oauth_error, BodyRules};
use agentsec_common::oauth_http::{authorization, json_no_store, Form, Introspection};
use agentsec_proto::exchange::v1::ExchangeRequest;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::domain::claims::DelegatedClaims;
use crate::exchange::request::{invalid_request, printable, TOKEN_EXCHANGE};
use crate::exchange::Exchanger;

/// Room for two 8 KiB tokens and the rest.
const MAX_BODY: usize = 24 * 1024;

pub fn router(exchanger: Arc<Exchanger>) -> Router {
    let jwks = exchanger.jwks.clone();
    let routes = Router::new()
        .route("/oauth2/token", post(token))
        .route("/oauth2/introspect", post(introspect))
        .route("/.well-known/oauth-authorization-server", get(metadata));
    guard(
        routes,
        BodyRules {
            max_bytes: MAX_BODY,
            media_type: "application/x-www-form-urlencoded",
            post_paths: &["/oauth2/token", "/oauth2/introspect"],
            render: oauth_error,
        },
    )
    .with_state(exchanger)
    .merge(agentsec_common::keys::jwks_router(jwks))
}

#[derive(Serialize)]
struct TokenResponse {
    access_token: String,
    issued_token_type: &'static str,
    token_type: &'static str,
    expires_in: i64,
    scope: String,
}

async fn token(
    State(exchanger): State<Arc<Exchanger>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let mut form = Form::parse(&headers, &body, &["audience", "resource"])?;
        if authorization(&headers, "Basic").is_some()
            || form.get("client_secret").is_some()
            || form.get("client_assertion").is_some()
        {
            return Err(invalid_request(
                "this endpoint does not authenticate clients: the actor_token identifies the agent",
            ));
        }
        match form.take("grant_type").as_deref() {
            Some(TOKEN_EXCHANGE) => {}
            None => return Err(invalid_request("grant_type is required")),
            Some(other) => {
                return Err(OAuthError::new(
                    OAuthErrorCode::UnsupportedGrantType,
                    format!(
                        "grant_type `{}` is not supported (use {TOKEN_EXCHANGE})",
                        printable(other)
                    ),
                ))
            }
        }
        let request = ExchangeRequest {
            subject_token: form.take("subject_token").unwrap_or_default(),
            subject_token_type: form.take("subject_token_type").unwrap_or_default(),
            actor_token: form.take("actor_token").unwrap_or_default(),
            actor_token_type: form.take("actor_token_type").unwrap_or_default(),
            audience: form.take_all("audience"),
            resource: form.take_all("resource"),
            scope: form.take("scope").unwrap_or_default(),
            requested_token_type: form.take("requested_token_type").unwrap_or_default(),
        };
        exchanger.exchange(request).await
    }
    .await;
    match result {
        Ok(issued) => json_no_store(&TokenResponse {
            access_token: issued.access_token,
            issued_token_type: issued.issued_token_type,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: issued.scope,
        }),
        Err(err) => err.into_response(),
    }
}

/// An active token: its claims (`act` and `grant_id` included) plus the
/// RFC 7662 names for the client and the token type.
#[derive(Serialize)]
struct ActiveClaims {
    client_id: String,
    token_type: &'static str,
    #[serde(flatten)]
    claims: DelegatedClaims,
}

async fn introspect(
    State(exchanger): State<Arc<Exchanger>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let bearer = authorization(&headers, "Bearer").ok_or_else(|| {
            OAuthError::new(
                OAuthErrorCode::InvalidClient,
                "authenticate with a bearer token of identity-svc",
            )
        })?;
        let visible =
            exchanger
                .authenticate_introspection(bearer)
                .await
                .map_err(|err| match err {
                    ApiError::Unauthenticated { reason } => {
                        OAuthError::new(OAuthErrorCode::InvalidClient, reason)
                    }
                    other => OAuthError::from_api(other, "introspection"),
                })?;
        let form = Form::parse(&headers, &body, &[])?;
        let token = form
            .get("token")
            .ok_or_else(|| invalid_request("token is required"))?;
        let claims = exchanger
            .introspect(token, &visible)
            .await
            .map_err(|err| OAuthError::from_api(err, "introspection"))?;
        Ok::<_, OAuthError>(Introspection::of(claims.map(|claims| ActiveClaims {
            client_id: claims.azp.clone(),
            token_type: "Bearer",
            claims,
        })))
    }
    .await;
    match result {
        Ok(response) => json_no_store(&response),
        Err(err) => err.into_response(),
    }
}

/// RFC 8414 authorization server metadata.
#[derive(Serialize)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
    jwks_uri: String,
    introspection_endpoint: String,
    grant_types_supported: [&'static str; 1],
    response_types_supported: [&'static str; 0],
    token_endpoint_auth_methods_supported: [&'static str; 1],
    introspection_endpoint_auth_methods_supported: [&'static str; 1],
}

async fn metadata(State(exchanger): State<Arc<Exchanger>>) -> Response {
    let issuer = exchanger.issuer.clone();
    Json(Metadata {
        token_endpoint: format!("{issuer}/oauth2/token"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        introspection_endpoint: format!("{issuer}/oauth2/introspect"),
        grant_types_supported: [TOKEN_EXCHANGE],
        response_types_supported: [],
        token_endpoint_auth_methods_supported: ["none"],
        introspection_endpoint_auth_methods_supported: ["bearer"],
        issuer,
    })
    .into_response()
}
