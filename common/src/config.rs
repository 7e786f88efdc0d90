//! Layered configuration: defaults, then a TOML file, then `AGENTSEC_*`
//! environment variables (`AGENTSEC_<SECTION>__<KEY>`, e.g.
//! `AGENTSEC_DATABASE__URL`). Unknown keys and invalid values are errors that
//! name the key, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Environment variables with this prefix configure a service.
pub const ENV_PREFIX: &str = "AGENTSEC_";

/// Variables under [`ENV_PREFIX`] that are not configuration keys: the path of
/// the config file itself and the test harness's own settings.
const NON_CONFIG_ENV_PREFIXES: &[&str] = &["config", "test_"];

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file `{path}` cannot be read: {reason}")]
    UnreadableFile { path: PathBuf, reason: String },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: `{key}` {reason}")]
    InvalidValue { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidValue {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// `value` within `min..=max`, or "must be between {min} and {max}".
pub fn check_between<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// `value` at most `max`, or "must be at most {max}".
pub fn check_at_most<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    max: T,
) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::invalid(key, format!("must be at most {max}")));
    }
    Ok(())
}

/// A name of 1 to `max` bytes, or "must be 1-{max} chars".
pub fn check_name(key: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > max {
        return Err(ConfigError::invalid(key, format!("must be 1-{max} chars")));
    }
    Ok(())
}

/// The sections every service's configuration has; `None` where a service
/// has no such section.
pub struct Sections<'a> {
    pub server: &'a ServerConfig,
    pub telemetry: &'a TelemetryConfig,
    pub tls: &'a crate::tls::TlsConfig,
    pub database: &'a DatabaseConfig,
    pub redis: Option<&'a RedisConfig>,
    pub audit: Option<&'a crate::audit::client::AuditClientConfig>,
}

impl<'a> Sections<'a> {
    /// The sections of a service without Redis or an audit client.
    pub fn new(
        server: &'a ServerConfig,
        telemetry: &'a TelemetryConfig,
        tls: &'a crate::tls::TlsConfig,
        database: &'a DatabaseConfig,
    ) -> Self {
        Self {
            server,
            telemetry,
            tls,
            database,
            redis: None,
            audit: None,
        }
    }

    /// With Redis and an audit client.
    pub fn connected(
        self,
        redis: &'a RedisConfig,
        audit: &'a crate::audit::client::AuditClientConfig,
    ) -> Self {
        Self {
            redis: Some(redis),
            audit: Some(audit),
            ..self
        }
    }
}

/// A service's whole configuration. Implemented by each service's config type.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    fn sections(&self) -> Sections<'_>;

    /// Checks the service's own sections: values that the type system
    /// cannot (URLs, ranges, combinations).
    fn validate_own(&self) -> Result<(), ConfigError>;

    fn server(&self) -> &ServerConfig {
        self.sections().server
    }

    fn telemetry(&self) -> &TelemetryConfig {
        self.sections().telemetry
    }

    /// Checks every section: the shared ones, then the service's own.
    fn validate(&self) -> Result<(), ConfigError> {
        let sections = self.sections();
        sections.server.validate()?;
        sections.tls.validate()?;
        sections.database.validate()?;
        if let Some(redis) = sections.redis {
            redis.validate()?;
        }
        if let Some(audit) = sections.audit {
            audit.validate()?;
        }
        self.validate_own()
    }
}

/// Loads `C` from its defaults, the optional TOML file, and the environment.
pub fn load<C: ServiceConfig>(file: Option<&Path>) -> Result<C, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    load_from(file, env)
}

/// Like [`load`], with the environment given explicitly (tests use this to
/// avoid touching the process environment).
pub fn load_from<C: ServiceConfig>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<C, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(C::default()));
    if let Some(path) = file {
        std::fs::metadata(path).map_err(|err| ConfigError::UnreadableFile {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
        figment = figment.merge(Toml::file_exact(path));
    }
    // (dotted key, the variable as written, its value)
    let config_vars: Vec<(String, String, String)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
            let is_config = !NON_CONFIG_ENV_PREFIXES
                .iter()
                .any(|skip| key.starts_with(skip));
            is_config.then(|| (key.replace("__", "."), name, value))
        })
        .collect();
    for (key, _, value) in &config_vars {
        // Values are parsed like TOML scalars (numbers, booleans, arrays);
        // anything else is taken as a string.
        let parsed = match value.parse::<figment::value::Value>() {
            Ok(parsed) => parsed,
            Err(never) => match never {},
        };
        figment = figment.merge(Serialized::global(key, parsed));
    }
    let config: C = figment
        .extract()
        .map_err(|err| ConfigError::Parse(describe_figment_error(&err, &config_vars)))?;
    config.validate()?;
    Ok(config)
}

