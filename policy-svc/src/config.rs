//! policy-svc configuration (see `deploy/config/policy-svc.toml` for
//! every key with its default).

use std::path::Path;

use agentsec_common::audit::client::AuditClientConfig;
use agentsec_common::config::{
    check_at_most, check_between, check_http_url, check_name, ConfigError, DatabaseConfig,
    RedisConfig, Sections, ServerConfig, ServiceConfig, TelemetryConfig,
};
use agentsec_common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

pub use agentsec_common::admin_token::AdminConfig;

pub const DEFAULT_PORT: u16 = 7402;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// TLS on the service's port and on its calls to `https://` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub decisions: DecisionConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub audit: AuditClientConfig,
    /// The issuers whose tokens CheckToken accepts (`[[token_issuers]]`).
    /// Empty (the default): identity-svc's agent tokens are trusted, i.e.
    /// tokens with `iss` = `admin.issuer` signed with a key published at
    /// `admin.jwks_uri` (EdDSA or ES256), and, with
    /// `revocations.exchange_endpoint`, exchange-svc's delegated tokens
    /// (`iss` = that URL, keys at its `/.well-known/jwks.json`; list
    /// exchange-svc here instead when its issuer is another URL). When
    /// neither is set, nothing is trusted and CheckToken answers
    /// FAILED_PRECONDITION. Non-empty: exactly the listed issuers are trusted
    /// (list identity-svc here too if its tokens should stay accepted).
    /// Key-set refresh and clock leeway follow `admin.jwks_cache_ttl_secs`
    /// and `admin.leeway_secs`.
    #[serde(default)]
    pub token_issuers: Vec<TokenIssuerConfig>,
    /// Where CheckToken and ext_authz learn which tokens are no longer
    /// honoured (`[revocations]`, see `revocations`).
    #[serde(default)]
    pub identity: IdentityConfig,
    #[serde(default)]
    pub revocations: RevocationConfig,
    #[serde(default)]
    pub authzen: AuthzenConfig,
}

/// The OpenID AuthZEN Authorization API on this port (`[authzen]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthzenConfig {
    /// The PDP identifier the metadata at
    /// `/.well-known/authzen-configuration` names (`policy_decision_point`,
    /// and the base of every endpoint URL in it): the URL PEPs reach this
    /// service at, e.g. `https://pdp.example.com`. PEPs must find it equal
    /// to the URL they fetched the metadata from. Unset: this port's scheme
    /// (https with TLS) and the request's `Host` header, which is right only
    /// where PEPs reach the port directly.
    pub pdp_url: Option<String>,
    /// The tenant of an AuthZEN request whose subject has no `tenant`
    /// property (PEPs written to the spec send none). Unset: such a request
    /// is a 400 naming `subject.properties.tenant`.
    pub default_tenant: Option<String>,
}

impl AuthzenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(tenant) = &self.default_tenant {
            if !crate::domain::engine::request::is_tenant(tenant) {
                return Err(ConfigError::invalid(
                    "authzen.default_tenant",
                    "must be a tenant id ([a-z0-9][a-z0-9_-]{0,63})",
                ));
            }
        }
        let Some(url) = &self.pdp_url else {
            return Ok(());
        };
        let parsed = check_http_url("authzen.pdp_url", url)?;
        if parsed.query().is_some() || parsed.fragment().is_some() || url.ends_with('/') {
            return Err(ConfigError::invalid(
                "authzen.pdp_url",
                "must be a base URL without query, fragment or trailing slash (AuthZEN 1.0, \
                 PDP metadata)",
            ));
        }
        Ok(())
    }
}

/// identity-svc as policy-svc calls it, with its own service client
/// (identity-svc `service_clients`: holding `agentsec:agents:read` and
/// `agentsec:revocations:read` for `admin.audience`, and
/// `agentsec:audit:append` for `audit.audience`): for the revocation state
/// it follows (revoked tokens, deleted credentials, agents' standing and
/// attributes) and for its tokens towards audit-svc. Without an endpoint,
/// token decisions check signatures and times only, and audit events carry
/// no service token (warnings at start say so).
pub use agentsec_common::upstream::ServiceIdentityConfig as IdentityConfig;

