//! gRPC handlers of `agentsec.policy.v1.PolicyService`.
//!
//! CheckToken decides on a bearer token, verified against the trusted
//! issuers (see `tokens`).
//!
//! Decisions (Check, BatchCheck, CheckToken) need a decision caller
//! (`decisions.callers`, see `auth`); every other RPC, Explain included (it
//! reveals policy content), needs an admin token.

use std::sync::Arc;
use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::ids::new_id;
use agentsec_proto::common::v1::{attribute_value, AttributeValue, PageResponse, StringList};
use agentsec_proto::policy::v1::policy_service_server::PolicyService;
use agentsec_proto::policy::v1::*;
use chrono::Utc;
use tonic::{Request, Response, Status};

use crate::auth::{Admin, AdminAuth};
use crate::cache::{CacheKey, DecisionCache, Lookup};
use crate::engine::{
    self, AgentAttributeOrigin, Decision, DecisionRequest, PolicyEngine, RequestError,
};
use crate::events::{decision_event, DecisionAudit};
use crate::policies::{check_tenant, version_to_proto, Policies};
use crate::revocations::RevocationView;
use crate::tokens::{TokenVerifier, MAX_TOKEN_BYTES};

/// The context attribute that carries a token's `scope` values in
/// token-based decisions (`context.token_scope` in conditions).
pub const TOKEN_SCOPE_ATTRIBUTE: &str = "token_scope";

/// How long a token decision waits for the revocation state right after
/// start, before failing closed.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);

/// policy.proto: BatchCheck takes 1-1,000 items.
pub const MAX_BATCH: usize = 1_000;
/// How many validation findings a PutPolicySet refusal lists.
const LISTED_ISSUES: usize = 20;

pub struct PolicyApi {
    policies: Arc<Policies>,
    auth: AdminAuth,
    tokens: TokenVerifier,
    revocations: Arc<RevocationView>,
    audit: DecisionAudit,
    cache_ttl: Duration,
    cache: Arc<DecisionCache>,
}

impl PolicyApi {
    pub fn new(
        policies: Arc<Policies>,
        auth: AdminAuth,
        tokens: TokenVerifier,
        revocations: Arc<RevocationView>,
        audit: DecisionAudit,
        cache_ttl: Duration,
        cache: Arc<DecisionCache>,
    ) -> Self {
        Self {
            policies,
            auth,
            tokens,
            revocations,
            audit,
            cache_ttl,
            cache,
        }
    }

    async fn admin<T>(&self, request: &Request<T>) -> Result<Admin, Status> {
        Ok(self.auth.admin(request.metadata()).await?)
    }

