//! gRPC handlers of `agentsec.policy.v1.PolicyService`: decisions go to
//! the decision service (`decisions`), policy administration to
//! `policies`.
//!
//! Decisions (Check, BatchCheck, CheckToken) need a decision caller
//! (`decisions.callers`, see `auth`); every other RPC, Explain included (it
//! reveals policy content), needs an admin token.

use std::sync::Arc;

use agentsec_common::error::ApiError;
use agentsec_proto::common::v1::PageResponse;
use agentsec_proto::policy::v1::policy_service_server::PolicyService;
use agentsec_proto::policy::v1::*;
use chrono::Utc;
use tonic::{Request, Response, Status};

use crate::auth::{Admin, AdminAuth};
use crate::decisions::DecisionService;
use crate::domain::engine;
use crate::domain::policy_set::check_tenant;
use crate::policies::{Policies, LISTED_ISSUES};

pub struct PolicyApi {
    decisions: Arc<DecisionService>,
    policies: Arc<Policies>,
    auth: Arc<AdminAuth>,
}

impl PolicyApi {
    pub fn new(
        decisions: Arc<DecisionService>,
        policies: Arc<Policies>,
        auth: Arc<AdminAuth>,
    ) -> Self {
        Self {
            decisions,
            policies,
            auth,
        }
    }

    async fn admin<T>(&self, request: &Request<T>) -> Result<Admin, Status> {
        Ok(self.auth.admin(request.metadata()).await?)
    }

    /// Checks the caller of a decision API (`decisions.callers`).
    async fn decision_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        Ok(self.auth.decision_caller(request.metadata()).await?)
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
        self.decision_caller(&request).await?;
        Ok(Response::new(
            self.decisions.check(&request.into_inner()).await?,
        ))
    }

    async fn batch_check(
        &self,
        request: Request<BatchCheckRequest>,
    ) -> Result<Response<BatchCheckResponse>, Status> {
        self.decision_caller(&request).await?;
        let items = request.into_inner().items;
        let results = self.decisions.batch_check(&items).await?;
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
        Ok(Response::new(self.decisions.explain(request)?))
    }

    async fn check_token(
        &self,
        request: Request<CheckTokenRequest>,
    ) -> Result<Response<CheckTokenResponse>, Status> {
        self.decision_caller(&request).await?;
        Ok(Response::new(
            self.decisions.check_token(request.into_inner()).await?,
        ))
    }

    async fn put_policy_set(
        &self,
        request: Request<PutPolicySetRequest>,
    ) -> Result<Response<PutPolicySetResponse>, Status> {
        let admin = self.admin(&request).await?;
        let stored = self.policies.put(&admin, request.into_inner()).await?;
        Ok(Response::new(PutPolicySetResponse {
            version: Some((&stored).into()),
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
                    .map_err(|report| report.refusal(LISTED_ISSUES))?
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
            versions: versions.iter().map(PolicySetVersion::from).collect(),
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
            version: Some((&stored).into()),
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
            version: Some((&stored).into()),
        }))
    }
}
