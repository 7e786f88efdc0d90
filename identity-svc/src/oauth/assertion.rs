//! `private_key_jwt` client assertions (RFC 7523 §2.2 and §3): a JWT the
//! agent signs with a key it registered.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

/// The only client_assertion_type defined for JWTs (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims read before the signature is checked, to find the key.
#[derive(Deserialize)]
struct Unverified {
    sub: Option<String>,
}

#[derive(Deserialize)]
pub struct AssertionClaims {
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// The parts of an assertion needed to look up its key.
pub struct AssertionHead {
    pub subject: String,
    pub kid: String,
    pub alg: jsonwebtoken::Algorithm,
}

/// Reads header and subject without trusting them yet.
pub fn head(assertion: &str) -> Result<AssertionHead, &'static str> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| "client_assertion is not a well-formed JWT")?;
    let kid = header.kid.ok_or("client_assertion has no `kid` header")?;
    let payload = assertion
        .split('.')
        .nth(1)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .ok_or("client_assertion is not a well-formed JWT")?;
    let unverified: Unverified = serde_json::from_slice(&payload)
        .map_err(|_| "client_assertion payload is not a JSON object")?;
    let subject = unverified.sub.ok_or("client_assertion has no `sub`")?;
    Ok(AssertionHead {
        subject,
        kid,
        alg: header.alg,
    })
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

/// Checks signature and claims: `iss` = `sub` = the client, `aud` one of
/// `audiences`, `exp`/`nbf` with leeway.
pub fn verify(
    assertion: &str,
    key: &DecodingKey,
    alg: jsonwebtoken::Algorithm,
    client_id: &str,
    audiences: &[&str],
    leeway_secs: u64,
) -> Result<AssertionClaims, String> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_audience(audiences);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = leeway_secs;
    validation.validate_nbf = true;
    jsonwebtoken::decode::<AssertionClaims>(assertion, key, &validation)
        .map(|data| data.claims)
        .map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            match err.kind() {
                ErrorKind::ExpiredSignature => "client_assertion has expired".to_owned(),
                ErrorKind::ImmatureSignature => "client_assertion is not valid yet".to_owned(),
                ErrorKind::InvalidAudience => {
                    "client_assertion `aud` must be the token endpoint or the issuer".to_owned()
                }
                ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
                    "client_assertion `iss` and `sub` must both be the client id".to_owned()
                }
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("client_assertion has no `{claim}`")
                }
                ErrorKind::InvalidSignature => "client_assertion signature is invalid".to_owned(),
                _ => "client_assertion is invalid".to_owned(),
            }
        })
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
