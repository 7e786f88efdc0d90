//! gRPC handlers of `agentsec.exchange.v1.ExchangeService`.

use std::sync::Arc;

use agentsec_common::admin_token::{AdminVerifier, REVOCATIONS_READ_SCOPE};
use agentsec_common::bearer::bearer_token;
use agentsec_common::error::ApiError;
use agentsec_common::keys::Jwks;
use agentsec_proto::common::v1::PageResponse;
use agentsec_proto::exchange::v1::exchange_service_server::ExchangeService;
use agentsec_proto::exchange::v1::*;
use tonic::{Request, Response, Status};

use super::convert::{self, actor_chain, timestamp_of_seconds};
use crate::domain::caller::{Caller, ListQuery, Person};
use crate::exchange::Exchanger;
use crate::grants::Grants;
use crate::person::UserIssuers;

pub struct ExchangeApi {
    jwks: Arc<Jwks>,
    grants: Arc<Grants>,
    user_issuers: Arc<UserIssuers>,
    admin: Option<Arc<AdminVerifier>>,
    exchanger: Arc<Exchanger>,
}

impl ExchangeApi {
    pub fn new(
        jwks: Arc<Jwks>,
        grants: Arc<Grants>,
        user_issuers: Arc<UserIssuers>,
        admin: Option<Arc<AdminVerifier>>,
        exchanger: Arc<Exchanger>,
    ) -> Self {
        Self {
            jwks,
            grants,
            user_issuers,
            admin,
            exchanger,
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
            return Ok(Caller::Admin(admin.verify(token).await?.into()));
        }
        Ok(Caller::Person(
            self.user_issuers
                .verify(token, chrono::Utc::now().timestamp())
                .await?,
        ))
    }

    /// A caller that may read what `scope` covers in every tenant: a global
    /// admin, or a service client holding `scope`. A person or a tenant's
    /// token is PERMISSION_DENIED.
    async fn cross_tenant_reader<T>(
        &self,
        request: &Request<T>,
        scope: &str,
    ) -> Result<(), ApiError> {
        let token = bearer_token(request.metadata())?;
        let unchecked = crate::person::peek(token)?;
        match self
            .admin
            .as_ref()
            .filter(|admin| admin.issues(&unchecked.iss))
        {
            Some(admin) => {
                let verified = admin.verify_identity_token(token).await?;
                admin.cross_tenant_reader(&verified, scope)
            }
            None => {
                self.user_issuers
                    .verify(token, chrono::Utc::now().timestamp())
                    .await?;
                Err(ApiError::PermissionDenied {
                    reason: format!(
                        "this call spans every tenant: a person's token cannot make it \
                         (it needs a global admin or a service token with scope `{scope}`)"
                    ),
                })
            }
        }
    }

    /// The calling person (CreateGrant: a grant is the person's own
    /// consent, so admin tokens are refused).
    async fn person<T>(&self, request: &Request<T>) -> Result<Person, ApiError> {
        match self.caller(request).await? {
            Caller::Person(person) => Ok(person),
            Caller::Admin(_) => Err(ApiError::PermissionDenied {
                reason: "admin tokens cannot create grants: a grant is the person's own consent"
                    .to_owned(),
            }),
        }
    }
}

/// policy.proto-style batches: at most this many entries per message.
const REVOCATION_BATCH: usize = 1_000;

type RevokedGrantsStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<ListRevokedGrantsResponse, Status>> + Send>,
>;

#[tonic::async_trait]
impl ExchangeService for ExchangeApi {
    type ListRevokedGrantsStream = RevokedGrantsStream;

    async fn list_revoked_grants(
        &self,
        request: Request<ListRevokedGrantsRequest>,
    ) -> Result<Response<Self::ListRevokedGrantsStream>, Status> {
        self.cross_tenant_reader(&request, REVOCATIONS_READ_SCOPE)
            .await?;
        let since =
            agentsec_common::time::optional_datetime("since", request.get_ref().since.as_ref())?;
        let now = chrono::Utc::now();
        let revoked = self.grants.revoked(since, now).await?;
        let mut batches: Vec<ListRevokedGrantsResponse> = revoked
            .chunks(REVOCATION_BATCH)
            .map(|chunk| ListRevokedGrantsResponse {
                grants: chunk.iter().map(RevokedGrantEntry::from).collect(),
                as_of: None,
            })
            .collect();
        if batches.is_empty() {
            batches.push(ListRevokedGrantsResponse::default());
        }
        if let Some(last) = batches.last_mut() {
            last.as_of = Some(agentsec_common::time::timestamp(now));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(
            batches.into_iter().map(Ok),
        ))))
    }
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
        request: Request<ExchangeRequest>,
    ) -> Result<Response<ExchangeResponse>, Status> {
        let issued = self.exchanger.exchange(request.into_inner()).await?;
        Ok(Response::new(issued.into()))
    }

    async fn create_grant(
        &self,
        request: Request<CreateGrantRequest>,
    ) -> Result<Response<CreateGrantResponse>, Status> {
        let person = self.person(&request).await?;
        let grant_request = convert::grant_request(request.into_inner().grant)?;
        let grant = self.grants.create(&person, grant_request).await?;
        Ok(Response::new(CreateGrantResponse {
            grant: Some(grant.into()),
        }))
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
        Ok(Response::new(GetGrantResponse {
            grant: Some(grant.into()),
        }))
    }

    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let request = request.get_ref();
        let page = self
            .grants
            .list(&caller, &ListQuery::from(request), request.page.as_ref())
            .await?;
        Ok(Response::new(ListGrantsResponse {
            grants: page.grants.into_iter().map(Grant::from).collect(),
            page: Some(PageResponse {
                next_page_token: page.next_page_token,
            }),
        }))
    }

    async fn revoke_grant(
        &self,
        request: Request<RevokeGrantRequest>,
    ) -> Result<Response<RevokeGrantResponse>, Status> {
        let caller = self.caller(&request).await?;
        let request = request.get_ref();
        let grant = self
            .grants
            .revoke(&caller, &request.grant_id, &request.reason)
            .await?;
        Ok(Response::new(RevokeGrantResponse {
            grant: Some(grant.into()),
        }))
    }

    async fn introspect_token(
        &self,
        request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        let visible = self
            .exchanger
            .authenticate_introspection(bearer_token(request.metadata())?)
            .await?;
        let Some(claims) = self
            .exchanger
            .introspect(&request.get_ref().token, &visible)
            .await?
        else {
            return Ok(Response::new(IntrospectTokenResponse::default()));
        };
        Ok(Response::new(IntrospectTokenResponse {
            active: true,
            scope: claims.scope.clone(),
            client_id: claims.azp.clone(),
            token_type: "Bearer".to_owned(),
            exp: Some(timestamp_of_seconds(claims.exp)),
            iat: Some(timestamp_of_seconds(claims.iat)),
            nbf: Some(timestamp_of_seconds(claims.nbf)),
            act: Some(actor_chain(&claims.act_chain())),
            sub: claims.sub,
            aud: vec![claims.aud],
            iss: claims.iss,
            jti: claims.jti,
            azp: claims.azp,
            grant_id: claims.grant_id,
            tenant: claims.tenant,
        }))
    }
}
