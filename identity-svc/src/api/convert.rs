//! Conversions between the identity contract and identity-svc's domain
//! types. Fields are only read and shaped here; the domain checks them.

use agentsec_common::keys::{self, store::StoredKey};
use agentsec_common::page::Page;
use agentsec_common::time::{optional_datetime, timestamp};
use agentsec_proto::common::v1 as common;
use agentsec_proto::identity::v1 as pb;
use pb::federated_credential_info::SubjectMatch as ProtoSubjectMatch;

use crate::domain::agent::{Agent, AgentInput, AgentQuery, Ceiling, NewAgent, Status};
use crate::domain::credential::{
    Credential, CredentialQuery, FederatedInput, Kind, NewFederated, NewPublicKey, NewSecret,
    SubjectMatch, Ttl,
};
use crate::domain::jwk::{self, Jwk};
use crate::domain::paging::PageRequest;
use crate::error::IdentityError;

impl PageRequest for Option<&common::PageRequest> {
    fn page(self, scope: String) -> Result<Page, IdentityError> {
        Ok(Page::parse(self, scope)?)
    }
}

/// An agent message a request must carry.
pub fn required_agent(agent: Option<pb::Agent>) -> Result<pb::Agent, IdentityError> {
    agent.ok_or_else(|| IdentityError::invalid("agent", "is required"))
}

impl From<pb::Agent> for AgentInput {
    fn from(agent: pb::Agent) -> Self {
        Self {
            owner: agent.owner,
            name: agent.name,
            description: agent.description,
            model: agent.model,
            provider: agent.provider,
            attributes: agent.attributes,
            ceiling: agent.ceiling.map(|ceiling| Ceiling {
                audiences: ceiling.audiences,
                scopes: ceiling.scopes,
            }),
        }
    }
}

impl TryFrom<pb::RegisterAgentRequest> for NewAgent {
    type Error = IdentityError;

    fn try_from(request: pb::RegisterAgentRequest) -> Result<Self, IdentityError> {
        let agent = required_agent(request.agent)?;
        Ok(Self {
            tenant: agent.tenant.clone(),
            fields: agent.into(),
        })
    }
}

impl From<Status> for pb::AgentStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Active => Self::Active,
            Status::Suspended => Self::Suspended,
            Status::Revoked => Self::Revoked,
        }
    }
}

/// A status filter: UNSPECIFIED is any status.
fn status_filter(status: i32) -> Result<Option<Status>, IdentityError> {
    match pb::AgentStatus::try_from(status) {
        Ok(pb::AgentStatus::Unspecified) => Ok(None),
        Ok(pb::AgentStatus::Active) => Ok(Some(Status::Active)),
        Ok(pb::AgentStatus::Suspended) => Ok(Some(Status::Suspended)),
        Ok(pb::AgentStatus::Revoked) => Ok(Some(Status::Revoked)),
        Err(_) => Err(IdentityError::invalid("status", "unknown status")),
    }
}

impl From<&Agent> for pb::Agent {
    fn from(agent: &Agent) -> Self {
        Self {
            id: agent.id.clone(),
            tenant: agent.tenant.clone(),
            owner: agent.fields.owner.clone(),
            name: agent.fields.name.clone(),
            description: agent.fields.description.clone(),
            model: agent.fields.model.clone(),
            provider: agent.fields.provider.clone(),
            status: pb::AgentStatus::from(agent.status) as i32,
            status_reason: agent.status_reason.clone(),
            attributes: agent.fields.attributes.clone().into_iter().collect(),
            ceiling: Some(pb::Ceiling {
                audiences: agent.fields.ceiling_audiences.clone(),
                scopes: agent.fields.ceiling_scopes.clone(),
            }),
            create_time: Some(timestamp(agent.create_time)),
            update_time: Some(timestamp(agent.update_time)),
        }
    }
}

impl TryFrom<&pb::ListAgentsRequest> for AgentQuery {
    type Error = IdentityError;

    fn try_from(request: &pb::ListAgentsRequest) -> Result<Self, IdentityError> {
        Ok(Self {
            tenant: request.tenant.clone(),
            owner: request.owner.clone(),
            status: status_filter(request.status)?,
            attributes: request.attributes.clone(),
            updated_since: optional_datetime("updated_since", request.updated_since.as_ref())?,
        })
    }
}

