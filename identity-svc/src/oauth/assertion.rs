//! `private_key_jwt` client assertions (RFC 7523 §2.2 and §3): a JWT the
//! agent signs with a key it registered.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

/// The only client_assertion_type defined for JWTs (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What a verified assertion carries beyond the registered claims.
#[derive(Deserialize)]
pub struct AssertionClaims {
    #[serde(default)]
    pub jti: Option<String>,
}

/// The `iss` and `sub` a JWT claims, unverified and shortened to printable
/// text: for audit records of refused requests only.
pub fn unverified_issuer_and_subject(token: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Claimed {
        #[serde(default)]
        iss: String,
        #[serde(default)]
        sub: String,
    }
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())?;
    let claimed: Claimed = serde_json::from_slice(&payload).ok()?;
    let short = |value: &str| -> String {
        value
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect()
    };
    Some((short(&claimed.iss), short(&claimed.sub)))
}

#[cfg(test)]
mod untrusted_input {
    use super::*;

    proptest::proptest! {
        #[test]
        fn claimed_names_of_any_assertion_are_printable_and_short(
            header: Vec<u8>,
            payload: Vec<u8>,
            raw: String,
        ) {
            let token = format!(
                "{}.{}.sig",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(&payload)
            );
            for candidate in [token.as_str(), raw.as_str()] {
                if let Some((iss, sub)) = unverified_issuer_and_subject(candidate) {
                    for name in [iss, sub] {
                        proptest::prop_assert!(name.chars().count() <= 256);
                        proptest::prop_assert!(!name.chars().any(char::is_control));
                    }
                }
            }
        }
    }
}
