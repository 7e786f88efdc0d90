//! Signing keys for JWTs and audit checkpoints: Ed25519 (`EdDSA`, the
//! default) or P-256 (`ES256`), each with a `kid` that is its RFC 7638 JWK
//! thumbprint, rendered as a JWKS, and strict verification against a JWKS.

pub mod store;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::jwt::{AudienceRule, Clock, JwtError, Rules, TokenType, Unverified, Verified};
use crate::remote_jwks::KeyMismatch;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system random number generator failed: {0}")]
    Randomness(String),
    #[error("the {algorithm} private key is not valid PKCS#8: {reason}")]
    InvalidPrivateKey {
        algorithm: SigningAlgorithm,
        reason: String,
    },
    #[error("the published key `{kid}` is malformed: {reason}")]
    InvalidPublicKey { kid: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The JWS algorithms AgentSec signs with. Nothing else is ever accepted for
/// our own keys: no `none`, no HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "ES256")]
    Es256,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDsa),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }
}

/// The JWS algorithms of AgentSec's own tokens (identity-svc's and
/// exchange-svc's).
pub const SIGNING_ALGORITHMS: [Algorithm; 2] = [Algorithm::EdDSA, Algorithm::ES256];

/// How a service verifies its own access tokens: its issuer, its signing
/// algorithms, `typ` `at+jwt`, its own clock (no leeway); the audience is
/// the caller's to compare.
pub fn own_token_rules(issuer: &str) -> Rules {
    Rules {
        issuer: issuer.to_owned(),
        algorithms: SIGNING_ALGORITHMS.to_vec(),
        token_type: TokenType::AccessToken,
        audience: AudienceRule::Any,
        subject: None,
        leeway_secs: 0,
    }
}

impl std::fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key as published in a JWKS (RFC 7517), for OKP (RFC 8037) and EC
/// keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub key_use: String,
}

