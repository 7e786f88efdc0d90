//! Offline verification of identity-svc's admin tokens, shared by the
//! services whose admin calls accept them: a JWT signed with one of the keys
//! identity-svc publishes at `admin.jwks_uri`, issued by `admin.issuer`, for
//! `admin.audience`, with scope `agentsec:admin`. A `tenant` claim makes the
//! admin tenant-scoped; what that means is the calling service's business.
//!
//! Limit: the token is verified offline (signature, issuer, time claims). A
//! token identity-svc has revoked, or one of a suspended admin agent, stays
//! accepted until it expires; identity-svc's admin tokens are short-lived.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{check_http_url, ConfigError};
use crate::error::ApiError;
use crate::jwt::{
    self, AudienceRule, Clock, JwtError, Rules, TokenType, TrustedIssuer, TrustedIssuers,
};
use crate::keys::SIGNING_ALGORITHMS;
use crate::remote_jwks::RemoteJwks;
use crate::tls::ClientTls;
use crate::verified::{self, VerifiedTokens};

/// The scope that makes a token an admin token.
pub const ADMIN_SCOPE: &str = "agentsec:admin";
/// A service client's scope to read every tenant's agents (GetAgent,
/// ListAgents at identity-svc).
pub const AGENTS_READ_SCOPE: &str = "agentsec:agents:read";
/// A service client's scope to list what is revoked (identity-svc
/// ListRevocations, exchange-svc ListRevokedGrants).
pub const REVOCATIONS_READ_SCOPE: &str = "agentsec:revocations:read";
/// A service's scope to append events to audit-svc.
pub const AUDIT_APPEND_SCOPE: &str = "agentsec:audit:append";
/// An auditor's scope to read audit-svc (a tenant's agent: that tenant's
/// events; a service client: every tenant's).
pub const AUDIT_READ_SCOPE: &str = "agentsec:audit:read";
/// Scopes only identity-svc's service clients may hold, never an agent:
/// they read across tenants, or write the audit trail.
pub const SERVICE_ONLY_SCOPES: [&str; 3] = [
    AGENTS_READ_SCOPE,
    REVOCATIONS_READ_SCOPE,
    AUDIT_APPEND_SCOPE,
];
/// The scopes a service client may hold.
pub const SERVICE_SCOPES: [&str; 4] = [
    AGENTS_READ_SCOPE,
    REVOCATIONS_READ_SCOPE,
    AUDIT_APPEND_SCOPE,
    AUDIT_READ_SCOPE,
];

/// How admin tokens of identity-svc are verified (the `[admin]` table):
/// against its published key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// identity-svc's `/.well-known/jwks.json` (http or https). Unset (and
    /// no `jwks`): no admin token is accepted.
    pub jwks_uri: Option<String>,
    /// The key set inline (a JWKS document), instead of `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The `iss` of admin tokens (identity-svc's issuer). Required with
    /// `jwks_uri` or `jwks`.
    pub issuer: Option<String>,
    /// The `aud` of admin tokens.
    pub audience: String,
    /// How long a fetched key set is used before it is fetched again.
    pub jwks_cache_ttl_secs: u64,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            jwks_uri: None,
            jwks: None,
            issuer: None,
            audience: "agentsec".to_owned(),
            jwks_cache_ttl_secs: 300,
            leeway_secs: 30,
        }
    }
}

impl AdminConfig {
    /// Whether a key set is configured (`jwks_uri` or `jwks`).
    pub fn has_keys(&self) -> bool {
        self.jwks_uri.is_some() || self.jwks.is_some()
    }

    /// Checks the values; errors name the `admin.<key>` at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(uri) = &self.jwks_uri {
            check_http_url("admin.jwks_uri", uri)?;
        }
        match (&self.jwks_uri, &self.jwks) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "admin.jwks",
                    "set either admin.jwks_uri or admin.jwks, not both",
                ))
            }
            (None, Some(jwks)) => {
                RemoteJwks::inline(jwks)
                    .map_err(|err| ConfigError::invalid("admin.jwks", err.to_string()))?;
            }
            _ => {}
        }
        if self.has_keys() && self.issuer.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "admin.issuer",
                "is required when admin.jwks_uri or admin.jwks is set",
            ));
        }
        if self.audience.is_empty() || self.audience.len() > 256 {
            return Err(ConfigError::invalid(
                "admin.audience",
                "must be 1-256 chars",
            ));
        }
        if !(1..=86_400).contains(&self.jwks_cache_ttl_secs) {
            return Err(ConfigError::invalid(
                "admin.jwks_cache_ttl_secs",
                "must be between 1 and 86400",
            ));
        }
        if self.leeway_secs > 300 {
            return Err(ConfigError::invalid(
                "admin.leeway_secs",
                "must be at most 300",
            ));
        }
        Ok(())
    }
}

