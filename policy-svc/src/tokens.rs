//! Verification of the bearer tokens CheckToken decides on: a JWT of a
//! trusted issuer (`[[token_issuers]]`, or identity-svc by default; see
//! `config`), verified offline against the issuer's key set, from which the
//! principal is derived.
//!
//! Verification here is offline (signature, issuer, time claims); whether
//! the token's owners still honour it (revocation, suspended agents,
//! deleted credentials, revoked grants) is the revocation view's answer
//! (see `revocations`), asked by every token decision. The token's scope
//! reaches conditions as `context.token_scope`; the agent's registry
//! attributes come from the same view.

use std::time::Duration;

use std::sync::Arc;

use agentsec_common::error::ApiError;
use agentsec_common::remote_jwks::{self, JwksError, RemoteJwks};
use agentsec_common::verified::{self, VerifiedTokens};
use agentsec_proto::common::v1::{Actor, ActorChain, Principal};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::config::{Config, TokenIssuerConfig, DEFAULT_TOKEN_ALGORITHMS};
use crate::engine::request::{is_agent_id, is_tenant, MAX_ACTORS, MAX_PERSON_SUBJECT};

/// policy.proto: CheckTokenRequest.token is at most 8 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A token's claims after verification, reduced to what a decision needs.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The principal: tenant, acting agent, person, actor chain.
    pub principal: Principal,
    /// Every `aud` value of the token.
    pub audiences: Vec<String>,
    /// Seconds since the epoch at which the token expires.
    pub expires_at: i64,
    /// `iat` (or `nbf`, else 0 when neither is present).
    pub issued_at: i64,
    /// `nbf`, when present.
    pub not_before: Option<i64>,
    pub jti: Option<String>,
    /// identity-svc's `cred`: the credential the token was obtained with.
    pub credential: Option<String>,
    /// identity-svc's `gen`: the agent's token generation at issuance.
    pub generation: Option<i64>,
    /// exchange-svc's `grant_id`: the grant behind a delegated token.
    pub grant_id: Option<String>,
    /// The `scope` values (RFC 9068 §2.2.3: space-delimited).
    pub scopes: Vec<String>,
}

impl VerifiedToken {
    pub fn is_for(&self, audience: &str) -> bool {
        self.audiences.iter().any(|aud| aud == audience)
    }

    /// The token generation of `agent_id` the token was issued in, when
    /// it says (an agent's own token carries its `gen`).
    pub fn generation_of(&self, agent_id: &str) -> Option<i64> {
        let own = self.principal.person_subject.is_empty() && self.principal.agent_id == agent_id;
        self.generation.filter(|_| own)
    }
}

struct TrustedIssuer {
    issuer: String,
    keys: RemoteJwks,
    algorithms: Vec<Algorithm>,
}

/// Verifies CheckToken's tokens against the trusted issuers.
pub struct TokenVerifier {
    issuers: Vec<TrustedIssuer>,
    leeway_secs: u64,
    /// Tokens whose signature already held, by digest: a token presented
    /// again (a gateway asks per request) is only checked for time.
    verified: VerifiedTokens<VerifiedToken>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    #[serde(default)]
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: serde_json::Value,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    cred: Option<String>,
    #[serde(default)]
    gen: Option<i64>,
    #[serde(default)]
    grant_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    act: Option<serde_json::Value>,
}

fn unauthenticated(reason: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated {
        reason: reason.into(),
    }
}

fn algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    names
        .iter()
        .map(|name| {
            name.parse::<Algorithm>()
                .map_err(|_| format!("unknown algorithm `{name}`"))
        })
        .collect()
}

impl TokenVerifier {
    /// The configured issuers, or identity-svc (`admin.issuer` /
    /// `admin.jwks_uri`) when none is listed.
    pub fn new(config: &Config) -> Result<Self, String> {
        let ttl = Duration::from_secs(config.admin.jwks_cache_ttl_secs);
        let mut issuers = Vec::new();
        if config.token_issuers.is_empty() {
            if let (Some(uri), Some(issuer)) = (&config.admin.jwks_uri, &config.admin.issuer) {
                let defaults: Vec<String> = DEFAULT_TOKEN_ALGORITHMS
                    .iter()
                    .map(|alg| (*alg).to_owned())
                    .collect();
                issuers.push(TrustedIssuer {
                    issuer: issuer.clone(),
                    keys: RemoteJwks::remote(uri, ttl)
                        .map_err(|err| format!("admin.jwks_uri {err}"))?,
                    algorithms: algorithms(&defaults)?,
                });
            }
        }
        for (index, entry) in config.token_issuers.iter().enumerate() {
            issuers.push(Self::issuer(index, entry, ttl)?);
        }
        Ok(Self {
            issuers,
            leeway_secs: config.admin.leeway_secs,
            // A remembered signature vouches no longer than the key set it
            // was checked against is kept.
            verified: VerifiedTokens::new(ttl),
        })
    }

