//! Verification of an external token (the jwt-bearer grant's `assertion`)
//! against its trusted issuer: size, header, issuer, algorithm allow-list,
//! key, signature and time claims (RFC 7523 §3). The audience is left to
//! the matching of federated credentials.

use agentsec_common::remote_jwks::{self, JwksError, RemoteJwks};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::FederationError;
use crate::oauth::claims::MAX_TOKEN_BYTES;

/// Most `aud` values an external token may carry.
const MAX_AUDIENCES: usize = 16;

/// An issuer from `[[trusted_issuers]]`, ready to verify its tokens.
pub struct TrustedIssuer {
    pub issuer: String,
    pub algorithms: Vec<Algorithm>,
    pub keys: RemoteJwks,
}

/// The claims of a verified external token that the grant uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
}

/// The JOSE header, read as JSON so that `alg: none` or an unknown `alg`
/// gets a precise answer.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The payload before the signature is checked: only `iss`, to find the
/// issuer whose keys decide.
#[derive(Deserialize)]
struct Unverified {
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Verified {
    sub: String,
    aud: Audience,
    #[serde(default)]
    iat: Option<f64>,
}

fn part(token: &str, index: usize) -> Result<Vec<u8>, FederationError> {
    token
        .split('.')
        .nth(index)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .ok_or(FederationError::Malformed)
}

/// Verifies `token` with the trusted issuer named by its `iss`.
pub async fn verify(
    issuers: &[TrustedIssuer],
    token: &str,
    leeway_secs: u64,
    now: i64,
) -> Result<ExternalClaims, FederationError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(FederationError::TooLarge {
            max: MAX_TOKEN_BYTES,
        });
    }
    if token.split('.').count() != 3 {
        return Err(FederationError::Malformed);
    }
    let header: Header =
        serde_json::from_slice(&part(token, 0)?).map_err(|_| FederationError::Malformed)?;
    let unverified: Unverified =
        serde_json::from_slice(&part(token, 1)?).map_err(|_| FederationError::Malformed)?;
    let iss = match unverified.iss {
        Some(serde_json::Value::String(iss)) => iss,
        Some(_) => return Err(FederationError::Malformed),
        None => return Err(FederationError::MissingClaim { claim: "iss" }),
    };
    let trusted = issuers
        .iter()
        .find(|trusted| trusted.issuer == iss)
        .ok_or(FederationError::UntrustedIssuer)?;
    // RFC 7515 §4.1.11: extensions we do not understand must be refused.
    if header.crit.is_some() {
        return Err(FederationError::CriticalHeader);
    }
    // The allow-list decides before anything else is trusted: this refuses
    // `none` and every HMAC algorithm (whose "secret" would be a public key).
    let alg = header
        .alg
        .parse::<Algorithm>()
        .ok()
        .filter(|alg| trusted.algorithms.contains(alg))
        .ok_or_else(|| FederationError::AlgorithmNotAllowed {
            alg: crate::domain::validate::printable(&header.alg),
        })?;
    let kid = header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(FederationError::MissingKid)?;
    let jwk = trusted.keys.key(&kid).await.map_err(|err| match err {
        JwksError::Unavailable => FederationError::KeysUnavailable,
        JwksError::UnknownKid { .. } => FederationError::UnknownKid,
    })?;
    let key = remote_jwks::decoding_key(&jwk, alg).map_err(FederationError::KeyMismatch)?;

    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.set_issuer(&[trusted.issuer.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    // Checked against the federated credentials after matching.
    validation.validate_aud = false;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = leeway_secs;
    let verified = jsonwebtoken::decode::<Verified>(token, &key, &validation)
        .map_err(describe)?
        .claims;
    if verified
        .iat
        .is_some_and(|iat| iat > (now + leeway_secs as i64) as f64)
    {
        return Err(FederationError::IssuedInFuture);
    }
    let aud = match verified.aud {
        Audience::One(one) => vec![one],
        Audience::Many(many) => many,
    };
    if aud.is_empty() || aud.len() > MAX_AUDIENCES {
        return Err(FederationError::Invalid {
            reason: format!("`aud` must hold 1-{MAX_AUDIENCES} values"),
        });
    }
    if verified.sub.is_empty() {
        return Err(FederationError::MissingClaim { claim: "sub" });
    }
    Ok(ExternalClaims {
        iss,
        sub: verified.sub,
        aud,
    })
}

fn describe(err: jsonwebtoken::errors::Error) -> FederationError {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => FederationError::Expired,
        ErrorKind::ImmatureSignature => FederationError::NotYetValid,
        ErrorKind::InvalidSignature => FederationError::BadSignature,
        ErrorKind::MissingRequiredClaim(claim) => FederationError::MissingClaim {
            claim: match claim.as_str() {
                "exp" => "exp",
                "iss" => "iss",
                "sub" => "sub",
                _ => "aud",
            },
        },
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => FederationError::Malformed,
        other => FederationError::Invalid {
            reason: format!("{other:?}").chars().take(80).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://issuer.test";
    const NOW: i64 = 1_900_000_000;

    /// A 2048-bit RSA test key (generated for these tests only).
    const RSA_PRIVATE_PEM: &str = include_str!("testdata/rsa-2048.pem");
    const RSA_N: &str = include_str!("testdata/rsa-2048.n");

    fn jwks_json(keys: &[serde_json::Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn issuer_with(keys: &[serde_json::Value], algorithms: &[Algorithm]) -> Vec<TrustedIssuer> {
        vec![TrustedIssuer {
            issuer: ISSUER.to_owned(),
            algorithms: algorithms.to_vec(),
            keys: RemoteJwks::inline(&jwks_json(keys)).unwrap(),
        }]
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut claims = json!({
            "iss": ISSUER,
            "sub": "system:serviceaccount:agents:planner",
            "aud": ["agentsec", "other"],
            "exp": NOW + 600,
            "iat": NOW,
            "nbf": NOW,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    fn rsa_jwk() -> serde_json::Value {
        json!({"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": RSA_N.trim(), "e": "AQAB"})
    }

    fn rsa_token(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = JwtHeader::new(alg);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    async fn check(
        issuers: &[TrustedIssuer],
        token: &str,
    ) -> Result<ExternalClaims, FederationError> {
        verify(issuers, token, 30, NOW).await
    }

    /// The current time must be NOW for jsonwebtoken's exp/nbf checks: the
    /// claims are made relative to the real clock instead.
    fn live(extra: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = claims(json!({"exp": now + 600, "iat": now, "nbf": now}));
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    async fn check_live(
        issuers: &[TrustedIssuer],
        token: &str,
    ) -> Result<ExternalClaims, FederationError> {
        verify(issuers, token, 30, chrono::Utc::now().timestamp()).await
    }

    #[tokio::test]
    async fn rsa_tokens_verify_like_kubernetes_service_account_tokens() {
        let issuers = issuer_with(&[rsa_jwk()], &[Algorithm::RS256]);
        let token = rsa_token(Algorithm::RS256, "rsa-1", &live(json!({})));
        let verified = check_live(&issuers, &token).await.unwrap();
        assert_eq!(verified.iss, ISSUER);
        assert_eq!(verified.sub, "system:serviceaccount:agents:planner");
        assert_eq!(verified.aud, ["agentsec", "other"]);
        // A single string audience is fine too.
        let token = rsa_token(Algorithm::RS256, "rsa-1", &live(json!({"aud": "agentsec"})));
        assert_eq!(
            check_live(&issuers, &token).await.unwrap().aud,
            ["agentsec"]
        );
    }

    #[tokio::test]
    async fn the_algorithm_must_be_allowed_and_fit_the_key() {
        let ed = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let ed_jwk = serde_json::to_value(ed.public_jwk()).unwrap();
        // EdDSA not in the allow-list.
        let issuers = issuer_with(std::slice::from_ref(&ed_jwk), &[Algorithm::RS256]);
        let token = ed.sign("JWT", &live(json!({}))).unwrap();
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::AlgorithmNotAllowed { .. })
        ));
        // PS256 allowed, but the key is registered for RS256.
        let issuers = issuer_with(&[rsa_jwk()], &[Algorithm::RS256, Algorithm::PS256]);
        let token = rsa_token(Algorithm::PS256, "rsa-1", &live(json!({})));
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::KeyMismatch(_))
        ));
        // `none` and HMAC with the public key as secret.
        let issuers = issuer_with(&[ed_jwk, rsa_jwk()], &[Algorithm::RS256, Algorithm::EdDSA]);
        let none = unsigned(json!({"alg": "none", "kid": ed.kid()}), &live(json!({})));
        assert!(matches!(
            check_live(&issuers, &none).await,
            Err(FederationError::AlgorithmNotAllowed { alg }) if alg == "none"
        ));
        let mut header = JwtHeader::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let secret = EncodingKey::from_secret(RSA_N.trim().as_bytes()).unwrap();
        let forged = jsonwebtoken::encode(&header, &live(json!({})), &secret).unwrap();
        assert!(matches!(
            check_live(&issuers, &forged).await,
            Err(FederationError::AlgorithmNotAllowed { .. })
        ));
    }

    #[tokio::test]
    async fn the_issuer_must_be_trusted_and_the_kid_known() {
        let ed = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let issuers = issuer_with(
            &[serde_json::to_value(ed.public_jwk()).unwrap()],
            &[Algorithm::EdDSA],
        );
        let token = ed
            .sign("JWT", &live(json!({"iss": "https://evil.test"})))
            .unwrap();
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::UntrustedIssuer)
        ));
        let token = ed.sign("JWT", &live(json!({"iss": null}))).unwrap();
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::MissingClaim { claim: "iss" })
        ));
        let token = other.sign("JWT", &live(json!({}))).unwrap();
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::UnknownKid)
        ));
        let no_kid = unsigned(json!({"alg": "EdDSA"}), &live(json!({})));
        assert!(matches!(
            check_live(&issuers, &no_kid).await,
            Err(FederationError::MissingKid)
        ));
    }

    #[tokio::test]
    async fn signature_time_and_shape_are_checked() {
        let ed = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let issuers = issuer_with(
            &[serde_json::to_value(ed.public_jwk()).unwrap()],
            &[Algorithm::EdDSA],
        );
        let now = chrono::Utc::now().timestamp();
        let cases = [
            (json!({"exp": now - 31}), "expired"),
            (json!({"exp": null}), "no exp"),
            (json!({"sub": null}), "no sub"),
            (json!({"aud": null}), "no aud"),
            (json!({"nbf": now + 120}), "not yet valid"),
            (json!({"iat": now + 120}), "issued in the future"),
            (json!({"aud": []}), "empty aud"),
            (json!({"sub": ""}), "empty sub"),
        ];
        for (extra, what) in cases {
            let token = ed.sign("JWT", &live(extra)).unwrap();
            assert!(check_live(&issuers, &token).await.is_err(), "{what}");
        }
        // Within the leeway.
        let token = ed
            .sign(
                "JWT",
                &live(json!({"exp": now - 5, "nbf": now + 5, "iat": now + 5})),
            )
            .unwrap();
        assert!(check_live(&issuers, &token).await.is_ok());

        let token = ed.sign("JWT", &live(json!({}))).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(live(json!({"sub": "system:admin"})).to_string());
        assert!(matches!(
            check_live(&issuers, &parts.join(".")).await,
            Err(FederationError::BadSignature)
        ));
        for malformed in ["", "a.b", "a.b.c.d", "!!.??.", "e30.e30.e30"] {
            assert!(
                check_live(&issuers, malformed).await.is_err(),
                "{malformed}"
            );
        }
        let oversized = format!("{token}{}", "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(
            check_live(&issuers, &oversized).await,
            Err(FederationError::TooLarge { .. })
        ));
        let critical = unsigned(
            json!({"alg": "EdDSA", "kid": ed.kid(), "crit": ["exp"]}),
            &live(json!({})),
        );
        assert!(matches!(
            check_live(&issuers, &critical).await,
            Err(FederationError::CriticalHeader)
        ));
    }

    #[tokio::test]
    async fn the_clock_of_the_iat_check_is_the_given_one() {
        let ed = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let issuers = issuer_with(
            &[serde_json::to_value(ed.public_jwk()).unwrap()],
            &[Algorithm::EdDSA],
        );
        // exp far ahead so that only iat decides against the given NOW.
        let token = ed
            .sign(
                "JWT",
                &claims(json!({"exp": NOW + 10_000_000_000i64, "nbf": null, "iat": NOW + 31})),
            )
            .unwrap();
        assert!(matches!(
            check(&issuers, &token).await,
            Err(FederationError::IssuedInFuture)
        ));
    }
}
