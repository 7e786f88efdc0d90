//! Authentication of admin calls (GetGrant, ListGrants, RevokeGrant): an
//! admin token of identity-svc (a JWT signed with one of the keys it
//! publishes at `admin.jwks_uri`, issued by `admin.issuer`, for
//! `admin.audience`, with scope `agentsec:admin`), verified locally. A
//! `tenant` claim makes the admin tenant-scoped.
//!
//! Limit of this slice: the token is verified offline (signature, issuer,
//! time claims); a token identity-svc has revoked stays accepted here until
//! it expires (admin tokens are short-lived).

use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::remote_jwks::{self, JwksError, RemoteJwks};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::config::AdminConfig;

/// The scope that makes a token an admin token.
pub const ADMIN_SCOPE: &str = "agentsec:admin";
/// The algorithms identity-svc signs with.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];

/// An authenticated admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub subject: String,
    /// `None` = global admin.
    pub tenant: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    aud: serde_json::Value,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    tenant: Option<String>,
}

/// Verifies admin tokens (when `admin.jwks_uri` is configured).
pub struct AdminAuth {
    keys: RemoteJwks,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

fn invalid() -> ApiError {
    ApiError::Unauthenticated {
        reason: "the bearer token is not a valid admin token".to_owned(),
    }
}

impl AdminAuth {
    /// `None` when admin authentication is not configured.
    pub fn new(config: &AdminConfig) -> Result<Option<Self>, String> {
        match (&config.jwks_uri, &config.issuer) {
            (Some(uri), Some(issuer)) => Ok(Some(Self {
                keys: RemoteJwks::remote(uri, Duration::from_secs(config.jwks_cache_ttl_secs))
                    .map_err(|err| format!("admin.jwks_uri {err}"))?,
                issuer: issuer.clone(),
                audience: config.audience.clone(),
                leeway_secs: config.leeway_secs,
            })),
            _ => Ok(None),
        }
    }

    /// Whether a token claiming `iss` is meant for this verifier.
    pub fn issues(&self, iss: &str) -> bool {
        self.issuer == iss
    }

    /// Verifies an admin token whose header is `alg`/`kid`.
    pub async fn verify(&self, token: &str, alg: &str, kid: &str) -> Result<Admin, ApiError> {
        let alg = alg
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| ALGORITHMS.contains(alg))
            .ok_or_else(invalid)?;
        if kid.is_empty() {
            return Err(invalid());
        }
        let jwk = self.keys.key(kid).await.map_err(|err| match err {
            JwksError::Unavailable => ApiError::Unavailable {
                what: "identity-svc's key set (admin tokens cannot be verified)".to_owned(),
            },
            JwksError::UnknownKid { .. } => invalid(),
        })?;
        let key = remote_jwks::decoding_key(&jwk, alg).map_err(|_| invalid())?;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        // The audience and scope decide admin or not (PERMISSION_DENIED).
        validation.validate_aud = false;
        validation.leeway = self.leeway_secs;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|_| invalid())?
            .claims;
        let for_admin_audience = match &claims.aud {
            serde_json::Value::String(aud) => *aud == self.audience,
            serde_json::Value::Array(auds) => auds.iter().any(|aud| *aud == *self.audience),
            _ => false,
        };
        if !for_admin_audience || !claims.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
            return Err(ApiError::PermissionDenied {
                reason: format!(
                    "this call needs a person token or an admin token (scope `{ADMIN_SCOPE}` for audience `{}`)",
                    self.audience
                ),
            });
        }
        Ok(Admin {
            subject: claims.sub,
            tenant: claims.tenant,
        })
    }
}