impl PublicJwk {
    fn new(algorithm: SigningAlgorithm, x: &[u8], y: Option<&[u8]>) -> Self {
        let (kty, crv) = match algorithm {
            SigningAlgorithm::EdDsa => ("OKP", "Ed25519"),
            SigningAlgorithm::Es256 => ("EC", "P-256"),
        };
        let mut jwk = Self {
            kty: kty.to_owned(),
            crv: crv.to_owned(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: y.map(|y| URL_SAFE_NO_PAD.encode(y)),
            kid: String::new(),
            alg: algorithm.as_str().to_owned(),
            key_use: "sig".to_owned(),
        };
        jwk.kid = jwk.thumbprint();
        jwk
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in
    /// lexicographic order, with no whitespace.
    pub fn thumbprint(&self) -> String {
        let canonical = match &self.y {
            Some(y) => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
                self.crv, self.kty, self.x, y
            ),
            None => format!(
                r#"{{"crv":"{}","kty":"{}","x":"{}"}}"#,
                self.crv, self.kty, self.x
            ),
        };
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    pub fn algorithm(&self) -> Option<SigningAlgorithm> {
        SigningAlgorithm::parse(&self.alg)
    }

    /// Checks a detached signature made by [`SigningKey::sign_bytes`].
    pub fn verify_bytes(&self, message: &[u8], signature: &[u8]) -> bool {
        let (Some(algorithm), Ok(key)) = (self.algorithm(), self.decoding_key()) else {
            return false;
        };
        jsonwebtoken::crypto::verify(
            &URL_SAFE_NO_PAD.encode(signature),
            message,
            &key,
            algorithm.jwt_algorithm(),
        )
        .unwrap_or(false)
    }

    pub fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        let invalid = |reason: String| KeyError::InvalidPublicKey {
            kid: self.kid.clone(),
            reason,
        };
        match (self.kty.as_str(), self.crv.as_str(), &self.y) {
            ("OKP", "Ed25519", None) => {
                DecodingKey::from_ed_components(&self.x).map_err(|err| invalid(err.to_string()))
            }
            ("EC", "P-256", Some(y)) => {
                DecodingKey::from_ec_components(&self.x, y).map_err(|err| invalid(err.to_string()))
            }
            (kty, crv, _) => Err(invalid(format!("unsupported key type {kty}/{crv}"))),
        }
    }
}

/// A JSON Web Key Set, as served at `/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

/// A private signing key with its public half.
pub struct SigningKey {
    algorithm: SigningAlgorithm,
    encoding: EncodingKey,
    pkcs8_der: Vec<u8>,
    public: PublicJwk,
}

impl std::fmt::Debug for SigningKey {
    // The private half never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        loop {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|err| KeyError::Randomness(err.to_string()))?;
            match algorithm {
                SigningAlgorithm::EdDsa => {
                    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                    return Self::from_ed25519(&key);
                }
                SigningAlgorithm::Es256 => {
                    // A 32-byte string is a valid P-256 scalar unless it is
                    // zero or above the group order (probability ~2^-32).
                    if let Ok(key) = p256::SecretKey::from_slice(&seed) {
                        return Self::from_p256(&key);
                    }
                }
            }
        }
    }

    /// Loads a PKCS#8 DER private key.
    pub fn from_pkcs8_der(algorithm: SigningAlgorithm, der: &[u8]) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePrivateKey as _;
        let invalid = |reason: String| KeyError::InvalidPrivateKey { algorithm, reason };
        match algorithm {
            SigningAlgorithm::EdDsa => {
                let key = <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                    .map_err(|err| invalid(err.to_string()))?;
                Self::from_ed25519(&key)
            }
            SigningAlgorithm::Es256 => {
                let key =
                    p256::SecretKey::from_pkcs8_der(der).map_err(|err| invalid(err.to_string()))?;
                Self::from_p256(&key)
            }
        }
    }

    /// Loads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(algorithm: SigningAlgorithm, pem: &str) -> Result<Self, KeyError> {
        use p256::pkcs8::DecodePrivateKey as _;
        let invalid = |reason: String| KeyError::InvalidPrivateKey { algorithm, reason };
        match algorithm {
            SigningAlgorithm::EdDsa => {
                let key = <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(pem)
                    .map_err(|err| invalid(err.to_string()))?;
                Self::from_ed25519(&key)
            }
            SigningAlgorithm::Es256 => {
                let key =
                    p256::SecretKey::from_pkcs8_pem(pem).map_err(|err| invalid(err.to_string()))?;
                Self::from_p256(&key)
            }
        }
    }

    fn from_ed25519(key: &ed25519_dalek::SigningKey) -> Result<Self, KeyError> {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let algorithm = SigningAlgorithm::EdDsa;
        let der = key
            .to_pkcs8_der()
            .map_err(|err| KeyError::InvalidPrivateKey {
                algorithm,
                reason: err.to_string(),
            })?
            .as_bytes()
            .to_vec();
        let public = PublicJwk::new(algorithm, &key.verifying_key().to_bytes(), None);
        Ok(Self {
            algorithm,
            encoding: EncodingKey::from_ed_der(&der),
            pkcs8_der: der,
            public,
        })
    }

    fn from_p256(key: &p256::SecretKey) -> Result<Self, KeyError> {
        use p256::pkcs8::EncodePrivateKey as _;
        let algorithm = SigningAlgorithm::Es256;
        let invalid = |reason: String| KeyError::InvalidPrivateKey { algorithm, reason };
        let der = key
            .to_pkcs8_der()
            .map_err(|err| invalid(err.to_string()))?
            .as_bytes()
            .to_vec();
        // SEC1 uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = key.public_key().to_sec1_bytes();
        let (Some(0x04), Some(x), Some(y)) = (point.first(), point.get(1..33), point.get(33..65))
        else {
            return Err(invalid("unexpected public point encoding".to_owned()));
        };
        let public = PublicJwk::new(algorithm, x, Some(y));
        Ok(Self {
            algorithm,
            encoding: EncodingKey::from_ec_der(&der),
            pkcs8_der: der,
            public,
        })
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// The private key as PKCS#8 DER, for the key store only.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8_der
    }

    /// Signs `claims` as a compact JWS with `typ` and this key's `kid`.
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(self.algorithm.jwt_algorithm());
        header.kid = Some(self.public.kid.clone());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|err| KeyError::Sign(err.to_string()))
    }

    /// Signs raw bytes (a detached signature, e.g. for audit checkpoints).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signature =
            jsonwebtoken::crypto::sign(message, &self.encoding, self.algorithm.jwt_algorithm())
                .map_err(|err| KeyError::Sign(err.to_string()))?;
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|err| KeyError::Sign(err.to_string()))
    }
}

