//! The decision service: gRPC Check, BatchCheck, CheckToken and Explain,
//! AuthZEN and Envoy ext_authz all decide through it, as peers. It
//! validates a request, decides it (from the decision cache when that holds
//! the answer), audits each answer and records it on the request's span.
//! Who may ask is each transport's check (`auth`), made before.

pub mod search;
mod token;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::ids::new_id;
use agentsec_common::metrics::{Counter, Family, Metrics, Outcome};
use agentsec_proto::policy::v1::{
    CheckRequest, CheckResponse, CheckTokenRequest, CheckTokenResponse, ExplainRequest,
    ExplainResponse,
};
use chrono::Utc;

use crate::cache::{CacheKey, DecisionCache, Lookup};
use crate::domain::engine::{self, AgentAttributeOrigin, Decision, DecisionRequest, PolicyEngine};
use crate::events::{decision_event, DecisionAudit};
use crate::policies::Policies;
use crate::revocations::RevocationView;
use crate::tokens::TokenVerifier;

/// policy.proto: BatchCheck takes 1-1,000 items.
pub const MAX_BATCH: usize = 1_000;

pub struct DecisionService {
    policies: Arc<Policies>,
    tokens: TokenVerifier,
    revocations: Arc<RevocationView>,
    audit: DecisionAudit,
    cache_ttl: Duration,
    cache: Arc<DecisionCache>,
    /// Answers by outcome (`allow`, `deny`, `error`).
    answered: Family<Outcome, Counter>,
}

impl DecisionService {
    pub fn new(
        policies: Arc<Policies>,
        tokens: TokenVerifier,
        revocations: Arc<RevocationView>,
        audit: DecisionAudit,
        cache_ttl: Duration,
        cache: Arc<DecisionCache>,
        metrics: &Metrics,
    ) -> Self {
        let answered = Family::default();
        metrics.register(
            "agentsec_policy_decisions",
            "Decisions answered (each BatchCheck item is one), by outcome",
            answered.clone(),
        );
        Self {
            policies,
            tokens,
            revocations,
            audit,
            cache_ttl,
            cache,
            answered,
        }
    }

    /// One decision on a principal the caller states.
    pub async fn check(&self, request: &CheckRequest) -> Result<CheckResponse, ApiError> {
        let engine = self.policies.engine();
        let (decision, cached) = self.decide_stated(&engine, request, "", Utc::now()).await?;
        let answer = self.answer(request, &decision, cached)?;
        if let Some(decided) = &answer.decision {
            trace::record_decision(decided);
        }
        Ok(answer)
    }

