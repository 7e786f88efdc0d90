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
use agentsec_common::jwt::{
    self, AudienceRule, Clock, JwtError, Rules, Times, TokenType, TrustedIssuer, TrustedIssuers,
    Verified,
};
use agentsec_common::tls::ClientTls;
use agentsec_common::verified::{self, VerifiedTokens};
use agentsec_proto::common::v1::{Actor, ActorChain, Principal};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::config::{Config, DEFAULT_TOKEN_ALGORITHMS};
use crate::domain::engine::request::{is_agent_id, is_tenant, MAX_ACTORS, MAX_PERSON_SUBJECT};

/// policy.proto: CheckTokenRequest.token is at most 8 KiB.
pub const MAX_TOKEN_BYTES: usize = jwt::MAX_TOKEN_BYTES;

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
    /// The time claims, for [`jwt::check_times`].
    pub fn times(&self) -> Times {
        Times {
            expires_at: self.expires_at,
            not_before: self.not_before,
            issued_at: (self.issued_at != 0).then_some(self.issued_at),
        }
    }

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

/// Verifies CheckToken's tokens against the trusted issuers.
pub struct TokenVerifier {
    issuers: TrustedIssuers,
    leeway_secs: u64,
    /// Tokens whose signature already held, by digest: a token presented
    /// again (a gateway asks per request) is only checked for time.
    verified: VerifiedTokens<VerifiedToken>,
}

/// The claims a decision reads beyond the registered ones.
#[derive(Deserialize)]
struct Claims {
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

fn refused(err: JwtError) -> ApiError {
    match err {
        JwtError::KeysUnavailable => ApiError::Unavailable {
            what: "the key set of the token's issuer (tokens cannot be verified)".to_owned(),
        },
        err => unauthenticated(err.about("the token")),
    }
}

impl TokenVerifier {
    /// The configured issuers; when none is listed, identity-svc
    /// (`admin.issuer` / `admin.jwks_uri`) and, with
    /// `revocations.exchange_endpoint`, exchange-svc at that URL (its
    /// issuer, keys at `/.well-known/jwks.json`). Every issuer's tokens are
    /// access tokens (`typ` `at+jwt`, RFC 9068 §4); the audience is
    /// compared with the request's, which makes a mismatch a DENY decision
    /// (policy.proto), not an error.
    ///
    /// Every key set is fetched with `tls` (`[tls.client]`): the issuers
    /// are AgentSec's own services or issuers the operator lists.
    pub fn new(config: &Config, tls: &Arc<ClientTls>) -> Result<Self, String> {
        let ttl = Duration::from_secs(config.admin.jwks_cache_ttl_secs);
        let leeway_secs = config.admin.leeway_secs;
        let rules = |issuer: &str, algorithms: Vec<Algorithm>| Rules {
            issuer: issuer.to_owned(),
            algorithms,
            token_type: TokenType::AccessToken,
            audience: AudienceRule::Any,
            subject: None,
            leeway_secs,
        };
        let mut issuers = Vec::new();
        if config.token_issuers.is_empty() {
            let defaults: Vec<String> = DEFAULT_TOKEN_ALGORITHMS
                .iter()
                .map(|alg| (*alg).to_owned())
                .collect();
            if let (Some(uri), Some(issuer)) = (&config.admin.jwks_uri, &config.admin.issuer) {
                issuers.push(TrustedIssuer {
                    rules: rules(issuer, jwt::algorithms(&defaults)?),
                    keys: jwt::key_set(None, Some(uri), ttl, tls)
                        .map_err(|err| format!("admin.{err}"))?,
                });
            }
            // Told where exchange-svc is, policy-svc trusts the delegated
            // tokens it issues there (its issuer is the URL it serves at).
            if let Some(endpoint) = &config.revocations.exchange_endpoint {
                let issuer = endpoint.trim_end_matches('/');
                let uri = format!("{issuer}/.well-known/jwks.json");
                issuers.push(TrustedIssuer {
                    rules: rules(issuer, jwt::algorithms(&defaults)?),
                    keys: jwt::key_set(None, Some(&uri), ttl, tls)
                        .map_err(|err| format!("revocations.exchange_endpoint: {err}"))?,
                });
            }
        }
        for (index, entry) in config.token_issuers.iter().enumerate() {
            let key = |err: String| format!("token_issuers[{index}].{err}");
            issuers.push(TrustedIssuer {
                rules: rules(
                    &entry.issuer,
                    jwt::algorithms(&entry.algorithms)
                        .map_err(|err| key(format!("algorithms: {err}")))?,
                ),
                keys: jwt::key_set(entry.jwks.as_deref(), entry.jwks_uri.as_deref(), ttl, tls)
                    .map_err(key)?,
            });
        }
        Ok(Self {
            issuers: TrustedIssuers::new(issuers),
            leeway_secs,
            // A remembered signature vouches no longer than the key set it
            // was checked against is kept.
            verified: VerifiedTokens::new(ttl),
        })
    }