    fn issuer(
        index: usize,
        entry: &TokenIssuerConfig,
        ttl: Duration,
    ) -> Result<TrustedIssuer, String> {
        let keys = match (&entry.jwks_uri, &entry.jwks) {
            (Some(uri), _) => RemoteJwks::remote(uri, ttl)
                .map_err(|err| format!("token_issuers[{index}].jwks_uri {err}"))?,
            (None, Some(jwks)) => RemoteJwks::inline(jwks)
                .map_err(|err| format!("token_issuers[{index}].jwks {err}"))?,
            (None, None) => {
                return Err(format!(
                    "token_issuers[{index}].jwks_uri: one of jwks_uri and jwks is required"
                ))
            }
        };
        Ok(TrustedIssuer {
            issuer: entry.issuer.clone(),
            keys,
            algorithms: algorithms(&entry.algorithms)
                .map_err(|err| format!("token_issuers[{index}].algorithms: {err}"))?,
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Verifies `token` (already bounded in size by the caller) and derives
    /// its principal. Every failure is UNAUTHENTICATED, except an
    /// unreachable key set (UNAVAILABLE).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let digest = verified::digest(token);
        if let Some(known) = self.verified.get(&digest) {
            self.check_times(&known, chrono::Utc::now().timestamp())?;
            return Ok(VerifiedToken::clone(&known));
        }
        let verified = self.verify_signed(token).await?;
        self.verified.insert(digest, Arc::new(verified.clone()));
        Ok(verified)
    }

    /// `exp` and `nbf` of a token verified earlier, with the same leeway.
    fn check_times(&self, token: &VerifiedToken, now: i64) -> Result<(), ApiError> {
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(i64::MAX);
        let invalid = |why: &str| unauthenticated(format!("the token is not valid: {why}"));
        if now > token.expires_at.saturating_add(leeway) {
            return Err(invalid("expired"));
        }
        if token
            .not_before
            .is_some_and(|nbf| now < nbf.saturating_sub(leeway))
        {
            return Err(invalid("not yet valid"));
        }
        Ok(())
    }

    async fn verify_signed(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let invalid = |why: &str| unauthenticated(format!("the token is not valid: {why}"));
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, _signature] = parts.as_slice() else {
            return Err(invalid("not a JWS compact token"));
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("malformed header"))?;
        // The issuer is read before verification only to pick its keys;
        // the signature check below covers it.
        let unverified: UnverifiedClaims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| invalid("malformed claims"))?;
        let issuer = unverified
            .iss
            .and_then(|iss| self.issuers.iter().find(|trusted| trusted.issuer == iss))
            .ok_or_else(|| invalid("its issuer is not trusted"))?;
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| issuer.algorithms.contains(alg))
            .ok_or_else(|| invalid("its algorithm is not accepted from this issuer"))?;
        let kid = header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or_else(|| invalid("no `kid` in the header"))?;
        let jwk = issuer.keys.key(&kid).await.map_err(|err| match err {
            JwksError::Unavailable => ApiError::Unavailable {
                what: format!(
                    "the key set of issuer `{}` (tokens cannot be verified)",
                    issuer.issuer
                ),
            },
            JwksError::UnknownKid { .. } => invalid("signed with an unknown key"),
        })?;
        let key = remote_jwks::decoding_key(&jwk, alg)
            .map_err(|_| invalid("the key does not fit the algorithm"))?;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.set_issuer(&[issuer.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        // The audience is compared with the request's, which makes a
        // mismatch a DENY decision (policy.proto), not an error.
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::ExpiredSignature => invalid("expired"),
                    ErrorKind::ImmatureSignature => invalid("not yet valid"),
                    ErrorKind::InvalidSignature => invalid("bad signature"),
                    _ => invalid("malformed or badly signed"),
                }
            })?
            .claims;
        derive(claims)
    }
}

