//! Person authentication: the caller's `authorization: Bearer <token>` is a
//! token of a trusted user-token issuer (`[[user_issuers]]`), checked for
//! size, header, issuer, algorithm allow-list, key, signature, audience and
//! time claims. The person is the token's `iss` and `sub`.

use agentsec_common::error::ApiError;
use std::sync::Arc;

use agentsec_common::oauth_http::printable;
use agentsec_common::remote_jwks::{self, JwksError, RemoteJwks};
use agentsec_common::verified::{self, VerifiedTokens};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::config::UserIssuerConfig;

/// Largest person token accepted.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// common.proto: a person subject is 1-256 chars.
const MAX_SUBJECT_CHARS: usize = 256;

/// A verified person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    /// The token's `tenant` claim, when it has one.
    pub tenant: Option<String>,
}

struct UserIssuer {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    keys: RemoteJwks,
}

/// The trusted user-token issuers.
pub struct UserIssuers {
    issuers: Vec<UserIssuer>,
    leeway_secs: u64,
    /// Tokens already verified, for no longer than the shortest key-set
    /// cache lifetime of the issuers.
    verified: VerifiedTokens<PersonToken>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Unverified {
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Verified {
    sub: String,
    exp: f64,
    #[serde(default)]
    iat: Option<f64>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    scope: Option<serde_json::Value>,
    #[serde(default)]
    may_act: Option<serde_json::Value>,
}

/// A verified person token, with what an exchange needs of it.
#[derive(Debug, Clone)]
pub struct PersonToken {
    pub person: Person,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
    /// Its `scope` claim (space-delimited); `None` when it has none, and
    /// then it does not narrow what may be delegated.
    pub scopes: Option<Vec<String>>,
    /// Its `may_act` claim (RFC 8693 §4.4), as given.
    pub may_act: Option<serde_json::Value>,
}

fn unauthenticated(reason: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated {
        reason: reason.into(),
    }
}

fn part(token: &str, index: usize) -> Result<Vec<u8>, ApiError> {
    token
        .split('.')
        .nth(index)
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .ok_or_else(|| unauthenticated("the person token is not a well-formed JWT"))
}

/// What a token says about itself before any check: the payload's `iss`
/// (to choose the verifier).
pub struct Unchecked {
    pub iss: String,
}

/// Reads [`Unchecked`] from a token; UNAUTHENTICATED when it is not a JWT.
pub fn peek(token: &str) -> Result<Unchecked, ApiError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(unauthenticated(format!(
            "the bearer token is larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    if token.split('.').count() != 3 {
        return Err(unauthenticated("the bearer token is not a well-formed JWT"));
    }
    let _header: Header = serde_json::from_slice(&part(token, 0)?)
        .map_err(|_| unauthenticated("the bearer token header is malformed"))?;
    let unverified: Unverified = serde_json::from_slice(&part(token, 1)?)
        .map_err(|_| unauthenticated("the bearer token payload is malformed"))?;
    let iss = match unverified.iss {
        Some(serde_json::Value::String(iss)) => iss,
        _ => return Err(unauthenticated("the bearer token has no string `iss`")),
    };
    Ok(Unchecked { iss })
}

impl UserIssuers {
    /// The issuers of `[[user_issuers]]` (already validated with the
    /// config; errors here name the key as well).
    pub fn new(configs: &[UserIssuerConfig], leeway_secs: u64) -> Result<Self, String> {
        let mut issuers = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            let keys = match (&config.jwks, &config.jwks_uri) {
                (Some(json), _) => RemoteJwks::inline(json)
                    .map_err(|err| format!("user_issuers[{index}].jwks {err}"))?,
                (None, Some(uri)) => RemoteJwks::remote(uri, config.jwks_cache())
                    .map_err(|err| format!("user_issuers[{index}].jwks_uri {err}"))?,
                (None, None) => {
                    return Err(format!(
                        "user_issuers[{index}].jwks_uri is required when `jwks` is not set"
                    ))
                }
            };
            let algorithms = config
                .algorithms
                .iter()
                .map(|alg| {
                    alg.parse::<Algorithm>()
                        .ok()
                        .filter(|_| remote_jwks::SUPPORTED_ALGORITHMS.contains(&alg.as_str()))
                        .ok_or_else(|| {
                            format!("user_issuers[{index}].algorithms: `{alg}` is not supported")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            issuers.push(UserIssuer {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                algorithms,
                keys,
            });
        }
        let max_age = configs
            .iter()
            .map(UserIssuerConfig::jwks_cache)
            .min()
            .unwrap_or_default();
        Ok(Self {
            issuers,
            leeway_secs,
            verified: VerifiedTokens::new(max_age),
        })
    }

    /// Verifies a person token; every failure is UNAUTHENTICATED (the
    /// message never echoes the token).
    pub async fn verify(&self, token: &str, now: i64) -> Result<Person, ApiError> {
        Ok(self.verify_token(token, now).await?.person)
    }

    /// As [`Self::verify`], with the claims an exchange uses.
    pub async fn verify_token(&self, token: &str, now: i64) -> Result<PersonToken, ApiError> {
        let digest = verified::digest(token);
        if let Some(known) = self.verified.get(&digest) {
            // Valid when verified; only its expiry can have passed since.
            return if now <= known.expires_at.saturating_add(self.leeway_secs as i64) {
                Ok(known.as_ref().clone())
            } else {
                Err(unauthenticated("the person token has expired"))
            };
        }
        let verified = self.check_token(token, now).await?;
        self.verified.insert(digest, Arc::new(verified.clone()));
        Ok(verified)
    }

    async fn check_token(&self, token: &str, now: i64) -> Result<PersonToken, ApiError> {
        if self.issuers.is_empty() {
            return Err(unauthenticated(
                "no user-token issuer is configured on this server",
            ));
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthenticated(format!(
                "the person token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        if token.split('.').count() != 3 {
            return Err(unauthenticated("the person token is not a well-formed JWT"));
        }
        let header: Header = serde_json::from_slice(&part(token, 0)?)
            .map_err(|_| unauthenticated("the person token header is malformed"))?;
        let unverified: Unverified = serde_json::from_slice(&part(token, 1)?)
            .map_err(|_| unauthenticated("the person token payload is malformed"))?;
        let iss = match unverified.iss {
            Some(serde_json::Value::String(iss)) => iss,
            _ => return Err(unauthenticated("the person token has no string `iss`")),
        };
        let trusted = self
            .issuers
            .iter()
            .find(|trusted| trusted.issuer == iss)
            .ok_or_else(|| {
                unauthenticated("the person token's `iss` is not a trusted user-token issuer")
            })?;
        if header.crit.is_some() {
            return Err(unauthenticated(
                "the person token header has a `crit` parameter, which is not supported",
            ));
        }
        // The allow-list decides first: `none` and HMAC never pass.
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| trusted.algorithms.contains(alg))
            .ok_or_else(|| {
                unauthenticated(format!(
                    "the person token's `alg` `{}` is not accepted from its issuer",
                    printable(&header.alg)
                ))
            })?;
        let kid = header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or_else(|| unauthenticated("the person token has no `kid` header"))?;
        let jwk = trusted.keys.key(&kid).await.map_err(|err| match err {
            JwksError::Unavailable => ApiError::Unavailable {
                what: "the keys of the person token's issuer".to_owned(),
            },
            JwksError::UnknownKid { .. } => {
                unauthenticated("the issuer publishes no key with the person token's `kid`")
            }
        })?;
        let key = remote_jwks::decoding_key(&jwk, alg)
            .map_err(|err| unauthenticated(format!("the person token's key: {err}")))?;

        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_issuer(&[trusted.issuer.as_str()]);
        validation.set_audience(&[trusted.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        let verified = jsonwebtoken::decode::<Verified>(token, &key, &validation)
            .map_err(describe)?
            .claims;
        if verified
            .iat
            .is_some_and(|iat| iat > (now + self.leeway_secs as i64) as f64)
        {
            return Err(unauthenticated("the person token's `iat` is in the future"));
        }
        if verified.sub.is_empty() || verified.sub.chars().count() > MAX_SUBJECT_CHARS {
            return Err(unauthenticated(format!(
                "the person token's `sub` must be 1-{MAX_SUBJECT_CHARS} chars"
            )));
        }
        if let Some(tenant) = &verified.tenant {
            if !crate::config::is_tenant(tenant) {
                return Err(unauthenticated(
                    "the person token's `tenant` is not a valid tenant",
                ));
            }
        }
        let scopes = match verified.scope {
            None => None,
            Some(serde_json::Value::String(scope)) => Some(
                scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(_) => {
                return Err(unauthenticated(
                    "the person token's `scope` is not a space-delimited string",
                ))
            }
        };
        Ok(PersonToken {
            person: Person {
                issuer: iss,
                subject: verified.sub,
                tenant: verified.tenant,
            },
            expires_at: verified.exp as i64,
            scopes,
            may_act: verified.may_act,
        })
    }
}

fn describe(err: jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    unauthenticated(match err.kind() {
        ErrorKind::ExpiredSignature => "the person token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the person token is not valid yet (`nbf`)".to_owned(),
        ErrorKind::InvalidSignature => "the person token's signature is invalid".to_owned(),
        ErrorKind::InvalidAudience => "the person token is not for this service (`aud`)".to_owned(),
        ErrorKind::InvalidIssuer => "the person token's `iss` is not trusted".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => {
            format!("the person token has no `{}`", printable(claim))
        }
        _ => "the person token is invalid".to_owned(),
    })
}

#[cfg(test)]
mod untrusted_input {
    use base64::Engine as _;

    use super::*;

    proptest::proptest! {
        #[test]
        fn any_bearer_is_read_or_refused_as_unauthenticated(token: String) {
            if let Err(err) = peek(&token) {
                proptest::prop_assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unauthenticated);
            }
        }

        #[test]
        fn any_segments_are_read_or_refused_as_unauthenticated(
            header: Vec<u8>,
            payload: Vec<u8>,
            signature: Vec<u8>,
        ) {
            let encode = |part: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(part);
            let token = format!("{}.{}.{}", encode(&header), encode(&payload), encode(&signature));
            if let Err(err) = peek(&token) {
                proptest::prop_assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unauthenticated);
            }
        }
    }
}
