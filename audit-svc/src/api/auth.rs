//! Who may call audit-svc: every call but GetVerificationKeys carries a
//! token of identity-svc (`authorization: Bearer`), verified offline
//! against its published keys (`admin.jwks_uri`).
//!
//! | call | needs |
//! |---|---|
//! | AppendEvents, AppendEventStream | a service token (no `tenant`) for `audience` with `agentsec:audit:append` |
//! | QueryEvents, TailEvents, ExportEvents | an admin token, or a token for `audience` with `agentsec:audit:read`; a `tenant` claim limits the events to that tenant |
//! | VerifyChain, ListCheckpoints, GetCheckpoint | the same readers (no event content is returned) |
//! | GetVerificationKeys | nobody: public |

use std::sync::Arc;

use agentsec_common::admin_token::{
    AdminConfig, AdminVerifier, IdentityToken, AUDIT_APPEND_SCOPE, AUDIT_READ_SCOPE,
};
use agentsec_common::bearer::bearer_token;
use agentsec_common::error::ApiError;
use agentsec_common::tls::ClientTls;
use tonic::Request;

/// Whose events a reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// Every tenant's.
    Global,
    /// Only this tenant's.
    Tenant(String),
}

impl Reader {
    /// The tenant a filter must be limited to: the reader's own, which a
    /// filter may name but not change (PERMISSION_DENIED).
    pub fn limit(&self, named: Option<String>) -> Result<Option<String>, ApiError> {
        match (self, named) {
            (Self::Global, named) => Ok(named),
            (Self::Tenant(own), None) => Ok(Some(own.clone())),
            (Self::Tenant(own), Some(named)) if named == *own => Ok(Some(named)),
            (Self::Tenant(_), Some(_)) => Err(ApiError::PermissionDenied {
                reason: "a tenant's reader may only read its own tenant (`filter.tenant`)"
                    .to_owned(),
            }),
        }
    }
}

pub struct Callers {
    verifier: AdminVerifier,
    audience: String,
}

fn has_scope(token: &IdentityToken, scope: &str) -> bool {
    token.scope.split(' ').any(|held| held == scope)
}

impl Callers {
    pub fn new(admin: &AdminConfig, audience: &str, tls: &Arc<ClientTls>) -> Result<Self, String> {
        let verifier = AdminVerifier::new(admin, "an admin token", tls)?.ok_or_else(|| {
            "admin.jwks_uri (or admin.jwks) and admin.issuer are required".to_owned()
        })?;
        Ok(Self {
            verifier,
            audience: audience.to_owned(),
        })
    }

    async fn verified<T>(&self, request: &Request<T>) -> Result<IdentityToken, ApiError> {
        let token = bearer_token(request.metadata())?;
        self.verifier.verify_identity_token(token).await
    }

    /// A service allowed to append; PERMISSION_DENIED for anyone else.
    pub async fn appender<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        let token = self.verified(request).await?;
        if token.audiences.contains(&self.audience)
            && token.tenant.is_none()
            && has_scope(&token, AUDIT_APPEND_SCOPE)
        {
            return Ok(());
        }
        Err(ApiError::PermissionDenied {
            reason: format!(
                "appending needs a service token with scope `{AUDIT_APPEND_SCOPE}` for audience \
                 `{}`",
                self.audience
            ),
        })
    }

    /// An admin or auditor, and whose events it may read.
    pub async fn reader<T>(&self, request: &Request<T>) -> Result<Reader, ApiError> {
        let token = self.verified(request).await?;
        let tenant = token.tenant.clone();
        let auditor =
            token.audiences.contains(&self.audience) && has_scope(&token, AUDIT_READ_SCOPE);
        if !auditor {
            self.verifier
                .admin(token)
                .map_err(|_| ApiError::PermissionDenied {
                    reason: format!(
                        "reading the audit trail needs an admin token or a token with scope \
                     `{AUDIT_READ_SCOPE}` for audience `{}`",
                        self.audience
                    ),
                })?;
        }
        Ok(tenant.map_or(Reader::Global, Reader::Tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_reader_is_held_to_its_tenant() {
        let acme = Reader::Tenant("acme".to_owned());
        assert_eq!(acme.limit(None).unwrap(), Some("acme".to_owned()));
        assert_eq!(
            acme.limit(Some("acme".to_owned())).unwrap(),
            Some("acme".to_owned())
        );
        let err = acme.limit(Some("globex".to_owned())).unwrap_err();
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(Reader::Global.limit(None).unwrap(), None);
        assert_eq!(
            Reader::Global.limit(Some("globex".to_owned())).unwrap(),
            Some("globex".to_owned())
        );
    }
}
