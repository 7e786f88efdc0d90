//! audit-svc's error type and its mapping to gRPC status codes.

use std::sync::Arc;

use agentsec_common::error::ApiError;
use tonic::Status;

use crate::chain::writer::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("events[{index}].{field} {reason}")]
    InvalidEvent {
        index: usize,
        field: String,
        reason: String,
    },
    #[error("invalid `{field}`: {reason}")]
    InvalidRequest { field: &'static str, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error(transparent)]
    Write(Arc<WriteError>),
    #[error("audit store read failed: {0}")]
    Read(#[from] sea_orm::DbErr),
    #[error("reading the verification keys failed: {0}")]
    Keys(#[from] agentsec_common::keys::store::KeyStoreError),
    #[error("a verification worker failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl AuditError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field,
            reason: reason.into(),
        }
    }
}

impl From<AuditError> for Status {
    fn from(err: AuditError) -> Self {
        let api = match err {
            AuditError::InvalidEvent {
                index,
                field,
                reason,
            } => ApiError::invalid(format!("events[{index}].{field}"), reason),
            AuditError::InvalidRequest { field, reason } => ApiError::invalid(field, reason),
            AuditError::NotFound { what } => ApiError::not_found("checkpoint", what),
            AuditError::Write(write) => match write.as_ref() {
                // Nothing of the batch was stored: the sender retries with
                // the same ids.
                WriteError::Storage(source) => {
                    tracing::error!(error = %source, "append failed");
                    ApiError::Unavailable {
                        what: "the audit store".to_owned(),
                    }
                }
                WriteError::Stopped => ApiError::Unavailable {
                    what: "the chain writer (shutting down)".to_owned(),
                },
                WriteError::Signing(reason) => {
                    ApiError::internal("signing a checkpoint", reason.clone())
                }
            },
            AuditError::Read(source) => ApiError::database("reading the audit store", source),
            AuditError::Keys(source) => ApiError::internal("reading verification keys", source),
            AuditError::Worker(source) => ApiError::internal("verifying the chain", source),
            AuditError::Api(api) => api,
        };
        api.into()
    }
}
