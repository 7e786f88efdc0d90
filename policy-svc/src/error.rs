//! policy-svc's error type and its one map to [`ApiError`], hence to gRPC
//! status codes.

use agentsec_common::error::ApiError;
use agentsec_common::store::StoreError;
use tonic::Status;

use crate::domain::engine::RequestError;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid `{field}`: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error(
        "expected_version is {expected} but the current version of tenant `{tenant}` is {current}"
    )]
    VersionMismatch {
        tenant: String,
        expected: u64,
        current: u64,
    },
    /// Other writers kept taking the next version of the tenant's set.
    #[error(
        "storing the policy set of tenant `{tenant}` (other writers kept taking the next version)"
    )]
    Contended { tenant: String },
    #[error("{context} failed")]
    Internal {
        context: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl PolicyError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
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
}

impl From<PolicyError> for ApiError {
    fn from(err: PolicyError) -> Self {
        match err {
            PolicyError::Invalid { field, reason } => ApiError::invalid(field, reason),
            PolicyError::NotFound { kind, id } => ApiError::not_found(kind, id),
            PolicyError::VersionMismatch { .. } => ApiError::FailedPrecondition {
                reason: err.to_string(),
            },
            PolicyError::Contended { .. } => ApiError::Unavailable {
                what: err.to_string(),
            },
            PolicyError::Internal { context, source } => ApiError::Internal { context, source },
            PolicyError::Request(RequestError::InvalidArgument { field, reason }) => {
                ApiError::invalid(field, reason)
            }
            PolicyError::Store(err) => err.into(),
            PolicyError::Api(api) => api,
        }
    }
}

impl From<PolicyError> for Status {
    fn from(err: PolicyError) -> Self {
        ApiError::from(err).into()
    }
}

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> Self {
        PolicyError::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_variant_keeps_its_status() {
        let cases = [
            (PolicyError::invalid("tenant", "bad"), Code::InvalidArgument),
            (
                PolicyError::NotFound {
                    kind: "policy set version",
                    id: "acme@3".into(),
                },
                Code::NotFound,
            ),
            (
                PolicyError::VersionMismatch {
                    tenant: "acme".into(),
                    expected: 1,
                    current: 2,
                },
                Code::FailedPrecondition,
            ),
            (
                PolicyError::Contended {
                    tenant: "acme".into(),
                },
                Code::Unavailable,
            ),
            (
                PolicyError::internal("decoding", "bad bytes"),
                Code::Internal,
            ),
            (
                PolicyError::Store(StoreError::db(
                    "reading",
                    sea_orm::DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout),
                )),
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }
}
