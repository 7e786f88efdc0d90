//! exchange-svc configuration (see `deploy/config/exchange-svc.toml` for
//! every key with its default).

use std::path::Path;
use std::time::Duration;

use agentsec_common::audit::client::AuditClientConfig;
use agentsec_common::config::{
    check_http_url, ConfigError, DatabaseConfig, RedisConfig, Sections, ServerConfig,
    ServiceConfig, SigningConfig, TelemetryConfig,
};
use agentsec_common::issuer_config::{check_issuer_entry, IssuerEntry};
use agentsec_common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

pub use agentsec_common::admin_token::AdminConfig;

pub const DEFAULT_PORT: u16 = 7403;

/// common.proto: an ActorChain holds at most 16 actors.
const MAX_CHAIN_DEPTH: u32 = 16;
/// The longest grant lifetime an operator may configure (one year).
const MAX_GRANT_LIFETIME_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `iss` of every token this service signs; also the base of its
    /// RFC 8414 metadata.
    pub issuer: String,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// TLS on the service's port and on its calls to `https://` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    pub signing: SigningConfig,
    pub grants: GrantConfig,
    pub admin: AdminConfig,
    pub audit: AuditClientConfig,
    pub identity: IdentityConfig,
    pub policy: PolicyConfig,
    pub exchange: ExchangeConfig,
    /// Issuers whose tokens prove who a person is (CreateGrant, the person's
    /// own grant RPCs, and subject tokens of exchanges). Empty = no person
    /// can authenticate.
    #[serde(default)]
    pub user_issuers: Vec<UserIssuerConfig>,
    /// The target systems tokens may be exchanged for, besides exchange-svc
    /// itself (its `issuer`), which is always one so that an agent can
    /// delegate on (see [`Config::effective_targets`]).
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

impl Config {
    /// `targets` with exchange-svc's own issuer added when not listed: a
    /// token for exchange-svc is the subject token of the next hop of a
    /// chain. Listing it keeps its `allow_impersonation`.
    pub fn effective_targets(&self) -> Vec<TargetConfig> {
        let mut targets = self.targets.clone();
        if !targets.iter().any(|target| target.audience == self.issuer) {
            targets.push(TargetConfig {
                audience: self.issuer.clone(),
                allow_impersonation: false,
            });
        }
        targets
    }
}

/// How exchange-svc reaches identity-svc: actor tokens are introspected
/// there and the status of every agent in a chain is read there, with
/// exchange-svc's service client (identity-svc `service_clients`: holding
/// `agentsec:agents:read` for `admin.audience`, allowed `policy.audience`,
/// and `agentsec:audit:append` for `audit.audience`). Without an endpoint,
/// every exchange and introspection answers `temporarily_unavailable`.
/// Actor tokens are first verified offline against `admin.jwks_uri` and
/// `admin.issuer` (identity-svc's key set and issuer).
pub use agentsec_common::upstream::ServiceIdentityConfig as IdentityConfig;

/// How exchange-svc asks policy-svc whether an exchange may happen.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// policy-svc's gRPC base URL. Unset = every exchange answers
    /// `temporarily_unavailable` (no decision, no token).
    pub endpoint: Option<String>,
    /// Deadline of each decision call.
    pub timeout_ms: u64,
    /// The audience of exchange-svc's token towards policy-svc (policy-svc's
    /// `decisions.caller_audience`).
    pub audience: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            timeout_ms: 2_000,
            audience: "agentsec-policy".to_owned(),
        }
    }
}

/// Limits of issued tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The `aud` an actor token must carry (and a chained subject token,
    /// unless it names the new actor). Empty = `issuer`.
    pub audience: String,
    /// Longest lifetime of an issued token (60-86400).
    pub max_token_lifetime_secs: u64,
    /// Deepest agent chain when no grant bounds it (`may_act`), 1-16.
    pub max_chain_depth: u32,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            audience: String::new(),
            max_token_lifetime_secs: 900,
            max_chain_depth: 4,
        }
    }
}

