//! What introspection must know besides the signature: is the agent active
//! in the token's generation, does the credential still exist, is the jti
//! revoked. Answers come from memory so that introspection does not wait on
//! the database, and stay exact:
//!
//! - a change made here updates memory right after its commit, before the
//!   RPC returns;
//! - a change made by another replica arrives as an invalidation event on
//!   Redis; memory is used only while subscribed (and is reloaded on every
//!   new subscription), so a lost connection falls back to the database;
//! - on SQLite one process owns the database and memory is always used;
//!   on PostgreSQL without Redis it never is;
//! - a database read that raced with an invalidation is not cached (an
//!   epoch counter tells).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use agentsec_common::follower::{BoxError, Follow};
use agentsec_common::invalidation::{InvalidationKind, ReceivedInvalidation};
use agentsec_common::store::{db_err, StoreError};
use chrono::Utc;
use sea_orm::{DatabaseConnection, DbErr};

use crate::domain::agent::Agent;
use crate::domain::credential::Credential;
use crate::store::{tokens, AgentStore, CredentialStore, SqlRegistryStore};

/// What client authentication needs about an agent: the agent and its
/// client secrets (hashes only).
pub struct ClientRecord {
    pub agent: Agent,
    pub secrets: Vec<Credential>,
}

/// Entries kept per map before it is emptied and refilled from use.
const MAX_ENTRIES: usize = 100_000;
/// Stands for "no active agent" in the generation map.
const INACTIVE: i64 = -1;

pub struct Standing {
    /// The revocation list.
    db: DatabaseConnection,
    /// Agents and credentials.
    store: SqlRegistryStore,
    /// Whether the maps may answer.
    live: AtomicBool,
    /// Bumped by every invalidation.
    epoch: AtomicU64,
    /// Agent id -> its token generation while active, else INACTIVE.
    generations: RwLock<HashMap<String, i64>>,
    /// Credential id -> whether it exists.
    credentials: RwLock<HashMap<String, bool>>,
    /// Every revoked, unexpired jti -> its token's exp. Complete while live.
    revoked: RwLock<HashMap<String, i64>>,
    /// Agent id -> the agent and its secrets, for the token endpoint.
    clients: RwLock<HashMap<String, Arc<ClientRecord>>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bounded_insert<V>(map: &mut HashMap<String, V>, key: &str, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key.to_owned(), value);
}

impl Standing {
    /// Starts empty and not live; call [`Self::go_live`] once the maps may
    /// answer (at once on SQLite, after subscribing on PostgreSQL).
    pub fn new(db: DatabaseConnection) -> Arc<Self> {
        Arc::new(Self {
            store: SqlRegistryStore::new(db.clone()),
            db,
            live: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            generations: RwLock::new(HashMap::new()),
            credentials: RwLock::new(HashMap::new()),
            revoked: RwLock::new(HashMap::new()),
            clients: RwLock::new(HashMap::new()),
        })
    }

    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Empties the maps, loads the revocation list, and lets memory answer.
    pub async fn go_live(&self) -> Result<(), DbErr> {
        self.live.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write(&self.generations).clear();
        write(&self.credentials).clear();
        write(&self.clients).clear();
        let list = tokens::revocation_list(&self.db, Utc::now()).await?;
        {
            let mut revoked = write(&self.revoked);
            revoked.clear();
            revoked.extend(list);
        }
        self.live.store(true, Ordering::Release);
        Ok(())
    }

    fn go_dark(&self) {
        self.live.store(false, Ordering::Release);
    }

