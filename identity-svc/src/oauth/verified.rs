//! Tokens whose signature has been checked, by SHA-256 of the token: a
//! signature check costs tens of microseconds and its result never changes
//! for the same bytes and key set, so a token presented again (a gateway
//! introspecting the same token per request) is only re-checked for time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest as _, Sha256};

use super::claims::AccessClaims;

/// Tokens remembered before the map is emptied and refilled from use.
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
pub struct VerifiedTokens {
    map: RwLock<HashMap<[u8; 32], Arc<AccessClaims>>>,
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<AccessClaims>> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
            .cloned()
    }

    pub fn insert(&self, digest: [u8; 32], claims: Arc<AccessClaims>) {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(digest, claims);
    }
}
