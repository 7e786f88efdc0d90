//! Whether a delegated token of this service is active (RFC 7662): its
//! signature, issuer and time claims hold, the grant it was issued under is
//! neither revoked nor expired, and every agent of its chain is still
//! active at identity-svc. So revoking a grant, or suspending any agent of
//! a chain, makes every token derived through it inactive at once.

use agentsec_common::error::ApiError;
use agentsec_common::jwt::Clock;
use agentsec_common::keys;

use super::request::MAX_TOKEN_BYTES;
use super::{Exchanger, Inactive};
use crate::domain::claims::DelegatedClaims;
use crate::store::grants::GrantStore;

/// Which delegated tokens an introspection caller may learn about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    Tenant(String),
    Every,
}

impl<S: GrantStore> Exchanger<S> {
    /// The caller of introspection: any valid token of identity-svc (a
    /// registered agent or an admin), verified offline. Returns what it may
    /// see: the tokens of its tenant, or of every tenant for a token
    /// without one (a global admin, a platform service).
    pub async fn authenticate_introspection(&self, bearer: &str) -> Result<Visible, ApiError> {
        let verifier = self
            .identity_tokens
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable {
                what: "identity-svc's keys (admin.jwks_uri is not configured)".to_owned(),
            })?;
        let caller = verifier.verify_identity_token(bearer).await?;
        Ok(match caller.tenant {
            Some(tenant) => Visible::Tenant(tenant),
            None => Visible::Every,
        })
    }

    /// The claims of an active delegated token `visible` to the caller;
    /// `None` when it is not active, or is another tenant's (RFC 7662 §4
    /// lets the answer depend on who asks: no caller learns of another
    /// tenant's people and agents). An error means the answer is unknown.
    pub async fn introspect(
        &self,
        token: &str,
        visible: &Visible,
    ) -> Result<Option<DelegatedClaims>, ApiError> {
        match self.verify_delegated(token).await {
            Ok(claims) => Ok(match visible {
                Visible::Tenant(own) if *own != claims.tenant => None,
                _ => Some(claims),
            }),
            Err(Inactive::Invalid | Inactive::Revoked) => Ok(None),
            Err(Inactive::Failed(err)) => Err(err),
        }
    }

    /// Verifies a delegated token of this service and that it is still
    /// active.
    pub(super) async fn verify_delegated(&self, token: &str) -> Result<DelegatedClaims, Inactive> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Inactive::Invalid);
        }
        let claims: DelegatedClaims = self
            .jwks
            .verify(
                token,
                &keys::own_token_rules(&self.issuer),
                Clock::At(chrono::Utc::now().timestamp()),
            )
            .and_then(|verified| verified.claims_as())
            .map_err(|_| Inactive::Invalid)?;
        if !claims.grant_id.is_empty() {
            let active = self
                .grants
                .is_active(&claims.grant_id, chrono::Utc::now())
                .await
                .map_err(|err| Inactive::Failed(ApiError::from(err)))?;
            if !active {
                return Err(Inactive::Revoked);
            }
        }
        let identity = self.identity.as_ref().ok_or_else(|| {
            Inactive::Failed(ApiError::Unavailable {
                what: "identity-svc (identity.endpoint is not configured)".to_owned(),
            })
        })?;
        let actors = claims.actors();
        let checks = actors
            .iter()
            .map(|actor| identity.agent_is_active(&claims.tenant, &actor.agent_id));
        for active in futures::future::join_all(checks).await {
            if !active.map_err(Inactive::Failed)? {
                return Err(Inactive::Revoked);
            }
        }
        Ok(claims)
    }
}