/// A target system tokens may be exchanged for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Its audience (exact), 1-256 chars.
    pub audience: String,
    /// Whether a token without `act` (the person alone) may be issued for
    /// it when no actor token is given and the subject token has no
    /// `may_act`.
    #[serde(default)]
    pub allow_impersonation: bool,
}

/// Limits of delegation grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrantConfig {
    /// Longest time from creation to a grant's expire_time.
    pub max_lifetime_secs: u64,
    /// Largest max_chain_depth a grant may ask for (agents in the chain).
    pub max_chain_depth: u32,
    /// Clock skew allowed when checking person tokens' exp/nbf/iat.
    pub leeway_secs: u64,
    /// The tenant of a grant whose person token has no `tenant` claim.
    pub default_tenant: String,
}

impl Default for GrantConfig {
    fn default() -> Self {
        Self {
            max_lifetime_secs: 90 * 24 * 3600,
            max_chain_depth: 4,
            leeway_secs: 30,
            default_tenant: "default".to_owned(),
        }
    }
}

/// A trusted issuer of people's tokens (an OpenID Connect provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIssuerConfig {
    /// The exact `iss` of its tokens: an https URL (http only on
    /// 127.0.0.1/localhost), at most 512 chars.
    pub issuer: String,
    /// Its JWKS as a JSON string. Exactly one of `jwks` and `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Where its JWKS is fetched: an https URL (http only on
    /// 127.0.0.1/localhost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The audience person tokens must carry (this service's client id at
    /// the provider).
    pub audience: String,
    /// The JWS algorithms accepted from it; a subset of RS256, RS384,
    /// RS512, PS256, ES256, ES384, EdDSA.
    #[serde(default = "agentsec_common::issuer_config::default_algorithms")]
    pub algorithms: Vec<String>,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "agentsec_common::issuer_config::default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
}

impl UserIssuerConfig {
    pub fn jwks_cache(&self) -> Duration {
        Duration::from_secs(self.jwks_cache_secs)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::in_data_dir(Path::new(".agentsec"))
    }
}

impl Config {
    /// The defaults, with the SQLite database under `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            issuer: format!("http://127.0.0.1:{DEFAULT_PORT}"),
            server: ServerConfig::on_port(DEFAULT_PORT),
            database: DatabaseConfig::sqlite_file(&data_dir.join("exchange.db")),
            redis: RedisConfig::default(),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
            signing: SigningConfig::default(),
            grants: GrantConfig::default(),
            admin: AdminConfig::default(),
            audit: AuditClientConfig::default(),
            identity: IdentityConfig::default(),
            policy: PolicyConfig::default(),
            exchange: ExchangeConfig::default(),
            user_issuers: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// A config for tests: the given database and Redis, port chosen by the
    /// caller's listener.
    pub fn for_test(database: DatabaseConfig, redis: RedisConfig) -> Self {
        Self {
            database,
            redis,
            ..Self::default()
        }
    }
}

impl ServiceConfig for Config {
    fn sections(&self) -> Sections<'_> {
        Sections::new(&self.server, &self.telemetry, &self.tls, &self.database)
            .connected(&self.redis, &self.audit)
    }

    fn validate_own(&self) -> Result<(), ConfigError> {
        check_http_url("issuer", &self.issuer)?;
        self.signing.validate()?;
        self.grants.validate()?;
        self.admin.validate()?;
        if let Some(admin_issuer) = &self.admin.issuer {
            if let Some(index) = self
                .user_issuers
                .iter()
                .position(|issuer| issuer.issuer == *admin_issuer)
            {
                return Err(ConfigError::invalid(
                    format!("user_issuers[{index}].issuer"),
                    "must differ from admin.issuer (admin tokens are not people's tokens)",
                ));
            }
        }
        self.identity.validate()?;
        check_endpoint("policy.endpoint", self.policy.endpoint.as_deref())?;
        check_timeout("policy.timeout_ms", self.policy.timeout_ms)?;
        if self.policy.audience.is_empty() || self.policy.audience.len() > 256 {
            return Err(ConfigError::invalid(
                "policy.audience",
                "must be 1-256 chars",
            ));
        }
        self.exchange.validate()?;
        validate_targets(&self.targets)?;
        validate_user_issuers(&self.user_issuers)
    }
}