    /// Whether tokens of `agent_id` from `generation` are good.
    pub async fn agent_active(&self, agent_id: &str, generation: i64) -> Result<bool, StoreError> {
        if self.is_live() {
            if let Some(current) = read(&self.generations).get(agent_id) {
                return Ok(*current != INACTIVE && *current == generation);
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let current = self
            .store
            .active_generation(agent_id)
            .await?
            .unwrap_or(INACTIVE);
        if self.is_live() && self.epoch.load(Ordering::Acquire) == epoch {
            bounded_insert(&mut write(&self.generations), agent_id, current);
        }
        Ok(current != INACTIVE && current == generation)
    }

    pub async fn credential_exists(&self, id: &str) -> Result<bool, StoreError> {
        if self.is_live() {
            if let Some(exists) = read(&self.credentials).get(id) {
                return Ok(*exists);
            }
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let exists = self.store.credential_exists(id).await?;
        if self.is_live() && self.epoch.load(Ordering::Acquire) == epoch {
            bounded_insert(&mut write(&self.credentials), id, exists);
        }
        Ok(exists)
    }

    pub async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        if self.is_live() {
            return Ok(read(&self.revoked).contains_key(jti));
        }
        tokens::is_revoked(&self.db, jti)
            .await
            .map_err(db_err("reading the revocation list"))
    }

    /// The current epoch, to pass to [`Self::remember_client`] after a read.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn cached_client(&self, agent_id: &str) -> Option<Arc<ClientRecord>> {
        if !self.is_live() {
            return None;
        }
        read(&self.clients).get(agent_id).cloned()
    }

    /// Keeps a client record read at `epoch`, unless something was
    /// invalidated since.
    pub fn remember_client(&self, epoch: u64, record: Arc<ClientRecord>) {
        if self.is_live() && self.epoch.load(Ordering::Acquire) == epoch {
            let mut clients = write(&self.clients);
            if clients.len() >= MAX_ENTRIES {
                clients.clear();
            }
            clients.insert(record.agent.id.clone(), record);
        }
    }

    /// The agent's status, fields, generation or credentials changed.
    pub fn forget_agent(&self, agent_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write(&self.generations).remove(agent_id);
        write(&self.clients).remove(agent_id);
    }

    /// The credential was deleted.
    pub fn forget_credential(&self, agent_id: &str, id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        write(&self.credentials).remove(id);
        write(&self.clients).remove(agent_id);
    }

    /// The token was revoked; it stays listed until `exp`.
    pub fn note_revoked(&self, jti: &str, exp: i64) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let now = Utc::now().timestamp();
        let mut revoked = write(&self.revoked);
        revoked.retain(|_, expiry| *expiry >= now);
        revoked.insert(jti.to_owned(), exp);
    }

    /// Applies an invalidation event published by a replica; `issuer` is
    /// this service's own (token revocations of other issuers are theirs).
    fn apply(&self, received: &ReceivedInvalidation, issuer: &str) {
        let event = &received.event;
        match event.kind {
            InvalidationKind::AgentSuspended
            | InvalidationKind::AgentRevoked
            | InvalidationKind::AgentReactivated
            | InvalidationKind::AgentUpdated => self.forget_agent(&event.agent_id),
            InvalidationKind::CredentialDeleted => {
                self.forget_credential(&event.agent_id, &event.credential_id)
            }
            InvalidationKind::TokenRevoked if received.issuer == issuer => {
                let exp = event
                    .token_expire_time
                    .map(|time| time.timestamp())
                    // Without an expiry, keep it for the longest lifetime.
                    .unwrap_or_else(|| Utc::now().timestamp() + 24 * 3600);
                self.note_revoked(&event.token_jti, exp);
            }
            _ => {}
        }
    }
}

/// Keeps a [`Standing`] in step with other replicas (see `common::follower`):
/// reloaded and live while subscribed, dark (answering from the database)
/// while not.
pub struct StandingFollower {
    pub standing: Arc<Standing>,
    /// This service's `iss`.
    pub issuer: String,
}

impl Follow for StandingFollower {
    async fn reload(&self) -> Result<(), BoxError> {
        self.standing.go_live().await?;
        Ok(())
    }

    async fn apply(&self, event: ReceivedInvalidation) {
        self.standing.apply(&event, &self.issuer);
    }

    fn lost(&self) {
        self.standing.go_dark();
    }
}
