//! gRPC handlers of `agentsec.identity.v1.IdentityService`.

use std::sync::Arc;

use agentsec_common::error::not_yet_served;
use agentsec_common::keys::Jwks;
use agentsec_proto::identity::v1::identity_service_server::IdentityService;
use agentsec_proto::identity::v1::*;
use tonic::{Request, Response, Status};

/// Who delivers the RPCs this release does not serve yet.
const OWNER: &str = "the identity-svc issue (#4)";

pub struct IdentityApi {
    jwks: Arc<Jwks>,
}

impl IdentityApi {
    pub fn new(jwks: Arc<Jwks>) -> Self {
        Self { jwks }
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            jwks: Some(self.jwks.as_ref().into()),
        }))
    }

    async fn register_agent(
        &self,
        _request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        not_yet_served("RegisterAgent", OWNER)
    }

    async fn get_agent(
        &self,
        _request: Request<GetAgentRequest>,
    ) -> Result<Response<GetAgentResponse>, Status> {
        not_yet_served("GetAgent", OWNER)
    }

    async fn list_agents(
        &self,
        _request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        not_yet_served("ListAgents", OWNER)
    }

    async fn update_agent(
        &self,
        _request: Request<UpdateAgentRequest>,
    ) -> Result<Response<UpdateAgentResponse>, Status> {
        not_yet_served("UpdateAgent", OWNER)
    }

    async fn suspend_agent(
        &self,
        _request: Request<SuspendAgentRequest>,
    ) -> Result<Response<SuspendAgentResponse>, Status> {
        not_yet_served("SuspendAgent", OWNER)
    }

    async fn reactivate_agent(
        &self,
        _request: Request<ReactivateAgentRequest>,
    ) -> Result<Response<ReactivateAgentResponse>, Status> {
        not_yet_served("ReactivateAgent", OWNER)
    }

    async fn revoke_agent(
        &self,
        _request: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        not_yet_served("RevokeAgent", OWNER)
    }

    async fn create_client_secret(
        &self,
        _request: Request<CreateClientSecretRequest>,
    ) -> Result<Response<CreateClientSecretResponse>, Status> {
        not_yet_served("CreateClientSecret", OWNER)
    }

    async fn list_credentials(
        &self,
        _request: Request<ListCredentialsRequest>,
    ) -> Result<Response<ListCredentialsResponse>, Status> {
        not_yet_served("ListCredentials", OWNER)
    }

    async fn delete_credential(
        &self,
        _request: Request<DeleteCredentialRequest>,
    ) -> Result<Response<DeleteCredentialResponse>, Status> {
        not_yet_served("DeleteCredential", OWNER)
    }

    async fn add_public_key(
        &self,
        _request: Request<AddPublicKeyRequest>,
    ) -> Result<Response<AddPublicKeyResponse>, Status> {
        not_yet_served("AddPublicKey", OWNER)
    }

    async fn add_federated_credential(
        &self,
        _request: Request<AddFederatedCredentialRequest>,
    ) -> Result<Response<AddFederatedCredentialResponse>, Status> {
        not_yet_served("AddFederatedCredential", OWNER)
    }

    async fn issue_token(
        &self,
        _request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        not_yet_served("IssueToken", OWNER)
    }

    async fn introspect_token(
        &self,
        _request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        not_yet_served("IntrospectToken", OWNER)
    }

    async fn revoke_token(
        &self,
        _request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        not_yet_served("RevokeToken", OWNER)
    }

    async fn rotate_signing_key(
        &self,
        _request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        not_yet_served("RotateSigningKey", OWNER)
    }
}
