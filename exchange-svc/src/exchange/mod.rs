//! RFC 8693 token exchange: a person's token (or a delegated token of this
//! service, to go one agent deeper) plus an agent's own access token become
//! a token for one target with `sub` = the person and `act` = the agents.
//!
//! An exchange goes ahead only when every check passes, in this order:
//! the request's parameters; the actor token (identity-svc's signature and
//! audience, then its introspection: the token and the agent are active);
//! the subject token (a trusted person token, or an active delegated token
//! of this service); what authorizes the hop (the subject token's
//! `may_act` naming the agent, or an active grant of the person to the
//! agent for the target, or for a deeper hop the first hop's grant and its
//! chain depth); the scopes (requested ⊆ grant ∩ subject ∩ agent); and
//! policy-svc's `token:exchange` decision. Every exchange, issued or
//! refused, is an audit event; a token is returned only once its event is
//! queued.

pub mod introspection;
pub mod request;

use std::sync::Arc;

use agentsec_common::admin_token::AdminVerifier;
use agentsec_common::error::{ApiError, OAuthError, OAuthErrorCode};
use agentsec_common::keys::{Jwks, SigningKey};
use agentsec_common::metrics::{Counter, Family, Metrics, Outcome as OutcomeLabel};
use agentsec_proto::common::v1::{self as common, ActorChain, Outcome, Principal};
use agentsec_proto::exchange::v1::{ExchangeRequest, ExchangeResponse};
use chrono::Utc;

use crate::config::{Config, TargetConfig};
use crate::domain::claims::{Act, Actor, DelegatedClaims};
use crate::domain::grant::Grant;
use crate::domain::hop::{self, DepthLimits};
use crate::events::{AuditRecord, Events};
use crate::grants::selection::FirstHop;
use crate::grants::Grants;
use crate::person::{PersonToken, UserIssuers};
use crate::store::grants::{GrantStore, SqlGrantStore};
use crate::upstream::identity::IdentityClient;
use crate::upstream::policy::{PolicyClient, ACTION};
use request::{invalid_request, printable};

/// The JWT `typ` of issued tokens (RFC 9068).
const TOKEN_TYPE: &str = "at+jwt";
/// audit.proto: an event's reason holds at most 2,048 chars.
const MAX_REASON_CHARS: usize = 2_048;

fn error(code: OAuthErrorCode, description: impl Into<String>) -> OAuthError {
    OAuthError::new(code, description)
}

/// An issued token, as RFC 8693 §2.2.1 returns it.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

impl From<Issued> for ExchangeResponse {
    fn from(issued: Issued) -> Self {
        Self {
            access_token: issued.access_token,
            issued_token_type: issued.issued_token_type.to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: issued.expires_in,
            scope: issued.scope,
        }
    }
}

/// What is known about an exchange so far, for its audit event.
#[derive(Debug, Default)]
struct Attempt {
    tenant: String,
    agent_id: String,
    person: String,
    chain: Vec<Actor>,
    audience: String,
    requested: String,
    issued: String,
    grant_id: String,
    decision_id: String,
    policy_ids: Vec<String>,
    jti: String,
}

/// The verified acting agent.
struct Agent {
    id: String,
    tenant: String,
    /// The scopes its actor token carries: within its ceiling (all of it
    /// when the token was requested without a scope).
    scopes: Vec<String>,
    expires_at: i64,
}

/// The verified subject token.
enum Subject {
    Person(PersonToken),
    Delegated(DelegatedClaims),
}

impl Subject {
    fn person(&self) -> &str {
        match self {
            Subject::Person(token) => &token.person.subject,
            Subject::Delegated(claims) => &claims.sub,
        }
    }

    fn expires_at(&self) -> i64 {
        match self {
            Subject::Person(token) => token.expires_at,
            Subject::Delegated(claims) => claims.exp,
        }
    }

    fn scopes(&self) -> Option<Vec<String>> {
        match self {
            Subject::Person(token) => token.scopes.clone(),
            Subject::Delegated(claims) => Some(claims.scopes()),
        }
    }

