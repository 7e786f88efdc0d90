//! gRPC handlers of `agentsec.identity.v1.IdentityService`: authenticate the
//! caller, convert, and hand over to the registry or the token service.

use std::sync::Arc;

use agentsec_common::admin_token::{AGENTS_READ_SCOPE, REVOCATIONS_READ_SCOPE};
use agentsec_common::error::ApiError;
use agentsec_common::keys;
use agentsec_proto::common::v1::PageResponse;
use agentsec_proto::identity::v1::identity_service_server::IdentityService;
use agentsec_proto::identity::v1::*;
use tonic::{Request, Response, Status};

use super::convert;
use crate::domain::agent::{AgentInput, AgentQuery, NewAgent};
use crate::domain::credential::{CredentialQuery, NewFederated, NewPublicKey, NewSecret};
use crate::domain::registry::{Registry, Transition};
use crate::oauth::claims::AdminScope;
use crate::oauth::{
    Caller, ClientCredentials, TokenRequest, TokenService, CLIENT_CREDENTIALS, JWT_BEARER,
};

/// At most this many entries of each list per streamed message.
const REVOCATION_BATCH: usize = 1_000;

type RevocationsStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<ListRevocationsResponse, Status>> + Send>>;

/// The listing in messages of at most [`REVOCATION_BATCH`] entries per
/// list, the last one (at least one) carrying `as_of`.
fn revocation_batches(
    listed: crate::store::revocations::Revocations,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<ListRevocationsResponse> {
    use agentsec_common::time::timestamp as ts;
    let mut tokens = listed.tokens.into_iter().map(|token| RevokedTokenEntry {
        jti: token.jti,
        agent_id: token.agent_id,
        expire_time: Some(prost_types::Timestamp {
            seconds: token.expire_time,
            nanos: 0,
        }),
        revoke_time: Some(ts(token.revoke_time)),
    });
    let mut credentials = listed
        .credentials
        .into_iter()
        .map(|credential| DeletedCredentialEntry {
            credential_id: credential.id,
            agent_id: credential.agent_id,
            delete_time: Some(ts(credential.delete_time)),
        });
    let mut agents = listed.agents.into_iter().map(|agent| AgentStandingEntry {
        agent_id: agent.agent_id,
        tenant: agent.tenant,
        status: agent
            .status
            .map_or(AgentStatus::Unspecified, AgentStatus::from) as i32,
        token_generation: agent.token_generation,
        generation_time: agent.generation_time.map(ts),
    });
    let mut batches = Vec::new();
    loop {
        let batch = ListRevocationsResponse {
            revoked_tokens: tokens.by_ref().take(REVOCATION_BATCH).collect(),
            deleted_credentials: credentials.by_ref().take(REVOCATION_BATCH).collect(),
            agents: agents.by_ref().take(REVOCATION_BATCH).collect(),
            as_of: None,
        };
        let empty = batch.revoked_tokens.is_empty()
            && batch.deleted_credentials.is_empty()
            && batch.agents.is_empty();
        if empty && !batches.is_empty() {
            break;
        }
        batches.push(batch);
        if empty {
            break;
        }
    }
    if let Some(last) = batches.last_mut() {
        last.as_of = Some(ts(now));
    }
    batches
}

pub struct IdentityApi {
    tokens: Arc<TokenService>,
    registry: Arc<Registry>,
}

impl IdentityApi {
    pub fn new(tokens: Arc<TokenService>, registry: Arc<Registry>) -> Self {
        Self { tokens, registry }
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let token = agentsec_common::bearer::bearer_token(request.metadata())?;
        Ok(self.tokens.bearer_caller(token).await?.0)
    }

    /// The admin scope of the caller; PERMISSION_DENIED for a non-admin.
    async fn admin<T>(&self, request: &Request<T>) -> Result<AdminScope, Status> {
        match self.caller(request).await? {
            Caller::Admin(scope) => Ok(scope),
            Caller::Agent { .. } | Caller::Service { .. } => Err(ApiError::PermissionDenied {
                reason:
                    "this call needs an admin token (scope `agentsec:admin` for the admin audience)"
                        .to_owned(),
            }
            .into()),
        }
    }

    /// Who may read what `scope` covers: an admin within its scope, or a
    /// service client holding `scope`, across every tenant.
    async fn reader<T>(&self, request: &Request<T>, scope: &str) -> Result<AdminScope, Status> {
        match self.caller(request).await? {
            Caller::Admin(admin) => Ok(admin),
            Caller::Service { scopes, .. } if scopes.iter().any(|held| held == scope) => {
                Ok(AdminScope::Global)
            }
            Caller::Agent { .. } | Caller::Service { .. } => Err(ApiError::PermissionDenied {
                reason: format!(
                    "this call needs an admin token (scope `agentsec:admin`) or a service \
                     token with scope `{scope}`, for the admin audience"
                ),
            }
            .into()),
        }
    }

    async fn transition(
        &self,
        request: Request<(String, String)>,
        transition: Transition,
    ) -> Result<Agent, Status> {
        let admin = self.admin(&request).await?;
        let (agent_id, reason) = request.into_inner();
        let agent = self
            .registry
            .transition(&admin, &agent_id, transition, &reason)
            .await?;
        Ok(Agent::from(&agent))
    }
}

fn page(next_page_token: String) -> Option<PageResponse> {
    Some(PageResponse { next_page_token })
}

fn seconds(value: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: value,
        nanos: 0,
    })
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            jwks: Some(self.tokens.keys.current().jwks.as_ref().into()),
        }))
    }

    async fn register_agent(
        &self,
        request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        let admin = self.admin(&request).await?;
        let agent = NewAgent::try_from(request.into_inner())?;
        let agent = self.registry.register(&admin, agent).await?;
        Ok(Response::new(RegisterAgentResponse {
            agent: Some(Agent::from(&agent)),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<GetAgentRequest>,
    ) -> Result<Response<GetAgentResponse>, Status> {
        let admin = self.reader(&request, AGENTS_READ_SCOPE).await?;
        let agent = self
            .registry
            .get(&admin, &request.get_ref().agent_id)
            .await?;
        Ok(Response::new(GetAgentResponse {
            agent: Some(Agent::from(&agent)),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let admin = self.reader(&request, AGENTS_READ_SCOPE).await?;
        let request = request.get_ref();
        let query = AgentQuery::try_from(request)?;
        let (agents, next) = self
            .registry
            .list(&admin, query, request.page.as_ref())
            .await?;
        Ok(Response::new(ListAgentsResponse {
            agents: agents.iter().map(Agent::from).collect(),
            page: page(next),
        }))
    }

    async fn update_agent(
        &self,
        request: Request<UpdateAgentRequest>,
    ) -> Result<Response<UpdateAgentResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.into_inner();
        let update = AgentInput::from(convert::required_agent(request.agent)?);
        let mask = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let agent = self
            .registry
            .update(&admin, &request.agent_id, update, mask)
            .await?;
        Ok(Response::new(UpdateAgentResponse {
            agent: Some(Agent::from(&agent)),
        }))
    }

    async fn suspend_agent(
        &self,
        request: Request<SuspendAgentRequest>,
    ) -> Result<Response<SuspendAgentResponse>, Status> {
        let agent = self
            .transition(request.map(|r| (r.agent_id, r.reason)), Transition::Suspend)
            .await?;
        Ok(Response::new(SuspendAgentResponse { agent: Some(agent) }))
    }

    async fn reactivate_agent(
        &self,
        request: Request<ReactivateAgentRequest>,
    ) -> Result<Response<ReactivateAgentResponse>, Status> {
        let agent = self
            .transition(
                request.map(|r| (r.agent_id, r.reason)),
                Transition::Reactivate,
            )
            .await?;
        Ok(Response::new(ReactivateAgentResponse {
            agent: Some(agent),
        }))
    }

    async fn revoke_agent(
        &self,
        request: Request<RevokeAgentRequest>,
    ) -> Result<Response<RevokeAgentResponse>, Status> {
        let agent = self
            .transition(request.map(|r| (r.agent_id, r.reason)), Transition::Revoke)
            .await?;
        Ok(Response::new(RevokeAgentResponse { agent: Some(agent) }))
    }

    async fn create_client_secret(
        &self,
        request: Request<CreateClientSecretRequest>,
    ) -> Result<Response<CreateClientSecretResponse>, Status> {
        let admin = self.admin(&request).await?;
        let (credential, secret) = self
            .registry
            .create_secret(&admin, NewSecret::from(request.get_ref()))
            .await?;
        Ok(Response::new(CreateClientSecretResponse {
            client_id: credential.agent_id.clone(),
            credential: Some(Credential::from(&credential)),
            client_secret: secret,
        }))
    }

    async fn list_credentials(
        &self,
        request: Request<ListCredentialsRequest>,
    ) -> Result<Response<ListCredentialsResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.get_ref();
        let query = CredentialQuery::try_from(request)?;
        let (credentials, next) = self
            .registry
            .list_credentials(&admin, query, request.page.as_ref())
            .await?;
        Ok(Response::new(ListCredentialsResponse {
            credentials: credentials.iter().map(Credential::from).collect(),
            page: page(next),
        }))
    }

    async fn delete_credential(
        &self,
        request: Request<DeleteCredentialRequest>,
    ) -> Result<Response<DeleteCredentialResponse>, Status> {
        let admin = self.admin(&request).await?;
        let request = request.get_ref();
        self.registry
            .delete_credential(&admin, &request.agent_id, &request.credential_id)
            .await?;
        Ok(Response::new(DeleteCredentialResponse {}))
    }

    async fn add_public_key(
        &self,
        request: Request<AddPublicKeyRequest>,
    ) -> Result<Response<AddPublicKeyResponse>, Status> {
        let admin = self.admin(&request).await?;
        let key = NewPublicKey::try_from(request.get_ref())?;
        let credential = self.registry.add_public_key(&admin, key).await?;
        Ok(Response::new(AddPublicKeyResponse {
            credential: Some(Credential::from(&credential)),
        }))
    }

    async fn add_federated_credential(
        &self,
        request: Request<AddFederatedCredentialRequest>,
    ) -> Result<Response<AddFederatedCredentialResponse>, Status> {
        let admin = self.admin(&request).await?;
        let federated = NewFederated::try_from(request.get_ref())?;
        let credential = self
            .registry
            .add_federated_credential(&admin, federated)
            .await?;
        Ok(Response::new(AddFederatedCredentialResponse {
            credential: Some(Credential::from(&credential)),
        }))
    }

    async fn issue_token(
        &self,
        request: Request<IssueTokenRequest>,
    ) -> Result<Response<IssueTokenResponse>, Status> {
        let request = request.into_inner();
        // UNSPECIFIED and unknown values are an unsupported grant type
        // (identity.proto); the HTTP form's missing parameter is another case.
        let grant_type = match GrantType::try_from(request.grant_type) {
            Ok(GrantType::ClientCredentials) => CLIENT_CREDENTIALS,
            Ok(GrantType::JwtBearer) => JWT_BEARER,
            _ => "unspecified",
        };
        let client_id = request.client_id.clone();
        let credentials = match request.client_authentication {
            Some(issue_token_request::ClientAuthentication::ClientSecret(secret)) => {
                Some(ClientCredentials::Secret {
                    client_id,
                    secret,
                    basic: false,
                })
            }
            Some(issue_token_request::ClientAuthentication::ClientAssertion(assertion)) => {
                Some(ClientCredentials::Assertion {
                    client_id: (!client_id.is_empty()).then_some(client_id),
                    assertion,
                })
            }
            None => None,
        };
        let issued = self
            .tokens
            .issue(TokenRequest {
                grant_type: grant_type.to_owned(),
                client_id: request.client_id,
                credentials,
                assertion: request.assertion,
                scope: request.scope,
                audience: request.audience,
                resource: request.resource,
            })
            .await?;
        Ok(Response::new(IssueTokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: issued.expires_in,
            scope: issued.scope,
        }))
    }

    async fn introspect_token(
        &self,
        request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        let caller = self.caller(&request).await?;
        let Some(claims) = self
            .tokens
            .introspect_for(&caller, &request.get_ref().token)
            .await?
        else {
            return Ok(Response::new(IntrospectTokenResponse::default()));
        };
        Ok(Response::new(IntrospectTokenResponse {
            active: true,
            scope: claims.scope,
            client_id: claims.client_id,
            token_type: "Bearer".to_owned(),
            exp: seconds(claims.exp),
            iat: seconds(claims.iat),
            nbf: seconds(claims.nbf),
            sub: claims.sub,
            aud: vec![claims.aud],
            iss: claims.iss,
            jti: claims.jti,
            tenant: claims.tenant.unwrap_or_default(),
            owner: claims.owner.unwrap_or_default(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let caller = self.caller(&request).await?;
        self.tokens
            .revoke(&caller, &request.get_ref().token)
            .await?;
        Ok(Response::new(RevokeTokenResponse {}))
    }

    type ListRevocationsStream = RevocationsStream;

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<Self::ListRevocationsStream>, Status> {
        let admin = self.reader(&request, REVOCATIONS_READ_SCOPE).await?;
        let since =
            agentsec_common::time::optional_datetime("since", request.get_ref().since.as_ref())?;
        let now = chrono::Utc::now();
        let listed = self.tokens.revocations(&admin, since, now).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            revocation_batches(listed, now).into_iter().map(Ok),
        ))))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<RotateSigningKeyRequest>,
    ) -> Result<Response<RotateSigningKeyResponse>, Status> {
        if self.admin(&request).await? != AdminScope::Global {
            return Err(ApiError::PermissionDenied {
                reason: "rotating the signing key needs a global admin".to_owned(),
            }
            .into());
        }
        let algorithm = match SigningAlgorithm::try_from(request.get_ref().algorithm) {
            Ok(SigningAlgorithm::Unspecified) => None,
            Ok(SigningAlgorithm::Eddsa) => Some(keys::SigningAlgorithm::EdDsa),
            Ok(SigningAlgorithm::Es256) => Some(keys::SigningAlgorithm::Es256),
            Err(_) => return Err(ApiError::invalid("algorithm", "unknown algorithm").into()),
        };
        let published = self.tokens.rotate_signing_key(algorithm).await?;
        let infos: Vec<SigningKey> = published.iter().map(convert::signing_key).collect();
        Ok(Response::new(RotateSigningKeyResponse {
            new_key: infos.first().cloned(),
            published_keys: infos,
        }))
    }
}
