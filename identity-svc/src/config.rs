//! identity-svc configuration (see `deploy/config/identity-svc.toml` for
//! every key with its default).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentsec_common::admin_token::{AGENTS_READ_SCOPE, AUDIT_APPEND_SCOPE, REVOCATIONS_READ_SCOPE};
use agentsec_common::audit::client::AuditClientConfig;
use agentsec_common::config::{
    check_at_most, check_between, check_http_url, check_name, ConfigError, DatabaseConfig,
    RedisConfig, Sections, ServerConfig, ServiceConfig, SigningConfig, TelemetryConfig,
};
use agentsec_common::issuer_config::{check_issuer_entry, IssuerEntry};
use agentsec_common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 7401;

/// The longest access token lifetime an operator may configure.
const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;
/// Secrets and peppers shorter than this are refused: they would be the
/// weakest link of every client secret's keyed hash.
const MIN_SECRET_CHARS: usize = 32;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `iss` of every token this service signs; also the base of its
    /// RFC 8414 metadata and of the token endpoint URL.
    pub issuer: String,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    /// TLS on the service's port and on its calls to `https://` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    pub signing: SigningConfig,
    pub tokens: TokenConfig,
    pub credentials: CredentialConfig,
    pub bootstrap_admin: BootstrapAdminConfig,
    /// The other services' own identities, by client id: each obtains
    /// tokens with client credentials for its audiences, holding only its
    /// scopes (`agentsec_common::admin_token::SERVICE_SCOPES`), never admin
    /// rights. Set a secret from the environment with
    /// AGENTSEC_SERVICE_CLIENTS__<CLIENT_ID>__CLIENT_SECRET (so ids use
    /// lowercase letters, digits and `_`).
    #[serde(default)]
    pub service_clients: BTreeMap<String, ServiceClientConfig>,
    pub audit: AuditClientConfig,
    /// External issuers whose tokens the jwt-bearer grant accepts (workload
    /// identity federation). Empty = the grant is not offered.
    #[serde(default)]
    pub trusted_issuers: Vec<TrustedIssuerConfig>,
}

/// Access token lifetimes and the admin audience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// Lifetime of an issued access token.
    pub lifetime_secs: u64,
    /// Clock skew allowed when checking client assertions' exp/nbf/iat.
    pub leeway_secs: u64,
    /// Longest exp - now a client assertion may have (RFC 7523 asks for
    /// short-lived assertions; a long one would make replay windows long).
    pub max_assertion_lifetime_secs: u64,
    /// The audience of admin tokens: a token for this audience with scope
    /// `agentsec:admin` may call the admin RPCs.
    pub admin_audience: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            lifetime_secs: 600,
            leeway_secs: 30,
            max_assertion_lifetime_secs: 300,
            admin_audience: "agentsec".to_owned(),
        }
    }
}

/// The server-side secret of the client secrets' keyed hashes.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialConfig {
    /// The pepper itself (at least 32 chars); prefer the environment
    /// variable AGENTSEC_CREDENTIALS__PEPPER or `pepper_file`.
    pub pepper: Option<String>,
    /// A file holding the pepper. When neither `pepper` nor `pepper_file` is
    /// set, a random pepper is generated once into `<data dir>/identity-pepper`
    /// — fine for one node; replicas must share a configured one.
    pub pepper_file: Option<PathBuf>,
}

impl std::fmt::Debug for CredentialConfig {
    // The pepper never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialConfig")
            .field("pepper", &agentsec_common::redact::optional(&self.pepper))
            .field("pepper_file", &self.pepper_file)
            .finish()
    }
}

/// A client credential that always has global admin rights, for the first
/// registrations. Unset = none.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapAdminConfig {
    /// The client id (must not look like an agent id).
    pub client_id: Option<String>,
    /// Its secret, at least 32 chars; prefer AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for BootstrapAdminConfig {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdminConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &agentsec_common::redact::optional(&self.client_secret),
            )
            .finish()
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
            database: DatabaseConfig::sqlite_file(&data_dir.join("identity.db")),
            redis: RedisConfig::default(),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
            signing: SigningConfig::default(),
            tokens: TokenConfig::default(),
            credentials: CredentialConfig::default(),
            bootstrap_admin: BootstrapAdminConfig::default(),
            service_clients: BTreeMap::new(),
            audit: AuditClientConfig::default(),
            trusted_issuers: Vec::new(),
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

    /// Where a generated pepper is kept when none is configured: beside the
    /// SQLite database, or in the working directory's `.agentsec/`.
    pub(crate) fn generated_pepper_path(&self) -> PathBuf {
        let data_dir = self
            .database
            .url
            .strip_prefix("sqlite://")
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .and_then(|file| Path::new(file).parent().map(Path::to_path_buf))
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(".agentsec"));
        data_dir.join("identity-pepper")
    }
}

