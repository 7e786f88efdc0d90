//! What policy-svc knows about revocations, so that CheckToken and Envoy
//! ext_authz refuse a token its owners no longer honour, without a network
//! call per decision.
//!
//! identity-svc and exchange-svc stay the sources of truth. The view holds
//! only what is revoked or changed, each entry until the latest expiry it
//! can affect (no token lives longer than [`LONGEST_TOKEN_LIFETIME`]):
//!
//! | entry | from | refuses |
//! |---|---|---|
//! | revoked token (`jti`) | identity-svc RFC 7009 revocation | that token, until its `exp` |
//! | deleted credential | identity-svc DeleteCredential | tokens whose `cred` names it |
//! | agent status and token generation | identity-svc Suspend/Revoke/Reactivate | every token naming the agent (`sub` or any `act`) while it is not ACTIVE; after a reactivation, its own tokens of an older generation (`gen`), and delegated tokens issued (`iat`) no later than the second the generation changed |
//! | revoked grant | exchange-svc RevokeGrant | delegated tokens whose `grant_id` names it |
//!
//! It is loaded from the owners' listing RPCs (`ListRevocations`,
//! `ListRevokedGrants`) and kept current by their invalidation events (see
//! `follower`); while no event stream is live it catches up from the same
//! listings every poll interval. A decision trusts the view only while it
//! was confirmed current within `revocations.max_staleness_ms`; past that
//! (owners unreachable, no events) token decisions fail closed
//! (UNAVAILABLE), as they do before the first load.

pub mod owners;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::invalidation::{InvalidationKind, ReceivedInvalidation};
use agentsec_common::metrics::Metrics;
use agentsec_proto::common::v1::{attribute_value, AttributeValue};
use chrono::{DateTime, Utc};

use crate::tokens::VerifiedToken;

/// An agent's registry attributes, as identity-svc holds them.
pub type AgentAttributes = std::collections::HashMap<String, String>;

/// What the registry says of an agent for token decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registered {
    /// The agent's tenant: its attributes apply to principals of it only.
    pub tenant: String,
    pub attributes: AgentAttributes,
}

/// No token of identity-svc or exchange-svc lives longer.
pub const LONGEST_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Entries whose time has passed are dropped at most this often.
const PRUNE_EVERY_MS: i64 = 60_000;

/// An agent whose status or token generation changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStanding {
    pub active: bool,
    pub generation: i64,
    /// Unix seconds at which the current generation started.
    pub generation_time: i64,
}

/// One listing (or event) of revocations, in the owners' terms.
#[derive(Debug, Default)]
pub struct Revocations {
    /// jti -> the token's `exp`.
    pub tokens: Vec<(String, i64)>,
    /// credential id -> unix seconds of the deletion.
    pub credentials: Vec<(String, i64)>,
    pub agents: Vec<(String, AgentStanding)>,
    /// grant id -> unix seconds of the revocation.
    pub grants: Vec<(String, i64)>,
    /// Agents updated since the previous listing -> their registry
    /// attributes now (empty: none).
    pub attributes: Vec<(String, Registered)>,
}

#[derive(Default)]
struct State {
    /// jti -> exp.
    tokens: HashMap<String, i64>,
    /// credential id -> when it can be forgotten.
    credentials: HashMap<String, i64>,
    agents: HashMap<String, AgentStanding>,
    /// grant id -> when it can be forgotten.
    grants: HashMap<String, i64>,
    last_prune_ms: i64,
}

impl State {
    fn merge(&mut self, revocations: Revocations) {
        let lifetime = LONGEST_TOKEN_LIFETIME.as_secs() as i64;
        self.tokens.extend(revocations.tokens);
        for (id, deleted) in revocations.credentials {
            self.credentials.insert(id, deleted + lifetime);
        }
        for (id, standing) in revocations.agents {
            if standing.active && standing.generation == 0 {
                // Never suspended or revoked (a listing names every agent
                // row changed since a time): it refuses nothing.
                continue;
            }
            // Events may arrive out of order with a listing: never go back
            // to an older generation.
            let keep_current = self
                .agents
                .get(&id)
                .is_some_and(|known| known.generation > standing.generation);
            if !keep_current {
                self.agents.insert(id, standing);
            }
        }
        for (id, revoked) in revocations.grants {
            self.grants.insert(id, revoked + lifetime);
        }
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let now_ms = now.timestamp_millis();
        if now_ms - self.last_prune_ms < PRUNE_EVERY_MS {
            return;
        }
        self.last_prune_ms = now_ms;
        let now = now.timestamp();
        let lifetime = LONGEST_TOKEN_LIFETIME.as_secs() as i64;
        self.tokens.retain(|_, exp| *exp >= now);
        self.credentials.retain(|_, until| *until >= now);
        self.grants.retain(|_, until| *until >= now);
        self.agents
            .retain(|_, standing| standing.generation_time + lifetime >= now);
    }

