//! gRPC handlers of `agentsec.exchange.v1.ExchangeService`.

use std::sync::Arc;

use agentsec_common::error::not_yet_served;
use agentsec_common::keys::Jwks;
use agentsec_proto::exchange::v1::exchange_service_server::ExchangeService;
use agentsec_proto::exchange::v1::*;
use tonic::{Request, Response, Status};

/// Who delivers the RPCs this release does not serve yet.
const OWNER: &str = "the exchange-svc issue (#6)";

pub struct ExchangeApi {
    jwks: Arc<Jwks>,
}

impl ExchangeApi {
    pub fn new(jwks: Arc<Jwks>) -> Self {
        Self { jwks }
    }
}

#[tonic::async_trait]
impl ExchangeService for ExchangeApi {
    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            jwks: Some(self.jwks.as_ref().into()),
        }))
    }

    async fn exchange(
        &self,
        _request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        not_yet_served("Exchange", OWNER)
    }

    async fn create_grant(
        &self,
        _request: Request<CreateGrantRequest>,
    ) -> Result<Response<CreateGrantResponse>, Status> {
        not_yet_served("CreateGrant", OWNER)
    }

    async fn get_grant(
        &self,
        _request: Request<GetGrantRequest>,
    ) -> Result<Response<GetGrantResponse>, Status> {
        not_yet_served("GetGrant", OWNER)
    }

    async fn list_grants(
        &self,
        _request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        not_yet_served("ListGrants", OWNER)
    }

    async fn revoke_grant(
        &self,
        _request: Request<RevokeGrantRequest>,
    ) -> Result<Response<RevokeGrantResponse>, Status> {
        not_yet_served("RevokeGrant", OWNER)
    }

    async fn introspect_token(
        &self,
        _request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        not_yet_served("IntrospectToken", OWNER)
    }
}