impl ServiceConfig for Config {
    fn sections(&self) -> Sections<'_> {
        Sections::new(&self.server, &self.telemetry, &self.tls, &self.database)
            .connected(&self.redis, &self.audit)
    }

    fn validate_own(&self) -> Result<(), ConfigError> {
        check_http_url("issuer", &self.issuer)?;
        if self.issuer.ends_with('/') {
            return Err(ConfigError::invalid(
                "issuer",
                "must not end with `/` (endpoint URLs are appended to it)",
            ));
        }
        self.signing.validate()?;
        self.tokens.validate()?;
        self.credentials.validate()?;
        self.bootstrap_admin.validate()?;
        for (client_id, client) in &self.service_clients {
            client.validate(client_id, &self.bootstrap_admin)?;
        }
        validate_trusted_issuers(&self.trusted_issuers)
    }
}

impl TokenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_between(
            "tokens.lifetime_secs",
            self.lifetime_secs,
            1,
            MAX_TOKEN_LIFETIME_SECS,
        )?;
        check_at_most("tokens.leeway_secs", self.leeway_secs, 300)?;
        check_between(
            "tokens.max_assertion_lifetime_secs",
            self.max_assertion_lifetime_secs,
            1,
            3600,
        )?;
        check_name("tokens.admin_audience", &self.admin_audience, 256)
    }
}

impl CredentialConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.pepper.is_some() && self.pepper_file.is_some() {
            return Err(ConfigError::invalid(
                "credentials.pepper",
                "set either credentials.pepper or credentials.pepper_file, not both",
            ));
        }
        if let Some(pepper) = &self.pepper {
            if pepper.chars().count() < MIN_SECRET_CHARS {
                return Err(ConfigError::invalid(
                    "credentials.pepper",
                    format!("must be at least {MIN_SECRET_CHARS} chars"),
                ));
            }
        }
        Ok(())
    }
}

impl BootstrapAdminConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match (&self.client_id, &self.client_secret) {
            (None, None) => Ok(()),
            (Some(id), Some(secret)) => {
                if id.is_empty()
                    || id.len() > 128
                    || id.starts_with("agt_")
                    || id == crate::oauth::own_token::OWN_SUBJECT
                {
                    return Err(ConfigError::invalid(
                        "bootstrap_admin.client_id",
                        format!(
                            "must be 1-128 chars, not start with `agt_` and not be `{}` \
                             (identity-svc's own subject)",
                            crate::oauth::own_token::OWN_SUBJECT
                        ),
                    ));
                }
                if secret.chars().count() < MIN_SECRET_CHARS {
                    return Err(ConfigError::invalid(
                        "bootstrap_admin.client_secret",
                        format!("must be at least {MIN_SECRET_CHARS} chars"),
                    ));
                }
                Ok(())
            }
            (Some(_), None) => Err(ConfigError::invalid(
                "bootstrap_admin.client_secret",
                "is required when bootstrap_admin.client_id is set",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "bootstrap_admin.client_id",
                "is required when bootstrap_admin.client_secret is set",
            )),
        }
    }
}

/// A service's own client credential (`[service_clients.<client_id>]`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceClientConfig {
    /// At least 32 chars; prefer the environment variable.
    pub client_secret: String,
    /// The audiences its tokens may be for (one per token).
    pub audiences: Vec<String>,
    /// The scopes its tokens may carry, each one of
    /// `agentsec_common::admin_token::SERVICE_SCOPES`.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ServiceClientConfig {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceClientConfig")
            .field("client_secret", &agentsec_common::redact::REDACTED)
            .field("audiences", &self.audiences)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The client id `agentctl dev` and the test harness give exchange-svc.
