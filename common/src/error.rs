//! The API error every service's handlers return, with its exhaustive mapping
//! to `tonic::Status`, and RFC 6749 §5.2 error JSON for the OAuth endpoints.
//!
//! Messages say what was wrong and never carry secrets or tokens: a variant
//! holds field names and identifiers, not the values a caller sent as
//! credentials.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::{Code, Status};

/// What went wrong at the API boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid `{field}`: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("unauthenticated: {reason}")]
    Unauthenticated { reason: String },
    #[error("permission denied: {reason}")]
    PermissionDenied { reason: String },
    #[error("failed precondition: {reason}")]
    FailedPrecondition { reason: String },
    #[error("{what} is unavailable")]
    Unavailable { what: String },
    #[error("internal error")]
    Internal {
        context: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn internal(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }

    /// A failed database call (`context` says doing what): UNAVAILABLE
    /// when the database cannot be reached, which a caller may retry;
    /// INTERNAL otherwise. The cause is logged, never answered.
    pub fn database(context: &'static str, err: sea_orm::DbErr) -> Self {
        crate::store::StoreError::db(context, err).into()
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let code = match &err {
            ApiError::InvalidArgument { .. } => Code::InvalidArgument,
            ApiError::NotFound { .. } => Code::NotFound,
            ApiError::AlreadyExists { .. } => Code::AlreadyExists,
            ApiError::Unauthenticated { .. } => Code::Unauthenticated,
            ApiError::PermissionDenied { .. } => Code::PermissionDenied,
            ApiError::FailedPrecondition { .. } => Code::FailedPrecondition,
            ApiError::Unavailable { .. } => Code::Unavailable,
            ApiError::Internal { context, source } => {
                tracing::error!(context, error = %source, "internal error");
                Code::Internal
            }
        };
        Status::new(code, err.to_string())
    }
}

/// RFC 6749 §5.2 error codes (plus RFC 8693 §2.2.2's `invalid_target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidTarget,
    ServerError,
    TemporarilyUnavailable,
}

/// An OAuth error response; `error_description` is meant for the developer.
#[derive(Debug, Clone, Serialize)]
pub struct OAuthError {
    pub error: OAuthErrorCode,
    pub error_description: String,
    /// RFC 6749 §5.2: a failed HTTP Basic client authentication answers 401
    /// with a `WWW-Authenticate` challenge.
    #[serde(skip)]
    pub basic_auth_challenge: bool,
}

impl OAuthError {
    pub fn new(error: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            error,
            error_description: description.into(),
            basic_auth_challenge: false,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self.error {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthErrorCode::InvalidRequest
            | OAuthErrorCode::InvalidGrant
            | OAuthErrorCode::UnauthorizedClient
            | OAuthErrorCode::UnsupportedGrantType
            | OAuthErrorCode::InvalidScope
            | OAuthErrorCode::InvalidTarget => StatusCode::BAD_REQUEST,
        }
    }
}

impl OAuthError {
    /// An [`ApiError`] met while answering an OAuth request (`context` says
    /// doing what), by one exhaustive map: a bad request is
    /// `invalid_request`, an unauthenticated caller `invalid_client`, a
    /// missing, refused or unusable grant `invalid_grant`, an unavailable
    /// dependency `temporarily_unavailable`, an internal failure
    /// `server_error` (logged here, not shown to the client).
    pub fn from_api(err: ApiError, context: &str) -> Self {
        let code = match &err {
            ApiError::InvalidArgument { .. } | ApiError::AlreadyExists { .. } => {
                OAuthErrorCode::InvalidRequest
            }
            ApiError::Unauthenticated { .. } => OAuthErrorCode::InvalidClient,
            ApiError::NotFound { .. }
            | ApiError::PermissionDenied { .. }
            | ApiError::FailedPrecondition { .. } => OAuthErrorCode::InvalidGrant,
            ApiError::Unavailable { .. } => OAuthErrorCode::TemporarilyUnavailable,
            ApiError::Internal {
                context: at,
                source,
            } => {
                tracing::error!(context = at, error = %source, "{context} failed");
                return Self::new(OAuthErrorCode::ServerError, "internal error");
            }
        };
        Self::new(code, err.to_string())
    }