    pub fn is_configured(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Verifies `token` and derives its principal. Every failure is
    /// UNAUTHENTICATED, except an unreachable key set (UNAVAILABLE).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let digest = verified::digest(token);
        if let Some(known) = self.verified.get(&digest) {
            jwt::check_times(known.times(), now, self.leeway_secs).map_err(refused)?;
            return Ok(VerifiedToken::clone(&known));
        }
        let verified = self
            .issuers
            .verify(token, Clock::At(now))
            .await
            .map_err(refused)?;
        let verified = derive(verified)?;
        self.verified.insert(digest, Arc::new(verified.clone()));
        Ok(verified)
    }
}

/// The principal a verified token stands for.
fn derive(verified: Verified) -> Result<VerifiedToken, ApiError> {
    let invalid = |why: String| unauthenticated(format!("the token is not valid: {why}"));
    let claims: Claims = verified
        .claims_as()
        .map_err(|_| invalid("a claim has the wrong type".to_owned()))?;
    let Verified {
        issuer: iss,
        subject: sub,
        audiences,
        times,
        ..
    } = verified;
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
            None => iss.clone(),
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
        if !is_agent_id(&sub) {
            return Err(invalid("`sub` is not an agent id".to_owned()));
        }
        actors.push(Actor {
            agent_id: sub.clone(),
            issuer: iss.clone(),
        });
        String::new()
    } else {
        // A delegated token: `sub` is the person.
        if sub.is_empty() || sub.chars().count() > MAX_PERSON_SUBJECT {
            return Err(invalid(format!(
                "`sub` must be 1-{MAX_PERSON_SUBJECT} chars"
            )));
        }
        sub.clone()
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
        expires_at: times.expires_at,
        issued_at: times.issued_at.or(times.not_before).unwrap_or(0),
        not_before: times.not_before,
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
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;

    use super::*;
    use crate::config::TokenIssuerConfig;

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
        TokenVerifier::new(&config, &ClientTls::public_roots().unwrap()).unwrap()
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
        assert!(jwt::check_times(remembered.times(), now + 60, 0).is_ok());
        assert_eq!(
            jwt::check_times(remembered.times(), now + 61, 0),
            Err(JwtError::Expired)
        );
        assert!(jwt::check_times(remembered.times(), now - 1, 0).is_err());
    }

    #[test]
    fn unset_issuers_trust_identity_svc_only_when_configured() {
        let mut config = Config::default();
        assert!(
            !TokenVerifier::new(&config, &ClientTls::public_roots().unwrap())
                .unwrap()
                .is_configured()
        );
        config.admin.jwks_uri = Some("http://127.0.0.1:7401/.well-known/jwks.json".into());
        config.admin.issuer = Some("http://127.0.0.1:7401".into());
        let verifier = TokenVerifier::new(&config, &ClientTls::public_roots().unwrap()).unwrap();
        let rules: Vec<&Rules> = verifier.issuers.rules().collect();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].issuer, "http://127.0.0.1:7401");
        assert_eq!(rules[0].algorithms, [Algorithm::EdDSA, Algorithm::ES256]);
        assert_eq!(rules[0].token_type, TokenType::AccessToken);

        // Told where exchange-svc is, its delegated tokens are trusted too.
        config.revocations.exchange_endpoint = Some("http://exchange-svc:7403/".into());
        let verifier = TokenVerifier::new(&config, &ClientTls::public_roots().unwrap()).unwrap();
        let issuers: Vec<&str> = verifier
            .issuers
            .rules()
            .map(|rules| rules.issuer.as_str())
            .collect();
        assert_eq!(
            issuers,
            ["http://127.0.0.1:7401", "http://exchange-svc:7403"]
        );

        // Listed issuers are exactly the trusted ones.
        config.token_issuers.push(TokenIssuerConfig {
            issuer: "https://other.example".into(),
            jwks_uri: Some("https://other.example/jwks".into()),
            jwks: None,
            algorithms: vec!["EdDSA".into()],
        });
        let verifier = TokenVerifier::new(&config, &ClientTls::public_roots().unwrap()).unwrap();
        let issuers: Vec<&str> = verifier
            .issuers
            .rules()
            .map(|rules| rules.issuer.as_str())
            .collect();
        assert_eq!(issuers, ["https://other.example"]);
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
