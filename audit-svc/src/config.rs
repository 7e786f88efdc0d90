//! audit-svc configuration (see `deploy/config/audit-svc.toml` for
//! every key with its default).

use std::path::Path;

use agentsec_common::admin_token::AdminConfig;
use agentsec_common::config::{
    ConfigError, DatabaseConfig, Sections, ServerConfig, ServiceConfig, SigningConfig,
    TelemetryConfig,
};
use agentsec_common::keys::SigningAlgorithm;
use agentsec_common::tls::TlsConfig;
use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 7404;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub telemetry: TelemetryConfig,
    /// TLS on the service's port and on its calls to `https://` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The key that signs chain checkpoints (Ed25519).
    pub signing: SigningConfig,
    pub chain: ChainConfig,
    /// identity-svc's keys (required): every call but GetVerificationKeys
    /// authenticates its caller with a token of identity-svc. Admin tokens
    /// (`admin.audience`, scope `agentsec:admin`) may read.
    pub admin: AdminConfig,
    /// The `aud` of service tokens (scope `agentsec:audit:append`: append)
    /// and auditor tokens (scope `agentsec:audit:read`: read).
    pub audience: String,
}

/// Group commit and checkpoint cadence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Sign a checkpoint once this many events follow the last one.
    pub checkpoint_every_events: u64,
    /// Sign a checkpoint at least this often (seconds) while events arrive.
    pub checkpoint_every_secs: u64,
    /// Most events committed in one transaction.
    pub max_group_events: usize,
    /// Append requests waiting for the writer; beyond this, callers wait.
    pub queue_jobs: usize,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_events: 1_000,
            checkpoint_every_secs: 10,
            max_group_events: 10_000,
            queue_jobs: 1_024,
        }
    }
}

impl ChainConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            (
                "chain.checkpoint_every_events",
                (1..=1_000_000).contains(&self.checkpoint_every_events),
                "between 1 and 1000000",
            ),
            (
                "chain.checkpoint_every_secs",
                (1..=86_400).contains(&self.checkpoint_every_secs),
                "between 1 and 86400",
            ),
            (
                "chain.max_group_events",
                (1..=100_000).contains(&self.max_group_events),
                "between 1 and 100000",
            ),
            (
                "chain.queue_jobs",
                (1..=100_000).contains(&self.queue_jobs),
                "between 1 and 100000",
            ),
        ];
        for (key, ok, range) in checks {
            if !ok {
                return Err(ConfigError::invalid(key, format!("must be {range}")));
            }
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
    /// Callers' tokens are verified against the identity-svc at `issuer`
    /// (its published key set).
    pub fn trust_identity(&mut self, issuer: &str) {
        self.admin.jwks_uri = Some(format!("{issuer}/.well-known/jwks.json"));
        self.admin.jwks = None;
        self.admin.issuer = Some(issuer.to_owned());
    }

    /// The defaults, with the SQLite database under `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            server: ServerConfig::on_port(DEFAULT_PORT),
            database: DatabaseConfig::sqlite_file(&data_dir.join("audit.db")),
            telemetry: TelemetryConfig::default(),
            tls: TlsConfig::default(),
            signing: SigningConfig::default(),
            chain: ChainConfig::default(),
            admin: AdminConfig::default(),
            audience: "agentsec-audit".to_owned(),
        }
    }

    /// A config for tests: the given database, port chosen by the caller's
    /// listener.
    /// Checkpoints come every 100 events or second, so tests see several.
    pub fn for_test(database: DatabaseConfig) -> Self {
        Self {
            database,
            chain: ChainConfig {
                checkpoint_every_events: 100,
                checkpoint_every_secs: 1,
                ..ChainConfig::default()
            },
            ..Self::default()
        }
    }
}

impl ServiceConfig for Config {
    fn sections(&self) -> Sections<'_> {
        Sections::new(&self.server, &self.telemetry, &self.tls, &self.database)
    }

    fn validate_own(&self) -> Result<(), ConfigError> {
        self.signing.validate()?;
        if self.signing.algorithm != SigningAlgorithm::EdDsa {
            return Err(ConfigError::invalid(
                "signing.algorithm",
                "must be EdDSA: checkpoints are Ed25519 signatures",
            ));
        }
        self.admin.validate()?;
        if !self.admin.has_keys() {
            return Err(ConfigError::invalid(
                "admin.jwks_uri",
                "is required: every audit-svc call but GetVerificationKeys authenticates its \
                 caller with a token of identity-svc, verified with these keys",
            ));
        }
        if self.audience.is_empty() || self.audience.len() > 256 {
            return Err(ConfigError::invalid("audience", "must be 1-256 chars"));
        }
        self.chain.validate()
    }
}