impl From<&common::Jwk> for Jwk {
    fn from(jwk: &common::Jwk) -> Self {
        Self {
            kty: jwk.kty.clone(),
            kid: jwk.kid.clone(),
            r#use: jwk.r#use.clone(),
            alg: jwk.alg.clone(),
            crv: jwk.crv.clone(),
            x: jwk.x.clone(),
            y: jwk.y.clone(),
            n: jwk.n.clone(),
            e: jwk.e.clone(),
        }
    }
}

impl From<Jwk> for common::Jwk {
    fn from(jwk: Jwk) -> Self {
        Self {
            kty: jwk.kty,
            kid: jwk.kid,
            r#use: jwk.r#use,
            alg: jwk.alg,
            crv: jwk.crv,
            x: jwk.x,
            y: jwk.y,
            n: jwk.n,
            e: jwk.e,
        }
    }
}

impl From<&pb::CreateClientSecretRequest> for NewSecret {
    fn from(request: &pb::CreateClientSecretRequest) -> Self {
        Self {
            agent_id: request.agent_id.clone(),
            description: request.description.clone(),
            ttl: request.ttl.as_ref().map(|ttl| Ttl {
                seconds: ttl.seconds,
                nanos: ttl.nanos,
            }),
        }
    }
}

impl TryFrom<&pb::AddPublicKeyRequest> for NewPublicKey {
    type Error = IdentityError;

    fn try_from(request: &pb::AddPublicKeyRequest) -> Result<Self, IdentityError> {
        Ok(Self {
            agent_id: request.agent_id.clone(),
            description: request.description.clone(),
            jwk: request.jwk.as_ref().map(Jwk::from),
            expire_time: optional_datetime("expire_time", request.expire_time.as_ref())?,
        })
    }
}

impl From<&pb::FederatedCredentialInfo> for FederatedInput {
    fn from(info: &pb::FederatedCredentialInfo) -> Self {
        Self {
            issuer: info.issuer.clone(),
            subject: info.subject_match.as_ref().map(|subject| match subject {
                ProtoSubjectMatch::Subject(subject) => SubjectMatch::Exact(subject.clone()),
                ProtoSubjectMatch::SubjectPattern(pattern) => {
                    SubjectMatch::Pattern(pattern.clone())
                }
            }),
            audience: info.audience.clone(),
        }
    }
}

impl TryFrom<&pb::AddFederatedCredentialRequest> for NewFederated {
    type Error = IdentityError;

    fn try_from(request: &pb::AddFederatedCredentialRequest) -> Result<Self, IdentityError> {
        Ok(Self {
            agent_id: request.agent_id.clone(),
            description: request.description.clone(),
            federated: request.federated.as_ref().map(FederatedInput::from),
            expire_time: optional_datetime("expire_time", request.expire_time.as_ref())?,
        })
    }
}

impl TryFrom<&pb::ListCredentialsRequest> for CredentialQuery {
    type Error = IdentityError;

    fn try_from(request: &pb::ListCredentialsRequest) -> Result<Self, IdentityError> {
        let kind = match pb::CredentialType::try_from(request.r#type) {
            Ok(pb::CredentialType::Unspecified) => None,
            Ok(pb::CredentialType::ClientSecret) => Some(Kind::ClientSecret),
            Ok(pb::CredentialType::PublicKey) => Some(Kind::PublicKey),
            Ok(pb::CredentialType::Federated) => Some(Kind::Federated),
            Err(_) => return Err(IdentityError::invalid("type", "unknown credential type")),
        };
        Ok(Self {
            agent_id: request.agent_id.clone(),
            kind,
        })
    }
}

