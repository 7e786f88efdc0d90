//! The decision cache: an in-process tier ([`local`]) in front of a Redis
//! tier shared by every replica ([`shared`]). docs/policy-model.md
//! ("Decision cache") is the operator's view.
//!
//! * Keys ([`key`]) carry the tenant, the policy version that decided and a
//!   digest of the normalized request, so a replica that installed a new
//!   version never finds the old version's decisions.
//! * Agent invalidation events (identity-svc's suspended, revoked,
//!   reactivated, updated, ...) move the agent's epoch, in this process
//!   (part of the local key) and in Redis (checked on every shared read):
//!   the agent's decisions stop being served everywhere.
//! * Only decisions that read no `context.time` and ended in no evaluation
//!   error are cached. A served decision still gets its own decision id
//!   and audit event; only the engine's work is saved.
//! * Redis down or slow: every command is bounded by
//!   `cache.redis_timeout_ms`. The first failure switches the cache off
//!   (both tiers: without Redis this replica may miss invalidation
//!   events, so its local entries can no longer be trusted) and wakes the
//!   invalidation follower, which subscribes again; the cache comes back
//!   once the subscription is live and Redis answers PING in time, with
//!   the local tier emptied. Meanwhile every decision is made by the
//!   engine without touching Redis. Failures are counted
//!   (`/metrics`) and logged at most every [`LOG_EVERY`].
//! * Without Redis the local tier works alone while agent events arrive in
//!   process (services composed in one process: `agentctl dev`); a
//!   replica that hears no events at all (neither Redis nor in process)
//!   keeps the cache off, since it could not evict a suspended agent's
//!   decisions.

pub mod key;
pub mod local;
pub mod shared;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use agentsec_common::metrics::Metrics;
use agentsec_common::redis::RedisHandle;
use sha2::{Digest as _, Sha256};

pub use key::CacheKey;
use local::{LocalEpochs, LocalTier};
use shared::{Failure, SharedTier};

use crate::config::CacheConfig;
use crate::domain::engine::Decision;

/// At most one log line per this period about Redis failures.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Most agents whose epoch one replica remembers (see [`LocalEpochs`]).
const EPOCH_LIMIT: usize = 100_000;

const USABLE: u8 = 0;
const OFF: u8 = 1;

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub local_hits: AtomicU64,
    pub shared_hits: AtomicU64,
    pub misses: AtomicU64,
    /// Decisions made without the cache because Redis was failing.
    pub bypassed: AtomicU64,
    pub redis_timeouts: AtomicU64,
    pub redis_errors: AtomicU64,
}

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<Decision>),
    /// Not cached: decide, then hand the decision to [`DecisionCache::put`].
    Miss(Ticket),
    /// The cache is off (disabled, or Redis failing): decide, do not store.
    Bypass,
}

/// Where to store a decision after a miss.
pub struct Ticket {
    key: CacheKey,
    local_key: u128,
    /// The actor chain's Redis epochs when read; None without Redis.
    shared_epochs: Option<Vec<u64>>,
}

/// Redis health as seen by this replica, shared with background writes.
struct Health {
    state: AtomicU8,
    wake_follower: tokio::sync::Notify,
    stats: Stats,
    /// When failures were last logged, and how many since.
    log: Mutex<(Option<Instant>, u64)>,
}

pub struct DecisionCache {
    enabled: bool,
    local: LocalTier,
    epochs: LocalEpochs,
    shared: Option<SharedTier>,
    health: Arc<Health>,
}

/// Whether a decision may be kept (policy.proto: the caller's TTL is 0 for
/// the same decisions).
pub fn cacheable(decision: &Decision) -> bool {
    !decision.evaluation_error && !decision.depends_on_time && decision.policy_version > 0
}

