//! The signing keys as this replica knows them: the active key it signs
//! with and the published set it verifies with. Rotation (here or on
//! another replica) lands in the database; every replica re-reads it
//! periodically and at once when a token names a kid it does not know.
//! A replica that signs with the previous key for a few seconds more is
//! harmless: that key stays published until such tokens have expired.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agentsec_common::config::SigningConfig;
use agentsec_common::keys::store::{self, KeyStoreError, StoredKey};
use agentsec_common::keys::{Jwks, SigningAlgorithm, SigningKey};
use sea_orm::DatabaseConnection;

/// How often replicas re-read the key set.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Unknown-kid refreshes are at most this frequent, so forged kids cannot
/// turn into a database load.
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(1);

pub struct KeyState {
    pub active: Arc<SigningKey>,
    pub jwks: Arc<Jwks>,
}

pub struct LiveKeys {
    db: DatabaseConnection,
    config: SigningConfig,
    state: RwLock<Arc<KeyState>>,
    /// When an unknown kid last made us re-read.
    last_unknown_kid: Mutex<Option<Instant>>,
}

impl LiveKeys {
    pub async fn load(
        db: DatabaseConnection,
        config: SigningConfig,
    ) -> Result<Arc<Self>, KeyStoreError> {
        let ring = store::load_or_create(&db, &config).await?;
        Ok(Arc::new(Self {
            db,
            config,
            state: RwLock::new(Arc::new(KeyState {
                active: Arc::new(ring.active),
                jwks: Arc::new(ring.published),
            })),
            last_unknown_kid: Mutex::new(None),
        }))
    }

    pub fn current(&self) -> Arc<KeyState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Re-reads the active key and the published set. A key file stays the
    /// active key; otherwise the newest unretired stored key is (and if
    /// there is momentarily none, the current one is kept).
    pub async fn refresh(&self) -> Result<(), KeyStoreError> {
        let newest = if self.uses_key_file() {
            None
        } else {
            store::newest_active_key(&self.db).await?
        };
        let jwks = Arc::new(store::published_keys(&self.db).await?);
        let active = match newest {
            Some(key) => Arc::new(key),
            None => self.current().active.clone(),
        };
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(KeyState { active, jwks });
        Ok(())
    }

    /// A token named a kid we do not publish: perhaps another replica has
    /// rotated. Re-reads unless that was done very recently; whether the
    /// set changed.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        {
            let mut last = self
                .last_unknown_kid
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH) {
                return false;
            }
            *last = Some(Instant::now());
        }
        let before = self.current().jwks.keys.len();
        match self.refresh().await {
            Ok(()) => self.current().jwks.keys.len() != before,
            Err(err) => {
                tracing::warn!(error = %err, "signing keys not refreshed");
                false
            }
        }
    }

    /// Whether the active key comes from `signing.key_file` (then rotation
    /// means replacing the file).
    pub fn uses_key_file(&self) -> bool {
        self.config.key_file.is_some()
    }

    /// Generates and activates a new key; the previous ones stay published
    /// for `publish_for`. Returns the published keys with their dates.
    pub async fn rotate(
        &self,
        algorithm: Option<SigningAlgorithm>,
        publish_for: chrono::Duration,
    ) -> Result<Vec<StoredKey>, KeyStoreError> {
        let algorithm = algorithm.unwrap_or(self.config.algorithm);
        store::rotate(&self.db, algorithm, publish_for).await?;
        self.refresh().await?;
        store::published_key_facts(&self.db).await
    }

    /// Refreshes every [`REFRESH_EVERY`] until dropped (aborted).
    pub async fn follow(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(REFRESH_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            if let Err(err) = self.refresh().await {
                tracing::warn!(error = %err, "signing keys not refreshed");
            }
        }
    }
}
