//! What every HTTP endpoint answers before its handler runs, as JSON in the
//! RFC 6749 error shape (`{"error": "invalid_request", "error_description":
//! ...}`) rather than axum's plain-text rejections: a body over the limit
//! (413, naming it, and `Connection: close`, since the rest of the body is
//! never read), a body of another media type (415), a method the route does
//! not take (405, with `Allow`).

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::Router;

/// How the endpoints of one router take their bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// Largest body, in bytes.
    pub max_bytes: usize,
    /// The media type a POST body must have (parameters such as `charset`
    /// aside).
    pub media_type: &'static str,
}

/// `router` with `rules` enforced and its rejections answered as JSON.
pub fn guard<S: Clone + Send + Sync + 'static>(router: Router<S>, rules: BodyRules) -> Router<S> {
    router
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| guarded(rules, request, next),
        ))
        .layer(DefaultBodyLimit::max(rules.max_bytes))
}

fn error(status: StatusCode, description: String) -> Response {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": description,
    });
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The media type of a request's body, lowercase, without parameters.
pub fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

async fn guarded(rules: BodyRules, request: Request, next: Next) -> Response {
    if request.method() == Method::POST && media_type(request.headers()) != rules.media_type {
        return close(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be {}", rules.media_type),
        ));
    }
    let declared_too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|length| length > rules.max_bytes as u64);
    if declared_too_large {
        return too_large(rules);
    }
    let response = next.run(request).await;
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(rules),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = response.headers().get(header::ALLOW).cloned();
            let described = allow
                .as_ref()
                .and_then(|allow| allow.to_str().ok())
                .map_or_else(String::new, |allow| format!("; use {allow}"));
            let mut answer = error(
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

fn too_large(rules: BodyRules) -> Response {
    close(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {} bytes", rules.max_bytes),
    ))
}

/// The request body was not read (or not wholly): the connection cannot
/// carry another request.
fn close(mut response: Response<Body>) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
