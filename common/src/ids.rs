//! Prefixed, sortable identifiers (`agt_`, `cred_`, `dec_`, `evt_` ... + a
//! ULID: 48-bit millisecond time, 80 random bits, Crockford base32),
//! monotonic within this process so ids created in the same millisecond
//! still sort in creation order.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;

/// The last ULID handed out, to stay monotonic within a millisecond.
static LAST: Mutex<u128> = Mutex::new(0);

#[derive(Debug, thiserror::Error)]
#[error("the system random source failed: {0}")]
pub struct IdError(String);

/// A new ULID as 26 Crockford base32 characters.
pub fn ulid() -> Result<String, IdError> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default()
        & ((1 << 48) - 1);
    let mut random = [0u8; 16];
    getrandom::fill(&mut random[6..]).map_err(|err| IdError(err.to_string()))?;
    let fresh = (millis << RANDOM_BITS) | u128::from_be_bytes(random);
    let value = {
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Same (or an earlier, after a clock step back) millisecond: count
        // on from the last id instead, as the ULID spec's monotonic mode.
        let next = if fresh <= *last { *last + 1 } else { fresh };
        *last = next;
        next
    };
    Ok(encode(value))
}

fn encode(value: u128) -> String {
    (0..26)
        .rev()
        .map(|index| CROCKFORD[((value >> (index * 5)) & 0x1f) as usize] as char)
        .collect()
}

/// `prefix` + a new ULID, e.g. `new_id("agt_")`.
pub fn new_id(prefix: &str) -> Result<String, IdError> {
    Ok(format!("{prefix}{}", ulid()?))
}

/// Whether `id` has the shape of an id made here with `prefix`.
pub fn is_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 26 && rest.bytes().all(|b| CROCKFORD.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_26_crockford_chars_and_increase() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("agt_").unwrap()).collect();
        assert!(ids.iter().all(|id| is_id(id, "agt_")));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn encodes_the_time_in_the_first_ten_chars() {
        assert_eq!(encode(0), "00000000000000000000000000");
        assert_eq!(encode(1 << 80), "00000000010000000000000000");
        assert!(!is_id("agt_0000000000000000000000000I", "agt_"));
    }
}