    /// How long the caller may cache `decision`.
    fn ttl(&self, decision: &Decision) -> Duration {
        if decision.evaluation_error || decision.depends_on_time {
            Duration::ZERO
        } else {
            self.cache_ttl
        }
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
    ) -> Result<(Decision, bool), RequestError> {
        let request = DecisionRequest::from_check(request, prefix, now)?;
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

    /// CheckToken: the principal from the verified token, then a decision
    /// like Check's (also the path of Envoy ext_authz, see `ext_authz`).
    /// Checks the caller of a decision API (`decisions.callers`).
    pub(crate) async fn decision_caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(), Status> {
        Ok(self.auth.decision_caller(metadata).await?)
    }

    pub(crate) async fn decide_token(
        &self,
        request: CheckTokenRequest,
    ) -> Result<CheckTokenResponse, Status> {
        if request.token.is_empty() {
            return Err(ApiError::invalid("token", "is required").into());
        }
        if request.token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::invalid("token", "must be at most 8 KiB").into());
        }
        if !self.tokens.is_configured() {
            return Err(ApiError::FailedPrecondition {
                reason: "no token issuer is trusted (token_issuers, or admin.jwks_uri for \
                         identity-svc)"
                    .to_owned(),
            }
            .into());
        }
        let verified = self.tokens.verify(&request.token).await?;
        self.revocations.wait_loaded(FIRST_LOAD_WAIT).await;
        self.revocations.check(&verified, Utc::now())?;
        // delegation_depth is always derived from the token's actor chain,
        // and `token_scope` is the token's, whatever the caller sent.
        let mut context = request.context.unwrap_or_default();
        context.delegation_depth = 0;
        if verified.scopes.is_empty() {
            context.attributes.remove(TOKEN_SCOPE_ATTRIBUTE);
        } else {
            context.attributes.insert(
                TOKEN_SCOPE_ATTRIBUTE.to_owned(),
                AttributeValue {
                    kind: Some(attribute_value::Kind::StringListValue(StringList {
                        values: verified.scopes.clone(),
                    })),
                },
            );
        }
        let context = Some(context);
        let mut principal = verified.principal.clone();
        // policy.proto: the principal carries the agent's registry
        // attributes, from the view (a token cannot carry its own).
        principal.agent_attributes = self
            .revocations
            .attributes_of(&principal.tenant, &principal.agent_id);
        let as_check = CheckRequest {
            principal: Some(principal.clone()),
            audience: request.audience,
            action: request.action,
            resource: request.resource,
            context,
        };
        let engine = self.policies.engine();
        let (mut decision, mut cached) = self
            .decide(
                &engine,
                &as_check,
                "",
                Utc::now(),
                AgentAttributeOrigin::Registry,
            )
            .await
            .map_err(|err| {
                // The principal comes from the token: name it, not a
                // request field the caller did not send.
                match err.field().strip_prefix("principal.") {
                    Some(derived) => ApiError::invalid(
                        "token",
                        format!("the principal's `{derived}` derived from the token: {err}"),
                    ),
                    None => ApiError::from(err),
                }
            })?;
        if !verified.is_for(&as_check.audience) {
            // A valid token presented to another system (policy.proto: a
            // DENY decision, not an error), whatever the policies say.
            decision = Decision {
                effect: engine::Effect::Deny,
                reason: format!(
                    "the token's audience ({}) is not the requested audience `{}`",
                    verified
                        .audiences
                        .iter()
                        .map(|aud| format!("`{}`", aud.chars().take(256).collect::<String>()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    as_check.audience
                )
                .chars()
                .take(1024)
                .collect(),
                policy_ids: Vec::new(),
                policy_version: decision.policy_version,
                evaluation_error: false,
                depends_on_time: false,
            };
            cached = false;
        }
        let mut answer = self.answer(&as_check, &decision, cached)?;
        if let Some(decided) = &answer.decision {
            super::trace::record_decision(decided);
        }
        // Never cacheable past the token's expiry.
        if let Some(answered) = answer.decision.as_mut() {
            let left = (verified.expires_at - Utc::now().timestamp()).max(0);
            if let Some(ttl) = answered.cache_ttl.as_mut() {
                ttl.seconds = ttl.seconds.min(left);
            }
            if left == 0 {
                answered.cache_ttl = None;
            }
        }
        Ok(CheckTokenResponse {
            decision: answer.decision,
            principal: Some(principal),
        })
    }

    /// The answer to one decided request; its audit event is queued
    /// without waiting. A cached decision gets a decision id and an audit
    /// event of its own, like any other: each answer is one decision.
    fn answer(
        &self,
        request: &CheckRequest,
        decision: &Decision,
        cached: bool,
    ) -> Result<CheckResponse, Status> {
        let decision_id = new_id("dec_").map_err(|err| ApiError::internal("decision id", err))?;
        if let Some(event) = decision_event(request, decision, &decision_id, cached) {
            self.audit.record(event);
        }
        Ok(CheckResponse {
            decision: Some(decision.to_proto(decision_id, cached, self.ttl(decision))),
        })
    }
}

fn page(next_page_token: String) -> Option<PageResponse> {
    Some(PageResponse { next_page_token })
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        self.decision_caller(request.metadata()).await?;
        let request = request.into_inner();
        let engine = self.policies.engine();
        let (decision, cached) = self
            .decide(
                &engine,
                &request,
                "",
                Utc::now(),
                AgentAttributeOrigin::Caller,
            )
            .await
            .map_err(ApiError::from)?;
        let answer = self.answer(&request, &decision, cached)?;
        if let Some(decided) = &answer.decision {
            super::trace::record_decision(decided);
        }
        Ok(Response::new(answer))
    }

