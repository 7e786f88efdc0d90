//! identity-svc's error type, its one mapping to the API error (and so to
//! gRPC status codes), and its mapping to RFC 6749 §5.2 OAuth errors.

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::store::StoreError;
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A field of the request breaks a rule; `field` is its path as the
    /// caller wrote it (`agent.ceiling.scopes[1]`).
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} `{id}` already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("permission denied: {reason}")]
    Denied { reason: String },
    #[error("failed precondition: {reason}")]
    Precondition { reason: String },
    /// A malformed token request (`scope`, `audience`, `resource`); the
    /// description is what the client reads as `error_description`.
    #[error("{description}")]
    TokenRequest {
        field: &'static str,
        description: String,
    },
    /// A requested scope the agent's ceiling does not hold.
    #[error("scope `{scope}` exceeds the agent's ceiling")]
    ScopeNotAllowed { scope: String },
    /// A requested audience the agent's ceiling does not hold.
    #[error("audience `{audience}` is not in the agent's ceiling")]
    AudienceNotAllowed { audience: String },
    /// Ours, not the caller's: logged, answered as "internal error".
    #[error("{context} failed")]
    Internal {
        context: &'static str,
        source: BoxError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl IdentityError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
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

    pub fn denied(reason: impl Into<String>) -> Self {
        Self::Denied {
            reason: reason.into(),
        }
    }

    pub fn precondition(reason: impl Into<String>) -> Self {
        Self::Precondition {
            reason: reason.into(),
        }
    }

    pub fn internal(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }

    /// The error met while answering an OAuth request (`context` says doing
    /// what): the token-request rules keep their RFC 6749 codes
    /// (`invalid_request`, `invalid_scope`, RFC 8693's `invalid_target`);
    /// everything else goes through [`OAuthError::from_api`].
    pub fn into_oauth(self, context: &str) -> OAuthError {
        let code = match &self {
            Self::TokenRequest { .. } => OAuthErrorCode::InvalidRequest,
            Self::ScopeNotAllowed { .. } => OAuthErrorCode::InvalidScope,
            Self::AudienceNotAllowed { .. } => OAuthErrorCode::InvalidTarget,
            Self::Invalid { .. }
            | Self::NotFound { .. }
            | Self::AlreadyExists { .. }
            | Self::Denied { .. }
            | Self::Precondition { .. }
            | Self::Internal { .. }
            | Self::Store(_)
            | Self::Api(_) => return OAuthError::from_api(self.into(), context),
        };
        OAuthError::new(code, self.to_string())
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::Invalid { field, reason } => ApiError::InvalidArgument { field, reason },
            IdentityError::NotFound { kind, id } => ApiError::NotFound { kind, id },
            IdentityError::AlreadyExists { kind, id } => ApiError::AlreadyExists { kind, id },
            IdentityError::Denied { reason } => ApiError::PermissionDenied { reason },
            IdentityError::Precondition { reason } => ApiError::FailedPrecondition { reason },
            IdentityError::TokenRequest { field, description } => {
                ApiError::invalid(field, description)
            }
            err @ (IdentityError::ScopeNotAllowed { .. }
            | IdentityError::AudienceNotAllowed { .. }) => ApiError::PermissionDenied {
                reason: err.to_string(),
            },
            IdentityError::Internal { context, source } => ApiError::Internal { context, source },
            IdentityError::Store(err) => err.into(),
            IdentityError::Api(err) => err,
        }
    }
}

impl From<IdentityError> for Status {
    fn from(err: IdentityError) -> Self {
        ApiError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_variant_keeps_the_code_and_message_of_the_api() {
        let cases = [
            (
                IdentityError::invalid("agent.name", "is required"),
                Code::InvalidArgument,
                "invalid `agent.name`: is required",
            ),
            (
                IdentityError::not_found("agent", "agt_1"),
                Code::NotFound,
                "agent `agt_1` not found",
            ),
            (
                IdentityError::AlreadyExists {
                    kind: "agent named",
                    id: "builder".into(),
                },
                Code::AlreadyExists,
                "agent named `builder` already exists",
            ),
            (
                IdentityError::denied("needs a global admin"),
                Code::PermissionDenied,
                "permission denied: needs a global admin",
            ),
            (
                IdentityError::precondition("the agent is revoked"),
                Code::FailedPrecondition,
                "failed precondition: the agent is revoked",
            ),
            (
                IdentityError::internal("agent id", "no randomness"),
                Code::Internal,
                "internal error",
            ),
            (
                IdentityError::Store(StoreError::Unavailable {
                    context: "reading",
                    source: "down".into(),
                }),
                Code::Unavailable,
                "the database is unavailable",
            ),
        ];
        for (err, code, message) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn token_request_rules_keep_their_oauth_codes() {
        let oauth = |err: IdentityError| err.into_oauth("token request");
        let refused = oauth(IdentityError::ScopeNotAllowed { scope: "x".into() });
        assert_eq!(refused.error, OAuthErrorCode::InvalidScope);
        assert_eq!(
            refused.error_description,
            "scope `x` exceeds the agent's ceiling"
        );
        let refused = oauth(IdentityError::AudienceNotAllowed {
            audience: "y".into(),
        });
        assert_eq!(refused.error, OAuthErrorCode::InvalidTarget);
        let refused = oauth(IdentityError::TokenRequest {
            field: "scope",
            description: "scope is too long".into(),
        });
        assert_eq!(refused.error, OAuthErrorCode::InvalidRequest);
        assert_eq!(refused.error_description, "scope is too long");
        let refused = oauth(IdentityError::Store(StoreError::Unavailable {
            context: "reading",
            source: "down".into(),
        }));
        assert_eq!(refused.error, OAuthErrorCode::TemporarilyUnavailable);
    }
}