    fn entries(&self) -> usize {
        self.tokens.len() + self.credentials.len() + self.agents.len() + self.grants.len()
    }
}

/// The view (see the module doc).
pub struct RevocationView {
    state: RwLock<State>,
    /// Registry attributes of every agent that has some (for the
    /// principals of token decisions), as typed request values.
    attributes: RwLock<HashMap<String, (String, Arc<AttributeMap>)>>,
    /// Per agent, the number of the latest attribute refresh asked for: a
    /// refresh that completes after a later one started is dropped.
    refreshes: std::sync::Mutex<HashMap<String, u64>>,
    refresh_numbers: std::sync::atomic::AtomicU64,
    /// Whether anything is followed at all (an owner endpoint is set).
    enabled: bool,
    /// Whether the first full load has completed.
    loaded: AtomicBool,
    loaded_notify: tokio::sync::Notify,
    /// Events reach the view in process (one process, no Redis): it is
    /// current whenever it is subscribed.
    in_process: AtomicBool,
    /// Unix ms of the last moment the view was known to be current.
    confirmed_ms: AtomicI64,
    max_staleness: Duration,
    created: std::time::Instant,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Registry attributes as a principal carries them (string values).
type AttributeMap = HashMap<String, AttributeValue>;

fn attribute_map(attributes: AgentAttributes) -> AttributeMap {
    attributes
        .into_iter()
        .map(|(name, value)| {
            (
                name,
                AttributeValue {
                    kind: Some(attribute_value::Kind::StringValue(value)),
                },
            )
        })
        .collect()
}

fn inactive(why: String) -> ApiError {
    ApiError::Unauthenticated {
        reason: format!("the token is not active: {why}"),
    }
}

impl RevocationView {
    /// `enabled` = false: no owner is followed and nothing is refused here
    /// (policy-svc warns about it at start).
    pub fn new(enabled: bool, max_staleness: Duration) -> Self {
        Self {
            state: RwLock::new(State::default()),
            attributes: RwLock::new(HashMap::new()),
            refreshes: std::sync::Mutex::new(HashMap::new()),
            refresh_numbers: std::sync::atomic::AtomicU64::new(0),
            enabled,
            loaded: AtomicBool::new(false),
            loaded_notify: tokio::sync::Notify::new(),
            in_process: AtomicBool::new(false),
            confirmed_ms: AtomicI64::new(0),
            max_staleness,
            created: std::time::Instant::now(),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Replaces everything with a full listing read at `as_of`.
    pub fn replace(&self, revocations: Revocations, as_of: DateTime<Utc>) {
        let mut fresh = State::default();
        fresh.merge(revocations);
        fresh.prune(as_of);
        *write(&self.state) = fresh;
        self.confirm(as_of);
        if !self.loaded.swap(true, Ordering::AcqRel) {
            self.loaded_notify.notify_waiters();
        }
    }

    /// Adds what changed since the last listing, read at `as_of`.
    pub fn merge(&self, mut revocations: Revocations, as_of: DateTime<Utc>) {
        for (agent_id, attributes) in std::mem::take(&mut revocations.attributes) {
            // The listing overtakes a refresh still under way: what that refresh
            // would have read is read again at the next catch-up.
            let number = self.refresh_started(&agent_id);
            self.set_attributes(&agent_id, number, attributes);
        }
        let mut state = write(&self.state);
        state.merge(revocations);
        state.prune(as_of);
        drop(state);
        self.confirm(as_of);
    }

    /// The view matched the owners at `at`.
    pub fn confirm(&self, at: DateTime<Utc>) {
        self.confirmed_ms
            .fetch_max(at.timestamp_millis(), Ordering::AcqRel);
    }

    /// Events now arrive in process (true) or no longer (false).
    pub fn set_in_process(&self, in_process: bool) {
        self.in_process.store(in_process, Ordering::Release);
    }

    /// Applies an invalidation event.
    pub fn apply(&self, received: &ReceivedInvalidation) {
        let event = &received.event;
        let time = received.time.unwrap_or_else(Utc::now).timestamp();
        let mut revocations = Revocations::default();
        match event.kind {
            InvalidationKind::TokenRevoked => {
                let exp = event.token_expire_time.map_or_else(
                    || time + LONGEST_TOKEN_LIFETIME.as_secs() as i64,
                    |exp| exp.timestamp(),
                );
                revocations.tokens.push((event.token_jti.clone(), exp));
            }
            InvalidationKind::CredentialDeleted => {
                revocations
                    .credentials
                    .push((event.credential_id.clone(), time));
            }
            InvalidationKind::AgentSuspended | InvalidationKind::AgentRevoked => {
                revocations.agents.push((
                    event.agent_id.clone(),
                    AgentStanding {
                        active: false,
                        generation: event.token_generation,
                        generation_time: time,
                    },
                ));
            }
            InvalidationKind::AgentReactivated => {
                // The generation started at the suspension; keep its time
                // when it is known.
                let generation_time = read(&self.state)
                    .agents
                    .get(&event.agent_id)
                    .map_or(time, |known| known.generation_time);
                revocations.agents.push((
                    event.agent_id.clone(),
                    AgentStanding {
                        active: true,
                        generation: event.token_generation,
                        generation_time,
                    },
                ));
            }
            InvalidationKind::GrantRevoked => {
                revocations.grants.push((event.grant_id.clone(), time));
            }
            InvalidationKind::AgentUpdated | InvalidationKind::PolicyChanged => return,
        }
        let mut state = write(&self.state);
        state.merge(revocations);
        state.prune(Utc::now());
    }

    /// Replaces every agent's registry attributes.
    pub fn replace_attributes(&self, all: Vec<(String, Registered)>) {
        let fresh = all
            .into_iter()
            .filter(|(_, registered)| !registered.attributes.is_empty())
            .map(|(agent, registered)| {
                let attributes = Arc::new(attribute_map(registered.attributes));
                (agent, (registered.tenant, attributes))
            })
            .collect();
        *write(&self.attributes) = fresh;
    }

    /// Starts a refresh of `agent_id`'s attributes; pass the number to
    /// [`Self::set_attributes`].
    pub fn refresh_started(&self, agent_id: &str) -> u64 {
        let mut refreshes = self
            .refreshes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Numbers are never reused, so an entry can go once answered.
        let number = self.refresh_numbers.fetch_add(1, Ordering::AcqRel) + 1;
        refreshes.insert(agent_id.to_owned(), number);
        number
    }

    /// The attributes read by refresh `number` of `agent_id` (empty: it
    /// has none); dropped when a later refresh was started meanwhile.
    pub fn set_attributes(&self, agent_id: &str, number: u64, registered: Registered) {
        let mut refreshes = self
            .refreshes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if refreshes.get(agent_id) != Some(&number) {
            return;
        }
        refreshes.remove(agent_id);
        let mut all = write(&self.attributes);
        if registered.attributes.is_empty() {
            all.remove(agent_id);
        } else {
            let attributes = Arc::new(attribute_map(registered.attributes));
            all.insert(agent_id.to_owned(), (registered.tenant, attributes));
        }
    }

    /// The registry attributes of `agent_id` as an agent of `tenant` (empty
    /// when it has none, or belongs to another tenant: a token naming it
    /// under another tenant gets none of them).
    pub fn attributes_of(&self, tenant: &str, agent_id: &str) -> HashMap<String, AttributeValue> {
        read(&self.attributes)
            .get(agent_id)
            .filter(|(owner, _)| owner == tenant)
            .map(|(_, attributes)| AttributeMap::clone(attributes))
            .unwrap_or_default()
    }

    /// Registers the view's size and freshness in `metrics`, read at every
    /// scrape.
    pub fn register_metrics(self: &Arc<Self>, metrics: &Metrics) {
        let view = Arc::clone(self);
        metrics.register_scrape(move |scrape| {
            let entries = read(&view.state).entries();
            let current = view.is_loaded() && view.is_current(Utc::now());
            scrape.gauge(
                "agentsec_policy_revocation_entries",
                "Entries in the revocation view",
                i64::try_from(entries).unwrap_or(i64::MAX),
            )?;
            scrape.gauge(
                "agentsec_policy_revocation_current",
                "1 while token decisions may rely on the revocation view",
                i64::from(current),
            )
        });
    }

    /// Waits for the first load, but only within `limit` of start:
    /// policy-svc may be asked before its owners answered. Later, a view
    /// still not loaded refuses at once rather than holding every request.
    pub async fn wait_loaded(&self, limit: Duration) {
        if !self.enabled || self.is_loaded() {
            return;
        }
        let limit = limit.saturating_sub(self.created.elapsed());
        if limit.is_zero() {
            return;
        }
        let notified = self.loaded_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_loaded() {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }

    /// Whether decisions may rely on the view at `now`.
    fn is_current(&self, now: DateTime<Utc>) -> bool {
        if self.in_process.load(Ordering::Acquire) {
            return true;
        }
        let age_ms = now.timestamp_millis() - self.confirmed_ms.load(Ordering::Acquire);
        age_ms <= self.max_staleness.as_millis() as i64
    }

    /// Whether token decisions can be answered at `now` (readiness): `Err`
    /// says why they fail closed.
    pub fn readiness(&self, now: DateTime<Utc>) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if !self.is_loaded() {
            return Err("the revocation state is not loaded yet".to_owned());
        }
        if !self.is_current(now) {
            return Err(format!(
                "the revocation state was last confirmed more than {} ms ago \
                 (`revocations.max_staleness_ms`)",
                self.max_staleness.as_millis()
            ));
        }
        Ok(())
    }

    /// UNAVAILABLE when decisions cannot rely on the view at `now` (not
    /// loaded yet, or stale): they fail closed.
    fn trusted(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        if !self.is_loaded() {
            return Err(ApiError::Unavailable {
                what: "the revocation state (not loaded from identity-svc and exchange-svc yet; \
                       decisions are refused until it is)"
                    .to_owned(),
            });
        }
        if !self.is_current(now) {
            return Err(ApiError::Unavailable {
                what: format!(
                    "current revocation state (neither the invalidation events nor the owners \
                     have answered within {} ms; decisions are refused until they do)",
                    self.max_staleness.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// The first of `agents` that is suspended or revoked, for decisions on
    /// a principal the caller states (there is no token to check, but a
    /// revoked agent is never allowed); UNAVAILABLE when the view cannot be
    /// trusted (fail closed).
    pub fn inactive_agent<'a>(
        &self,
        agents: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Result<Option<&'a str>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        self.trusted(now)?;
        let state = read(&self.state);
        Ok(agents.into_iter().find(|agent| {
            state
                .agents
                .get(*agent)
                .is_some_and(|standing| !standing.active)
        }))
    }

    /// Refuses a token its owners no longer honour: UNAUTHENTICATED naming
    /// why; UNAVAILABLE when the view cannot be trusted (fail closed).
    pub fn check(&self, token: &VerifiedToken, now: DateTime<Utc>) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        self.trusted(now)?;
        let state = read(&self.state);
        if let Some(jti) = token.jti.as_deref() {
            if state.tokens.contains_key(jti) {
                return Err(inactive("it was revoked".to_owned()));
            }
        }
        if let Some(credential) = token.credential.as_deref() {
            if state.credentials.contains_key(credential) {
                return Err(inactive(format!(
                    "its credential `{credential}` was deleted"
                )));
            }
        }
        if let Some(grant) = token.grant_id.as_deref() {
            if state.grants.contains_key(grant) {
                return Err(inactive(format!("its grant `{grant}` was revoked")));
            }
        }
        let actors = token
            .principal
            .actor_chain
            .as_ref()
            .map(|chain| chain.actors.as_slice())
            .unwrap_or_default();
        for actor in actors {
            let Some(standing) = state.agents.get(&actor.agent_id) else {
                continue;
            };
            if !standing.active {
                return Err(inactive(format!(
                    "agent `{}` is suspended or revoked",
                    actor.agent_id
                )));
            }
            let older = match token.generation_of(&actor.agent_id) {
                Some(generation) => generation < standing.generation,
                // A token that carries no generation for this agent was
                // issued in an older one if it is not younger than the
                // change (iat has whole seconds: the same second counts
                // as older, failing closed).
                None => token.issued_at <= standing.generation_time,
            };
            if older {
                return Err(inactive(format!(
                    "it was issued before agent `{}` was suspended or revoked",
                    actor.agent_id
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