    /// The RFC 6749 code as it appears on the wire.
    pub fn code(&self) -> &'static str {
        match self.error {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// OAuth errors over gRPC (common.proto): the message is
/// `<code>: <description>`, the status follows the code.
impl From<OAuthError> for Status {
    fn from(err: OAuthError) -> Self {
        let code = match err.error {
            OAuthErrorCode::InvalidRequest
            | OAuthErrorCode::UnsupportedGrantType
            | OAuthErrorCode::InvalidTarget => Code::InvalidArgument,
            OAuthErrorCode::InvalidClient => Code::Unauthenticated,
            OAuthErrorCode::InvalidGrant
            | OAuthErrorCode::UnauthorizedClient
            | OAuthErrorCode::InvalidScope => Code::PermissionDenied,
            OAuthErrorCode::TemporarilyUnavailable => Code::Unavailable,
            OAuthErrorCode::ServerError => Code::Internal,
        };
        Status::new(code, format!("{}: {}", err.code(), err.error_description))
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        let challenge = self.basic_auth_challenge && status == StatusCode::UNAUTHORIZED;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        // RFC 6749 §5.1: token responses must not be cached, errors included.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"agentsec\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_each_variant_to_its_code() {
        let cases = [
            (
                ApiError::invalid("agent_id", "must not be empty"),
                Code::InvalidArgument,
            ),
            (ApiError::not_found("agent", "agt_1"), Code::NotFound),
            (
                ApiError::AlreadyExists {
                    kind: "agent",
                    id: "agt_1".into(),
                },
                Code::AlreadyExists,
            ),
            (
                ApiError::Unauthenticated {
                    reason: "no bearer token".into(),
                },
                Code::Unauthenticated,
            ),
            (
                ApiError::PermissionDenied {
                    reason: "not an admin".into(),
                },
                Code::PermissionDenied,
            ),
            (
                ApiError::FailedPrecondition {
                    reason: "agent revoked".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                ApiError::Unavailable {
                    what: "database".into(),
                },
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn internal_errors_hide_their_source() {
        let status = Status::from(ApiError::internal(
            "loading agent",
            "password authentication failed for user secret_user",
        ));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(ApiError::invalid("page_size", "must be at most 1000"));
        assert_eq!(
            status.message(),
            "invalid `page_size`: must be at most 1000"
        );
    }

    #[test]
    fn api_errors_map_to_oauth_codes_and_hide_internal_causes() {
        let cases = [
            (ApiError::invalid("scope", "is empty"), "invalid_request"),
            (
                ApiError::Unauthenticated {
                    reason: "no client".into(),
                },
                "invalid_client",
            ),
            (ApiError::not_found("grant", "grt_1"), "invalid_grant"),
            (
                ApiError::PermissionDenied {
                    reason: "not yours".into(),
                },
                "invalid_grant",
            ),
            (
                ApiError::Unavailable {
                    what: "identity-svc".into(),
                },
                "temporarily_unavailable",
            ),
            (
                ApiError::internal("signing", "key file secret"),
                "server_error",
            ),
        ];
        for (err, code) in cases {
            let oauth = OAuthError::from_api(err, "test");
            assert_eq!(oauth.code(), code);
            assert!(!oauth.error_description.contains("secret"));
        }
    }

    #[test]
    fn oauth_errors_render_rfc6749_json() {
        let mut err = OAuthError::new(OAuthErrorCode::InvalidClient, "unknown client");
        err.basic_auth_challenge = true;
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&HeaderValue::from_static("Basic realm=\"agentsec\""))
        );
        let json = serde_json::to_value(OAuthError::new(
            OAuthErrorCode::InvalidScope,
            "scope `admin` is beyond the agent's ceiling",
        ))
        .unwrap_or_default();
        assert_eq!(json["error"], "invalid_scope");
        assert_eq!(
            json["error_description"],
            "scope `admin` is beyond the agent's ceiling"
        );
    }
}