pub const EXCHANGE_SVC_CLIENT_ID: &str = "exchange_svc";
/// The client id `agentctl dev` and the test harness give policy-svc.
pub const POLICY_SVC_CLIENT_ID: &str = "policy_svc";

impl ServiceClientConfig {
    /// What exchange-svc needs: every tenant's agents (`admin_audience`),
    /// decisions at policy-svc (`policy_audience`) and appending audit
    /// events (`audit_audience`).
    pub fn exchange_svc(
        client_secret: String,
        admin_audience: &str,
        policy_audience: &str,
        audit_audience: &str,
    ) -> Self {
        Self {
            client_secret,
            audiences: vec![
                admin_audience.to_owned(),
                policy_audience.to_owned(),
                audit_audience.to_owned(),
            ],
            scopes: vec![AGENTS_READ_SCOPE.to_owned(), AUDIT_APPEND_SCOPE.to_owned()],
        }
    }

    /// What policy-svc needs: every tenant's agents, the revocation
    /// listings (`admin_audience`) and appending audit events
    /// (`audit_audience`).
    pub fn policy_svc(client_secret: String, admin_audience: &str, audit_audience: &str) -> Self {
        Self {
            client_secret,
            audiences: vec![admin_audience.to_owned(), audit_audience.to_owned()],
            scopes: vec![
                AGENTS_READ_SCOPE.to_owned(),
                REVOCATIONS_READ_SCOPE.to_owned(),
                AUDIT_APPEND_SCOPE.to_owned(),
            ],
        }
    }

