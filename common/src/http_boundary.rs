//! What every HTTP endpoint answers before its handler runs, as JSON in the
//! RFC 6749 error shape (`{"error": "invalid_request", "error_description":
//! ...}`) rather than axum's plain-text rejections: a body over the limit
//! (413, naming it, and `Connection: close`, since the rest of the body is
//! never read), a body of another media type (415), a method the route does
//! not take (405, with `Allow`).

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::Router;

use crate::error::{OAuthError, OAuthErrorCode};
use crate::oauth_http::no_store;

/// How the endpoints of one router take their bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// The media type a POST body must have (parameters such as `charset`
    /// aside).
    pub media_type: &'static str,
    /// The paths that take POST (the others answer 405 to it, not 415).
    pub post_paths: &'static [&'static str],
    /// The error body of the router's protocol, from status and
    /// description ([`oauth_error`] for OAuth endpoints).
    pub render: fn(StatusCode, String) -> Response,
}

const X_REQUEST_ID: &str = "x-request-id";

/// `router` with `rules` enforced and its rejections answered as JSON.
pub fn guard<S: Clone + Send + Sync + 'static>(router: Router<S>, rules: BodyRules) -> Router<S> {
    router
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| guarded(rules, request, next),
        ))
        .layer(DefaultBodyLimit::max(rules.max_bytes))
}

/// An RFC 6749 §5.2 error (`invalid_request`) with `status`, not stored by
/// caches.
pub fn oauth_error(status: StatusCode, description: String) -> Response {
    let mut response = OAuthError::new(OAuthErrorCode::InvalidRequest, description).into_response();
    *response.status_mut() = status;
    no_store(response)
}

/// Whether a request's body is of `expected` media type (parameters such as
/// `charset` aside, case ignored).
pub fn has_media_type(headers: &axum::http::HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(expected))
}

/// The response, with the request's `X-Request-ID` echoed (AuthZEN asks it
/// of every answer; the handlers echo theirs).
async fn guarded(rules: BodyRules, request: Request, next: Next) -> Response {
    let request_id = request.headers().get(X_REQUEST_ID).cloned();
    let mut response = checked(rules, request, next).await;
    if let Some(id) = request_id {
        response.headers_mut().entry(X_REQUEST_ID).or_insert(id);
    }
    response
}

async fn checked(rules: BodyRules, request: Request, next: Next) -> Response {
    let http1 = request.version() < Version::HTTP_2;
    let takes_post = rules.post_paths.contains(&request.uri().path());
    if request.method() == Method::POST
        && takes_post
        && !has_media_type(request.headers(), rules.media_type)
    {
        let refused = (rules.render)(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be {}", rules.media_type),
        );
        return close(refused, http1);
    }
    let declared_too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|length| length > rules.max_bytes as u64);
    if declared_too_large {
        return too_large(rules, http1);
    }
    let response = next.run(request).await;
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(rules, http1),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = response.headers().get(header::ALLOW).cloned();
            let described = allow
                .as_ref()
                .and_then(|allow| allow.to_str().ok())
                .map_or_else(String::new, |allow| format!("; use {allow}"));
            let mut answer = (rules.render)(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("this endpoint does not take this method{described}"),
            );
            if let Some(allow) = allow {
                answer.headers_mut().insert(header::ALLOW, allow);
            }
            answer
        }
        _ => response,
    }
}

fn too_large(rules: BodyRules, http1: bool) -> Response {
    let refused = (rules.render)(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {} bytes", rules.max_bytes),
    );
    close(refused, http1)
}

/// The request body was not read (or not wholly): an HTTP/1 connection
/// cannot carry another request (HTTP/2 has no `Connection` header: the
/// stream is reset instead).
fn close(mut response: Response, http1: bool) -> Response {
    if http1 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