/// The revocation state policy-svc follows from its owners: identity-svc
/// (`[identity]`) and exchange-svc (revoked grants). Without
/// `identity.endpoint`, token decisions check signatures and times only (a
/// warning at start says so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RevocationConfig {
    /// exchange-svc's gRPC base URL (needs identity.endpoint: the service
    /// identity comes from identity-svc).
    pub exchange_endpoint: Option<String>,
    /// The longest a token decision relies on revocation state not
    /// confirmed current (by a live event stream or a listing from the
    /// owners); past it, token decisions fail closed. The event stream is
    /// asked PING, and the owners are polled while it is not live, every
    /// quarter of it.
    pub max_staleness_ms: u64,
    /// Deadline of each listing call.
    pub timeout_ms: u64,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            exchange_endpoint: None,
            max_staleness_ms: 2_000,
            timeout_ms: 2_000,
        }
    }
}

impl RevocationConfig {
    fn validate(&self, identity: &IdentityConfig) -> Result<(), ConfigError> {
        if let Some(url) = &self.exchange_endpoint {
            check_http_url("revocations.exchange_endpoint", url)?;
            if identity.endpoint.is_none() {
                return Err(ConfigError::invalid(
                    "revocations.exchange_endpoint",
                    "needs identity.endpoint (policy-svc's service identity comes from \
                     identity-svc)",
                ));
            }
        }
        if !(500..=60_000).contains(&self.max_staleness_ms) {
            return Err(ConfigError::invalid(
                "revocations.max_staleness_ms",
                "must be between 500 and 60000",
            ));
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::invalid(
                "revocations.timeout_ms",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
    }
}

/// Algorithms a trusted issuer may use unless its entry says otherwise.
pub const DEFAULT_TOKEN_ALGORITHMS: [&str; 2] = ["EdDSA", "ES256"];
/// Algorithms an issuer entry may allow: asymmetric only (never `none` or
/// HMAC).
pub const SUPPORTED_TOKEN_ALGORITHMS: [&str; 9] = [
    "EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
];

fn default_token_algorithms() -> Vec<String> {
    DEFAULT_TOKEN_ALGORITHMS
        .iter()
        .map(|alg| (*alg).to_owned())
        .collect()
}

/// One issuer whose tokens CheckToken accepts (the token's audience is
/// checked per request, not here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenIssuerConfig {
    /// The exact `iss` of its tokens, 1-256 chars.
    pub issuer: String,
    /// Its published key set (http or https), fetched and cached. Exactly
    /// one of `jwks_uri` and `jwks` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Its key set inline (JWKS JSON text, public keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The signature algorithms accepted from it; default EdDSA and ES256.
    /// Only asymmetric algorithms are allowed (never `none` or HMAC).
    #[serde(default = "default_token_algorithms")]
    pub algorithms: Vec<String>,
}

impl TokenIssuerConfig {
    fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let key = |name: &str| format!("token_issuers[{index}].{name}");
        if self.issuer.is_empty() || self.issuer.len() > 256 {
            return Err(ConfigError::invalid(key("issuer"), "must be 1-256 chars"));
        }
        match (&self.jwks_uri, &self.jwks) {
            (Some(uri), None) => {
                check_http_url(&key("jwks_uri"), uri)?;
            }
            (None, Some(jwks)) => {
                agentsec_common::remote_jwks::parse_inline(jwks)
                    .map_err(|err| ConfigError::invalid(key("jwks"), err.to_string()))?;
            }
            _ => {
                return Err(ConfigError::invalid(
                    key("jwks_uri"),
                    "exactly one of jwks_uri and jwks is required",
                ))
            }
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid(key("algorithms"), "must not be empty"));
        }
        if let Some(bad) = self
            .algorithms
            .iter()
            .find(|alg| !SUPPORTED_TOKEN_ALGORITHMS.contains(&alg.as_str()))
        {
            return Err(ConfigError::invalid(
                key("algorithms"),
                format!(
                    "`{bad}` is not supported (one of {})",
                    SUPPORTED_TOKEN_ALGORITHMS.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// Decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionConfig {
    /// How long a caller may cache a decision (Decision.cache_ttl); 0 = do
    /// not cache. Decisions that read `context.time` or ended in an
    /// evaluation error always get 0.
    pub cache_ttl_secs: u64,
    /// Decision audit events waiting to be handed to the audit client. When
    /// full, a decision is still answered and its event is logged at error
    /// level and counted instead (decisions never wait for the audit trail).
    pub audit_backlog: usize,
    /// Who may ask for decisions (Check, BatchCheck, CheckToken, AuthZEN,
    /// Envoy ext_authz): `bearer` (the default: `authorization: Bearer`
    /// with a token of identity-svc, verified against `admin.jwks_uri`,
    /// whose `aud` is `caller_audience`) or `any` (no authentication: only
    /// where the port is reachable by trusted callers alone, e.g. loopback
    /// or a mesh that authenticates them with mTLS; logged as a warning at
    /// start).
    pub callers: DecisionCallers,
    /// The audience callers' tokens must carry with `callers = "bearer"`.
    pub caller_audience: String,
}

/// Who may ask for decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionCallers {
    Any,
    Bearer,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            cache_ttl_secs: 30,
            audit_backlog: 10_000,
            callers: DecisionCallers::Bearer,
            caller_audience: "agentsec-policy".to_owned(),
        }
    }
}

impl DecisionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_at_most("decisions.cache_ttl_secs", self.cache_ttl_secs, 3_600)?;
        check_between("decisions.audit_backlog", self.audit_backlog, 1, 1_000_000)?;
        check_name("decisions.caller_audience", &self.caller_audience, 256)
    }
}