impl Jwks {
    pub fn find(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// Verifies one of our own tokens against this key set with the
    /// shared verifier (`jwt`): the header's `kid` picks the key, and the
    /// key's algorithm must be the token's.
    pub fn verify(&self, token: &str, rules: &Rules, clock: Clock) -> Result<Verified, JwtError> {
        let unverified = Unverified::parse(token)?;
        let (alg, kid) = unverified.check_header(rules)?;
        let jwk = self.find(kid).ok_or(JwtError::UnknownKid)?;
        if jwk.algorithm().map(SigningAlgorithm::jwt_algorithm) != Some(alg) {
            return Err(JwtError::KeyMismatch(KeyMismatch::OtherAlgorithm {
                key: jwk.alg.clone(),
            }));
        }
        let key = jwk.decoding_key().map_err(|err| {
            JwtError::KeyMismatch(KeyMismatch::Malformed {
                reason: err.to_string(),
            })
        })?;
        unverified.verify(&key, alg, rules, clock)
    }
}

impl From<&PublicJwk> for agentsec_proto::common::v1::Jwk {
    fn from(jwk: &PublicJwk) -> Self {
        Self {
            kty: jwk.kty.clone(),
            kid: jwk.kid.clone(),
            r#use: jwk.key_use.clone(),
            alg: jwk.alg.clone(),
            crv: jwk.crv.clone(),
            x: jwk.x.clone(),
            y: jwk.y.clone().unwrap_or_default(),
            n: String::new(),
            e: String::new(),
        }
    }
}

impl From<&Jwks> for agentsec_proto::common::v1::Jwks {
    fn from(jwks: &Jwks) -> Self {
        Self {
            keys: jwks.keys.iter().map(Into::into).collect(),
        }
    }
}

/// `GET /.well-known/jwks.json` for a service that signs tokens.
pub fn jwks_router(jwks: std::sync::Arc<Jwks>) -> axum::Router {
    axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move {
                (
                    // Verifiers may cache the set briefly; rotation keeps old
                    // keys published long enough for this to be safe.
                    [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
                    axum::Json(jwks.as_ref().clone()),
                )
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Claims {
        iss: String,
        sub: String,
        aud: String,
        exp: u64,
    }

    fn claims(exp_offset: i64) -> Claims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Claims {
            iss: "https://issuer.test".into(),
            sub: "agt_1".into(),
            aud: "mcp:github".into(),
            exp: now.saturating_add_signed(exp_offset),
        }
    }

    fn rules() -> Rules {
        Rules {
            issuer: "https://issuer.test".into(),
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256],
            token_type: TokenType::AccessToken,
            audience: AudienceRule::OneOf(vec!["mcp:github".into()]),
            subject: None,
            leeway_secs: 5,
        }
    }

    fn now() -> Clock {
        Clock::At(chrono::Utc::now().timestamp())
    }

    #[test]
    fn signs_and_verifies_with_both_algorithms() {
        for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let jwks = Jwks {
                keys: vec![key.public_jwk().clone()],
            };
            let signed = claims(600);
            let token = key.sign("at+jwt", &signed).unwrap();
            let verified: Claims = jwks
                .verify(&token, &rules(), now())
                .unwrap()
                .claims_as()
                .unwrap();
            assert_eq!(verified, signed, "{algorithm}");
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(key.kid()));
        }
    }

    #[test]
    fn detached_signatures_verify_only_for_their_message_and_key() {
        for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let other = SigningKey::generate(algorithm).unwrap();
            let signature = key.sign_bytes(b"checkpoint 42").unwrap();
            assert!(key.public_jwk().verify_bytes(b"checkpoint 42", &signature));
            assert!(!key.public_jwk().verify_bytes(b"checkpoint 43", &signature));
            assert!(!other
                .public_jwk()
                .verify_bytes(b"checkpoint 42", &signature));
        }
        let ed = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        assert_eq!(
            ed.sign_bytes(b"x").unwrap().len(),
            64,
            "raw Ed25519 signature"
        );
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 Appendix A.3: the thumbprint of the example Ed25519 key.
        let jwk = PublicJwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
            y: None,
            kid: String::new(),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
        };
        assert_eq!(
            jwk.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_kid() {
        for algorithm in [SigningAlgorithm::EdDsa, SigningAlgorithm::Es256] {
            let key = SigningKey::generate(algorithm).unwrap();
            let again = SigningKey::from_pkcs8_der(algorithm, key.pkcs8_der()).unwrap();
            assert_eq!(again.kid(), key.kid());
        }
    }

    #[test]
    fn rejects_expired_tampered_and_foreign_tokens() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let jwks = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        let expired = key.sign("at+jwt", &claims(-3600)).unwrap();
        assert_eq!(
            jwks.verify(&expired, &rules(), now()).err(),
            Some(JwtError::Expired)
        );
        let foreign = other.sign("at+jwt", &claims(600)).unwrap();
        assert_eq!(
            jwks.verify(&foreign, &rules(), now()).err(),
            Some(JwtError::UnknownKid)
        );
        let token = key.sign("at+jwt", &claims(600)).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                sub: "agt_admin".into(),
                ..claims(600)
            })
            .unwrap(),
        );
        parts[1] = &forged_claims;
        assert_eq!(
            jwks.verify(&parts.join("."), &rules(), now()).err(),
            Some(JwtError::BadSignature)
        );
        assert_eq!(
            jwks.verify("not-a-jwt", &rules(), now()).err(),
            Some(JwtError::Malformed)
        );
    }

    #[test]
    fn refuses_an_algorithm_other_than_the_keys() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let jwks = Jwks {
            keys: vec![key.public_jwk().clone()],
        };
        // An HS256 token that names our kid: the classic key-confusion attack.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid().to_owned());
        let secret = EncodingKey::from_secret(key.public_jwk().x.as_bytes()).unwrap();
        let forged = jsonwebtoken::encode(&header, &claims(600), &secret).unwrap();
        assert!(matches!(
            jwks.verify(&forged, &rules(), now()),
            Err(JwtError::AlgorithmNotAllowed { .. })
        ));
        // An ES256 header over our EdDSA key.
        let token = key.sign("at+jwt", &claims(600)).unwrap();
        let (_, rest) = token.split_once('.').unwrap();
        let header = serde_json::json!({"alg": "ES256", "kid": key.kid(), "typ": "at+jwt"});
        let relabelled = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()));
        assert!(matches!(
            jwks.verify(&relabelled, &rules(), now()),
            Err(JwtError::KeyMismatch(_))
        ));
    }
}