    /// The chain so far, outermost first (empty for a person token).
    fn chain(&self) -> Vec<Actor> {
        match self {
            Subject::Person(_) => Vec::new(),
            Subject::Delegated(claims) => claims.actors(),
        }
    }
}

/// A refusal of the hop rules or the grant store, as the token endpoint
/// answers it.
fn refused(err: crate::error::ExchangeError) -> OAuthError {
    err.into_oauth("exchange")
}

pub struct Exchanger<S: GrantStore = SqlGrantStore> {
    pub issuer: String,
    /// The `aud` of actor tokens.
    pub audience: String,
    pub signing_key: Arc<SigningKey>,
    pub jwks: Arc<Jwks>,
    /// The grants that authorize exchanges.
    pub grants: Arc<Grants<S>>,
    pub events: Events,
    pub user_issuers: Arc<UserIssuers>,
    /// identity-svc's tokens, verified offline (`admin.jwks_uri`).
    pub identity_tokens: Option<Arc<AdminVerifier>>,
    pub identity: Option<Arc<IdentityClient>>,
    pub policy: Option<PolicyClient>,
    pub targets: Vec<TargetConfig>,
    pub max_lifetime_secs: i64,
    pub depth_limits: DepthLimits,
    /// Exchanges by outcome: `issued`, or the OAuth error code refusing.
    pub outcomes: Family<OutcomeLabel, Counter>,
}

/// The services an exchange relies on: identity-svc (its tokens verified
/// offline, its RPCs called with exchange-svc's service identity) and
/// policy-svc.
pub struct Upstream {
    pub tokens: Option<Arc<AdminVerifier>>,
    pub identity: Option<Arc<IdentityClient>>,
    pub policy: Option<PolicyClient>,
}

