//! Workload identity federation: the jwt-bearer grant (RFC 7523 §2.1) turns
//! a token of a trusted external issuer (Kubernetes service account, SPIFFE
//! JWT-SVID, CI OIDC) into an agent's token, when it matches one of the
//! agent's federated credentials (issuer, subject or subject pattern,
//! audience). Domain layer: called by the token service, reads the
//! credential and agent stores.

pub mod glob;
mod verify;

use agentsec_common::error::{OAuthError, OAuthErrorCode};
use agentsec_common::jwt::{
    self, AudienceRule, JwtError, Rules, TokenType, TrustedIssuer, TrustedIssuers,
};
use agentsec_common::store::StoreError;
use agentsec_common::tls::ClientTls;
use chrono::Utc;

use crate::config::TrustedIssuerConfig;
use crate::domain::agent::Agent;
use crate::domain::credential::{Credential, SubjectMatch};
use crate::store::{AgentStore, CredentialStore};
pub use verify::ExternalClaims;

/// Why an external token was not accepted. Every variant maps to one OAuth
/// error in [`From<FederationError> for OAuthError`].
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(
        "the jwt-bearer grant is not enabled on this server (no trusted issuers are configured)"
    )]
    NotEnabled,
    #[error("assertion is required with the jwt-bearer grant")]
    MissingAssertion,
    #[error("{}", .0.about("the assertion"))]
    Token(JwtError),
    #[error("no federated credential matches the assertion's issuer, subject and audience")]
    NoMatch,
    #[error("the assertion matches federated credentials of several agents; pass client_id")]
    Ambiguous,
    #[error("federated credential or agent lookup failed: {0}")]
    Store(#[from] StoreError),
}

impl From<FederationError> for OAuthError {
    fn from(err: FederationError) -> Self {
        let description = err.to_string();
        // RFC 7523 §3.1: an assertion that is not valid is `invalid_grant`.
        let code = match err {
            // An unreachable database is `temporarily_unavailable`.
            FederationError::Store(store) => {
                return OAuthError::from_api(store.into(), "jwt-bearer grant");
            }
            FederationError::NotEnabled => OAuthErrorCode::UnsupportedGrantType,
            FederationError::MissingAssertion
            | FederationError::Token(JwtError::TooLarge { .. }) => OAuthErrorCode::InvalidRequest,
            FederationError::Token(JwtError::KeysUnavailable) => {
                OAuthErrorCode::TemporarilyUnavailable
            }
            FederationError::Token(_) | FederationError::NoMatch | FederationError::Ambiguous => {
                OAuthErrorCode::InvalidGrant
            }
        };
        OAuthError::new(code, description)
    }
}

/// A trusted issuer that cannot be set up (config validation catches these
/// first; this is the second line).
#[derive(Debug, thiserror::Error)]
#[error("trusted_issuers[{index}].{reason}")]
pub struct FederationSetupError {
    index: usize,
    reason: String,
}

/// The agent an external token was matched to, and the federated
/// credential that matched (the token's `cred`).
#[derive(Debug)]
pub struct Matched {
    pub agent: Agent,
    pub credential_id: String,
}

/// The trusted issuers and the rules of the grant.
pub struct Federation {
    issuers: TrustedIssuers,
}

