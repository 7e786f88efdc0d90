//! The one JWT verifier. Every place that accepts a JWT goes through it:
//! identity-svc (its own tokens at introspection and as bearer, client
//! assertions, federated tokens), exchange-svc (person tokens, actor tokens,
//! its own delegated tokens), policy-svc (CheckToken, ext_authz, admin
//! calls) and audit-svc (callers' tokens). A site chooses its [`Rules`] and
//! where keys come from; the checks and their order are the same
//! everywhere:
//!
//! 1. size at most [`MAX_TOKEN_BYTES`]; three base64url parts; header and
//!    payload JSON objects;
//! 2. `crit` refused: no extension is understood (RFC 7515 §4.1.11);
//! 3. `alg` on the issuer's allow-list, which holds asymmetric algorithms
//!    only (`none` and HMAC never verify: an issuer's key set is public);
//! 4. `typ` where the site requires one: `at+jwt` for access tokens
//!    (RFC 9068 §4, compared as a media type);
//! 5. `kid` present, naming a key of the issuer that fits `alg`;
//! 6. the signature;
//! 7. `iss` the issuer; `sub` a non-empty string (the expected one where
//!    the site names it); `aud` a string or 1-[`MAX_AUDIENCES`] strings,
//!    one of the site's audiences where it names them;
//! 8. `exp` required; `exp`, `nbf` and `iat` with one leeway
//!    ([`check_times`]).
//!
//! The integration test `token_conformance` runs every rule against every
//! site.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use std::sync::Arc;

use crate::remote_jwks::{self, JwksError, KeyMismatch, RemoteJwks};
use crate::tls::ClientTls;

/// Largest token accepted anywhere.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most `aud` values a token may carry.
pub const MAX_AUDIENCES: usize = 16;
/// The media type of JWT access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Why a token was refused. The messages read after the token's name:
/// `err.about("the assertion")` = "the assertion has expired".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("is not a well-formed JWT")]
    Malformed,
    #[error("names an issuer (`iss`) that is not trusted")]
    UntrustedIssuer,
    #[error("has a `crit` header parameter, which is not supported")]
    CriticalHeader,
    #[error("is signed with `alg` `{alg}`, which its issuer may not use")]
    AlgorithmNotAllowed { alg: String },
    #[error("has a `typ` other than `at+jwt` (RFC 9068)")]
    WrongType,
    #[error("has no `kid` header")]
    MissingKid,
    #[error("names a `kid` its issuer does not publish")]
    UnknownKid,
    #[error("names a key that does not fit its `alg`: {0}")]
    KeyMismatch(KeyMismatch),
    #[error("cannot be verified now: its issuer's key set is unavailable")]
    KeysUnavailable,
    #[error("has an invalid signature")]
    BadSignature,
    #[error("has no `{claim}`")]
    MissingClaim { claim: &'static str },
    #[error("has a malformed `{claim}`")]
    MalformedClaim { claim: &'static str },
    #[error("is from another issuer (`iss`)")]
    WrongIssuer,
    #[error("is for another subject (`sub`)")]
    WrongSubject,
    #[error("is not for this audience (`aud`)")]
    WrongAudience,
    #[error("has expired")]
    Expired,
    #[error("is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("was issued in the future (`iat`)")]
    IssuedInFuture,
}

impl JwtError {
    /// The message with the token's name in front.
    pub fn about(&self, token_name: &str) -> String {
        format!("{token_name} {self}")
    }
}

/// What `typ` a site requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// Any or none (client assertions, external identity tokens).
    Any,
    /// `at+jwt` (or `application/at+jwt`, in any case).
    AccessToken,
}

/// What `aud` a site requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceRule {
    /// Present and well-formed; the caller compares it (a CheckToken
    /// audience mismatch is a DENY, not an error).
    Any,
    /// At least one value is one of these.
    OneOf(Vec<String>),
}

/// How one issuer's tokens are verified at a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub issuer: String,
    /// Asymmetric only: build it with [`algorithms`].
    pub algorithms: Vec<Algorithm>,
    pub token_type: TokenType,
    pub audience: AudienceRule,
    /// The `sub` required (a client assertion's client id), if any.
    pub subject: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
}