impl Config {
    /// The `aud` actor tokens must carry.
    pub fn exchange_audience(&self) -> &str {
        if self.exchange.audience.is_empty() {
            &self.issuer
        } else {
            &self.exchange.audience
        }
    }
}

fn check_endpoint(key: &str, endpoint: Option<&str>) -> Result<(), ConfigError> {
    match endpoint {
        Some(url) => check_http_url(key, url).map(|_| ()),
        None => Ok(()),
    }
}

fn check_timeout(key: &str, timeout_ms: u64) -> Result<(), ConfigError> {
    if (10..=60_000).contains(&timeout_ms) {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, "must be between 10 and 60000"))
    }
}

impl ExchangeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.audience.len() > 256 {
            return Err(ConfigError::invalid(
                "exchange.audience",
                "must be at most 256 chars",
            ));
        }
        if !(60..=86_400).contains(&self.max_token_lifetime_secs) {
            return Err(ConfigError::invalid(
                "exchange.max_token_lifetime_secs",
                "must be between 60 and 86400",
            ));
        }
        if !(1..=MAX_CHAIN_DEPTH).contains(&self.max_chain_depth) {
            return Err(ConfigError::invalid(
                "exchange.max_chain_depth",
                format!("must be between 1 and {MAX_CHAIN_DEPTH}"),
            ));
        }
        Ok(())
    }
}

fn validate_targets(targets: &[TargetConfig]) -> Result<(), ConfigError> {
    for (index, target) in targets.iter().enumerate() {
        let chars = target.audience.chars().count();
        if chars == 0 || chars > 256 || target.audience.chars().any(char::is_whitespace) {
            return Err(ConfigError::invalid(
                format!("targets[{index}].audience"),
                "must be 1-256 chars without whitespace",
            ));
        }
        if targets[..index]
            .iter()
            .any(|earlier| earlier.audience == target.audience)
        {
            return Err(ConfigError::invalid(
                format!("targets[{index}].audience"),
                "is listed twice",
            ));
        }
    }
    Ok(())
}

impl GrantConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(60..=MAX_GRANT_LIFETIME_SECS).contains(&self.max_lifetime_secs) {
            return Err(ConfigError::invalid(
                "grants.max_lifetime_secs",
                format!("must be between 60 and {MAX_GRANT_LIFETIME_SECS}"),
            ));
        }
        if !(1..=MAX_CHAIN_DEPTH).contains(&self.max_chain_depth) {
            return Err(ConfigError::invalid(
                "grants.max_chain_depth",
                format!("must be between 1 and {MAX_CHAIN_DEPTH}"),
            ));
        }
        if self.leeway_secs > 300 {
            return Err(ConfigError::invalid(
                "grants.leeway_secs",
                "must be at most 300",
            ));
        }
        if !is_tenant(&self.default_tenant) {
            return Err(ConfigError::invalid(
                "grants.default_tenant",
                "must match `[a-z0-9][a-z0-9_-]{0,63}`",
            ));
        }
        Ok(())
    }
}

/// common.proto: a tenant is `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_tenant(tenant: &str) -> bool {
    let bytes = tenant.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

fn validate_user_issuers(issuers: &[UserIssuerConfig]) -> Result<(), ConfigError> {
    let entries: Vec<IssuerEntry<'_>> = issuers.iter().map(UserIssuerConfig::entry).collect();
    for (index, issuer) in issuers.iter().enumerate() {
        check_issuer_entry("user_issuers", &entries, index)?;
        if issuer.audience.is_empty() || issuer.audience.chars().count() > 256 {
            return Err(ConfigError::invalid(
                format!("user_issuers[{index}].audience"),
                "must be 1-256 chars",
            ));
        }
    }
    Ok(())
}