impl Federation {
    /// The issuers of `[[trusted_issuers]]`; `leeway_secs` is the clock skew
    /// allowed on exp/nbf/iat (`tokens.leeway_secs`).
    pub fn new(
        configs: &[TrustedIssuerConfig],
        leeway_secs: u64,
    ) -> Result<Self, FederationSetupError> {
        let mut issuers = Vec::with_capacity(configs.len());
        // External issuers publish their keys under public certificates.
        let tls = ClientTls::public_roots().map_err(|err| FederationSetupError {
            index: 0,
            reason: err.to_string(),
        })?;
        for (index, config) in configs.iter().enumerate() {
            let setup = |reason: String| FederationSetupError { index, reason };
            let keys = jwt::key_set(
                config.jwks.as_deref(),
                config.jwks_uri.as_deref(),
                config.jwks_cache(),
                &tls,
            )
            .map_err(setup)?;
            let algorithms = jwt::algorithms(&config.algorithms)
                .map_err(|err| setup(format!("algorithms: {err}")))?;
            issuers.push(TrustedIssuer {
                rules: Rules {
                    issuer: config.issuer.clone(),
                    algorithms,
                    // External identity tokens (Kubernetes, SPIFFE, CI)
                    // carry `JWT` or no `typ` at all.
                    token_type: TokenType::Any,
                    // Matched against the federated credentials.
                    audience: AudienceRule::Any,
                    subject: None,
                    leeway_secs,
                },
                keys,
            });
        }
        Ok(Self {
            issuers: TrustedIssuers::new(issuers),
        })
    }

    /// Whether the jwt-bearer grant is offered (some issuer is trusted).
    pub fn is_enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Whether `issuer` is a configured trusted issuer (exact match).
    pub fn trusts(&self, issuer: &str) -> bool {
        self.issuers.issues(issuer)
    }

    /// Refuses the grant when no issuer is trusted.
    pub fn check_enabled(&self) -> Result<(), FederationError> {
        if self.is_enabled() {
            Ok(())
        } else {
            Err(FederationError::NotEnabled)
        }
    }

    /// Verifies an external token with its trusted issuer.
    pub async fn verify(&self, assertion: &str) -> Result<ExternalClaims, FederationError> {
        self.check_enabled()?;
        if assertion.is_empty() {
            return Err(FederationError::MissingAssertion);
        }
        verify::verify(&self.issuers, assertion, Utc::now().timestamp()).await
    }

    /// The agent whose federated credential accepts `assertion`: among the
    /// unexpired federated credentials of its issuer whose subject (exact)
    /// or subject pattern matches `sub` and whose audience is in `aud`,
    /// those of exactly one agent — or of `client_id` when given.
    pub async fn authenticate(
        &self,
        store: &(impl AgentStore + CredentialStore),
        assertion: &str,
        client_id: Option<&str>,
    ) -> Result<Matched, FederationError> {
        let claims = self.verify(assertion).await?;
        let candidates = store
            .federated_candidates(&claims.iss, &claims.sub, &claims.aud)
            .await?;
        let now = Utc::now();
        let matching: Vec<&Credential> = candidates
            .iter()
            .filter(|credential| !credential.is_expired(now))
            .filter(|credential| client_id.is_none_or(|id| credential.agent_id == id))
            .filter(|credential| accepts(credential, &claims))
            .collect();
        let credential = choose(&matching)?;
        let agent = store
            .agent(&credential.agent_id)
            .await?
            .ok_or(FederationError::NoMatch)?;
        Ok(Matched {
            agent,
            credential_id: credential.id.clone(),
        })
    }
}

/// Whether a federated credential accepts the verified claims.
fn accepts(credential: &Credential, claims: &ExternalClaims) -> bool {
    let Some(federated) = &credential.federated else {
        return false;
    };
    let subject = match &federated.subject {
        SubjectMatch::Exact(subject) => *subject == claims.sub,
        SubjectMatch::Pattern(pattern) => glob::matches(pattern, &claims.sub),
    };
    subject && federated.issuer == claims.iss && claims.aud.contains(&federated.audience)
}

