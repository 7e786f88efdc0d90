//! Authentication of admin calls: an admin token of identity-svc (a JWT
//! signed with one of the keys it publishes at `admin.jwks_uri`, issued by
//! `admin.issuer`, for `admin.audience`, with scope `agentsec:admin`),
//! verified locally. A `tenant` claim makes the admin tenant-scoped.
//!
//! Limit of this slice: the token is verified offline (signature, issuer,
//! time claims). A token identity-svc has revoked, or one of a suspended
//! admin agent, stays accepted here until it expires; identity-svc's admin
//! tokens are short-lived.

use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::remote_jwks::{self, JwksError, RemoteJwks};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use tonic::metadata::MetadataMap;

use crate::config::AdminConfig;

/// The scope that makes a token an admin token.
pub const ADMIN_SCOPE: &str = "agentsec:admin";
/// Largest token accepted.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The algorithms identity-svc signs with.
const ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];

/// Who an admin may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    Global,
    Tenant(String),
}

/// An authenticated admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// The token's `sub` (the author of policy changes).
    pub subject: String,
    pub scope: AdminScope,
}

impl Admin {
    /// PERMISSION_DENIED unless this admin may act on `tenant`.
    pub fn check_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        match &self.scope {
            AdminScope::Global => Ok(()),
            AdminScope::Tenant(own) if own == tenant => Ok(()),
            AdminScope::Tenant(_) => Err(ApiError::PermissionDenied {
                reason: "a tenant-scoped admin may only act on its own tenant".to_owned(),
            }),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
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

struct Verifier {
    keys: RemoteJwks,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

/// Verifies admin tokens, or refuses every admin call when unconfigured.
pub struct AdminAuth {
    verifier: Option<Verifier>,
}

fn unauthenticated(reason: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated {
        reason: reason.into(),
    }
}

impl AdminAuth {
    pub fn new(config: &AdminConfig) -> Result<Self, String> {
        let verifier = match (&config.jwks_uri, &config.issuer) {
            (Some(uri), Some(issuer)) => Some(Verifier {
                keys: RemoteJwks::remote(uri, Duration::from_secs(config.jwks_cache_ttl_secs))
                    .map_err(|err| format!("admin.jwks_uri {err}"))?,
                issuer: issuer.clone(),
                audience: config.audience.clone(),
                leeway_secs: config.leeway_secs,
            }),
            _ => None,
        };
        Ok(Self { verifier })
    }

    /// The admin behind the `authorization: Bearer` metadata.
    pub async fn admin(&self, metadata: &MetadataMap) -> Result<Admin, ApiError> {
        let Some(verifier) = &self.verifier else {
            return Err(ApiError::FailedPrecondition {
                reason: "admin authentication is not configured (admin.jwks_uri)".to_owned(),
            });
        };
        let token = agentsec_common::bearer::bearer_token(metadata)?;
        verifier.verify(token).await
    }
}

impl Verifier {
    async fn verify(&self, token: &str) -> Result<Admin, ApiError> {
        let invalid = || unauthenticated("the bearer token is not a valid admin token");
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(invalid());
        }
        let header: Header = token
            .split('.')
            .next()
            .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(invalid)?;
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| ALGORITHMS.contains(alg))
            .ok_or_else(invalid)?;
        let kid = header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or_else(invalid)?;
        let jwk = self.keys.key(&kid).await.map_err(|err| match err {
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
        // The audience decides admin or not (PERMISSION_DENIED), below.
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
                    "this call needs an admin token (scope `{ADMIN_SCOPE}` for audience `{}`)",
                    self.audience
                ),
            });
        }
        Ok(Admin {
            subject: claims.sub,
            scope: match claims.tenant {
                Some(tenant) => AdminScope::Tenant(tenant),
                None => AdminScope::Global,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "http://identity.test";

    fn verifier(key: &SigningKey) -> Verifier {
        let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
        Verifier {
            keys: RemoteJwks::inline(&jwks).unwrap(),
            issuer: ISSUER.to_owned(),
            audience: "agentsec".to_owned(),
            leeway_secs: 0,
        }
    }

    fn token(key: &SigningKey, claims: serde_json::Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut full = json!({
            "iss": ISSUER, "sub": "agt_admin", "aud": "agentsec", "scope": ADMIN_SCOPE,
            "iat": now, "nbf": now, "exp": now + 300,
        });
        for (name, value) in claims.as_object().unwrap() {
            full[name] = value.clone();
        }
        key.sign("at+jwt", &full).unwrap()
    }

    fn code(result: Result<Admin, ApiError>) -> tonic::Code {
        tonic::Status::from(result.unwrap_err()).code()
    }

    #[tokio::test]
    async fn admin_tokens_are_verified_and_scoped() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
        let verifier = verifier(&key);

        let global = verifier.verify(&token(&key, json!({}))).await.unwrap();
        assert_eq!(global.scope, AdminScope::Global);
        assert_eq!(global.subject, "agt_admin");
        let acme = verifier
            .verify(&token(&key, json!({"tenant": "acme"})))
            .await
            .unwrap();
        assert_eq!(acme.scope, AdminScope::Tenant("acme".into()));
        assert!(acme.check_tenant("acme").is_ok());
        assert!(acme.check_tenant("globex").is_err());

        let unauthenticated = [
            token(&other, json!({})),
            token(&key, json!({"iss": "http://elsewhere"})),
            token(&key, json!({"exp": 1_000})),
            "a.b.c".to_owned(),
        ];
        for token in unauthenticated {
            assert_eq!(
                code(verifier.verify(&token).await),
                tonic::Code::Unauthenticated
            );
        }
        for claims in [json!({"aud": "mcp:github"}), json!({"scope": "repo:read"})] {
            assert_eq!(
                code(verifier.verify(&token(&key, claims)).await),
                tonic::Code::PermissionDenied
            );
        }
    }
}