impl From<&Credential> for pb::Credential {
    fn from(credential: &Credential) -> Self {
        let (r#type, details) = match credential.kind {
            Kind::ClientSecret => (
                pb::CredentialType::ClientSecret,
                pb::credential::Details::ClientSecret(pb::ClientSecretInfo {
                    prefix: credential.secret_prefix.clone().unwrap_or_default(),
                }),
            ),
            Kind::PublicKey => {
                let jwk = jwk::stored(credential.jwk.as_deref().unwrap_or("{}"));
                let thumbprint = jwk::register(&jwk)
                    .map(|key| key.thumbprint)
                    .unwrap_or_default();
                (
                    pb::CredentialType::PublicKey,
                    pb::credential::Details::PublicKey(pb::PublicKeyInfo {
                        jwk: Some(jwk.into()),
                        thumbprint,
                    }),
                )
            }
            Kind::Federated => {
                let federated = credential.federated.as_ref();
                (
                    pb::CredentialType::Federated,
                    pb::credential::Details::Federated(pb::FederatedCredentialInfo {
                        issuer: federated
                            .map(|federated| federated.issuer.clone())
                            .unwrap_or_default(),
                        subject_match: federated.map(|federated| match &federated.subject {
                            SubjectMatch::Exact(subject) => {
                                ProtoSubjectMatch::Subject(subject.clone())
                            }
                            SubjectMatch::Pattern(pattern) => {
                                ProtoSubjectMatch::SubjectPattern(pattern.clone())
                            }
                        }),
                        audience: federated
                            .map(|federated| federated.audience.clone())
                            .unwrap_or_default(),
                    }),
                )
            }
        };
        Self {
            id: credential.id.clone(),
            agent_id: credential.agent_id.clone(),
            r#type: r#type as i32,
            description: credential.description.clone(),
            create_time: Some(timestamp(credential.create_time)),
            expire_time: credential.expire_time.map(timestamp),
            details: Some(details),
        }
    }
}

/// A published signing key as the contract lists it.
pub fn signing_key(key: &StoredKey) -> pb::SigningKey {
    let algorithm = match keys::SigningAlgorithm::parse(&key.algorithm) {
        Some(keys::SigningAlgorithm::EdDsa) => pb::SigningAlgorithm::Eddsa,
        Some(keys::SigningAlgorithm::Es256) => pb::SigningAlgorithm::Es256,
        None => pb::SigningAlgorithm::Unspecified,
    };
    let status = if key.retired_at.is_some() {
        pb::SigningKeyStatus::Retiring
    } else {
        pb::SigningKeyStatus::Active
    };
    pb::SigningKey {
        kid: key.jwk.kid.clone(),
        algorithm: algorithm as i32,
        status: status as i32,
        create_time: Some(timestamp(key.created_at)),
        retire_time: key.retired_at.map(timestamp),
        remove_time: key.publish_until.map(timestamp),
        public_jwk: Some((&key.jwk).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_fields_are_named_as_in_the_contract() {
        let err = NewAgent::try_from(pb::RegisterAgentRequest { agent: None })
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid `agent`: is required");
        let err = AgentQuery::try_from(&pb::ListAgentsRequest {
            status: 42,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert_eq!(err, "invalid `status`: unknown status");
        let err = CredentialQuery::try_from(&pb::ListCredentialsRequest {
            r#type: 42,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert_eq!(err, "invalid `type`: unknown credential type");
        let err = NewPublicKey::try_from(&pb::AddPublicKeyRequest {
            expire_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("`expire_time`"), "{err}");
    }

    #[test]
    fn an_agent_reads_back_as_it_was_sent() {
        let sent = pb::Agent {
            tenant: "acme".into(),
            owner: "alice".into(),
            name: "builder".into(),
            attributes: [("tier".to_string(), "2".to_string())].into(),
            ceiling: Some(pb::Ceiling {
                audiences: vec!["mcp".into()],
                scopes: vec!["repo:read".into()],
            }),
            ..Default::default()
        };
        let new = NewAgent::try_from(pb::RegisterAgentRequest {
            agent: Some(sent.clone()),
        })
        .unwrap();
        let fields = crate::domain::agent::AgentFields::validate(&new.fields, "agent").unwrap();
        let now = chrono::Utc::now();
        let agent = Agent {
            id: "agt_1".into(),
            tenant: new.tenant,
            fields,
            status: Status::Suspended,
            status_reason: "paused".into(),
            token_generation: 1,
            generation_time: Some(now),
            create_time: now,
            update_time: now,
        };
        let back = pb::Agent::from(&agent);
        assert_eq!(back.tenant, sent.tenant);
        assert_eq!(back.attributes, sent.attributes);
        assert_eq!(back.ceiling, sent.ceiling);
        assert_eq!(back.status, pb::AgentStatus::Suspended as i32);
    }
}