impl UserIssuerConfig {
    fn entry(&self) -> IssuerEntry<'_> {
        IssuerEntry {
            issuer: &self.issuer,
            jwks: self.jwks.as_deref(),
            jwks_uri: self.jwks_uri.as_deref(),
            algorithms: &self.algorithms,
            jwks_cache_secs: self.jwks_cache_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_svc_is_always_a_target_of_itself() {
        let mut config = Config {
            issuer: "http://exchange-svc:7403".to_owned(),
            targets: vec![TargetConfig {
                audience: "mcp:github".to_owned(),
                allow_impersonation: false,
            }],
            ..Config::default()
        };
        let audiences: Vec<String> = config
            .effective_targets()
            .into_iter()
            .map(|target| target.audience)
            .collect();
        assert_eq!(audiences, ["mcp:github", "http://exchange-svc:7403"]);
        // Listed, it keeps its settings and is not added twice.
        config.targets.push(TargetConfig {
            audience: config.issuer.clone(),
            allow_impersonation: true,
        });
        let targets = config.effective_targets();
        assert_eq!(targets.len(), 2);
        assert!(targets[1].allow_impersonation);
    }

    const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn issuer() -> UserIssuerConfig {
        UserIssuerConfig {
            issuer: "https://login.example".to_owned(),
            jwks: Some(JWKS.to_owned()),
            jwks_uri: None,
            audience: "agentsec".to_owned(),
            algorithms: agentsec_common::issuer_config::default_algorithms(),
            jwks_cache_secs: 300,
        }
    }

    fn error_key(issuers: Vec<UserIssuerConfig>) -> String {
        let config = Config {
            user_issuers: issuers,
            ..Config::default()
        };
        match config.validate() {
            Err(ConfigError::InvalidValue { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().unwrap();
        let config = Config {
            user_issuers: vec![issuer()],
            ..Config::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn user_issuer_errors_name_the_key() {
        let both = UserIssuerConfig {
            jwks_uri: Some("https://login.example/jwks".into()),
            ..issuer()
        };
        assert_eq!(error_key(vec![both]), "user_issuers[0].jwks");
        let plain_http = UserIssuerConfig {
            jwks: None,
            jwks_uri: Some("http://login.example/jwks".into()),
            ..issuer()
        };
        assert_eq!(error_key(vec![plain_http]), "user_issuers[0].jwks_uri");
        let secret = UserIssuerConfig {
            jwks: Some(r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#.into()),
            ..issuer()
        };
        assert_eq!(error_key(vec![secret]), "user_issuers[0].jwks");
        let no_audience = UserIssuerConfig {
            audience: String::new(),
            ..issuer()
        };
        assert_eq!(error_key(vec![no_audience]), "user_issuers[0].audience");
        let hmac = UserIssuerConfig {
            algorithms: vec!["HS256".into()],
            ..issuer()
        };
        assert_eq!(error_key(vec![hmac]), "user_issuers[0].algorithms");
        assert_eq!(
            error_key(vec![issuer(), issuer()]),
            "user_issuers[1].issuer"
        );
    }

    #[test]
    fn admin_tokens_are_not_people_tokens() {
        let mut config = Config {
            user_issuers: vec![issuer()],
            ..Config::default()
        };
        config.admin.jwks_uri = Some("https://login.example/jwks".into());
        config.admin.issuer = Some("https://login.example".into());
        match config.validate() {
            Err(ConfigError::InvalidValue { key, .. }) => {
                assert_eq!(key, "user_issuers[0].issuer")
            }
            other => panic!("{other:?}"),
        }
        config.admin.issuer = None;
        match config.validate() {
            Err(ConfigError::InvalidValue { key, .. }) => assert_eq!(key, "admin.issuer"),
            other => panic!("{other:?}"),
        }
    }
}
