//! identity-svc's own token towards audit-svc. It signs it itself: asking
//! its own token endpoint would queue a `token.issued` event that waits for
//! this very token.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use agentsec_common::admin_token::AUDIT_APPEND_SCOPE;
use agentsec_common::error::ApiError;
use agentsec_common::upstream::TokenSource;

use super::claims::AccessClaims;
use crate::keyring::LiveKeys;

/// The `sub` and `client_id` of identity-svc's own tokens.
pub const OWN_SUBJECT: &str = "identity-svc";

/// A service token (no tenant, scope `agentsec:audit:append`) for one
/// audience, signed with the active key and renewed after most of its
/// lifetime.
pub struct OwnToken {
    keys: Arc<LiveKeys>,
    issuer: String,
    audience: String,
    lifetime: Duration,
    cached: RwLock<Option<(String, Instant)>>,
}

impl OwnToken {
    pub fn new(keys: Arc<LiveKeys>, issuer: &str, audience: &str, lifetime: Duration) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            lifetime,
            cached: RwLock::new(None),
        }
    }

    fn sign(&self) -> Result<(String, Instant), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = self.lifetime.as_secs() as i64;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: OWN_SUBJECT.to_owned(),
            aud: self.audience.clone(),
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: agentsec_common::ids::new_id("tok_")
                .map_err(|err| ApiError::internal("own token id", err))?,
            scope: AUDIT_APPEND_SCOPE.to_owned(),
            client_id: OWN_SUBJECT.to_owned(),
            tenant: None,
            owner: None,
            cred: None,
            gen: None,
        };
        let token = self
            .keys
            .current()
            .active
            .sign("at+jwt", &claims)
            .map_err(|err| ApiError::internal("own token", err))?;
        // Renewed with a fifth of its lifetime left.
        Ok((token, Instant::now() + self.lifetime * 4 / 5))
    }
}

impl TokenSource for OwnToken {
    fn token<'a>(
        &'a self,
        stale: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Result<String, ApiError>> + Send + 'a>> {
        Box::pin(async move {
            let usable = self
                .cached
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
                .filter(|(token, renew_at)| {
                    Instant::now() < *renew_at && stale != Some(token.as_str())
                })
                .map(|(token, _)| token.clone());
            if let Some(token) = usable {
                return Ok(token);
            }
            let (token, renew_at) = self.sign()?;
            *self
                .cached
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((token.clone(), renew_at));
            Ok(token)
        })
    }
}
