//! exchange-svc's error type, with its one mapping to the API error (and so
//! to gRPC status codes) and its answer on the OAuth endpoints.

use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::store::StoreError;
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("permission denied: {reason}")]
    Denied { reason: String },
    #[error("failed precondition: {reason}")]
    Precondition { reason: String },
    #[error("{what} is unavailable")]
    Unavailable { what: String },
    /// No grant authorizes an exchange hop, or the chain would grow beyond
    /// what is allowed (RFC 6749 `invalid_grant`).
    #[error("{reason}")]
    GrantRefused { reason: String },
    /// A scope beyond what may be delegated or what policy allows (RFC 6749
    /// `invalid_scope`).
    #[error("{reason}")]
    ScopeRefused { reason: String },
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

impl ExchangeError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn internal(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            context,
            source: source.into(),
        }
    }

    pub(crate) fn grant_refused(reason: impl Into<String>) -> Self {
        Self::GrantRefused {
            reason: reason.into(),
        }
    }

    pub(crate) fn scope_refused(reason: impl Into<String>) -> Self {
        Self::ScopeRefused {
            reason: reason.into(),
        }
    }

    /// The RFC 6749 §5.2 answer of an OAuth endpoint met doing `context`:
    /// refused grants and scopes keep their own codes, the rest goes
    /// through [`OAuthError::from_api`].
    pub fn into_oauth(self, context: &str) -> OAuthError {
        match self {
            Self::GrantRefused { reason } => OAuthError::new(OAuthErrorCode::InvalidGrant, reason),
            Self::ScopeRefused { reason } => OAuthError::new(OAuthErrorCode::InvalidScope, reason),
            other => OAuthError::from_api(other.into(), context),
        }
    }
}

impl From<ExchangeError> for ApiError {
    fn from(err: ExchangeError) -> Self {
        match err {
            ExchangeError::Invalid { field, reason } => ApiError::InvalidArgument { field, reason },
            ExchangeError::NotFound { kind, id } => ApiError::NotFound { kind, id },
            ExchangeError::Denied { reason }
            | ExchangeError::GrantRefused { reason }
            | ExchangeError::ScopeRefused { reason } => ApiError::PermissionDenied { reason },
            ExchangeError::Precondition { reason } => ApiError::FailedPrecondition { reason },
            ExchangeError::Unavailable { what } => ApiError::Unavailable { what },
            ExchangeError::Internal { context, source } => ApiError::Internal { context, source },
            ExchangeError::Store(err) => err.into(),
            ExchangeError::Api(err) => err,
        }
    }
}

impl From<ExchangeError> for Status {
    fn from(err: ExchangeError) -> Self {
        ApiError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_error_keeps_its_code_and_message() {
        let cases = [
            (
                ExchangeError::invalid("grant.purpose", "must be 1-1024 chars"),
                Code::InvalidArgument,
                "invalid `grant.purpose`: must be 1-1024 chars",
            ),
            (
                ExchangeError::NotFound {
                    kind: "grant",
                    id: "grt_1".into(),
                },
                Code::NotFound,
                "grant `grt_1` not found",
            ),
            (
                ExchangeError::Precondition {
                    reason: "agent agt_1 is not ACTIVE".into(),
                },
                Code::FailedPrecondition,
                "failed precondition: agent agt_1 is not ACTIVE",
            ),
            (
                ExchangeError::Store(StoreError::Unavailable {
                    context: "reading grants",
                    source: "down".into(),
                }),
                Code::Unavailable,
                "the database is unavailable",
            ),
            (
                ExchangeError::internal("grant id", "no entropy"),
                Code::Internal,
                "internal error",
            ),
        ];
        for (err, code, message) in cases {
            let status = Status::from(err);
            assert_eq!((status.code(), status.message()), (code, message));
        }
    }

    #[test]
    fn refused_grants_and_scopes_keep_their_oauth_codes() {
        let grant = ExchangeError::grant_refused("no active grant").into_oauth("exchange");
        assert_eq!(grant.error, OAuthErrorCode::InvalidGrant);
        assert_eq!(grant.error_description, "no active grant");
        let scope = ExchangeError::scope_refused("scope `x` is beyond").into_oauth("exchange");
        assert_eq!(scope.error, OAuthErrorCode::InvalidScope);
        let outage = ExchangeError::Store(StoreError::Unavailable {
            context: "reading grants",
            source: "down".into(),
        })
        .into_oauth("exchange");
        assert_eq!(outage.error, OAuthErrorCode::TemporarilyUnavailable);
        let internal = ExchangeError::internal("signing", "secret key file").into_oauth("exchange");
        assert_eq!(internal.error, OAuthErrorCode::ServerError);
        assert!(!internal.error_description.contains("secret"));
    }
}
