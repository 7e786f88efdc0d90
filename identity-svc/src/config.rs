//! identity-svc configuration (see `deploy/config/identity-svc.toml` for
//! every key with its default).

use std::path::Path;

use agentsec_common::config::{
    check_http_url, ConfigError, DatabaseConfig, RedisConfig, ServerConfig, ServiceConfig,
    SigningConfig, TelemetryConfig,
};
use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 7401;

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
            issuer: format!("http://127.0.0.1:{DEFAULT_PORT}"),
            server: ServerConfig::on_port(DEFAULT_PORT),
            database: DatabaseConfig::sqlite_file(&data_dir.join("identity.db")),
            redis: RedisConfig::default(),
            telemetry: TelemetryConfig::default(),
            signing: SigningConfig::default(),
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
        check_http_url("issuer", &self.issuer)?;
        self.server.validate()?;
        self.database.validate()?;
        self.redis.validate()?;
        self.signing.validate()
    }
}
