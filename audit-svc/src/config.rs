//! audit-svc configuration (see `deploy/config/audit-svc.toml` for
//! every key with its default).

use std::path::Path;

use agentsec_common::config::{
    ConfigError, DatabaseConfig, ServerConfig, ServiceConfig, SigningConfig, TelemetryConfig,
};
use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 7404;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub telemetry: TelemetryConfig,
    /// The key that signs chain checkpoints.
    pub signing: SigningConfig,
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
            database: DatabaseConfig::sqlite_file(&data_dir.join("audit.db")),
            telemetry: TelemetryConfig::default(),
            signing: SigningConfig::default(),
        }
    }

    /// A config for tests: the given database, port chosen by the caller's
    /// listener.
    pub fn for_test(database: DatabaseConfig) -> Self {
        Self {
            database,
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
        self.signing.validate()
    }
}
