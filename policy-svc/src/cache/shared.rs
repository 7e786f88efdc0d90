//! The Redis tier, shared by every replica.
//!
//! Entries: `<prefix>agentsec:policy:decision:<tenant>:<version>:<digest>`,
//! expiring after `cache.entry_ttl_secs`. Agent epochs:
//! `<prefix>agentsec:policy:agent-epoch:<tenant>:<agent>`, a counter every
//! replica increments when it hears an invalidation event for the agent.
//! An entry records the epochs of its actor chain as they were read before
//! deciding; a read fetches the entry and the current epochs in one MGET
//! and serves the entry only when they are equal. So an event makes the
//! agent's entries unservable on every replica as soon as one replica has
//! incremented the counter, whichever replica wrote them, and a decision
//! racing the event is stored under the old epoch and never served.
//!
//! An epoch counter outlives every entry written before its increment (it
//! expires twice the entry lifetime after its last increment): a counter
//! that expired and reads 0 again cannot revive an entry stored under 0.
//!
//! Every command is bounded by `cache.redis_timeout_ms`; a failure is
//! returned to the caller, which stops using Redis (see `cache`).

use std::time::Duration;

use agentsec_common::redis::RedisHandle;
use serde::{Deserialize, Serialize};

use super::key::CacheKey;
use crate::domain::engine::{Decision, Effect};

/// Why a Redis command did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Error,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// A decision as stored in Redis (compact JSON).
#[derive(Serialize, Deserialize)]
struct Stored {
    /// The actor chain's epochs when it was decided.
    #[serde(rename = "e")]
    epochs: Vec<u64>,
    #[serde(rename = "a")]
    allow: bool,
    #[serde(rename = "r")]
    reason: String,
    #[serde(rename = "p")]
    policy_ids: Vec<String>,
}

/// What a read found: the decision if it may be served, and the epochs
/// to store a new decision under.
pub struct Lookup {
    pub decision: Option<Decision>,
    pub epochs: Vec<u64>,
}

#[derive(Clone)]
pub struct SharedTier {
    redis: RedisHandle,
    timeout: Duration,
    entry_ttl: Duration,
}

impl SharedTier {
    pub fn new(redis: RedisHandle, timeout: Duration, entry_ttl: Duration) -> Self {
        Self {
            redis,
            timeout,
            entry_ttl,
        }
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        self.redis.key(&format!(
            "agentsec:policy:decision:{}:{}:{}",
            key.tenant,
            key.policy_version,
            key.hex()
        ))
    }

    fn epoch_key(&self, tenant: &str, agent: &str) -> String {
        self.redis
            .key(&format!("agentsec:policy:agent-epoch:{tenant}:{agent}"))
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, Failure> {
        let mut connection = self.redis.connection.clone();
        match tokio::time::timeout(self.timeout, command.query_async::<T>(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Failure::Error),
            Err(_) => Err(Failure::Timeout),
        }
    }

    pub async fn get(&self, key: &CacheKey) -> Result<Lookup, Failure> {
        let mut command = redis::cmd("MGET");
        command.arg(self.entry_key(key));
        for agent in &key.agents {
            command.arg(self.epoch_key(&key.tenant, agent));
        }
        let values: Vec<Option<String>> = self.run(&command).await?;
        let mut values = values.into_iter();
        let entry = values.next().flatten();
        let epochs: Vec<u64> = values
            .map(|value| value.and_then(|text| text.parse().ok()).unwrap_or(0))
            .collect();
        let decision = entry
            .and_then(|text| serde_json::from_str::<Stored>(&text).ok())
            .filter(|stored| stored.epochs == epochs)
            .map(|stored| Decision {
                effect: if stored.allow {
                    Effect::Allow
                } else {
                    Effect::Deny
                },
                reason: stored.reason,
                policy_ids: stored.policy_ids,
                policy_version: key.policy_version,
                evaluation_error: false,
                depends_on_time: false,
            });
        Ok(Lookup { decision, epochs })
    }

    pub async fn put(
        &self,
        key: &CacheKey,
        epochs: Vec<u64>,
        decision: &Decision,
    ) -> Result<(), Failure> {
        let stored = Stored {
            epochs,
            allow: decision.is_allowed(),
            reason: decision.reason.clone(),
            policy_ids: decision.policy_ids.clone(),
        };
        let Ok(value) = serde_json::to_string(&stored) else {
            return Err(Failure::Error);
        };
        let mut command = redis::cmd("SET");
        command
            .arg(self.entry_key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(self.entry_ttl));
        self.run::<()>(&command).await
    }

    /// Moves the agent's epoch: its entries are no longer served.
    pub async fn bump(&self, tenant: &str, agent: &str) -> Result<(), Failure> {
        let key = self.epoch_key(tenant, agent);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCR")
            .arg(&key)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(self.entry_ttl * 2))
            .ignore();
        let mut connection = self.redis.connection.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Failure::Error),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Whether Redis answers PING within the timeout.
    pub async fn ping(&self) -> Result<(), Failure> {
        self.run::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
