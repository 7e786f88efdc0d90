//! gRPC handlers of `agentsec.exchange.v1.ExchangeService`.

use std::sync::Arc;

use agentsec_common::admin_token::AdminVerifier;
use agentsec_common::bearer::bearer_token;
use agentsec_common::error::{not_yet_served, ApiError};
use agentsec_common::keys::Jwks;
use agentsec_proto::exchange::v1::exchange_service_server::ExchangeService;
use agentsec_proto::exchange::v1::*;
use tonic::{Request, Response, Status};

/// Who delivers the RPCs this release does not serve yet.
const OWNER: &str = "the exchange-svc issue (#6)";

use crate::grants::{Caller, Grants};
use crate::person::UserIssuers;

pub struct ExchangeApi {
    jwks: Arc<Jwks>,
    grants: Arc<Grants>,
    user_issuers: Arc<UserIssuers>,
    admin: Option<Arc<AdminVerifier>>,
}

impl ExchangeApi {
    pub fn new(
        jwks: Arc<Jwks>,
        grants: Arc<Grants>,
        user_issuers: Arc<UserIssuers>,
        admin: Option<Arc<AdminVerifier>>,
    ) -> Self {
        Self {
            jwks,
            grants,
            user_issuers,
            admin,
        }
    }

    /// The caller behind `authorization: Bearer <token>`: an admin when the
    /// token's `iss` is `admin.issuer`, a person otherwise.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, ApiError> {
        let token = bearer_token(request.metadata())?;
        let unchecked = crate::person::peek(token)?;
        if let Some(admin) = self
            .admin
            .as_ref()
            .filter(|admin| admin.issues(&unchecked.iss))
        {
            return Ok(Caller::Admin(admin.verify(token).await?));
        }
        Ok(Caller::Person(
            self.user_issuers
                .verify(token, chrono::Utc::now().timestamp())
                .await?,
        ))
    }

    /// The calling person (CreateGrant: a grant is the person's own
    /// consent, so admin tokens are refused).
    async fn person<T>(&self, request: &Request<T>) -> Result<crate::person::Person, ApiError> {
        match self.caller(request).await? {
            Caller::Person(person) => Ok(person),
            Caller::Admin(_) => Err(ApiError::PermissionDenied {
                reason: "admin tokens cannot create grants: a grant is the person's own consent"
                    .to_owned(),
            }),
        }
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
        request: Request<CreateGrantRequest>,
    ) -> Result<Response<CreateGrantResponse>, Status> {
        let person = self.person(&request).await?;
        let grant = self
            .grants
            .create(&person, request.into_inner().grant)
            .await?;
        Ok(Response::new(CreateGrantResponse { grant: Some(grant) }))
    }

    async fn get_grant(
        &self,
        request: Request<GetGrantRequest>,
    ) -> Result<Response<GetGrantResponse>, Status> {
        let caller = self.caller(&request).await?;
        let grant = self
            .grants
            .get(&caller, &request.get_ref().grant_id)
            .await?;
        Ok(Response::new(GetGrantResponse { grant: Some(grant) }))
    }

    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let (grants, page) = self.grants.list(&caller, request.get_ref()).await?;
        Ok(Response::new(ListGrantsResponse {
            grants,
            page: Some(page),
        }))
    }

    async fn revoke_grant(
        &self,
        request: Request<RevokeGrantRequest>,
    ) -> Result<Response<RevokeGrantResponse>, Status> {
        let caller = self.caller(&request).await?;
        let grant = self.grants.revoke(&caller, request.get_ref()).await?;
        Ok(Response::new(RevokeGrantResponse { grant: Some(grant) }))
    }

    async fn introspect_token(
        &self,
        _request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        not_yet_served("IntrospectToken", OWNER)
    }
}