/// Who an admin may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    Global,
    Tenant(String),
}

impl AdminScope {
    /// A token's `tenant` claim: none makes a global admin.
    pub fn of(tenant: Option<String>) -> Self {
        tenant.map_or(Self::Global, Self::Tenant)
    }

    /// Whether this admin may see and change objects of `tenant`.
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            Self::Global => true,
            Self::Tenant(own) => own == tenant,
        }
    }
}

/// A verified admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// The token's `sub`.
    pub subject: String,
    /// Its `tenant` claim; `None` = a global admin.
    pub tenant: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    tenant: Option<String>,
}

/// Any verified token of identity-svc (an agent's own access token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityToken {
    /// `sub`: the agent id.
    pub subject: String,
    /// `aud`, as a list.
    pub audiences: Vec<String>,
    /// `scope`, space-delimited.
    pub scope: String,
    pub tenant: Option<String>,
    pub times: jwt::Times,
}

/// Verifies admin tokens of identity-svc.
pub struct AdminVerifier {
    issuer: TrustedIssuers,
    /// Tokens already verified, for as long as the key set is cached.
    verified: VerifiedTokens<IdentityToken>,
    issuer_name: String,
    audience: String,
    leeway_secs: u64,
    needs: String,
}

fn invalid() -> ApiError {
    ApiError::Unauthenticated {
        reason: "the bearer token is not a valid token of identity-svc".to_owned(),
    }
}

impl AdminVerifier {
    /// `None` when admin authentication is not configured (`admin.jwks_uri`
    /// or `admin.issuer` unset). `needs` completes the PERMISSION_DENIED
    /// message for a token that is not an admin token: "this call needs
    /// {needs} (scope … for audience …)", e.g. "an admin token".
    ///
    /// `admin.jwks_uri` is fetched with `tls` when it is `https://`.
    pub fn new(
        config: &AdminConfig,
        needs: &str,
        tls: &Arc<ClientTls>,
    ) -> Result<Option<Self>, String> {
        let Some(issuer) = &config.issuer else {
            return Ok(None);
        };
        let keys = match (&config.jwks_uri, &config.jwks) {
            (Some(uri), _) => {
                RemoteJwks::remote(uri, Duration::from_secs(config.jwks_cache_ttl_secs), tls)
                    .map_err(|err| format!("admin.jwks_uri {err}"))?
            }
            (None, Some(jwks)) => {
                RemoteJwks::inline(jwks).map_err(|err| format!("admin.jwks: {err}"))?
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Self::with_keys(keys, issuer, config, needs)))
    }

    fn with_keys(keys: RemoteJwks, issuer: &str, config: &AdminConfig, needs: &str) -> Self {
        let rules = Rules {
            issuer: issuer.to_owned(),
            algorithms: SIGNING_ALGORITHMS.to_vec(),
            token_type: TokenType::AccessToken,
            // The caller decides what the audience must be.
            audience: AudienceRule::Any,
            subject: None,
            leeway_secs: config.leeway_secs,
        };
        Self {
            issuer: TrustedIssuers::new(vec![TrustedIssuer { rules, keys }]),
            verified: VerifiedTokens::new(Duration::from_secs(config.jwks_cache_ttl_secs)),
            issuer_name: issuer.to_owned(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
            needs: needs.to_owned(),
        }
    }

    /// identity-svc's issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer_name
    }

    /// Whether a token claiming `iss` is meant for this verifier.
    pub fn issues(&self, iss: &str) -> bool {
        self.issuer_name == iss
    }