    fn validate(
        &self,
        client_id: &str,
        bootstrap: &BootstrapAdminConfig,
    ) -> Result<(), ConfigError> {
        let key = |name: &str| format!("service_clients.{client_id}.{name}");
        let id_ok = (1..=64).contains(&client_id.len())
            && client_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !client_id.starts_with("agt_");
        if !id_ok || bootstrap.client_id.as_deref() == Some(client_id) {
            return Err(ConfigError::invalid(
                "service_clients",
                format!(
                    "client id `{}` must be 1-64 of a-z, 0-9 and `_`, not start with `agt_` \
                     and not be the bootstrap admin's",
                    client_id.escape_default()
                ),
            ));
        }
        if self.client_secret.chars().count() < MIN_SECRET_CHARS {
            return Err(ConfigError::invalid(
                key("client_secret"),
                format!("must be at least {MIN_SECRET_CHARS} chars"),
            ));
        }
        if self.audiences.is_empty()
            || self
                .audiences
                .iter()
                .any(|audience| audience.is_empty() || audience.len() > 256)
        {
            return Err(ConfigError::invalid(
                key("audiences"),
                "must list 1 or more audiences of 1-256 chars",
            ));
        }
        if let Some(unknown) = self
            .scopes
            .iter()
            .find(|scope| !agentsec_common::admin_token::SERVICE_SCOPES.contains(&scope.as_str()))
        {
            return Err(ConfigError::invalid(
                key("scopes"),
                format!(
                    "`{}` is not a service scope (one of: {})",
                    unknown.escape_default(),
                    agentsec_common::admin_token::SERVICE_SCOPES.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// An external token issuer trusted for the jwt-bearer grant (RFC 7523
/// §2.1): a Kubernetes cluster, a SPIFFE trust domain, a CI provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuerConfig {
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
    /// The JWS algorithms accepted from it; a subset of RS256, RS384,
    /// RS512, PS256, ES256, ES384, EdDSA.
    #[serde(default = "agentsec_common::issuer_config::default_algorithms")]
    pub algorithms: Vec<String>,
    /// How long a fetched JWKS is used before it is fetched again.
    #[serde(default = "agentsec_common::issuer_config::default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
}

impl TrustedIssuerConfig {
    pub fn jwks_cache(&self) -> Duration {
        Duration::from_secs(self.jwks_cache_secs)
    }
}

fn validate_trusted_issuers(issuers: &[TrustedIssuerConfig]) -> Result<(), ConfigError> {
    let entries: Vec<IssuerEntry<'_>> = issuers.iter().map(TrustedIssuerConfig::entry).collect();
    for index in 0..entries.len() {
        check_issuer_entry("trusted_issuers", &entries, index)?;
    }
    Ok(())
}

impl TrustedIssuerConfig {
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

    const JWKS: &str = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn issuer(name: &str) -> TrustedIssuerConfig {
        TrustedIssuerConfig {
            issuer: name.to_owned(),
            jwks: Some(JWKS.to_owned()),
            jwks_uri: None,
            algorithms: agentsec_common::issuer_config::default_algorithms(),
            jwks_cache_secs: agentsec_common::issuer_config::default_jwks_cache_secs(),
        }
    }

    /// The key the error names, or "" when the config is valid.
    fn refused_key(issuers: Vec<TrustedIssuerConfig>) -> String {
        match validate_trusted_issuers(&issuers) {
            Ok(()) => String::new(),
            Err(ConfigError::InvalidValue { key, .. }) => key,
            Err(other) => other.to_string(),
        }
    }

    #[test]
    fn trusted_issuers_accept_https_and_loopback_http() {
        assert_eq!(refused_key(vec![]), "");
        assert_eq!(
            refused_key(vec![
                issuer("https://kubernetes.default.svc"),
                issuer("http://127.0.0.1:8080"),
                issuer("http://localhost:9000/issuer"),
                TrustedIssuerConfig {
                    jwks: None,
                    jwks_uri: Some(
                        "https://token.actions.githubusercontent.com/.well-known/jwks".into()
                    ),
                    algorithms: vec!["RS256".into(), "PS256".into()],
                    ..issuer("https://token.actions.githubusercontent.com")
                },
            ]),
            ""
        );
    }

    #[test]
    fn trusted_issuer_errors_name_the_key() {
        let cases = [
            (issuer(""), "trusted_issuers[0].issuer"),
            (
                issuer("kubernetes/serviceaccount"),
                "trusted_issuers[0].issuer",
            ),
            (issuer("http://issuer.example"), "trusted_issuers[0].issuer"),
            (issuer("ftp://issuer.example"), "trusted_issuers[0].issuer"),
            (
                issuer(&format!("https://issuer.example/{}", "a".repeat(512))),
                "trusted_issuers[0].issuer",
            ),
            (
                TrustedIssuerConfig {
                    jwks: None,
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks",
            ),
            (
                TrustedIssuerConfig {
                    jwks_uri: Some("https://issuer.example/jwks".into()),
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks",
            ),
            (
                TrustedIssuerConfig {
                    jwks: Some(r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}"#.into()),
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks",
            ),
            (
                TrustedIssuerConfig {
                    jwks: Some("not json".into()),
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks",
            ),
            (
                TrustedIssuerConfig {
                    jwks: None,
                    jwks_uri: Some("http://issuer.example/jwks".into()),
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks_uri",
            ),
            (
                TrustedIssuerConfig {
                    jwks: None,
                    jwks_uri: Some("https://user:pw@issuer.example/jwks".into()),
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks_uri",
            ),
            (
                TrustedIssuerConfig {
                    algorithms: vec![],
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].algorithms",
            ),
            (
                TrustedIssuerConfig {
                    algorithms: vec!["HS256".into()],
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].algorithms",
            ),
            (
                TrustedIssuerConfig {
                    algorithms: vec!["none".into()],
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].algorithms",
            ),
            (
                TrustedIssuerConfig {
                    algorithms: vec!["RS256".into(), "RS256".into()],
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].algorithms",
            ),
            (
                TrustedIssuerConfig {
                    jwks_cache_secs: 0,
                    ..issuer("https://issuer.example")
                },
                "trusted_issuers[0].jwks_cache_secs",
            ),
        ];
        for (config, expected) in cases {
            let described = format!("{config:?}");
            assert_eq!(refused_key(vec![config]), expected, "{described}");
        }
        assert_eq!(
            refused_key(vec![
                issuer("https://a.example"),
                issuer("https://b.example"),
                issuer("https://a.example"),
            ]),
            "trusted_issuers[2].issuer"
        );
    }

    #[test]
    fn a_bad_trusted_issuer_fails_loading_naming_the_key() {
        let env = vec![(
            "AGENTSEC_TRUSTED_ISSUERS".to_owned(),
            r#"[{issuer = "http://issuer.example", jwks_uri = "https://issuer.example/jwks"}]"#
                .to_owned(),
        )];
        let err = agentsec_common::config::load_from::<Config>(None, env).unwrap_err();
        assert!(
            err.to_string().contains("`trusted_issuers[0].issuer`"),
            "{err}"
        );
    }

    #[test]
    fn trusted_issuers_default_to_none_and_fill_in_defaults() {
        assert!(Config::default().trusted_issuers.is_empty());
        let parsed: TrustedIssuerConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://kubernetes.default.svc",
            "jwks_uri": "https://kubernetes.default.svc/openid/v1/jwks",
        }))
        .unwrap();
        assert_eq!(parsed.algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(parsed.jwks_cache_secs, 300);
        assert_eq!(parsed.jwks, None);
    }
}

#[cfg(test)]
mod service_client_tests {
    use agentsec_common::config::load_from;

    use super::*;

    const SECRET: &str = "service-client-secret-0123456789abcdef";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn service_clients_are_set_from_the_environment() {
        let config: Config = load_from(
            None,
            env(&[
                (
                    "AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__CLIENT_SECRET",
                    SECRET,
                ),
                (
                    "AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__AUDIENCES",
                    r#"["agentsec"]"#,
                ),
                (
                    "AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__SCOPES",
                    r#"["agentsec:agents:read", "agentsec:revocations:read"]"#,
                ),
            ]),
        )
        .unwrap();
        let client = &config.service_clients["policy_svc"];
        assert_eq!(client.client_secret, SECRET);
        assert_eq!(client.audiences, ["agentsec"]);
        assert_eq!(client.scopes.len(), 2);
        assert!(!format!("{config:?}").contains(SECRET), "Debug redacts it");
    }

    #[test]
    fn debug_shows_no_secret() {
        let config: Config = load_from(
            None,
            env(&[
                ("AGENTSEC_CREDENTIALS__PEPPER", SECRET),
                ("AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_ID", "root"),
                ("AGENTSEC_BOOTSTRAP_ADMIN__CLIENT_SECRET", SECRET),
                (
                    "AGENTSEC_DATABASE__URL",
                    "postgres://u:db-password@db/agentsec",
                ),
                ("AGENTSEC_REDIS__URL", "redis://:redis-password@cache:6379"),
            ]),
        )
        .unwrap();
        let shown = format!("{config:?}");
        for secret in [SECRET, "db-password", "redis-password"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn service_clients_hold_service_scopes_only_and_name_the_key_at_fault() {
        let valid =
            ServiceClientConfig::policy_svc(SECRET.to_owned(), "agentsec", "agentsec-audit");
        let bootstrap = BootstrapAdminConfig {
            client_id: Some("root".to_owned()),
            client_secret: Some(SECRET.to_owned()),
        };
        assert!(valid.validate("policy_svc", &bootstrap).is_ok());
        let refused = |id: &str, client: ServiceClientConfig| match client.validate(id, &bootstrap)
        {
            Err(ConfigError::InvalidValue { key, .. }) => key,
            other => format!("{other:?}"),
        };
        assert_eq!(
            refused(
                "policy_svc",
                ServiceClientConfig {
                    scopes: vec!["agentsec:admin".to_owned()],
                    ..valid.clone()
                }
            ),
            "service_clients.policy_svc.scopes"
        );
        assert_eq!(
            refused(
                "policy_svc",
                ServiceClientConfig {
                    client_secret: "short".to_owned(),
                    ..valid.clone()
                }
            ),
            "service_clients.policy_svc.client_secret"
        );
        assert_eq!(
            refused(
                "policy_svc",
                ServiceClientConfig {
                    audiences: Vec::new(),
                    ..valid.clone()
                }
            ),
            "service_clients.policy_svc.audiences"
        );
        for id in ["root", "agt_01JAAAAAAAAAAAAAAAAAAAAAAA", "Policy-Svc", ""] {
            assert_eq!(refused(id, valid.clone()), "service_clients", "{id}");
        }
        let own = BootstrapAdminConfig {
            client_id: Some(crate::oauth::own_token::OWN_SUBJECT.to_owned()),
            client_secret: Some(SECRET.to_owned()),
        };
        assert!(
            own.validate().is_err(),
            "the bootstrap admin cannot be identity-svc itself"
        );
    }
}