    /// 1-[`MAX_BATCH`] decisions, in item order. Every item is validated and
    /// decided before anything is audited: an invalid item fails the whole
    /// call.
    pub async fn batch_check(
        &self,
        items: &[CheckRequest],
    ) -> Result<Vec<CheckResponse>, ApiError> {
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "items",
                format!("1-{MAX_BATCH} items (got {})", items.len()),
            ));
        }
        let engine = self.policies.engine();
        let now = Utc::now();
        // The items' cache reads go to Redis together (one connection,
        // pipelined), not one after the other.
        let decisions = futures::future::join_all(items.iter().enumerate().map(|(i, item)| {
            let prefix = format!("items[{i}].");
            let engine = &engine;
            async move { self.decide_stated(engine, item, &prefix, now).await }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        let results = items
            .iter()
            .zip(&decisions)
            .map(|(item, (decision, cached))| self.answer(item, decision, *cached))
            .collect::<Result<Vec<_>, _>>()?;
        trace::record_decisions(results.iter().filter_map(|result| result.decision.as_ref()));
        Ok(results)
    }

    /// Decisions each on its own (AuthZEN evaluations): an item that cannot
    /// be decided is an error in its place, and the others are decided and
    /// audited.
    pub async fn check_each(&self, items: &[CheckRequest]) -> Vec<Result<CheckResponse, ApiError>> {
        let engine = self.policies.engine();
        let now = Utc::now();
        let decisions = futures::future::join_all(items.iter().enumerate().map(|(i, item)| {
            let prefix = format!("evaluations[{i}].");
            let engine = &engine;
            async move { self.decide_stated(engine, item, &prefix, now).await }
        }))
        .await;
        let results: Vec<Result<CheckResponse, ApiError>> = items
            .iter()
            .zip(decisions)
            .map(|(item, decided)| {
                let (decision, cached) = decided?;
                self.answer(item, &decision, cached)
            })
            .collect();
        trace::record_decisions(
            results
                .iter()
                .filter_map(|result| result.as_ref().ok()?.decision.as_ref()),
        );
        results
    }

    /// Whether `tenant` has a policy set (loaded, or stored but unloadable).
    pub fn has_policy_set(&self, tenant: &str) -> bool {
        self.policies.engine().has_tenant(tenant)
    }

    /// The DENY of a request naming what policy-svc does not know
    /// (`reason`), answered, audited and counted like any decision.
    pub fn deny_unknown(
        &self,
        request: &CheckRequest,
        reason: &str,
    ) -> Result<CheckResponse, ApiError> {
        let answer = self.answer(request, &Decision::refused(reason), false)?;
        if let Some(decided) = &answer.decision {
            trace::record_decision(decided);
        }
        Ok(answer)
    }

    /// A decision with its explanation (rules matched, conditions read); an
    /// explained decision is a decision, audited like Check's. The caller
    /// has checked that the asker may read the tenant's policies.
    pub fn explain(&self, request: ExplainRequest) -> Result<ExplainResponse, ApiError> {
        let explanation = self.policies.engine().explain(&request, Utc::now())?;
        let decision_id = new_id("dec_").map_err(|err| ApiError::internal("decision id", err))?;
        let as_check = CheckRequest {
            principal: request.principal,
            audience: request.audience,
            action: request.action,
            resource: request.resource,
            context: request.context,
        };
        if let Some(event) = decision_event(&as_check, &explanation.decision, &decision_id, false) {
            self.audit.record(event);
        }
        let explained = explanation.to_proto(decision_id);
        if let Some(decided) = &explained.decision {
            trace::record_decision(decided);
        }
        Ok(explained)
    }

    /// A decision on a bearer token (`token`): CheckToken and ext_authz.
    pub async fn check_token(
        &self,
        request: CheckTokenRequest,
    ) -> Result<CheckTokenResponse, ApiError> {
        token::check_token(self, request).await
    }

    /// Whether `token` is valid, unrevoked and for `audience`, without a
    /// decision.
    pub async fn authenticate(&self, token: &str, audience: &str) -> Result<(), ApiError> {
        token::authenticate(self, token, audience).await
    }

    /// How long the caller may cache `decision`.
    fn ttl(&self, decision: &Decision) -> Duration {
        if decision.evaluation_error || decision.depends_on_time {
            Duration::ZERO
        } else {
            self.cache_ttl
        }
    }

    /// Validates and decides a principal the caller states (Check,
    /// BatchCheck, AuthZEN): there is no token to check, but an agent of its
    /// chain that is suspended or revoked is a DENY before any rule, and an
    /// untrustworthy revocation view fails the decision closed.
    async fn decide_stated(
        &self,
        engine: &PolicyEngine,
        request: &CheckRequest,
        prefix: &str,
        now: chrono::DateTime<Utc>,
    ) -> Result<(Decision, bool), ApiError> {
        let valid = DecisionRequest::from_check(request, prefix, now)?;
        self.revocations.wait_loaded(token::FIRST_LOAD_WAIT).await;
        let chain = valid.actor_chain.iter().map(String::as_str);
        if let Some(agent) = self.revocations.inactive_agent(chain, Utc::now())? {
            let reason = format!("agent `{agent}` is suspended or revoked");
            return Ok((Decision::refused(&reason), false));
        }
        Ok(self
            .decide_valid(engine, valid, prefix, AgentAttributeOrigin::Caller)
            .await?)
    }

    /// Validates and decides `request`, from the cache when it holds the
    /// answer; true when it did. Invalid requests fail the same way with or
    /// without the cache: validation comes first.
    async fn decide(
        &self,
        engine: &PolicyEngine,
        request: &CheckRequest,
        prefix: &str,
        now: chrono::DateTime<Utc>,
        origin: AgentAttributeOrigin,
    ) -> Result<(Decision, bool), engine::RequestError> {
        let request = DecisionRequest::from_check(request, prefix, now)?;
        self.decide_valid(engine, request, prefix, origin).await
    }

    /// Decides a validated request, from the cache when it holds the answer.
    async fn decide_valid(
        &self,
        engine: &PolicyEngine,
        request: DecisionRequest,
        prefix: &str,
        origin: AgentAttributeOrigin,
    ) -> Result<(Decision, bool), engine::RequestError> {
        if engine.is_unloaded(&request.tenant) {
            return Ok((Decision::no_policy_loaded(&request.tenant), false));
        }
        let (set, prepared) = engine.prepare(request, prefix, origin)?;
        if !self.cache.is_enabled() {
            return Ok((engine::decide(set, &prepared), false));
        }
        match self
            .cache
            .get(CacheKey::new(set.version(), &prepared))
            .await
        {
            Lookup::Hit(decision) => Ok((Decision::clone(&decision), true)),
            Lookup::Miss(ticket) => {
                let decision = engine::decide(set, &prepared);
                self.cache.put(ticket, &decision);
                Ok((decision, false))
            }
            Lookup::Bypass => Ok((engine::decide(set, &prepared), false)),
        }
    }

    /// The answer to one decided request; its audit event is queued
    /// without waiting. A cached decision gets a decision id and an audit
    /// event of its own, like any other: each answer is one decision.
    fn answer(
        &self,
        request: &CheckRequest,
        decision: &Decision,
        cached: bool,
    ) -> Result<CheckResponse, ApiError> {
        let decision_id = new_id("dec_").map_err(|err| ApiError::internal("decision id", err))?;
        if let Some(event) = decision_event(request, decision, &decision_id, cached) {
            self.audit.record(event);
        }
        let outcome = if decision.evaluation_error {
            "error"
        } else if decision.effect == engine::Effect::Allow {
            "allow"
        } else {
            "deny"
        };
        self.answered.get_or_create(&Outcome { outcome }).inc();
        Ok(CheckResponse {
            decision: Some(decision.to_proto(decision_id, cached, self.ttl(decision))),
        })
    }
}