/// The asymmetric algorithms named, for an allow-list; an error names the
/// first that is unknown or not asymmetric.
pub fn algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    names
        .iter()
        .map(|name| {
            name.parse::<Algorithm>()
                .ok()
                .filter(|_| remote_jwks::SUPPORTED_ALGORITHMS.contains(&name.as_str()))
                .ok_or_else(|| {
                    format!(
                        "`{}` is not one of {}",
                        name.chars().take(32).collect::<String>(),
                        remote_jwks::SUPPORTED_ALGORITHMS.join(", ")
                    )
                })
        })
        .collect()
}

/// A token's time claims, in seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub expires_at: i64,
    pub not_before: Option<i64>,
    pub issued_at: Option<i64>,
}

/// The one time check: expired once `now` is past `exp` + leeway, not yet
/// valid while `now` + leeway is before `nbf`, issued in the future when
/// `iat` is after `now` + leeway. Sites that remember verified tokens call
/// it again on every later use.
pub fn check_times(times: Times, now: i64, leeway_secs: u64) -> Result<(), JwtError> {
    let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
    if now > times.expires_at.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if times
        .not_before
        .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
    {
        return Err(JwtError::NotYetValid);
    }
    if times
        .issued_at
        .is_some_and(|iat| iat > now.saturating_add(leeway))
    {
        return Err(JwtError::IssuedInFuture);
    }
    Ok(())
}

/// Whether the time claims are checked (a revocation request names a
/// token whatever its times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    At(i64),
    Ignored,
}

/// A verified token: registered claims read, the rest as given.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub times: Times,
    /// Every claim of the payload, registered ones included.
    pub claims: Map<String, Value>,
}

impl Verified {
    /// The claims as the site's own type.
    pub fn claims_as<C: DeserializeOwned>(&self) -> Result<C, JwtError> {
        C::deserialize(Value::Object(self.claims.clone())).map_err(|_| JwtError::Malformed)
    }

    pub fn is_for(&self, audience: &str) -> bool {
        self.audiences.iter().any(|aud| aud == audience)
    }
}

/// A token parsed but not trusted yet: what picks the issuer and the key.
#[derive(Debug)]
pub struct Unverified<'a> {
    header: Map<String, Value>,
    payload: Map<String, Value>,
    signing_input: &'a str,
    signature: &'a str,
}

fn json_object(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(JwtError::Malformed),
    }
}

impl<'a> Unverified<'a> {
    /// Step 1: size and shape.
    pub fn parse(token: &'a str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge {
                max: MAX_TOKEN_BYTES,
            });
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
        if payload.contains('.') {
            return Err(JwtError::Malformed);
        }
        Ok(Self {
            header: json_object(header)?,
            payload: json_object(payload)?,
            signing_input,
            signature,
        })
    }

    fn claim_str(&self, claim: &str) -> Option<&str> {
        self.payload.get(claim).and_then(Value::as_str)
    }

    /// The `iss` claimed, unverified: only to pick the issuer's rules.
    pub fn issuer(&self) -> Result<&str, JwtError> {
        match self.payload.get("iss") {
            None => Err(JwtError::MissingClaim { claim: "iss" }),
            Some(Value::String(iss)) => Ok(iss),
            Some(_) => Err(JwtError::MalformedClaim { claim: "iss" }),
        }
    }

    /// The `sub` claimed, unverified: only to pick a client's keys.
    pub fn subject(&self) -> Option<&str> {
        self.claim_str("sub")
    }

    /// The JOSE header, unverified: to show it, or to tell a token's kind
    /// (`typ`) before choosing how to send it.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The claims, unverified: only to show them (`agentctl token decode`
    /// when the issuer's keys are out of reach).
    pub fn unverified_claims(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The `kid` header, unverified: only to pick a client's key.
    pub fn kid(&self) -> Option<&str> {
        self.header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|kid| !kid.is_empty())
    }

    /// Steps 2-5 without the key: the algorithm and `kid` to look the key
    /// up with.
    pub fn check_header(&self, rules: &Rules) -> Result<(Algorithm, &str), JwtError> {
        if self.header.contains_key("crit") {
            return Err(JwtError::CriticalHeader);
        }
        let alg_name = self.header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = alg_name
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| rules.algorithms.contains(alg))
            .ok_or_else(|| JwtError::AlgorithmNotAllowed {
                alg: alg_name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(32)
                    .collect(),
            })?;
        if rules.token_type == TokenType::AccessToken {
            let typ = self.header.get("typ").and_then(Value::as_str).unwrap_or("");
            let media = typ
                .get(..12)
                .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
                .map_or(typ, |_| &typ[12..]);
            if !media.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) {
                return Err(JwtError::WrongType);
            }
        }
        let kid = self.kid().ok_or(JwtError::MissingKid)?;
        Ok((alg, kid))
    }

    /// Steps 6-8 with the key [`Self::check_header`] led to.
    pub fn verify(
        self,
        key: &DecodingKey,
        alg: Algorithm,
        rules: &Rules,
        clock: Clock,
    ) -> Result<Verified, JwtError> {
        let signed =
            jsonwebtoken::crypto::verify(self.signature, self.signing_input.as_bytes(), key, alg)
                .unwrap_or(false);
        if !signed {
            return Err(JwtError::BadSignature);
        }
        let claims = self.payload;
        let string = |claim: &'static str| match claims.get(claim) {
            None => Err(JwtError::MissingClaim { claim }),
            Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
            Some(_) => Err(JwtError::MalformedClaim { claim }),
        };
        let issuer = string("iss")?;
        if issuer != rules.issuer {
            return Err(JwtError::WrongIssuer);
        }
        let subject = string("sub")?;
        if rules.subject.as_ref().is_some_and(|want| *want != subject) {
            return Err(JwtError::WrongSubject);
        }
        let audiences = audiences(claims.get("aud"))?;
        if let AudienceRule::OneOf(accepted) = &rules.audience {
            if !audiences.iter().any(|aud| accepted.contains(aud)) {
                return Err(JwtError::WrongAudience);
            }
        }
        let times = Times {
            expires_at: numeric_date(&claims, "exp")?
                .ok_or(JwtError::MissingClaim { claim: "exp" })?,
            not_before: numeric_date(&claims, "nbf")?,
            issued_at: numeric_date(&claims, "iat")?,
        };
        if let Clock::At(now) = clock {
            check_times(times, now, rules.leeway_secs)?;
        }
        Ok(Verified {
            issuer,
            subject,
            audiences,
            times,
            claims,
        })
    }
}

