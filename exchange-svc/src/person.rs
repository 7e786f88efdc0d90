//! Person authentication: the caller's `authorization: Bearer <token>` is a
//! token of a trusted user-token issuer (`[[user_issuers]]`), verified by
//! the shared verifier (`agentsec_common::jwt`) for the issuer's audience;
//! any `typ` (an OpenID Connect ID token is fine). The person is the
//! token's `iss` and `sub`.

use std::sync::Arc;

use agentsec_common::error::ApiError;
use agentsec_common::jwt::{
    self, AudienceRule, Clock, JwtError, Rules, Times, TokenType, TrustedIssuer, TrustedIssuers,
    Unverified,
};
use agentsec_common::tls::ClientTls;
use agentsec_common::verified::{self, VerifiedTokens};
use serde::Deserialize;

use crate::config::UserIssuerConfig;
use crate::domain::caller::Person;

/// common.proto: a person subject is 1-256 chars.
const MAX_SUBJECT_CHARS: usize = 256;

/// The trusted user-token issuers.
pub struct UserIssuers {
    issuers: TrustedIssuers,
    leeway_secs: u64,
    /// Tokens already verified, for no longer than the shortest key-set
    /// cache lifetime of the issuers.
    verified: VerifiedTokens<PersonToken>,
}

/// The claims an exchange reads beyond the registered ones.
#[derive(Deserialize)]
struct Claims {
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
    times: Times,
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

fn refused(err: JwtError) -> ApiError {
    match err {
        JwtError::KeysUnavailable => ApiError::Unavailable {
            what: "the keys of the person token's issuer".to_owned(),
        },
        JwtError::UntrustedIssuer => {
            unauthenticated("the person token's `iss` is not a trusted user-token issuer")
        }
        err => unauthenticated(err.about("the person token")),
    }
}

/// What a token says about itself before any check: the payload's `iss`
/// (to choose the verifier).
pub struct Unchecked {
    pub iss: String,
}

/// Reads [`Unchecked`] from a token; UNAUTHENTICATED when it is not a JWT.
pub fn peek(token: &str) -> Result<Unchecked, ApiError> {
    let unverified =
        Unverified::parse(token).map_err(|err| unauthenticated(err.about("the bearer token")))?;
    let iss = unverified
        .issuer()
        .map_err(|_| unauthenticated("the bearer token has no string `iss`"))?;
    Ok(Unchecked {
        iss: iss.to_owned(),
    })
}

impl UserIssuers {
    /// The issuers of `[[user_issuers]]` (already validated with the
    /// config; errors here name the key as well).
    pub fn new(configs: &[UserIssuerConfig], leeway_secs: u64) -> Result<Self, String> {
        let mut issuers = Vec::with_capacity(configs.len());
        // People's identity providers publish their keys under public
        // certificates.
        let tls = ClientTls::public_roots().map_err(|err| format!("user_issuers: {err}"))?;
        for (index, config) in configs.iter().enumerate() {
            let key = |err: String| format!("user_issuers[{index}].{err}");
            issuers.push(TrustedIssuer {
                rules: Rules {
                    issuer: config.issuer.clone(),
                    algorithms: jwt::algorithms(&config.algorithms)
                        .map_err(|err| key(format!("algorithms: {err}")))?,
                    token_type: TokenType::Any,
                    audience: AudienceRule::OneOf(vec![config.audience.clone()]),
                    subject: None,
                    leeway_secs,
                },
                keys: jwt::key_set(
                    config.jwks.as_deref(),
                    config.jwks_uri.as_deref(),
                    config.jwks_cache(),
                    &tls,
                )
                .map_err(key)?,
            });
        }
        let max_age = configs
            .iter()
            .map(UserIssuerConfig::jwks_cache)
            .min()
            .unwrap_or_default();
        Ok(Self {
            issuers: TrustedIssuers::new(issuers),
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
            // Valid when verified; only its times can have run out since.
            jwt::check_times(known.times, now, self.leeway_secs).map_err(refused)?;
            return Ok(known.as_ref().clone());
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
        let verified = self
            .issuers
            .verify(token, Clock::At(now))
            .await
            .map_err(refused)?;
        let claims: Claims = verified
            .claims_as()
            .map_err(|_| unauthenticated("the person token's `tenant` is not a string"))?;
        if verified.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(unauthenticated(format!(
                "the person token's `sub` must be 1-{MAX_SUBJECT_CHARS} chars"
            )));
        }
        if let Some(tenant) = &claims.tenant {
            if !crate::config::is_tenant(tenant) {
                return Err(unauthenticated(
                    "the person token's `tenant` is not a valid tenant",
                ));
            }
        }
        let scopes = match claims.scope {
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
                issuer: verified.issuer,
                subject: verified.subject,
                tenant: claims.tenant,
            },
            expires_at: verified.times.expires_at,
            times: verified.times,
            scopes,
            may_act: claims.may_act,
        })
    }
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