impl DecisionCache {
    pub fn new(config: &CacheConfig, redis: Option<RedisHandle>) -> Self {
        let entry_ttl = Duration::from_secs(config.entry_ttl_secs);
        let shared = redis.filter(|_| config.enabled).map(|redis| {
            SharedTier::new(
                redis,
                Duration::from_millis(config.redis_timeout_ms),
                entry_ttl,
            )
        });
        // With Redis, nothing is cached until the invalidation follower has
        // subscribed (until then agent events could be missed).
        let state = if shared.is_some() { OFF } else { USABLE };
        Self {
            enabled: config.enabled,
            local: LocalTier::new(config.local_capacity, entry_ttl),
            epochs: LocalEpochs::new(EPOCH_LIMIT),
            shared,
            health: Arc::new(Health {
                state: AtomicU8::new(state),
                wake_follower: tokio::sync::Notify::new(),
                stats: Stats::default(),
                log: Mutex::new((None, 0)),
            }),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.health.stats
    }

    pub fn local_entries(&self) -> usize {
        self.local.len()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Whether cached decisions are served now.
    pub fn is_on(&self) -> bool {
        self.usable()
    }

    fn usable(&self) -> bool {
        self.enabled && self.health.state.load(Ordering::Acquire) == USABLE
    }

    /// The local key: the request digest, moved by this replica's epochs.
    fn local_key(&self, key: &CacheKey) -> u128 {
        let epochs = self.epochs.of(&key.tenant, &key.agents);
        if epochs.iter().all(|epoch| *epoch == 0) {
            return key.digest;
        }
        let mut hash = Sha256::new();
        hash.update(key.digest.to_be_bytes());
        for epoch in epochs {
            hash.update(epoch.to_be_bytes());
        }
        let hash = hash.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        u128::from_be_bytes(first)
    }

    pub async fn get(&self, key: CacheKey) -> Lookup {
        if !self.enabled {
            return Lookup::Bypass;
        }
        if !self.usable() {
            self.health.stats.bypassed.fetch_add(1, Ordering::Relaxed);
            return Lookup::Bypass;
        }
        let local_key = self.local_key(&key);
        if let Some(decision) = self.local.get(local_key) {
            self.health.stats.local_hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Hit(decision);
        }
        let shared_epochs = match &self.shared {
            None => None,
            Some(shared) => match shared.get(&key).await {
                Ok(found) => {
                    if let Some(decision) = found.decision {
                        let decision = Arc::new(decision);
                        self.local.insert(local_key, decision.clone());
                        self.health
                            .stats
                            .shared_hits
                            .fetch_add(1, Ordering::Relaxed);
                        return Lookup::Hit(decision);
                    }
                    Some(found.epochs)
                }
                Err(failure) => {
                    self.health.failed(failure, &self.local, &self.epochs);
                    return Lookup::Bypass;
                }
            },
        };
        self.health.stats.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(Ticket {
            key,
            local_key,
            shared_epochs,
        })
    }

    /// Stores a decision made after a miss, if it may be cached. The Redis
    /// write runs in the background: the answer never waits for it.
    pub fn put(self: &Arc<Self>, ticket: Ticket, decision: &Decision) {
        if !cacheable(decision) || !self.usable() {
            return;
        }
        self.local
            .insert(ticket.local_key, Arc::new(decision.clone()));
        if let (Some(shared), Some(epochs)) = (&self.shared, ticket.shared_epochs) {
            let shared = shared.clone();
            let cache = self.clone();
            let decision = decision.clone();
            tokio::spawn(async move {
                if let Err(failure) = shared.put(&ticket.key, epochs, &decision).await {
                    cache.health.failed(failure, &cache.local, &cache.epochs);
                }
            });
        }
    }

    /// An invalidation event for `agent`: its decisions stop being served,
    /// in Redis first (every replica) and then here.
    pub async fn agent_changed(&self, tenant: &str, agent: &str) {
        if let Some(shared) = &self.shared {
            if let Err(failure) = shared.bump(tenant, agent).await {
                self.health.failed(failure, &self.local, &self.epochs);
            }
        }
        self.epochs.bump(tenant, agent);
    }

    /// The invalidation subscription ended: agent events may be missed
    /// from now on.
    pub fn subscription_lost(&self) {
        if self.health.state.swap(OFF, Ordering::AcqRel) == USABLE && self.enabled {
            self.forget();
            tracing::warn!("decision cache off until the invalidation subscription is back");
        }
    }

    /// The subscription is live again: serves from the cache again if Redis
    /// answers in time. Nothing cached before is served (events were
    /// missed meanwhile).
    pub async fn subscription_live(&self) -> bool {
        if let Some(shared) = &self.shared {
            if let Err(failure) = shared.ping().await {
                self.health.count(failure);
                return false;
            }
        }
        self.forget();
        if self.health.state.swap(USABLE, Ordering::AcqRel) == OFF && self.enabled {
            tracing::info!("decision cache on: Redis answers and invalidations are followed");
        }
        true
    }

    /// Resolves when a Redis failure switched the cache off (the follower
    /// then subscribes again).
    pub async fn switched_off(&self) {
        loop {
            self.health.wake_follower.notified().await;
            if self.health.state.load(Ordering::Acquire) == OFF {
                return;
            }
        }
    }

    fn forget(&self) {
        self.epochs.bump_generation();
        self.local.clear();
    }

    /// Registers the cache's counters and state in `metrics`, read at
    /// every scrape.
    pub fn register_metrics(self: &Arc<Self>, metrics: &Metrics) {
        let cache = Arc::clone(self);
        metrics.register_scrape(move |scrape| {
            let stats = cache.stats();
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            scrape.counters(
                "agentsec_policy_decision_cache_hits",
                "Decisions served from a cache tier",
                "tier",
                &[
                    ("local", load(&stats.local_hits)),
                    ("redis", load(&stats.shared_hits)),
                ],
            )?;
            scrape.counter(
                "agentsec_policy_decision_cache_misses",
                "Decisions looked up and not found",
                load(&stats.misses),
            )?;
            scrape.counter(
                "agentsec_policy_decision_cache_bypassed",
                "Decisions made uncached because Redis was failing",
                load(&stats.bypassed),
            )?;
            scrape.counters(
                "agentsec_policy_decision_cache_redis_failures",
                "Redis commands of the cache that failed",
                "reason",
                &[
                    ("timeout", load(&stats.redis_timeouts)),
                    ("error", load(&stats.redis_errors)),
                ],
            )?;
            scrape.gauge(
                "agentsec_policy_decision_cache_on",
                "1 while cached decisions are served",
                i64::from(cache.usable()),
            )?;
            scrape.gauge(
                "agentsec_policy_decision_cache_local_entries",
                "Entries in the in-process tier",
                i64::try_from(cache.local_entries()).unwrap_or(i64::MAX),
            )
        });
    }
}

impl Health {
    fn count(&self, failure: Failure) {
        let counter = match failure {
            Failure::Timeout => &self.stats.redis_timeouts,
            Failure::Error => &self.stats.redis_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.1 += 1;
        let due = log.0.is_none_or(|last| last.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(
                reason = failure.label(),
                failures_since_last_log = log.1,
                "decision cache: Redis did not answer in time; deciding without the cache"
            );
            *log = (Some(Instant::now()), 0);
        }
    }

    /// A Redis command failed: the cache goes off and the follower is
    /// woken to subscribe again.
    fn failed(&self, failure: Failure, local: &LocalTier, epochs: &LocalEpochs) {
        self.count(failure);
        if self.state.swap(OFF, Ordering::AcqRel) == USABLE {
            epochs.bump_generation();
            local.clear();
            self.wake_follower.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::engine::Effect;

    fn key(agent: &str, digest: u128) -> CacheKey {
        CacheKey {
            tenant: "acme".into(),
            policy_version: 1,
            agents: vec![agent.into()],
            digest,
        }
    }

    fn allow() -> Decision {
        Decision {
            effect: Effect::Allow,
            reason: "allowed".into(),
            policy_ids: vec!["p".into()],
            policy_version: 1,
            evaluation_error: false,
            depends_on_time: false,
        }
    }

    async fn store(cache: &Arc<DecisionCache>, key: CacheKey, decision: &Decision) {
        match cache.get(key).await {
            Lookup::Miss(ticket) => cache.put(ticket, decision),
            _ => panic!("expected a miss"),
        }
    }

    async fn is_hit(cache: &DecisionCache, key: CacheKey) -> bool {
        matches!(cache.get(key).await, Lookup::Hit(_))
    }

    #[tokio::test]
    async fn only_cacheable_decisions_are_kept_and_agent_events_evict() {
        let cache = Arc::new(DecisionCache::new(&CacheConfig::default(), None));
        store(&cache, key("agt_a", 1), &allow()).await;
        assert!(is_hit(&cache, key("agt_a", 1)).await);
        store(&cache, key("agt_b", 2), &allow()).await;

        let timed = Decision {
            depends_on_time: true,
            ..allow()
        };
        store(&cache, key("agt_a", 3), &timed).await;
        assert!(!is_hit(&cache, key("agt_a", 3)).await);
        let failed = Decision {
            evaluation_error: true,
            ..allow()
        };
        store(&cache, key("agt_a", 4), &failed).await;
        assert!(!is_hit(&cache, key("agt_a", 4)).await);

        cache.agent_changed("acme", "agt_a").await;
        assert!(
            !is_hit(&cache, key("agt_a", 1)).await,
            "agt_a's decision stayed"
        );
        assert!(
            is_hit(&cache, key("agt_b", 2)).await,
            "agt_b's decision went"
        );
        let stats = cache.stats();
        assert_eq!(stats.local_hits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_disabled_cache_looks_nothing_up() {
        let config = CacheConfig {
            enabled: false,
            ..CacheConfig::default()
        };
        let cache = DecisionCache::new(&config, None);
        assert!(matches!(cache.get(key("agt_a", 1)).await, Lookup::Bypass));
        assert!(!cache.is_on());
    }
}