/// `aud`: a string or an array of 1-[`MAX_AUDIENCES`] strings
/// (RFC 7519 §4.1.3), required.
fn audiences(aud: Option<&Value>) -> Result<Vec<String>, JwtError> {
    let malformed = JwtError::MalformedClaim { claim: "aud" };
    match aud {
        None => Err(JwtError::MissingClaim { claim: "aud" }),
        Some(Value::String(one)) if !one.is_empty() => Ok(vec![one.clone()]),
        Some(Value::Array(many)) if !many.is_empty() && many.len() <= MAX_AUDIENCES => many
            .iter()
            .map(|aud| {
                aud.as_str()
                    .filter(|aud| !aud.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| malformed.clone())
            })
            .collect(),
        Some(_) => Err(malformed),
    }
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; refused when
/// not a finite number in range.
fn numeric_date(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<i64>, JwtError> {
    let Some(value) = claims.get(claim) else {
        return Ok(None);
    };
    if let Some(seconds) = value.as_i64() {
        return Ok(Some(seconds));
    }
    value
        .as_f64()
        .filter(|seconds| seconds.is_finite() && seconds.abs() < 1e15)
        // Truncation toward the past keeps `exp` strict.
        .map(|seconds| Some(seconds.floor() as i64))
        .ok_or(JwtError::MalformedClaim { claim })
}

/// An issuer a site trusts, with its key set.
pub struct TrustedIssuer {
    pub rules: Rules,
    pub keys: RemoteJwks,
}

/// The key set of a configuration entry: inline JSON or a URL to fetch
/// (over TLS with `tls` when it is `https://`). The error is the reason,
/// for the caller to prefix with the entry's key.
pub fn key_set(
    jwks: Option<&str>,
    jwks_uri: Option<&str>,
    cache_ttl: std::time::Duration,
    tls: &Arc<ClientTls>,
) -> Result<RemoteJwks, String> {
    match (jwks, jwks_uri) {
        (Some(json), _) => RemoteJwks::inline(json).map_err(|err| format!("jwks {err}")),
        (None, Some(uri)) => {
            RemoteJwks::remote(uri, cache_ttl, tls).map_err(|err| format!("jwks_uri {err}"))
        }
        (None, None) => Err("jwks_uri: one of jwks_uri and jwks is required".to_owned()),
    }
}

/// A site's trusted issuers: the issuer a token names decides its rules
/// and keys.
#[derive(Default)]
pub struct TrustedIssuers {
    issuers: Vec<TrustedIssuer>,
}

impl TrustedIssuers {
    pub fn new(issuers: Vec<TrustedIssuer>) -> Self {
        Self { issuers }
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The rules of every issuer, in order.
    pub fn rules(&self) -> impl Iterator<Item = &Rules> {
        self.issuers.iter().map(|trusted| &trusted.rules)
    }

    pub fn issues(&self, iss: &str) -> bool {
        self.issuers
            .iter()
            .any(|trusted| trusted.rules.issuer == iss)
    }

    /// Every step, with the key from the issuer's key set (fetched again
    /// for an unknown `kid`, no more often than its floor allows).
    pub async fn verify(&self, token: &str, clock: Clock) -> Result<Verified, JwtError> {
        let unverified = Unverified::parse(token)?;
        let iss = unverified.issuer()?;
        let trusted = self
            .issuers
            .iter()
            .find(|trusted| trusted.rules.issuer == iss)
            .ok_or(JwtError::UntrustedIssuer)?;
        let (alg, kid) = unverified.check_header(&trusted.rules)?;
        let jwk = trusted.keys.key(kid).await.map_err(|err| match err {
            JwksError::Unavailable => JwtError::KeysUnavailable,
            JwksError::UnknownKid { .. } => JwtError::UnknownKid,
        })?;
        let key = remote_jwks::decoding_key(&jwk, alg).map_err(JwtError::KeyMismatch)?;
        unverified.verify(&key, alg, &trusted.rules, clock)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::keys::{SigningAlgorithm, SigningKey};

    const ISSUER: &str = "https://issuer.test";
    const NOW: i64 = 1_900_000_000;

    fn rules(key: &SigningKey) -> Rules {
        Rules {
            issuer: ISSUER.to_owned(),
            algorithms: vec![key.algorithm().jwt_algorithm()],
            token_type: TokenType::AccessToken,
            audience: AudienceRule::OneOf(vec!["api".to_owned()]),
            subject: None,
            leeway_secs: 30,
        }
    }

    fn issuers(key: &SigningKey) -> TrustedIssuers {
        let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
        TrustedIssuers::new(vec![TrustedIssuer {
            rules: rules(key),
            keys: RemoteJwks::inline(&jwks).unwrap(),
        }])
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "iss": ISSUER, "sub": "someone", "aud": "api",
            "iat": NOW, "nbf": NOW, "exp": NOW + 300,
        });
        for (name, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    /// A token signed by `key` with `header` members over the defaults.
    fn token(key: &SigningKey, header: Value, claims: &Value) -> String {
        let mut full = json!({
            "alg": key.algorithm().jwt_algorithm(), "kid": key.kid(), "typ": "at+jwt",
        });
        for (name, value) in header.as_object().unwrap() {
            if value.is_null() {
                full.as_object_mut().unwrap().remove(name);
            } else {
                full[name] = value.clone();
            }
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(full.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.sign_bytes(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    async fn check(key: &SigningKey, header: Value, claims: Value) -> Result<Verified, JwtError> {
        issuers(key)
            .verify(&token(key, header, &claims), Clock::At(NOW))
            .await
    }

    #[tokio::test]
    async fn a_token_that_keeps_every_rule_is_verified_with_its_claims() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let verified = check(&key, json!({}), claims(json!({"scope": "a b"})))
            .await
            .unwrap();
        assert_eq!(verified.subject, "someone");
        assert_eq!(verified.audiences, ["api"]);
        assert_eq!(verified.times.expires_at, NOW + 300);
        assert_eq!(verified.claims["scope"], "a b");
        // The media-type spelling of `typ`, in any case.
        for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
            check(&key, json!({ "typ": typ }), claims(json!({})))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn every_rule_refuses_what_breaks_it() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let cases: Vec<(Value, Value, JwtError)> = vec![
            (
                json!({"crit": ["exp"]}),
                json!({}),
                JwtError::CriticalHeader,
            ),
            (
                json!({"alg": "ES256"}),
                json!({}),
                JwtError::AlgorithmNotAllowed {
                    alg: "ES256".into(),
                },
            ),
            (json!({"typ": "JWT"}), json!({}), JwtError::WrongType),
            (json!({"typ": null}), json!({}), JwtError::WrongType),
            (json!({"kid": null}), json!({}), JwtError::MissingKid),
            (json!({"kid": other.kid()}), json!({}), JwtError::UnknownKid),
            (
                json!({}),
                json!({"iss": "https://other.test"}),
                JwtError::UntrustedIssuer,
            ),
            (
                json!({}),
                json!({"iss": 7}),
                JwtError::MalformedClaim { claim: "iss" },
            ),
            (
                json!({}),
                json!({"sub": null}),
                JwtError::MissingClaim { claim: "sub" },
            ),
            (
                json!({}),
                json!({"sub": ""}),
                JwtError::MalformedClaim { claim: "sub" },
            ),
            (
                json!({}),
                json!({"aud": null}),
                JwtError::MissingClaim { claim: "aud" },
            ),
            (
                json!({}),
                json!({"aud": []}),
                JwtError::MalformedClaim { claim: "aud" },
            ),
            (
                json!({}),
                json!({"aud": ["api", 1]}),
                JwtError::MalformedClaim { claim: "aud" },
            ),
            (json!({}), json!({"aud": "other"}), JwtError::WrongAudience),
            (
                json!({}),
                json!({"exp": null}),
                JwtError::MissingClaim { claim: "exp" },
            ),
            (
                json!({}),
                json!({"exp": "soon"}),
                JwtError::MalformedClaim { claim: "exp" },
            ),
            (json!({}), json!({"exp": NOW - 31}), JwtError::Expired),
            (json!({}), json!({"nbf": NOW + 31}), JwtError::NotYetValid),
            (
                json!({}),
                json!({"iat": NOW + 31}),
                JwtError::IssuedInFuture,
            ),
        ];
        for (header, changes, expected) in cases {
            let got = check(&key, header.clone(), claims(changes.clone())).await;
            assert_eq!(
                got.err(),
                Some(expected),
                "header {header}, claims {changes}"
            );
        }
        // Within the leeway.
        check(
            &key,
            json!({}),
            claims(json!({"exp": NOW - 30, "nbf": NOW + 30, "iat": NOW + 30})),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn signatures_and_shapes_are_checked() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let issuers = issuers(&key);
        let good = token(&key, json!({}), &claims(json!({})));
        let (input, _) = good.rsplit_once('.').unwrap();
        let other = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let forged = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(other.sign_bytes(input.as_bytes()).unwrap())
        );
        let huge = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
        let cases = [
            (forged, JwtError::BadSignature),
            (format!("{input}."), JwtError::BadSignature),
            (
                huge,
                JwtError::TooLarge {
                    max: MAX_TOKEN_BYTES,
                },
            ),
            (input.to_owned(), JwtError::Malformed),
            (format!("{good}.x"), JwtError::Malformed),
            ("e30.W10.sig".to_owned(), JwtError::Malformed),
        ];
        for (token, expected) in cases {
            assert_eq!(
                issuers.verify(&token, Clock::At(NOW)).await.err(),
                Some(expected)
            );
        }
        // `none` and HMAC are never on an allow-list.
        assert!(algorithms(&["none".to_owned()]).is_err());
        assert!(algorithms(&["HS256".to_owned()]).is_err());
        assert_eq!(
            algorithms(&["EdDSA".to_owned(), "RS256".to_owned()]).unwrap(),
            [Algorithm::EdDSA, Algorithm::RS256]
        );
    }

    #[tokio::test]
    async fn an_ignored_clock_reads_the_times_without_enforcing_them() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let expired = token(
            &key,
            json!({}),
            &claims(json!({"iat": NOW - 7200, "nbf": NOW - 7200, "exp": NOW - 3600})),
        );
        let verified = issuers(&key)
            .verify(&expired, Clock::Ignored)
            .await
            .unwrap();
        assert_eq!(check_times(verified.times, NOW, 30), Err(JwtError::Expired));
        assert_eq!(check_times(verified.times, NOW - 3600, 0), Ok(()));
    }

    #[test]
    fn fractional_dates_are_read_and_odd_ones_refused() {
        let claims = json!({"exp": 1.9e9, "nbf": 1_899_999_999.5, "iat": f64::MAX})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(numeric_date(&claims, "exp"), Ok(Some(1_900_000_000)));
        assert_eq!(numeric_date(&claims, "nbf"), Ok(Some(1_899_999_999)));
        assert_eq!(
            numeric_date(&claims, "iat"),
            Err(JwtError::MalformedClaim { claim: "iat" })
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_without_a_panic(header: Vec<u8>, payload: Vec<u8>, raw: String) {
            let token = format!(
                "{}.{}.sig",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(&payload)
            );
            for candidate in [token.as_str(), raw.as_str()] {
                if let Ok(unverified) = Unverified::parse(candidate) {
                    let _ = unverified.issuer();
                }
            }
        }
    }
}
