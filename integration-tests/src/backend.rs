//! Where a test cluster keeps its state: a fresh SQLite directory, or fresh
//! PostgreSQL schemas and a Redis key prefix on the servers named by the
//! environment. A configured server that does not answer fails the test;
//! nothing silently falls back to SQLite.

use std::path::PathBuf;

use agentsec_common::config::{DatabaseConfig, RedisConfig};
use anyhow::{bail, Context as _};
use sea_orm::{ConnectionTrait, Database};

/// Names the PostgreSQL server the tests run against (database `test`).
pub const DATABASE_URL_ENV: &str = "AGENTSEC_TEST_DATABASE_URL";
/// Names the Redis server the tests run against.
pub const REDIS_URL_ENV: &str = "AGENTSEC_TEST_REDIS_URL";

/// How long the services of a test cluster wait for a pooled connection.
pub const TEST_ACQUIRE_TIMEOUT_MS: u64 = 10_000;

/// The databases and cache of one test cluster.
pub struct TestBackend {
    /// A short random id that names this cluster's schemas and key prefix.
    pub run_id: String,
    postgres_url: Option<String>,
    redis_url: Option<String>,
    sqlite_dir: Option<tempfile::TempDir>,
    /// Without Redis, the cluster's services share invalidation events in
    /// process, as in `agentctl dev`.
    local_bus: agentsec_common::invalidation::LocalBus,
}

impl TestBackend {
    /// Prepares a backend from the environment.
    pub async fn from_env() -> anyhow::Result<Self> {
        let run_id = random_id()?;
        let postgres_url = non_empty_env(DATABASE_URL_ENV);
        let redis_url = non_empty_env(REDIS_URL_ENV);
        if let Some(url) = &postgres_url {
            let db = Database::connect(url.as_str()).await.with_context(|| {
                format!("{DATABASE_URL_ENV} is set but PostgreSQL does not answer")
            })?;
            db.execute_unprepared("SELECT 1").await?;
            db.close().await.ok();
        }
        if let Some(url) = &redis_url {
            let client = redis::Client::open(url.as_str())
                .with_context(|| format!("{REDIS_URL_ENV} is not a Redis URL"))?;
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("{REDIS_URL_ENV} is set but Redis does not answer"))?;
            let pong: String = redis::cmd("PING").query_async(&mut connection).await?;
            if pong != "PONG" {
                bail!("Redis answered PING with {pong:?}");
            }
        }
        let sqlite_dir = if postgres_url.is_none() {
            Some(tempfile::tempdir().context("creating the SQLite directory")?)
        } else {
            None
        };
        Ok(Self {
            run_id,
            postgres_url,
            redis_url,
            sqlite_dir,
            local_bus: agentsec_common::invalidation::LocalBus::new(),
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres_url.is_some()
    }

    pub fn has_redis(&self) -> bool {
        self.redis_url.is_some()
    }

    /// The database of one service of this cluster.
    pub fn database(&self, service: &str) -> DatabaseConfig {
        let mut config = match (&self.postgres_url, &self.sqlite_dir) {
            (Some(url), _) => DatabaseConfig {
                url: url.clone(),
                schema: Some(self.schema(service)),
                max_connections: 4,
                connect_timeout_secs: 10,
                acquire_timeout_ms: 0,
                migrate_on_start: true,
            },
            (None, Some(dir)) => {
                DatabaseConfig::sqlite_file(&dir.path().join(format!("{service}.db")))
            }
            (None, None) => DatabaseConfig::sqlite_file(&PathBuf::from(format!("{service}.db"))),
        };
        // Many clusters share a loaded test machine and its small pools: a
        // request may wait longer than the production default for a
        // connection of a working database. Outage tests set their own.
        config.acquire_timeout_ms = TEST_ACQUIRE_TIMEOUT_MS;
        config
    }

    /// The Redis of this cluster, with its own key prefix.
    pub fn redis(&self) -> RedisConfig {
        RedisConfig {
            url: self.redis_url.clone(),
            key_prefix: format!("agentsec-test:{}:", self.run_id),
            local_bus: self.redis_url.is_none().then(|| self.local_bus.clone()),
        }
    }

    pub fn schema(&self, service: &str) -> String {
        format!("t{}_{}", self.run_id, service.replace('-', "_"))
    }

    /// Drops this cluster's PostgreSQL schemas and Redis keys.
    pub async fn clean_up(&self, services: &[&str]) -> anyhow::Result<()> {
        if let Some(url) = &self.postgres_url {
            let db = Database::connect(url.as_str()).await?;
            for service in services {
                db.execute_unprepared(&format!(
                    "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                    self.schema(service)
                ))
                .await?;
            }
            db.close().await.ok();
        }
        if let Some(url) = &self.redis_url {
            let client = redis::Client::open(url.as_str())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            let pattern = format!("{}*", self.redis().key_prefix);
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(pattern)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(keys)
                    .query_async::<()>(&mut connection)
                    .await?;
            }
        }
        Ok(())
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random id: {err}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
