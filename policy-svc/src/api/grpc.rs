//! gRPC handlers of `agentsec.policy.v1.PolicyService`.

use agentsec_common::error::not_yet_served;
use agentsec_proto::policy::v1::policy_service_server::PolicyService;
use agentsec_proto::policy::v1::*;
use tonic::{Request, Response, Status};

/// Who delivers the RPCs this release does not serve yet.
const OWNER: &str = "the policy-svc issue (#5)";

pub struct PolicyApi;

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        not_yet_served("Check", OWNER)
    }

    async fn batch_check(
        &self,
        _request: Request<BatchCheckRequest>,
    ) -> Result<Response<BatchCheckResponse>, Status> {
        not_yet_served("BatchCheck", OWNER)
    }

    async fn explain(
        &self,
        _request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        not_yet_served("Explain", OWNER)
    }

    async fn check_token(
        &self,
        _request: Request<CheckTokenRequest>,
    ) -> Result<Response<CheckTokenResponse>, Status> {
        not_yet_served("CheckToken", OWNER)
    }

    async fn put_policy_set(
        &self,
        _request: Request<PutPolicySetRequest>,
    ) -> Result<Response<PutPolicySetResponse>, Status> {
        not_yet_served("PutPolicySet", OWNER)
    }

    async fn validate_policy_set(
        &self,
        _request: Request<ValidatePolicySetRequest>,
    ) -> Result<Response<ValidatePolicySetResponse>, Status> {
        not_yet_served("ValidatePolicySet", OWNER)
    }

    async fn test_policy_set(
        &self,
        _request: Request<TestPolicySetRequest>,
    ) -> Result<Response<TestPolicySetResponse>, Status> {
        not_yet_served("TestPolicySet", OWNER)
    }

    async fn list_policy_versions(
        &self,
        _request: Request<ListPolicyVersionsRequest>,
    ) -> Result<Response<ListPolicyVersionsResponse>, Status> {
        not_yet_served("ListPolicyVersions", OWNER)
    }

    async fn get_policy_set(
        &self,
        _request: Request<GetPolicySetRequest>,
    ) -> Result<Response<GetPolicySetResponse>, Status> {
        not_yet_served("GetPolicySet", OWNER)
    }

    async fn diff_policy_versions(
        &self,
        _request: Request<DiffPolicyVersionsRequest>,
    ) -> Result<Response<DiffPolicyVersionsResponse>, Status> {
        not_yet_served("DiffPolicyVersions", OWNER)
    }

    async fn rollback_policy_set(
        &self,
        _request: Request<RollbackPolicySetRequest>,
    ) -> Result<Response<RollbackPolicySetResponse>, Status> {
        not_yet_served("RollbackPolicySet", OWNER)
    }
}
