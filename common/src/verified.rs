//! Tokens whose signature has been checked, by SHA-256 of the token. A
//! signature check costs tens of microseconds and its result never changes
//! for the same bytes and key, so a token presented again (an agent's actor
//! token or a person's token used for many exchanges, a gateway
//! introspecting per request) is only re-checked for time by the caller.
//!
//! An entry is used for at most `max_age`: a verifier whose keys come from
//! a fetched key set passes that set's cache lifetime, so a key withdrawn
//! by its issuer stops vouching for cached tokens as soon as it would stop
//! vouching for new ones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Entries remembered before the map is emptied and refilled from use.
const MAX_ENTRIES: usize = 50_000;

/// What was verified, and when.
type Entry<T> = (Arc<T>, Instant);

pub struct VerifiedTokens<T> {
    map: RwLock<HashMap<[u8; 32], Entry<T>>>,
    max_age: Duration,
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl<T> VerifiedTokens<T> {
    pub fn new(max_age: Duration) -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
            max_age,
        }
    }

    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<T>> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
            .filter(|(_, verified_at)| verified_at.elapsed() < self.max_age)
            .map(|(value, _)| value.clone())
    }

    pub fn insert(&self, digest: [u8; 32], value: Arc<T>) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(digest, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_max_age() {
        let fresh = VerifiedTokens::new(Duration::from_secs(60));
        fresh.insert(digest("a.b.c"), Arc::new(1));
        assert_eq!(fresh.get(&digest("a.b.c")).as_deref(), Some(&1));
        assert!(fresh.get(&digest("a.b.d")).is_none());
        let stale = VerifiedTokens::new(Duration::ZERO);
        stale.insert(digest("a.b.c"), Arc::new(1));
        assert!(stale.get(&digest("a.b.c")).is_none());
    }
}