/// The environment variable, as written, that set `key` (or a key under
/// it).
fn variable_of<'a>(key: &str, config_vars: &'a [(String, String, String)]) -> Option<&'a str> {
    config_vars
        .iter()
        .find(|(var_key, _, _)| {
            var_key == key
                || var_key
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .map(|(_, name, _)| name.as_str())
}

fn describe_figment_error(
    err: &figment::Error,
    config_vars: &[(String, String, String)],
) -> String {
    err.clone()
        .into_iter()
        .map(|one| {
            let key = one.path.join(".");
            // An unknown key may be reported at its parent: name the key
            // itself.
            let full_key = match &one.kind {
                figment::error::Kind::UnknownField(field, _) if one.path.last() != Some(field) => {
                    if key.is_empty() {
                        field.clone()
                    } else {
                        format!("{key}.{field}")
                    }
                }
                _ => key.clone(),
            };
            let source = match one.metadata.as_ref().and_then(|meta| meta.source.as_ref()) {
                Some(figment::Source::File(path)) => format!(" (in {})", path.display()),
                _ if one
                    .metadata
                    .as_ref()
                    .is_some_and(|meta| meta.name.contains("Value")) =>
                {
                    match variable_of(&full_key, config_vars) {
                        Some(name) => format!(" (from the environment variable `{name}`)"),
                        None => " (from an AGENTSEC_* environment variable)".to_owned(),
                    }
                }
                _ => String::new(),
            };
            if key.is_empty() {
                format!("{}{source}", one.kind)
            } else {
                format!("`{key}`: {}{source}", one.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the service listens and how it stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for gRPC and HTTP (one port).
    pub listen: SocketAddr,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace_secs: u64,
}

impl ServerConfig {
    pub fn on_port(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            shutdown_grace_secs: 10,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_grace_secs > 300 {
            return Err(ConfigError::invalid(
                "server.shutdown_grace_secs",
                "must be at most 300",
            ));
        }
        Ok(())
    }
}

/// The service's own database.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://<path>?mode=rwc`, `sqlite::memory:` or `postgres://user@host/db`.
    pub url: String,
    /// PostgreSQL schema for this service's tables (created if missing).
    pub schema: Option<String>,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
    /// How long start-up waits for the database to accept a connection.
    pub connect_timeout_secs: u64,
    /// How long a request waits for a connection (from the pool, or newly
    /// opened when the pool has room) before it fails
    /// with UNAVAILABLE (`temporarily_unavailable` over OAuth): short, so
    /// that requests fail fast while the database is unreachable instead of
    /// queueing for the connect timeout.
    pub acquire_timeout_ms: u64,
    /// Whether the service runs its pending migrations at start. `false`:
    /// it only checks that the schema is current and refuses to start if
    /// not (migrations then run as `<service> --migrate`, e.g. a Job).
    pub migrate_on_start: bool,
}

/// Bounds of `database.acquire_timeout_ms`.
pub const ACQUIRE_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 50..=60_000;

impl std::fmt::Debug for DatabaseConfig {
    // A password inside the URL never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::redact::url(&self.url))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

impl DatabaseConfig {
    pub fn sqlite_file(path: &Path) -> Self {
        Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            schema: None,
            max_connections: 8,
            connect_timeout_secs: 10,
            acquire_timeout_ms: 1_500,
            migrate_on_start: true,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::db::DatabaseKind::of_url(&self.url)
            .map_err(|reason| ConfigError::invalid("database.url", reason))?;
        if let Some(schema) = &self.schema {
            crate::db::check_schema_name(schema)
                .map_err(|reason| ConfigError::invalid("database.schema", reason))?;
        }
        if self.max_connections == 0 || self.max_connections > 1_000 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=300).contains(&self.connect_timeout_secs) {
            return Err(ConfigError::invalid(
                "database.connect_timeout_secs",
                "must be between 1 and 300",
            ));
        }
        check_between(
            "database.acquire_timeout_ms",
            self.acquire_timeout_ms,
            *ACQUIRE_TIMEOUT_MS.start(),
            *ACQUIRE_TIMEOUT_MS.end(),
        )?;
        Ok(())
    }
}

/// Shared cache and invalidation bus. Without a URL the service keeps its
/// cache in process and cross-replica invalidation is off.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`; unset means no Redis.
    pub url: Option<String>,
    /// Prepended to every key and channel, so deployments can share a Redis.
    pub key_prefix: String,
    /// Not configurable: the invalidation bus of services composed in one
    /// process without Redis (`agentctl dev`, the test harness).
    #[serde(skip)]
    pub local_bus: Option<crate::invalidation::LocalBus>,
}

impl std::fmt::Debug for RedisConfig {
    // A password inside the URL never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(crate::redact::url))
            .field("key_prefix", &self.key_prefix)
            .field("local_bus", &self.local_bus.is_some())
            .finish()
    }
}

impl RedisConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.url {
            crate::redis::check_url(url)
                .map_err(|reason| ConfigError::invalid("redis.url", reason))?;
        }
        Ok(())
    }
}