/// The one agent's credential among `matching`: an exact subject before a
/// pattern, then the oldest (ids are ULIDs). Several agents are ambiguous.
fn choose<'a>(matching: &[&'a Credential]) -> Result<&'a Credential, FederationError> {
    let first = matching.first().ok_or(FederationError::NoMatch)?;
    if matching
        .iter()
        .any(|credential| credential.agent_id != first.agent_id)
    {
        return Err(FederationError::Ambiguous);
    }
    matching
        .iter()
        .copied()
        .min_by_key(|credential| {
            let is_pattern = credential
                .federated
                .as_ref()
                .is_some_and(|federated| matches!(federated.subject, SubjectMatch::Pattern(_)));
            (is_pattern, credential.id.as_str())
        })
        .ok_or(FederationError::NoMatch)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::credential::{Federated, Kind};

    fn credential(id: &str, agent: &str, subject: SubjectMatch, audience: &str) -> Credential {
        Credential {
            id: id.to_owned(),
            agent_id: agent.to_owned(),
            kind: Kind::Federated,
            description: String::new(),
            create_time: DateTime::<Utc>::UNIX_EPOCH,
            expire_time: None,
            secret_hash: None,
            secret_prefix: None,
            kid: None,
            jwk: None,
            federated: Some(Federated {
                issuer: "https://issuer.test".to_owned(),
                subject,
                audience: audience.to_owned(),
            }),
        }
    }

    fn claims(sub: &str, aud: &[&str]) -> ExternalClaims {
        ExternalClaims {
            iss: "https://issuer.test".to_owned(),
            sub: sub.to_owned(),
            aud: aud.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn a_credential_accepts_its_subject_and_audience_only() {
        let exact = credential("c1", "a1", SubjectMatch::Exact("ns:sa".into()), "agentsec");
        let pattern = credential("c2", "a1", SubjectMatch::Pattern("ns:*".into()), "agentsec");
        assert!(accepts(&exact, &claims("ns:sa", &["x", "agentsec"])));
        assert!(!accepts(&exact, &claims("ns:sa2", &["agentsec"])));
        assert!(!accepts(&exact, &claims("ns:sa", &["other"])));
        assert!(accepts(&pattern, &claims("ns:anything", &["agentsec"])));
        assert!(!accepts(&pattern, &claims("other:sa", &["agentsec"])));
        let mut foreign = claims("ns:sa", &["agentsec"]);
        foreign.iss = "https://other.test".to_owned();
        assert!(!accepts(&exact, &foreign));
    }

    #[test]
    fn one_agent_is_chosen_or_the_match_is_refused() {
        let exact = credential("c9", "a1", SubjectMatch::Exact("ns:sa".into()), "agentsec");
        let pattern = credential("c1", "a1", SubjectMatch::Pattern("ns:*".into()), "agentsec");
        let other = credential("c5", "a2", SubjectMatch::Pattern("ns:*".into()), "agentsec");
        assert!(matches!(choose(&[]), Err(FederationError::NoMatch)));
        assert_eq!(choose(&[&pattern, &exact]).unwrap().id, "c9", "exact first");
        assert_eq!(choose(&[&pattern]).unwrap().id, "c1");
        assert!(matches!(
            choose(&[&pattern, &exact, &other]),
            Err(FederationError::Ambiguous)
        ));
    }

    #[test]
    fn errors_map_to_the_rfc_7523_codes() {
        let code = |err: FederationError| OAuthError::from(err).error;
        assert_eq!(
            code(FederationError::NotEnabled),
            OAuthErrorCode::UnsupportedGrantType
        );
        assert_eq!(
            code(FederationError::Token(JwtError::TooLarge { max: 8192 })),
            OAuthErrorCode::InvalidRequest
        );
        assert_eq!(
            code(FederationError::Token(JwtError::UntrustedIssuer)),
            OAuthErrorCode::InvalidGrant
        );
        assert_eq!(
            code(FederationError::Ambiguous),
            OAuthErrorCode::InvalidGrant
        );
        assert_eq!(
            code(FederationError::Token(JwtError::KeysUnavailable)),
            OAuthErrorCode::TemporarilyUnavailable
        );
        assert_eq!(
            code(FederationError::Store(StoreError::db(
                "reading",
                sea_orm::DbErr::Custom("x".into())
            ))),
            OAuthErrorCode::ServerError
        );
        assert_eq!(
            code(FederationError::Store(StoreError::db(
                "reading",
                sea_orm::DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout)
            ))),
            OAuthErrorCode::TemporarilyUnavailable
        );
    }
}