/// The decision cache (see `cache` and docs/policy-model.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Serve repeated decisions from the cache tiers (in-process, then
    /// Redis when `redis.url` is set).
    pub enabled: bool,
    /// Most decisions held in this process.
    pub local_capacity: usize,
    /// Longest wait for any Redis command of the cache; past it the
    /// decision is made without the cache.
    pub redis_timeout_ms: u64,
    /// Longest life of a cached decision in either tier. Versions and
    /// epochs in the keys do the invalidation; this bounds what an
    /// invalidation lost with Redis could leave behind.
    pub entry_ttl_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            local_capacity: 100_000,
            redis_timeout_ms: 30,
            entry_ttl_secs: 60,
        }
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000_000).contains(&self.local_capacity) {
            return Err(ConfigError::invalid(
                "cache.local_capacity",
                "must be between 1 and 10000000",
            ));
        }
        if !(1..=1_000).contains(&self.redis_timeout_ms) {
            return Err(ConfigError::invalid(
                "cache.redis_timeout_ms",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=86_400).contains(&self.entry_ttl_secs) {
            return Err(ConfigError::invalid(
                "cache.entry_ttl_secs",
                "must be between 1 and 86400",
            ));
        }
        Ok(())
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
            server: ServerConfig::on_port(DEFAULT_PORT),
            database: DatabaseConfig::sqlite_file(&data_dir.join("policy.db")),
            redis: RedisConfig::default(),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
            admin: AdminConfig::default(),
            decisions: DecisionConfig::default(),
            cache: CacheConfig::default(),
            audit: AuditClientConfig::default(),
            token_issuers: Vec::new(),
            identity: IdentityConfig::default(),
            revocations: RevocationConfig::default(),
            authzen: AuthzenConfig::default(),
        }
    }

    /// A config for tests: the given database and Redis, port chosen by the
    /// caller's listener, decision callers not authenticated (the tests'
    /// loopback clients are the trusted callers).
    pub fn for_test(database: DatabaseConfig, redis: RedisConfig) -> Self {
        Self {
            database,
            redis,
            decisions: DecisionConfig {
                callers: DecisionCallers::Any,
                ..DecisionConfig::default()
            },
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
        self.admin.validate()?;
        self.decisions.validate()?;
        if self.decisions.callers == DecisionCallers::Bearer && !self.admin.has_keys() {
            return Err(ConfigError::invalid(
                "decisions.callers",
                "`bearer` (the default) needs admin.jwks_uri: identity-svc's keys verify the \
                 callers' tokens (set `any` only where trusted callers alone reach the port)",
            ));
        }
        self.cache.validate()?;
        for (index, issuer) in self.token_issuers.iter().enumerate() {
            issuer.validate(index)?;
        }
        self.identity.validate()?;
        self.revocations.validate(&self.identity)?;
        self.authzen.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults with unauthenticated decision callers, which need no
    /// key set.
    fn open() -> Config {
        let mut config = Config::default();
        config.decisions.callers = DecisionCallers::Any;
        config
    }

    #[test]
    fn the_authzen_pdp_url_is_a_bare_base_url() {
        for bad in [
            "pdp.example.com",
            "ftp://pdp.example.com",
            "https://pdp.example.com/",
            "https://pdp.example.com?x=1",
            "https://pdp.example.com#f",
        ] {
            let mut config = open();
            config.authzen.pdp_url = Some(bad.to_owned());
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("authzen.pdp_url"), "{bad}: {err}");
        }
        let mut config = open();
        config.authzen.pdp_url = Some("https://pdp.example.com/tenant-a".to_owned());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn the_authzen_default_tenant_is_a_tenant_id() {
        let mut config = open();
        config.authzen.default_tenant = Some("Acme Corp".to_owned());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("authzen.default_tenant"), "{err}");
        config.authzen.default_tenant = Some("default".to_owned());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn bearer_callers_are_the_default_and_need_identity_svcs_keys() {
        let err = Config::default().validate().unwrap_err().to_string();
        assert!(err.contains("decisions.callers"), "{err}");
        assert!(open().validate().is_ok());
    }

    #[test]
    fn admin_jwks_uri_needs_an_issuer_and_an_http_url() {
        let mut config = Config::default();
        config.admin.jwks_uri = Some("http://127.0.0.1:7401/.well-known/jwks.json".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("admin.issuer"), "{err}");
        config.admin.issuer = Some("http://127.0.0.1:7401".into());
        assert!(config.validate().is_ok());
        config.admin.jwks_uri = Some("ftp://example.com/jwks".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("admin.jwks_uri"), "{err}");
    }

    #[test]
    fn token_issuers_are_checked_and_errors_name_the_key() {
        let mut config = open();
        config.token_issuers.push(TokenIssuerConfig {
            issuer: "http://127.0.0.1:7403".into(),
            jwks_uri: Some("http://127.0.0.1:7403/.well-known/jwks.json".into()),
            jwks: None,
            algorithms: default_token_algorithms(),
        });
        assert!(config.validate().is_ok());
        type Change = fn(&mut TokenIssuerConfig);
        let cases: [(Change, &str); 5] = [
            (|issuer| issuer.issuer.clear(), "token_issuers[0].issuer"),
            (|issuer| issuer.jwks_uri = None, "token_issuers[0].jwks_uri"),
            (
                |issuer| issuer.jwks = Some("{}".into()),
                "token_issuers[0].jwks_uri",
            ),
            (
                |issuer| issuer.algorithms = vec!["HS256".into()],
                "token_issuers[0].algorithms",
            ),
            (
                |issuer| issuer.algorithms = vec!["none".into()],
                "token_issuers[0].algorithms",
            ),
        ];
        for (change, key) in cases {
            let mut bad = config.clone();
            change(&mut bad.token_issuers[0]);
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let mut inline = config.clone();
        inline.token_issuers[0].jwks_uri = None;
        inline.token_issuers[0].jwks = Some("not json".into());
        let err = inline.validate().unwrap_err().to_string();
        assert!(err.contains("token_issuers[0].jwks"), "{err}");
    }

    #[test]
    fn decision_limits_are_checked() {
        let mut config = open();
        config.decisions.audit_backlog = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("decisions.audit_backlog"), "{err}");
        config.decisions.audit_backlog = 1;
        config.decisions.cache_ttl_secs = 3_601;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("decisions.cache_ttl_secs"), "{err}");
    }

    #[test]
    fn cache_limits_are_checked() {
        type Change = fn(&mut CacheConfig);
        let cases: [(Change, &str); 3] = [
            (|cache| cache.local_capacity = 0, "cache.local_capacity"),
            (|cache| cache.redis_timeout_ms = 0, "cache.redis_timeout_ms"),
            (|cache| cache.entry_ttl_secs = 0, "cache.entry_ttl_secs"),
        ];
        for (change, key) in cases {
            let mut config = open();
            change(&mut config.cache);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