/// Log output and trace export. The OTLP exporter itself follows the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// Filter used when `RUST_LOG` is unset.
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The key a service signs its tokens or checkpoints with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// `EdDSA` (Ed25519, the default) or `ES256` (P-256).
    pub algorithm: crate::keys::SigningAlgorithm,
    /// A PKCS#8 PEM private key to sign with instead of a generated one.
    pub key_file: Option<PathBuf>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            algorithm: crate::keys::SigningAlgorithm::EdDsa,
            key_file: None,
        }
    }
}

impl SigningConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(path) = &self.key_file {
            if !path.is_file() {
                return Err(ConfigError::invalid(
                    "signing.key_file",
                    format!("`{}` is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }
}

/// An absolute `http(s)` URL, checked for a setting named `key`.
pub fn check_http_url(key: &str, value: &str) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(value)
        .map_err(|err| ConfigError::invalid(key, format!("is not a URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(key, "must be an http or https URL"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TestConfig {
        server: ServerConfig,
        database: DatabaseConfig,
        redis: RedisConfig,
        telemetry: TelemetryConfig,
    }

    impl Default for TestConfig {
        fn default() -> Self {
            Self {
                server: ServerConfig::on_port(7401),
                database: DatabaseConfig::sqlite_file(Path::new(".agentsec/test.db")),
                redis: RedisConfig::default(),
                telemetry: TelemetryConfig::default(),
            }
        }
    }

    static NO_TLS: std::sync::LazyLock<crate::tls::TlsConfig> =
        std::sync::LazyLock::new(crate::tls::TlsConfig::default);

    impl ServiceConfig for TestConfig {
        fn sections(&self) -> Sections<'_> {
            Sections {
                server: &self.server,
                telemetry: &self.telemetry,
                tls: &NO_TLS,
                database: &self.database,
                redis: Some(&self.redis),
                audit: None,
            }
        }
        fn validate_own(&self) -> Result<(), ConfigError> {
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn write_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_load() {
        let config: TestConfig = load_from(None, env(&[])).unwrap();
        assert_eq!(config.server.listen.port(), 7401);
        assert!(config.redis.url.is_none());
    }

    #[test]
    fn file_then_env_override_defaults() {
        let file = write_file(
            "[server]\nlisten = \"0.0.0.0:9000\"\n[database]\nurl = \"postgres://postgres@127.0.0.1/test\"\n",
        );
        let config: TestConfig = load_from(
            Some(file.path()),
            env(&[
                ("AGENTSEC_SERVER__LISTEN", "127.0.0.1:9100"),
                ("AGENTSEC_REDIS__URL", "redis://127.0.0.1:6379"),
                ("AGENTSEC_TEST_DATABASE_URL", "ignored by config"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9100);
        assert_eq!(config.database.url, "postgres://postgres@127.0.0.1/test");
        assert_eq!(
            config.database.max_connections, 8,
            "untouched keys keep defaults"
        );
        assert_eq!(config.redis.url.as_deref(), Some("redis://127.0.0.1:6379"));
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let file = write_file("[server]\nlisten = \"127.0.0.1:1\"\nlistne = \"oops\"\n");
        let err = load_from::<TestConfig>(Some(file.path()), env(&[])).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("listne"), "{message}");
    }

    #[test]
    fn unknown_env_key_is_named() {
        let err =
            load_from::<TestConfig>(None, env(&[("AGENTSEC_DATABSE__URL", "x")])).unwrap_err();
        assert!(err.to_string().contains("databse"), "{err}");
        assert!(
            err.to_string()
                .contains("from the environment variable `AGENTSEC_DATABSE__URL`"),
            "{err}"
        );
        // A variable of another tool in the same namespace, named as written.
        let err = load_from::<TestConfig>(None, env(&[("AGENTSEC_IDENTITY_URL", "http://h")]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("from the environment variable `AGENTSEC_IDENTITY_URL`"),
            "{err}"
        );
        let err =
            load_from::<TestConfig>(None, env(&[("AGENTSEC_SERVER__LISTNE", "x")])).unwrap_err();
        assert!(
            err.to_string().contains("`AGENTSEC_SERVER__LISTNE`"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_env_value_names_its_variable() {
        let err = load_from::<TestConfig>(None, env(&[("AGENTSEC_SERVER__LISTEN", "localhost")]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("from the environment variable `AGENTSEC_SERVER__LISTEN`"),
            "{err}"
        );
    }

    #[test]
    fn malformed_values_are_named() {
        let err = load_from::<TestConfig>(None, env(&[("AGENTSEC_DATABASE__URL", "mysql://h/db")]))
            .unwrap_err();
        assert!(err.to_string().contains("`database.url`"), "{err}");
        let err = load_from::<TestConfig>(None, env(&[("AGENTSEC_SERVER__LISTEN", "localhost")]))
            .unwrap_err();
        assert!(err.to_string().contains("server.listen"), "{err}");
        let err =
            load_from::<TestConfig>(None, env(&[("AGENTSEC_REDIS__URL", "http://h")])).unwrap_err();
        assert!(err.to_string().contains("`redis.url`"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = load_from::<TestConfig>(Some(Path::new("/nonexistent/agentsec.toml")), env(&[]))
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/agentsec.toml"),
            "{err}"
        );
    }
}