/// The principal a verified token stands for.
fn derive(claims: Claims) -> Result<VerifiedToken, ApiError> {
    let invalid = |why: String| unauthenticated(format!("the token is not valid: {why}"));
    let audiences = match &claims.aud {
        serde_json::Value::String(aud) => vec![aud.clone()],
        serde_json::Value::Array(auds) => auds
            .iter()
            .filter_map(|aud| aud.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let tenant = claims
        .tenant
        .ok_or_else(|| invalid("no `tenant` claim".to_owned()))?;
    if !is_tenant(&tenant) {
        return Err(invalid("the `tenant` claim is not a tenant id".to_owned()));
    }
    // Outermost first: the top-level `act` is the acting agent.
    let mut actors = Vec::new();
    let mut next = claims.act.as_ref();
    while let Some(act) = next {
        if actors.len() == MAX_ACTORS {
            return Err(invalid(format!(
                "the `act` chain is deeper than {MAX_ACTORS}"
            )));
        }
        let agent_id = act
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .filter(|sub| is_agent_id(sub))
            .ok_or_else(|| invalid("an `act.sub` is not an agent id".to_owned()))?;
        let issuer = match act.get("iss") {
            None => claims.iss.clone(),
            Some(serde_json::Value::String(iss)) if iss.len() <= 256 => iss.clone(),
            Some(_) => return Err(invalid("an `act.iss` is malformed".to_owned())),
        };
        actors.push(Actor {
            agent_id: agent_id.to_owned(),
            issuer,
        });
        next = act.get("act");
    }
    let person_subject = if actors.is_empty() {
        // An agent's own token: `sub` is the agent.
        if !is_agent_id(&claims.sub) {
            return Err(invalid("`sub` is not an agent id".to_owned()));
        }
        actors.push(Actor {
            agent_id: claims.sub.clone(),
            issuer: claims.iss.clone(),
        });
        String::new()
    } else {
        // A delegated token: `sub` is the person.
        if claims.sub.is_empty() || claims.sub.chars().count() > MAX_PERSON_SUBJECT {
            return Err(invalid(format!(
                "`sub` must be 1-{MAX_PERSON_SUBJECT} chars"
            )));
        }
        claims.sub.clone()
    };
    let agent_id = actors
        .first()
        .map(|actor| actor.agent_id.clone())
        .unwrap_or_default();
    Ok(VerifiedToken {
        principal: Principal {
            tenant,
            agent_id,
            person_subject,
            actor_chain: Some(ActorChain { actors }),
            ..Principal::default()
        },
        audiences,
        expires_at: claims.exp,
        issued_at: claims.iat.or(claims.nbf).unwrap_or(0),
        not_before: claims.nbf,
        jti: claims.jti.filter(|jti| !jti.is_empty()),
        credential: claims.cred.filter(|cred| !cred.is_empty()),
        generation: claims.gen,
        grant_id: claims.grant_id.filter(|grant| !grant.is_empty()),
        scopes: claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "http://exchange.test";
    const AGENT: &str = "agt_01JTESTAGENT0000000000000A";
    const OTHER: &str = "agt_01JTESTAGENT0000000000000B";

    fn verifier(key: &SigningKey) -> TokenVerifier {
        let jwks = json!({ "keys": [key.public_jwk()] }).to_string();
        let mut config = Config::default();
        config.token_issuers.push(TokenIssuerConfig {
            issuer: ISSUER.to_owned(),
            jwks_uri: None,
            jwks: Some(jwks),
            algorithms: vec!["EdDSA".to_owned(), "ES256".to_owned()],
        });
        config.admin.leeway_secs = 0;
        TokenVerifier::new(&config).unwrap()
    }

    fn token(key: &SigningKey, claims: serde_json::Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut full = json!({
            "iss": ISSUER, "sub": AGENT, "aud": "mcp:github", "tenant": "acme",
            "iat": now, "nbf": now, "exp": now + 300,
        });
        for (name, value) in claims.as_object().unwrap() {
            full[name] = value.clone();
        }
        key.sign("at+jwt", &full).unwrap()
    }

    #[tokio::test]
    async fn agent_and_delegated_tokens_give_their_principal() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let verifier = verifier(&key);

        let own = verifier.verify(&token(&key, json!({}))).await.unwrap();
        assert_eq!(own.principal.agent_id, AGENT);
        assert_eq!(own.principal.tenant, "acme");
        assert!(own.principal.person_subject.is_empty());
        assert_eq!(own.principal.actor_chain.clone().unwrap().actors.len(), 1);
        assert!(own.scopes.is_empty());
        let scoped = verifier
            .verify(&token(&key, json!({"scope": "repo:read  repo:write"})))
            .await
            .unwrap();
        assert_eq!(scoped.scopes, ["repo:read", "repo:write"]);
        assert!(own.is_for("mcp:github"));
        assert!(!own.is_for("mcp:jira"));

        let delegated = verifier
            .verify(&token(
                &key,
                json!({"sub": "alice@example.com",
                       "act": {"sub": AGENT, "act": {"sub": OTHER, "iss": "http://id.test"}}}),
            ))
            .await
            .unwrap();
        assert_eq!(delegated.principal.person_subject, "alice@example.com");
        assert_eq!(delegated.principal.agent_id, AGENT);
        let actors = delegated.principal.actor_chain.unwrap().actors;
        assert_eq!(actors.len(), 2);
        assert_eq!(actors[0].agent_id, AGENT);
        assert_eq!(actors[0].issuer, ISSUER);
        assert_eq!(actors[1].agent_id, OTHER);
        assert_eq!(actors[1].issuer, "http://id.test");
    }

    #[tokio::test]
    async fn bad_tokens_are_unauthenticated() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
        let verifier = verifier(&key);
        let now = chrono::Utc::now().timestamp();
        let good = token(&key, json!({}));
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        let bad = [
            token(&other, json!({})),
            token(&key, json!({"iss": "http://elsewhere"})),
            token(&key, json!({"exp": now - 10})),
            token(&key, json!({"nbf": now + 600})),
            token(&key, json!({"tenant": null})),
            token(&key, json!({"sub": "not-an-agent"})),
            token(&key, json!({"sub": "alice", "act": {"sub": "nobody"}})),
            tampered,
            "a.b.c".to_owned(),
            "x".to_owned(),
        ];
        for token in bad {
            let err = verifier.verify(&token).await.unwrap_err();
            assert_eq!(
                tonic::Status::from(err).code(),
                tonic::Code::Unauthenticated,
                "{token}"
            );
        }
    }

    #[tokio::test]
    async fn a_remembered_token_is_still_checked_for_time() {
        let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let verifier = verifier(&key);
        let now = chrono::Utc::now().timestamp();
        let token = token(&key, json!({"nbf": now, "exp": now + 60}));
        let first = verifier.verify(&token).await.unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap(), first);
        let remembered = verifier
            .verified
            .get(&verified::digest(&token))
            .expect("remembered after its first verification");
        assert!(verifier.check_times(&remembered, now + 60).is_ok());
        for moment in [now + 61, now - 1] {
            let err = verifier.check_times(&remembered, moment).unwrap_err();
            assert_eq!(
                tonic::Status::from(err).code(),
                tonic::Code::Unauthenticated
            );
        }
    }

    #[test]
    fn unset_issuers_trust_identity_svc_only_when_configured() {
        let mut config = Config::default();
        assert!(!TokenVerifier::new(&config).unwrap().is_configured());
        config.admin.jwks_uri = Some("http://127.0.0.1:7401/.well-known/jwks.json".into());
        config.admin.issuer = Some("http://127.0.0.1:7401".into());
        let verifier = TokenVerifier::new(&config).unwrap();
        assert_eq!(verifier.issuers.len(), 1);
        assert_eq!(verifier.issuers[0].issuer, "http://127.0.0.1:7401");
        assert_eq!(
            verifier.issuers[0].algorithms,
            [Algorithm::EdDSA, Algorithm::ES256]
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tokens_are_refused_as_unauthenticated(
            raw: String,
            header: Vec<u8>,
            payload: Vec<u8>,
        ) {
            let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
            let verifier = verifier(&key);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let segments = format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(&payload)
            );
            for token in [raw, segments] {
                let err = runtime.block_on(verifier.verify(&token)).unwrap_err();
                proptest::prop_assert_eq!(
                    tonic::Status::from(err).code(),
                    tonic::Code::Unauthenticated
                );
            }
        }
    }
}
