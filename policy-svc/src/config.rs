//! policy-svc configuration (see `deploy/config/policy-svc.toml` for
//! every key with its default).

use std::path::Path;

use agentsec_common::audit::client::AuditClientConfig;
use agentsec_common::config::{
    check_http_url, ConfigError, DatabaseConfig, RedisConfig, ServerConfig, ServiceConfig,
    TelemetryConfig,
};
use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 7402;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub decisions: DecisionConfig,
    #[serde(default)]
    pub audit: AuditClientConfig,
}

/// How admin calls are authenticated: admin tokens of identity-svc,
/// verified against its published key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// identity-svc's `/.well-known/jwks.json` (http or https). Unset: the
    /// admin RPCs answer FAILED_PRECONDITION.
    pub jwks_uri: Option<String>,
    /// The `iss` of admin tokens (identity-svc's issuer). Required with
    /// `jwks_uri`.
    pub issuer: Option<String>,
    /// The `aud` of admin tokens.
    pub audience: String,
    /// How long a fetched key set is used before it is fetched again.
    pub jwks_cache_ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            jwks_uri: None,
            issuer: None,
            audience: "agentsec".to_owned(),
            jwks_cache_ttl_secs: 300,
            leeway_secs: 30,
        }
    }
}

impl AdminConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(uri) = &self.jwks_uri {
            check_http_url("admin.jwks_uri", uri)?;
            if self.issuer.as_deref().is_none_or(str::is_empty) {
                return Err(ConfigError::invalid(
                    "admin.issuer",
                    "is required when admin.jwks_uri is set",
                ));
            }
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
}

impl Default for DecisionConfig {
    fn default() -> Self {
        Self {
            cache_ttl_secs: 30,
            audit_backlog: 10_000,
        }
    }
}

impl DecisionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cache_ttl_secs > 3_600 {
            return Err(ConfigError::invalid(
                "decisions.cache_ttl_secs",
                "must be at most 3600",
            ));
        }
        if !(1..=1_000_000).contains(&self.audit_backlog) {
            return Err(ConfigError::invalid(
                "decisions.audit_backlog",
                "must be between 1 and 1000000",
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
            admin: AdminConfig::default(),
            decisions: DecisionConfig::default(),
            audit: AuditClientConfig::default(),
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
    fn server(&self) -> &ServerConfig {
        &self.server
    }

    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.database.validate()?;
        self.redis.validate()?;
        self.admin.validate()?;
        self.decisions.validate()?;
        self.audit.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_jwks_uri_needs_an_issuer_and_an_http_url() {
        let mut config = Config::default();
        assert!(config.validate().is_ok());
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
    fn decision_limits_are_checked() {
        let mut config = Config::default();
        config.decisions.audit_backlog = 0;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("decisions.audit_backlog"), "{err}");
        config.decisions.audit_backlog = 1;
        config.decisions.cache_ttl_secs = 3_601;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("decisions.cache_ttl_secs"), "{err}");
    }
}