    async fn batch_check(
        &self,
        request: Request<BatchCheckRequest>,
    ) -> Result<Response<BatchCheckResponse>, Status> {
        self.decision_caller(request.metadata()).await?;
        let request = request.into_inner();
        if request.items.is_empty() || request.items.len() > MAX_BATCH {
            return Err(ApiError::invalid(
                "items",
                format!("1-{MAX_BATCH} items (got {})", request.items.len()),
            )
            .into());
        }
        let engine = self.policies.engine();
        let now = Utc::now();
        // Every item is validated and decided before anything is audited:
        // an invalid item fails the whole call.
        // The items' cache reads go to Redis together (one connection,
        // pipelined), not one after the other.
        let decisions =
            futures::future::join_all(request.items.iter().enumerate().map(|(i, item)| {
                let prefix = format!("items[{i}].");
                let engine = &engine;
                async move {
                    self.decide(engine, item, &prefix, now, AgentAttributeOrigin::Caller)
                        .await
                }
            }))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::from)?;
        let results = request
            .items
            .iter()
            .zip(&decisions)
            .map(|(item, (decision, cached))| self.answer(item, decision, *cached))
            .collect::<Result<Vec<_>, _>>()?;
        super::trace::record_decisions(
            results.iter().filter_map(|result| result.decision.as_ref()),
        );
        Ok(Response::new(BatchCheckResponse { results }))
    }

    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        let tenant = request
            .principal
            .as_ref()
            .map(|principal| principal.tenant.as_str())
            .unwrap_or_default();
        // A malformed tenant is the engine's INVALID_ARGUMENT below.
        if check_tenant("principal.tenant", tenant).is_ok() {
            admin.check_tenant(tenant)?;
        }
        let explanation = self
            .policies
            .engine()
            .explain(&request, Utc::now())
            .map_err(ApiError::from)?;
        let decision_id = new_id("dec_").map_err(|err| ApiError::internal("decision id", err))?;
        // An explained decision is a decision: audited like Check's.
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
            super::trace::record_decision(decided);
        }
        Ok(Response::new(explained))
    }

    async fn check_token(
        &self,
        request: Request<CheckTokenRequest>,
    ) -> Result<Response<CheckTokenResponse>, Status> {
        self.decision_caller(request.metadata()).await?;
        Ok(Response::new(
            self.decide_token(request.into_inner()).await?,
        ))
    }

    async fn put_policy_set(
        &self,
        request: Request<PutPolicySetRequest>,
    ) -> Result<Response<PutPolicySetResponse>, Status> {
        let admin = self.admin(&request).await?;
        let stored = self.policies.put(&admin, request.into_inner()).await?;
        Ok(Response::new(PutPolicySetResponse {
            version: Some(version_to_proto(&stored)),
        }))
    }

    async fn validate_policy_set(
        &self,
        request: Request<ValidatePolicySetRequest>,
    ) -> Result<Response<ValidatePolicySetResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        let set = request
            .policy_set
            .ok_or_else(|| ApiError::invalid("policy_set", "is required"))?;
        let tenant = request.tenant;
        let report = tokio::task::spawn_blocking(move || engine::validate(&tenant, &set))
            .await
            .map_err(|err| ApiError::internal("validating a policy set", err))?;
        Ok(Response::new(report.to_proto()))
    }

    async fn test_policy_set(
        &self,
        request: Request<TestPolicySetRequest>,
    ) -> Result<Response<TestPolicySetResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        let compiled = match request.target {
            Some(test_policy_set_request::Target::PolicySet(set)) => {
                let tenant = request.tenant.clone();
                tokio::task::spawn_blocking(move || engine::compile(&tenant, 0, &set))
                    .await
                    .map_err(|err| ApiError::internal("compiling a policy set", err))?
                    .map_err(|report| report.to_api_error(LISTED_ISSUES))?
            }
            Some(test_policy_set_request::Target::Version(version)) => {
                self.policies.compiled(&request.tenant, version).await?
            }
            None => {
                return Err(
                    ApiError::invalid("target", "a policy_set or a version is required").into(),
                )
            }
        };
        let cases = request.cases;
        let response =
            tokio::task::spawn_blocking(move || engine::run_cases(&compiled, &cases, Utc::now()))
                .await
                .map_err(|err| ApiError::internal("running test cases", err))?
                .map_err(ApiError::from)?;
        Ok(Response::new(response))
    }

    async fn list_policy_versions(
        &self,
        request: Request<ListPolicyVersionsRequest>,
    ) -> Result<Response<ListPolicyVersionsResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        let (versions, next) = self.policies.list(&request).await?;
        Ok(Response::new(ListPolicyVersionsResponse {
            versions: versions.iter().map(version_to_proto).collect(),
            page: page(next),
        }))
    }

    async fn get_policy_set(
        &self,
        request: Request<GetPolicySetRequest>,
    ) -> Result<Response<GetPolicySetResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        let (stored, set) = self
            .policies
            .get_with_content(&request.tenant, request.version)
            .await?;
        Ok(Response::new(GetPolicySetResponse {
            version: Some(version_to_proto(&stored)),
            policy_set: Some(set),
        }))
    }

    async fn diff_policy_versions(
        &self,
        request: Request<DiffPolicyVersionsRequest>,
    ) -> Result<Response<DiffPolicyVersionsResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        check_tenant("tenant", &request.tenant)?;
        admin.check_tenant(&request.tenant)?;
        Ok(Response::new(self.policies.diff(&request).await?))
    }

    async fn rollback_policy_set(
        &self,
        request: Request<RollbackPolicySetRequest>,
    ) -> Result<Response<RollbackPolicySetResponse>, Status> {
        let admin = self.admin(&request).await?;
        let stored = self.policies.rollback(&admin, request.into_inner()).await?;
        Ok(Response::new(RollbackPolicySetResponse {
            version: Some(version_to_proto(&stored)),
        }))
    }
}
