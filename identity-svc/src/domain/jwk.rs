//! Public keys agents register for `private_key_jwt`: only public members,
//! only the key types and algorithms we verify, one algorithm per key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::IdentityError;

/// A JWK's members as a caller sends them (empty: absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    pub r#use: String,
    pub alg: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub n: String,
    pub e: String,
}

/// A registered key: its kid and the JWK as stored (JSON).
#[derive(Debug, Clone)]
pub struct RegisteredKey {
    pub kid: String,
    pub json: String,
    pub thumbprint: String,
}

const MAX_KID: usize = 128;
const MIN_RSA_BYTES: usize = 256;

fn invalid(field: &str, reason: impl Into<String>) -> IdentityError {
    IdentityError::invalid(format!("jwk.{field}"), reason)
}

fn decoded(field: &str, value: &str) -> Result<Vec<u8>, IdentityError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| invalid(field, "must be base64url without padding"))
}

fn must_be_empty(fields: &[(&str, &str)]) -> Result<(), IdentityError> {
    for (name, value) in fields {
        if !value.is_empty() {
            return Err(invalid(name, "is not a member of this key type"));
        }
    }
    Ok(())
}

/// Checks a JWK given to AddPublicKey and returns what to store.
pub fn register(jwk: &Jwk) -> Result<RegisteredKey, IdentityError> {
    if !jwk.r#use.is_empty() && jwk.r#use != "sig" {
        return Err(invalid("use", "must be `sig` or empty"));
    }
    let thumbprint_input = match jwk.kty.as_str() {
        "OKP" => {
            if jwk.crv != "Ed25519" || jwk.alg != "EdDSA" {
                return Err(invalid(
                    "alg",
                    "an OKP key must be crv Ed25519 with alg EdDSA",
                ));
            }
            must_be_empty(&[("y", &jwk.y), ("n", &jwk.n), ("e", &jwk.e)])?;
            if decoded("x", &jwk.x)?.len() != 32 {
                return Err(invalid("x", "must be a 32-byte Ed25519 public key"));
            }
            json!({"crv": jwk.crv, "kty": jwk.kty, "x": jwk.x})
        }
        "EC" => {
            if jwk.crv != "P-256" || jwk.alg != "ES256" {
                return Err(invalid("alg", "an EC key must be crv P-256 with alg ES256"));
            }
            must_be_empty(&[("n", &jwk.n), ("e", &jwk.e)])?;
            if decoded("x", &jwk.x)?.len() != 32 {
                return Err(invalid("x", "must be a 32-byte P-256 coordinate"));
            }
            if decoded("y", &jwk.y)?.len() != 32 {
                return Err(invalid("y", "must be a 32-byte P-256 coordinate"));
            }
            json!({"crv": jwk.crv, "kty": jwk.kty, "x": jwk.x, "y": jwk.y})
        }
        "RSA" => {
            if jwk.alg != "RS256" && jwk.alg != "PS256" {
                return Err(invalid("alg", "an RSA key must have alg RS256 or PS256"));
            }
            must_be_empty(&[("crv", &jwk.crv), ("x", &jwk.x), ("y", &jwk.y)])?;
            let modulus = decoded("n", &jwk.n)?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_BYTES {
                return Err(invalid("n", "RSA keys must have at least 2048 bits"));
            }
            if decoded("e", &jwk.e)?.is_empty() {
                return Err(invalid("e", "is required"));
            }
            json!({"e": jwk.e, "kty": jwk.kty, "n": jwk.n})
        }
        "" => return Err(invalid("kty", "is required")),
        _ => return Err(invalid("kty", "must be OKP, EC or RSA")),
    };
    // serde_json's default map is ordered by key: this is RFC 7638's
    // lexicographic member order with no whitespace.
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.to_string()));
    let kid = if jwk.kid.is_empty() {
        thumbprint.clone()
    } else {
        jwk.kid.clone()
    };
    if kid.len() > MAX_KID {
        return Err(invalid("kid", format!("must be at most {MAX_KID} chars")));
    }
    let mut stored = thumbprint_input;
    stored["alg"] = json!(jwk.alg);
    stored["kid"] = json!(kid);
    stored["use"] = json!("sig");
    // The verifier must be able to load it; refuse it now rather than at
    // the first assertion.
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(stored.clone())
        .map_err(|err| invalid("kty", format!("is not a usable key: {err}")))?;
    jsonwebtoken::DecodingKey::from_jwk(&parsed)
        .map_err(|err| invalid("kty", format!("is not a usable key: {err}")))?;
    Ok(RegisteredKey {
        kid,
        json: stored.to_string(),
        thumbprint,
    })
}

/// The stored JSON back as its members.
pub fn stored(json: &str) -> Jwk {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
    Jwk {
        kty: field("kty"),
        kid: field("kid"),
        r#use: field("use"),
        alg: field("alg"),
        crv: field("crv"),
        x: field("x"),
        y: field("y"),
        n: field("n"),
        e: field("e"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};

    fn public(key: &SigningKey) -> Jwk {
        let public = key.public_jwk();
        Jwk {
            kty: public.kty.clone(),
            kid: String::new(),
            r#use: "sig".into(),
            alg: public.alg.clone(),
            crv: public.crv.clone(),
            x: public.x.clone(),
            y: public.y.clone().unwrap_or_default(),
            n: String::new(),
            e: String::new(),
        }
    }

    #[test]
    fn the_kid_defaults_to_the_rfc_7638_thumbprint() {
        for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let registered = register(&public(&key)).unwrap();
            assert_eq!(registered.kid, key.kid(), "same thumbprint as common::keys");
            assert_eq!(stored(&registered.json).alg, key.public_jwk().alg);
        }
    }

    #[test]
    fn refuses_mismatched_or_foreign_members() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let mut jwk = public(&key);
        jwk.alg = "HS256".into();
        assert!(register(&jwk).unwrap_err().to_string().contains("jwk.alg"));
        let mut jwk = public(&key);
        jwk.n = "AQAB".into();
        assert!(register(&jwk).unwrap_err().to_string().contains("jwk.n"));
        let mut jwk = public(&key);
        jwk.kty = "oct".into();
        assert!(register(&jwk).is_err());
    }
}