impl<S: GrantStore> Exchanger<S> {
    pub fn new(
        config: &Config,
        signing_key: Arc<SigningKey>,
        jwks: Arc<Jwks>,
        grants: Arc<Grants<S>>,
        events: Events,
        user_issuers: Arc<UserIssuers>,
        upstream: Upstream,
    ) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audience: config.exchange_audience().to_owned(),
            signing_key,
            jwks,
            grants,
            events,
            user_issuers,
            identity_tokens: upstream.tokens,
            identity: upstream.identity,
            policy: upstream.policy,
            targets: config.effective_targets(),
            max_lifetime_secs: config.exchange.max_token_lifetime_secs as i64,
            depth_limits: DepthLimits {
                grants: config.grants.max_chain_depth,
                may_act: config.exchange.max_chain_depth,
            },
            outcomes: Family::default(),
        }
    }

    /// Registers the exchange counters in `metrics`.
    pub fn register_metrics(&self, metrics: &Metrics) {
        metrics.register(
            "agentsec_exchange_exchanges",
            "Token exchanges, by outcome: issued, or the OAuth error code of the refusal",
            self.outcomes.clone(),
        );
    }

    fn identity(&self) -> Result<&IdentityClient, OAuthError> {
        self.identity.as_deref().ok_or_else(|| {
            error(
                OAuthErrorCode::TemporarilyUnavailable,
                "identity-svc is not configured on this server (identity.endpoint)",
            )
        })
    }

    /// Exchanges, and audits and counts the outcome either way.
    pub async fn exchange(&self, request: ExchangeRequest) -> Result<Issued, OAuthError> {
        let mut attempt = Attempt::default();
        let result = self.try_exchange(request, &mut attempt).await;
        let outcome = match &result {
            Ok(_) => "issued",
            Err(err) => {
                self.audit_refusal(attempt, err).await;
                err.code()
            }
        };
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
        result
    }

    async fn audit_refusal(&self, attempt: Attempt, err: &OAuthError) {
        let outcome = match err.error {
            OAuthErrorCode::ServerError | OAuthErrorCode::TemporarilyUnavailable => Outcome::Error,
            _ => Outcome::Deny,
        };
        let mut reason = format!("{}: {}", err.code(), err.error_description);
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
        }
        if let Err(audit_err) = self
            .events
            .audit(record(attempt, outcome).reason(reason))
            .await
        {
            // The exchange is refused either way; the missing event is logged.
            tracing::error!(error = %audit_err, "a refused exchange could not be audited");
        }
    }

    async fn try_exchange(
        &self,
        request: ExchangeRequest,
        attempt: &mut Attempt,
    ) -> Result<Issued, OAuthError> {
        let parsed = request::parse(request)?;
        attempt.audience = parsed.audience.clone();
        attempt.requested = parsed
            .requested_scopes
            .as_ref()
            .map(|scopes| scopes.join(" "))
            .unwrap_or_default();
        let target = self
            .targets
            .iter()
            .find(|target| target.audience == parsed.audience)
            .ok_or_else(|| {
                error(
                    OAuthErrorCode::InvalidTarget,
                    format!(
                        "`{}` is not a target this service issues tokens for",
                        printable(&parsed.audience)
                    ),
                )
            })?;
        let now = Utc::now().timestamp();

        let agent = self.verify_actor(&parsed.actor_token).await?;
        attempt.agent_id = agent.id.clone();
        attempt.tenant = agent.tenant.clone();
        let subject = self
            .verify_subject(&parsed.subject_token, &agent, now)
            .await?;
        attempt.person = subject.person().to_owned();

        let mut chain = vec![Actor {
            agent_id: agent.id.clone(),
            issuer: self.identity_issuer().to_owned(),
        }];
        let earlier = subject.chain();
        if earlier.iter().any(|actor| actor.agent_id == agent.id) {
            return Err(invalid_request(
                "the acting agent is already in the subject token's actor chain",
            ));
        }
        chain.extend(earlier);
        attempt.chain = chain.clone();
        if target.allow_impersonation && chain.len() > 1 {
            return Err(error(
                OAuthErrorCode::InvalidTarget,
                "this target takes tokens without `act` (impersonation), which are issued for a person's own token only",
            ));
        }

        let grant = self
            .authorizing_grant(&subject, &agent, &parsed.audience, chain.len())
            .await?;
        let grant = grant.as_ref();
        if let Some(grant) = grant {
            attempt.grant_id = grant.id.clone();
        }

        let candidates = hop::delegable_scopes(
            grant,
            subject.scopes().as_deref(),
            &agent.scopes,
            parsed.requested_scopes.as_deref(),
        )
        .map_err(refused)?;
        let principal = Principal {
            tenant: agent.tenant.clone(),
            agent_id: agent.id.clone(),
            person_subject: subject.person().to_owned(),
            actor_chain: Some(ActorChain {
                actors: chain.iter().map(common::Actor::from).collect(),
            }),
            ..Principal::default()
        };
        let policy = self.policy.as_ref().ok_or_else(|| {
            error(
                OAuthErrorCode::TemporarilyUnavailable,
                "policy-svc is not configured on this server (policy.endpoint)",
            )
        })?;
        let service_token = self
            .identity()?
            .policy_token()
            .await
            .map_err(|err| OAuthError::from_api(err, "the service token"))?;
        let decision = policy
            .decide(&principal, &parsed.audience, &candidates, &service_token)
            .await
            .map_err(|err| match err {
                ApiError::PermissionDenied { reason } => {
                    error(OAuthErrorCode::UnauthorizedClient, reason)
                }
                other => OAuthError::from_api(other, "the policy decision"),
            })?;
        attempt.decision_id = decision.exchange.decision_id.clone();
        attempt.policy_ids = decision.exchange.policy_ids.clone();
        if !decision.allowed() {
            return Err(error(
                OAuthErrorCode::UnauthorizedClient,
                format!(
                    "policy denies `{ACTION}` for this agent, person and audience: {}",
                    decision.exchange.reason
                ),
            ));
        }
        let scopes = hop::policy_scopes(
            &candidates,
            &decision.allowed_scopes,
            parsed.requested_scopes.is_some(),
        )
        .map_err(refused)?;
        let scope = scopes.join(" ");
        attempt.issued = scope.clone();

        let mut expires_at = (now + self.max_lifetime_secs)
            .min(subject.expires_at())
            .min(agent.expires_at);
        if let Some(grant) = grant {
            expires_at = expires_at.min(grant.expire_time.timestamp());
        }
        if expires_at <= now {
            return Err(error(
                OAuthErrorCode::InvalidGrant,
                "the subject token, actor token or grant expires now",
            ));
        }
        let jti = agentsec_common::ids::new_id("dtk_")
            .map_err(|err| OAuthError::from_api(ApiError::internal("token id", err), "exchange"))?;
        attempt.jti = jti.clone();
        let claims = DelegatedClaims {
            iss: self.issuer.clone(),
            sub: subject.person().to_owned(),
            aud: parsed.audience.clone(),
            exp: expires_at,
            iat: now,
            nbf: now,
            jti,
            scope: scope.clone(),
            azp: agent.id.clone(),
            tenant: agent.tenant.clone(),
            act: if target.allow_impersonation {
                None
            } else {
                Act::from_actors(&chain)
            },
            grant_id: attempt.grant_id.clone(),
        };
        let access_token = self
            .signing_key
            .sign(TOKEN_TYPE, &claims)
            .map_err(|err| OAuthError::from_api(ApiError::internal("signing", err), "exchange"))?;
        let issued_attempt = std::mem::take(attempt);
        self.events
            .audit(record(issued_attempt, Outcome::Allow).reason("token issued"))
            .await
            .map_err(|err| OAuthError::from_api(err, "auditing the exchange"))?;
        Ok(Issued {
            access_token,
            issued_token_type: parsed.issued_token_type,
            expires_in: expires_at - now,
            scope,
        })
    }

    fn identity_issuer(&self) -> &str {
        self.identity_tokens
            .as_ref()
            .map_or("", |verifier| verifier.issuer())
    }

    /// The actor token: identity-svc's signature and issuer, this service
    /// as audience, then introspection (token, credential and agent
    /// active).
    async fn verify_actor(&self, token: &str) -> Result<Agent, OAuthError> {
        let verifier = self.identity_tokens.as_ref().ok_or_else(|| {
            error(
                OAuthErrorCode::TemporarilyUnavailable,
                "identity-svc's keys are not configured on this server (admin.jwks_uri)",
            )
        })?;
        let verified = verifier
            .verify_identity_token(token)
            .await
            .map_err(|err| match err {
                ApiError::Unauthenticated { .. } => {
                    invalid_request("the actor_token is not a valid access token of identity-svc")
                }
                other => OAuthError::from_api(other, "actor token verification"),
            })?;
        if !verified.audiences.contains(&self.audience) {
            return Err(invalid_request(format!(
                "the actor_token is not for this service (its aud must be `{}`)",
                self.audience
            )));
        }
        let introspected = self
            .identity()?
            .introspect(token)
            .await
            .map_err(|err| OAuthError::from_api(err, "actor token introspection"))?
            .ok_or_else(|| {
                invalid_request(
                    "the actor_token is not active (revoked or expired, or the agent is not active)",
                )
            })?;
        if introspected.sub != verified.subject || introspected.tenant.is_empty() {
            return Err(invalid_request("the actor_token is not an agent's token"));
        }
        Ok(Agent {
            id: introspected.sub,
            tenant: introspected.tenant,
            scopes: introspected
                .scope
                .split(' ')
                .filter(|scope| !scope.is_empty())
                .map(str::to_owned)
                .collect(),
            expires_at: verified.times.expires_at,
        })
    }

    /// The subject token: a person's token from a trusted issuer, or an
    /// active delegated token of this service meant for this service or for
    /// the acting agent. An agent's own token is refused.
    async fn verify_subject(
        &self,
        token: &str,
        agent: &Agent,
        now: i64,
    ) -> Result<Subject, OAuthError> {
        let unchecked = crate::person::peek(token)
            .map_err(|_| invalid_request("the subject_token is not a well-formed JWT"))?;
        if unchecked.iss == self.issuer {
            let claims = self.verify_delegated(token).await.map_err(|err| match err {
                Inactive::Invalid => invalid_request("the subject_token is not a valid token of this service"),
                Inactive::Revoked => error(
                    OAuthErrorCode::InvalidGrant,
                    "the subject_token is no longer active (its grant was revoked or expired, or an agent in its chain is not active)",
                ),
                Inactive::Failed(err) => OAuthError::from_api(err, "subject token check"),
            })?;
            if claims.act.is_none() {
                return Err(invalid_request(
                    "the subject_token has no `act`: an impersonation token cannot be delegated further",
                ));
            }
            if claims.aud != self.audience && claims.aud != agent.id {
                return Err(invalid_request(format!(
                    "the subject_token's aud must be `{}` or the acting agent",
                    self.audience
                )));
            }
            if claims.tenant != agent.tenant {
                return Err(invalid_request(
                    "the subject_token and the actor_token belong to different tenants",
                ));
            }
            return Ok(Subject::Delegated(claims));
        }
        if self.identity_issuer() == unchecked.iss {
            return Err(invalid_request(
                "the subject_token is an agent's own token; it must be a person's token or a delegated token of this service",
            ));
        }
        let person = self
            .user_issuers
            .verify_token(token, now)
            .await
            .map_err(|err| match err {
                ApiError::Unauthenticated { reason } => {
                    invalid_request(format!("subject_token: {reason}"))
                }
                other => OAuthError::from_api(other, "subject token verification"),
            })?;
        if person
            .person
            .tenant
            .as_ref()
            .is_some_and(|tenant| *tenant != agent.tenant)
        {
            return Err(invalid_request(
                "the subject_token and the actor_token belong to different tenants",
            ));
        }
        Ok(Subject::Person(person))
    }

    /// What allows this hop: a grant of the person, or (deeper hops) the
    /// grant of the first hop; `None` when the subject token's `may_act`
    /// names the agent.
    async fn authorizing_grant(
        &self,
        subject: &Subject,
        agent: &Agent,
        audience: &str,
        depth: usize,
    ) -> Result<Option<Grant>, OAuthError> {
        let now = Utc::now();
        let grant = match subject {
            Subject::Person(token) => {
                if let Some(may_act) = &token.may_act {
                    if !self.may_act_names(may_act, &agent.id) {
                        return Err(invalid_request(
                            "the subject_token's may_act does not name the acting agent",
                        ));
                    }
                    return Ok(None);
                }
                let hop = FirstHop {
                    person_issuer: &token.person.issuer,
                    person_subject: &token.person.subject,
                    tenant: &agent.tenant,
                    agent_id: &agent.id,
                    audience,
                };
                self.grants.for_first_hop(hop, now).await
            }
            Subject::Delegated(claims) => {
                self.grants
                    .for_next_hop(&claims.grant_id, audience, depth, self.depth_limits, now)
                    .await
            }
        };
        grant.map(Some).map_err(refused)
    }

    /// RFC 8693 §4.4: `may_act` names the party allowed to act, by `sub`
    /// (and, when given, `iss`).
    fn may_act_names(&self, may_act: &serde_json::Value, agent_id: &str) -> bool {
        let sub = may_act.get("sub").and_then(serde_json::Value::as_str);
        let iss_matches = match may_act.get("iss") {
            None => true,
            Some(iss) => iss.as_str() == Some(self.identity_issuer()),
        };
        sub == Some(agent_id) && iss_matches
    }
}

/// Why a delegated token is not active.
pub enum Inactive {
    /// Not a valid token of this service (signature, issuer, time).
    Invalid,
    /// Valid, but its grant or an agent of its chain is no longer active.
    Revoked,
    /// The answer is unknown (a dependency failed).
    Failed(ApiError),
}

fn record(attempt: Attempt, outcome: Outcome) -> AuditRecord {
    AuditRecord::new(
        "token.exchanged",
        &attempt.tenant,
        &attempt.agent_id,
        outcome,
    )
    .person(&attempt.person)
    .audience(&attempt.audience)
    .action(ACTION)
    .resource("token", &attempt.jti)
    .actors(ActorChain {
        actors: attempt.chain.iter().map(common::Actor::from).collect(),
    })
    .decision(&attempt.decision_id, &attempt.policy_ids)
    .attribute("scope_requested", attempt.requested)
    .attribute("scope_issued", attempt.issued)
    .attribute("grant_id", attempt.grant_id)
}
