//! Authentication of admin calls: an admin token of identity-svc (a JWT
//! signed with one of the keys it publishes at `admin.jwks_uri`, issued by
//! `admin.issuer`, for `admin.audience`, with scope `agentsec:admin`),
//! verified locally by [`AdminVerifier`]. A `tenant` claim makes the admin
//! tenant-scoped.
//!
//! Limit: the token is verified offline (signature, issuer,
//! time claims). A token identity-svc has revoked, or one of a suspended
//! admin agent, stays accepted here until it expires; identity-svc's admin
//! tokens are short-lived.

use std::sync::Arc;

use agentsec_common::admin_token::{AdminConfig, AdminToken, AdminVerifier};
use agentsec_common::tls::ClientTls;

use crate::config::{DecisionCallers, DecisionConfig};
use agentsec_common::error::ApiError;
use tonic::metadata::MetadataMap;

pub use agentsec_common::admin_token::AdminScope;

/// An authenticated admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The token's `sub` (the author of policy changes).
    pub subject: String,
    pub scope: AdminScope,
}

impl From<AdminToken> for Admin {
    fn from(token: AdminToken) -> Self {
        Self {
            subject: token.subject,
            scope: AdminScope::of(token.tenant),
        }
    }
}

impl Admin {
    /// PERMISSION_DENIED unless this admin may act on `tenant`.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.scope.covers(tenant) {
            return Ok(());
        }
        Err(ApiError::PermissionDenied {
            reason: "a tenant-scoped admin may only act on its own tenant".to_owned(),
        })
    }
}

/// Verifies admin tokens, or refuses every admin call when unconfigured.
pub struct AdminAuth {
    verifier: Option<AdminVerifier>,
    /// The audience decision callers' tokens carry; `None` = decisions are
    /// not authenticated (`decisions.callers = "any"`).
    caller_audience: Option<String>,
}

impl AdminAuth {
    pub fn new(
        config: &AdminConfig,
        decisions: &DecisionConfig,
        tls: &Arc<ClientTls>,
    ) -> Result<Self, String> {
        Ok(Self {
            verifier: AdminVerifier::new(config, "an admin token", tls)?,
            caller_audience: (decisions.callers == DecisionCallers::Bearer)
                .then(|| decisions.caller_audience.clone()),
        })
    }

    /// Checks who asks for a decision: with `decisions.callers = "bearer"`,
    /// a valid token of identity-svc for `decisions.caller_audience`, or an
    /// admin token (UNAUTHENTICATED without a valid token, PERMISSION_DENIED
    /// for another audience).
    pub async fn decision_caller(&self, metadata: &MetadataMap) -> Result<(), ApiError> {
        let Some(audience) = &self.caller_audience else {
            return Ok(());
        };
        let Some(verifier) = &self.verifier else {
            // The config refuses this combination; fail closed regardless.
            return Err(ApiError::FailedPrecondition {
                reason: "decision callers cannot be verified (admin.jwks_uri)".to_owned(),
            });
        };
        let token = agentsec_common::bearer::bearer_token(metadata)?;
        let caller = verifier.verify_identity_token(token).await?;
        if caller.audiences.contains(audience) {
            return Ok(());
        }
        // Admin tokens may ask too (an operator trying a decision).
        verifier
            .admin(caller)
            .map(|_| ())
            .map_err(|_| ApiError::PermissionDenied {
                reason: format!(
                    "decision callers need a token for audience `{audience}` or an admin token"
                ),
            })
    }

    /// The admin behind the `authorization: Bearer` metadata.
    pub async fn admin(&self, metadata: &MetadataMap) -> Result<Admin, ApiError> {
        let Some(verifier) = &self.verifier else {
            return Err(ApiError::FailedPrecondition {
                reason: "admin authentication is not configured (admin.jwks_uri)".to_owned(),
            });
        };
        let token = agentsec_common::bearer::bearer_token(metadata)?;
        Ok(verifier.verify(token).await?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(tenant: Option<&str>) -> Admin {
        AdminToken {
            subject: "agt_admin".to_owned(),
            tenant: tenant.map(str::to_owned),
        }
        .into()
    }

    #[test]
    fn the_tenant_claim_scopes_the_admin() {
        let global = admin(None);
        assert_eq!(global.scope, AdminScope::Global);
        assert_eq!(global.subject, "agt_admin");
        assert!(global.check_tenant("acme").is_ok());
        let acme = admin(Some("acme"));
        assert_eq!(acme.scope, AdminScope::Tenant("acme".into()));
        assert!(acme.check_tenant("acme").is_ok());
        let err = tonic::Status::from(acme.check_tenant("globex").unwrap_err());
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn unconfigured_admin_auth_refuses_admin_calls() {
        let auth = AdminAuth::new(
            &AdminConfig::default(),
            &DecisionConfig::default(),
            &ClientTls::public_roots().unwrap(),
        )
        .unwrap();
        assert!(auth.verifier.is_none());
    }
}
