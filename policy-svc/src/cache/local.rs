//! The in-process tier: a bounded map from request digest to decision.
//!
//! Bounded by two generations per shard: entries go into the young map;
//! when it holds half the shard's share of the capacity, the old map is
//! dropped and the young one becomes old. A hit in the old map moves the
//! entry back into the young one, so entries in use survive and the
//! least recently used half goes first. Every operation is O(1), and the
//! whole tier never holds more than `capacity` entries. Shards keep
//! concurrent requests off each other's lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::domain::engine::Decision;

const SHARDS: usize = 16;

#[derive(Clone)]
struct Entry {
    decision: Arc<Decision>,
    expires: Instant,
}

#[derive(Default)]
struct Shard {
    young: HashMap<u128, Entry>,
    old: HashMap<u128, Entry>,
}

pub struct LocalTier {
    shards: Vec<Mutex<Shard>>,
    /// Entries per generation and shard.
    half: usize,
    ttl: Duration,
}

impl LocalTier {
    /// A tier of at most `capacity` entries, each kept at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            half: (capacity / SHARDS / 2).max(1),
            ttl,
        }
    }

    fn shard(&self, key: u128) -> MutexGuard<'_, Shard> {
        // The digest is uniform: its low bits pick the shard.
        self.shards[(key as usize) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: u128) -> Option<Arc<Decision>> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        if let Some(entry) = shard.young.get(&key) {
            if entry.expires > now {
                return Some(entry.decision.clone());
            }
            shard.young.remove(&key);
            return None;
        }
        let entry = shard.old.remove(&key)?;
        if entry.expires <= now {
            return None;
        }
        let decision = entry.decision.clone();
        self.insert_into(&mut shard, key, entry);
        Some(decision)
    }

    pub fn insert(&self, key: u128, decision: Arc<Decision>) {
        let entry = Entry {
            decision,
            expires: Instant::now() + self.ttl,
        };
        let mut shard = self.shard(key);
        shard.old.remove(&key);
        self.insert_into(&mut shard, key, entry);
    }

    fn insert_into(&self, shard: &mut Shard, key: u128, entry: Entry) {
        if shard.young.len() >= self.half && !shard.young.contains_key(&key) {
            shard.old = std::mem::take(&mut shard.young);
        }
        shard.young.insert(key, entry);
    }

    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.young = HashMap::new();
            shard.old = HashMap::new();
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.young.len() + shard.old.len()
            })
            .sum()
    }
}

/// Per-agent invalidation epochs as this replica heard them; part of the
/// local key, so an agent's event makes its cached decisions unreachable
/// (they then age out of the tier).
pub struct LocalEpochs {
    /// Read on every lookup, written on every agent event: a read lock.
    epochs: RwLock<HashMap<(String, String), u64>>,
    /// Most agents remembered; past it the map restarts and `generation`
    /// moves, which makes every cached decision unreachable at once.
    limit: usize,
    generation: std::sync::atomic::AtomicU64,
}

impl LocalEpochs {
    pub fn new(limit: usize) -> Self {
        Self {
            epochs: RwLock::default(),
            limit,
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The generation followed by each agent's epoch (0 = no event heard).
    pub fn of(&self, tenant: &str, agents: &[String]) -> Vec<u64> {
        let mut out = Vec::with_capacity(agents.len() + 1);
        out.push(self.generation.load(std::sync::atomic::Ordering::Acquire));
        let epochs = self.epochs.read().unwrap_or_else(PoisonError::into_inner);
        if epochs.is_empty() {
            out.resize(agents.len() + 1, 0);
            return out;
        }
        for agent in agents {
            // The key type needs owned strings; events are rare, lookups
            // of an empty map above are the common case.
            let epoch = epochs
                .get(&(tenant.to_owned(), agent.clone()))
                .copied()
                .unwrap_or(0);
            out.push(epoch);
        }
        out
    }

    pub fn bump(&self, tenant: &str, agent: &str) {
        let mut epochs = self.epochs.write().unwrap_or_else(PoisonError::into_inner);
        if epochs.len() >= self.limit {
            epochs.clear();
            self.bump_generation();
        }
        *epochs
            .entry((tenant.to_owned(), agent.to_owned()))
            .or_insert(0) += 1;
    }

    /// Makes every decision cached under earlier epochs unreachable.
    pub fn bump_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::engine::Effect;

    fn decision(reason: &str) -> Arc<Decision> {
        Arc::new(Decision {
            effect: Effect::Allow,
            reason: reason.into(),
            policy_ids: vec!["p1".into()],
            policy_version: 1,
            evaluation_error: false,
            depends_on_time: false,
        })
    }

    #[test]
    fn holds_at_most_its_capacity_and_keeps_entries_in_use() {
        let tier = LocalTier::new(320, Duration::from_secs(60));
        tier.insert(7, decision("hot"));
        for key in 1_000..11_000u128 {
            tier.insert(key, decision("cold"));
            // Used all along: survives every generation change.
            assert!(tier.get(7).is_some(), "lost the entry in use at {key}");
        }
        assert!(tier.len() <= 320, "{} entries", tier.len());
        assert!(tier.get(1_000).is_none(), "the oldest unused entry stayed");
    }

    #[test]
    fn expired_entries_are_not_served() {
        let tier = LocalTier::new(100, Duration::ZERO);
        tier.insert(1, decision("x"));
        assert!(tier.get(1).is_none());
    }

    #[test]
    fn an_agent_event_changes_that_agents_epochs_only() {
        let epochs = LocalEpochs::new(2);
        let agents = vec!["agt_1".to_owned(), "agt_2".to_owned()];
        assert_eq!(epochs.of("acme", &agents), vec![0, 0, 0]);
        epochs.bump("acme", "agt_2");
        assert_eq!(epochs.of("acme", &agents), vec![0, 0, 1]);
        assert_eq!(epochs.of("globex", &agents), vec![0, 0, 0]);
        epochs.bump("acme", "agt_3");
        // Past the limit: the map restarts under a new generation.
        epochs.bump("acme", "agt_4");
        assert_eq!(epochs.of("acme", &agents), vec![1, 0, 0]);
    }
}