    /// Verifies that `token` is a valid token of identity-svc (signature,
    /// issuer, time claims), whatever its audience and scope:
    /// UNAUTHENTICATED otherwise, without saying why.
    pub async fn verify_identity_token(&self, token: &str) -> Result<IdentityToken, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let digest = verified::digest(token);
        if let Some(known) = self.verified.get(&digest) {
            // Valid when verified; only its times can have run out since.
            return match jwt::check_times(known.times, now, self.leeway_secs) {
                Ok(()) => Ok(known.as_ref().clone()),
                Err(_) => Err(invalid()),
            };
        }
        let verified =
            self.issuer
                .verify(token, Clock::At(now))
                .await
                .map_err(|err| match err {
                    JwtError::KeysUnavailable => ApiError::Unavailable {
                        what: "identity-svc's key set (its tokens cannot be verified)".to_owned(),
                    },
                    _ => invalid(),
                })?;
        let claims: Claims = verified.claims_as().map_err(|_| invalid())?;
        let verified = IdentityToken {
            subject: verified.subject,
            audiences: verified.audiences,
            scope: claims.scope,
            tenant: claims.tenant,
            times: verified.times,
        };
        self.verified.insert(digest, Arc::new(verified.clone()));
        Ok(verified)
    }

    /// Verifies an admin token: UNAUTHENTICATED unless it is a valid token
    /// of identity-svc, PERMISSION_DENIED unless it is for the admin
    /// audience with scope `agentsec:admin`.
    pub async fn verify(&self, token: &str) -> Result<AdminToken, ApiError> {
        let verified = self.verify_identity_token(token).await?;
        self.admin(verified)
    }

    /// The admin a verified token of identity-svc stands for;
    /// PERMISSION_DENIED unless it is for the admin audience with scope
    /// `agentsec:admin`.
    pub fn admin(&self, verified: IdentityToken) -> Result<AdminToken, ApiError> {
        if !verified.audiences.contains(&self.audience)
            || !verified.scope.split(' ').any(|s| s == ADMIN_SCOPE)
        {
            return Err(ApiError::PermissionDenied {
                reason: format!(
                    "this call needs {} (scope `{ADMIN_SCOPE}` for audience `{}`)",
                    self.needs, self.audience
                ),
            });
        }
        Ok(AdminToken {
            subject: verified.subject,
            tenant: verified.tenant,
        })
    }

    /// Whether a verified token of identity-svc may read across tenants
    /// what `scope` covers: a global admin's token, or a service client's
    /// (no `tenant` claim) holding `scope`, both for the admin audience.
    /// PERMISSION_DENIED naming the scope otherwise.
    pub fn cross_tenant_reader(
        &self,
        verified: &IdentityToken,
        scope: &str,
    ) -> Result<(), ApiError> {
        let scopes = || verified.scope.split(' ');
        let allowed = verified.audiences.contains(&self.audience)
            && verified.tenant.is_none()
            && scopes().any(|held| held == ADMIN_SCOPE || held == scope);
        if allowed {
            return Ok(());
        }
        Err(ApiError::PermissionDenied {
            reason: format!(
                "this call spans every tenant: it needs a global admin token or a service \
                 token with scope `{scope}` (audience `{}`)",
                self.audience
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;

    use super::*;
    use crate::jwt::MAX_TOKEN_BYTES;
    use crate::keys::{SigningAlgorithm, SigningKey};

    const ISSUER: &str = "http://identity.test";

    fn verifier(key: &SigningKey) -> AdminVerifier {
        let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
        let config = AdminConfig {
            leeway_secs: 0,
            ..AdminConfig::default()
        };
        AdminVerifier::with_keys(
            RemoteJwks::inline(&jwks).unwrap(),
            ISSUER,
            &config,
            "an admin token",
        )
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

    fn status(result: Result<AdminToken, ApiError>) -> tonic::Status {
        tonic::Status::from(result.unwrap_err())
    }

    #[tokio::test]
    async fn admin_tokens_are_verified_and_carry_their_tenant() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
        let verifier = verifier(&key);
        assert!(verifier.issues(ISSUER));
        assert!(!verifier.issues("http://elsewhere"));

        let global = verifier.verify(&token(&key, json!({}))).await.unwrap();
        assert_eq!(global.tenant, None);
        assert_eq!(global.subject, "agt_admin");
        let acme = verifier
            .verify(&token(&key, json!({"tenant": "acme"})))
            .await
            .unwrap();
        assert_eq!(acme.tenant.as_deref(), Some("acme"));
        let both_audiences = token(&key, json!({"aud": ["mcp:github", "agentsec"]}));
        assert!(verifier.verify(&both_audiences).await.is_ok());

        let unauthenticated = [
            token(&other, json!({})),
            token(&key, json!({"iss": "http://elsewhere"})),
            token(&key, json!({"exp": 1_000})),
            "a.b.c".to_owned(),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ];
        for token in unauthenticated {
            assert_eq!(
                status(verifier.verify(&token).await).code(),
                tonic::Code::Unauthenticated
            );
        }
        for claims in [json!({"aud": "mcp:github"}), json!({"scope": "repo:read"})] {
            let status = status(verifier.verify(&token(&key, claims)).await);
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(
                status.message().contains("needs an admin token"),
                "{}",
                status.message()
            );
        }
    }

    #[tokio::test]
    async fn cross_tenant_readers_are_global_admins_or_service_clients_holding_the_scope() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let verifier = verifier(&key);
        let cases = [
            ("global admin", json!({}), true),
            (
                "service client with the scope",
                json!({"sub": "policy_svc", "scope": "agentsec:agents:read agentsec:revocations:read"}),
                true,
            ),
            ("tenant admin", json!({"tenant": "acme"}), false),
            (
                "tenant token with the scope",
                json!({"tenant": "acme", "scope": REVOCATIONS_READ_SCOPE}),
                false,
            ),
            (
                "service client without the scope",
                json!({"sub": "exchange_svc", "scope": AGENTS_READ_SCOPE}),
                false,
            ),
            (
                "the scope for another audience",
                json!({"aud": "agentsec-policy", "scope": REVOCATIONS_READ_SCOPE}),
                false,
            ),
        ];
        for (case, claims, allowed) in cases {
            let verified = verifier
                .verify_identity_token(&token(&key, claims))
                .await
                .unwrap();
            let answer = verifier.cross_tenant_reader(&verified, REVOCATIONS_READ_SCOPE);
            assert_eq!(answer.is_ok(), allowed, "{case}");
            if let Err(err) = answer {
                let status = tonic::Status::from(err);
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{case}");
                assert!(status.message().contains(REVOCATIONS_READ_SCOPE), "{case}");
            }
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut config = AdminConfig::default();
        assert!(config.validate().is_ok());
        config.jwks_uri = Some("http://127.0.0.1:7401/.well-known/jwks.json".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("admin.issuer"), "{err}");
        config.issuer = Some("http://127.0.0.1:7401".into());
        assert!(config.validate().is_ok());
        type Change = fn(&mut AdminConfig);
        let cases: [(Change, &str); 5] = [
            (
                |config| config.jwks_uri = Some("ftp://example.com/jwks".into()),
                "admin.jwks_uri",
            ),
            (|config| config.audience.clear(), "admin.audience"),
            (
                |config| config.jwks_cache_ttl_secs = 0,
                "admin.jwks_cache_ttl_secs",
            ),
            (
                |config| config.jwks_cache_ttl_secs = 86_401,
                "admin.jwks_cache_ttl_secs",
            ),
            (|config| config.leeway_secs = 301, "admin.leeway_secs"),
        ];
        for (change, key) in cases {
            let mut bad = config.clone();
            change(&mut bad);
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    fn arbitrary_token_is_refused(key: &SigningKey, token: &str) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let answer = runtime.block_on(verifier(key).verify_identity_token(token));
        let status = tonic::Status::from(answer.unwrap_err());
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{token:?}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_are_refused_as_tokens(token: String) {
            let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
            arbitrary_token_is_refused(&key, &token);
        }

        #[test]
        fn arbitrary_segments_are_refused_as_tokens(
            header: Vec<u8>,
            payload: Vec<u8>,
            signature: Vec<u8>,
        ) {
            let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
            let token = [header, payload, signature]
                .iter()
                .map(|part| URL_SAFE_NO_PAD.encode(part))
                .collect::<Vec<_>>()
                .join(".");
            arbitrary_token_is_refused(&key, &token);
        }
    }
}
