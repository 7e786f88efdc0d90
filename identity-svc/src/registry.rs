//! The admin operations on agents and their credentials (client secrets,
//! public keys, federated credentials). Each change runs
//! in one transaction that also queues its audit event (so a change that
//! cannot be audited does not happen), then publishes an invalidation event.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentsec_common::error::ApiError;
use agentsec_proto::common::v1::Outcome;
use agentsec_proto::identity::v1 as pb;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::domain::agent::{Agent, AgentFields, Status};
use crate::domain::{jwk, validate};
use crate::events::{AuditRecord, Events, Invalidation, InvalidationKind};
use crate::federation::Federation;
use crate::oauth::claims::AdminScope;
use crate::secrets::{self, Pepper};
use crate::store::agents::{self, AgentFilter, AgentStoreError};
use crate::store::credentials::{self, Credential, Federated, Kind, SubjectMatch};
use agentsec_common::page::Page;
use agentsec_common::time::optional_datetime;

/// Most client secrets per agent (rotation needs two; five leaves room).
pub const MAX_SECRETS: u32 = 5;
const MAX_PUBLIC_KEYS: u64 = 10;
const MAX_FEDERATED: u64 = 20;
/// Longest issuer, subject and subject pattern of a federated credential.
const MAX_FEDERATED_SUBJECT: usize = 512;
const MAX_FEDERATED_AUDIENCE: usize = 256;
const MAX_SECRET_TTL_SECS: i64 = 2 * 365 * 24 * 3600;
const MAX_LIST_ATTRIBUTES: usize = 16;
/// How many rows a list reads per round while filtering by attributes.
const ATTRIBUTE_SCAN_CHUNK: u64 = 500;

/// A lifecycle change requested by an admin.
#[derive(Debug, Clone, Copy)]
pub enum Transition {
    Suspend,
    Reactivate,
    Revoke,
}

pub struct Registry {
    pub db: DatabaseConnection,
    pub events: Events,
    pub pepper: Pepper,
    /// The trusted issuers federated credentials may name.
    pub federation: Arc<Federation>,
    pub standing: Arc<crate::standing::Standing>,
}

fn store_error(err: AgentStoreError) -> ApiError {
    match err {
        AgentStoreError::Db(err) => ApiError::database("agent store", err),
        other => ApiError::internal("agent store", other),
    }
}

/// A duplicate name is the caller's problem; anything else is ours.
fn save_error(name: &str) -> impl Fn(AgentStoreError) -> ApiError + '_ {
    move |err| match err {
        AgentStoreError::DuplicateName => ApiError::AlreadyExists {
            kind: "agent named",
            id: validate::printable(name),
        },
        other => store_error(other),
    }
}

fn db_error(err: sea_orm::DbErr) -> ApiError {
    ApiError::database("identity database", err)
}

impl Registry {
    /// What enforcement points need to know about revocations (see
    /// `store::revocations`). Only a global admin may list it: it spans
    /// every tenant.
    pub async fn revocations(
        &self,
        admin: &AdminScope,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<crate::store::revocations::Revocations, ApiError> {
        if *admin != AdminScope::Global {
            return Err(ApiError::PermissionDenied {
                reason: "listing revocations needs a global admin".to_owned(),
            });
        }
        crate::store::revocations::list(&self.db, since, now)
            .await
            .map_err(db_error)
    }
}

/// A federated credential's match rules from the request, validated.
fn federated_from_proto(info: &pb::FederatedCredentialInfo) -> Result<Federated, ApiError> {
    use pb::federated_credential_info::SubjectMatch as Proto;
    validate::required("federated.issuer", &info.issuer, MAX_FEDERATED_SUBJECT)?;
    let subject = match &info.subject_match {
        Some(Proto::Subject(subject)) => {
            validate::required("federated.subject", subject, MAX_FEDERATED_SUBJECT)?;
            SubjectMatch::Exact(subject.clone())
        }
        Some(Proto::SubjectPattern(pattern)) => {
            validate::required("federated.subject_pattern", pattern, MAX_FEDERATED_SUBJECT)?;
            // A leading `*` would let the credential accept subjects of
            // every namespace or repository of the issuer.
            if pattern.starts_with('*') {
                return Err(ApiError::invalid(
                    "federated.subject_pattern",
                    "must not begin with `*`",
                ));
            }
            SubjectMatch::Pattern(pattern.clone())
        }
        None => {
            return Err(ApiError::invalid(
                "federated.subject_match",
                "set exactly one of subject and subject_pattern",
            ))
        }
    };
    validate::required("federated.audience", &info.audience, MAX_FEDERATED_AUDIENCE)?;
    Ok(Federated {
        issuer: info.issuer.clone(),
        subject,
        audience: info.audience.clone(),
    })
}

/// An optional expiry, which must lie ahead of `now`.
fn future_time(
    time: Option<&prost_types::Timestamp>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let time = time
        .map(|time| agentsec_common::time::required_datetime("expire_time", time))
        .transpose()?;
    if time.is_some_and(|expire| expire <= now) {
        return Err(ApiError::invalid("expire_time", "must be in the future"));
    }
    Ok(time)
}

impl Registry {
    async fn begin(&self) -> Result<DatabaseTransaction, ApiError> {
        self.db.begin().await.map_err(db_error)
    }

    /// The agent if it exists and the admin may see it; NOT_FOUND otherwise
    /// (other tenants' agents do not exist for a tenant admin).
    async fn visible(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        admin: &AdminScope,
        id: &str,
        lock: bool,
    ) -> Result<Agent, ApiError> {
        validate::required("agent_id", id, 64)?;
        let agent = if lock {
            agents::get_for_update(db, id).await
        } else {
            agents::get(db, id).await
        }
        .map_err(store_error)?;
        agent
            .filter(|agent| admin.covers(&agent.tenant))
            .ok_or_else(|| ApiError::not_found("agent", validate::printable(id)))
    }

    pub async fn register(
        &self,
        admin: &AdminScope,
        agent: Option<pb::Agent>,
    ) -> Result<Agent, ApiError> {
        let agent = agent.ok_or_else(|| ApiError::invalid("agent", "is required"))?;
        validate::tenant("agent.tenant", &agent.tenant)?;
        if !admin.covers(&agent.tenant) {
            return Err(ApiError::PermissionDenied {
                reason: "a tenant admin may only register agents in its own tenant".to_owned(),
            });
        }
        let fields = AgentFields::from_proto(&agent, "agent")?;
        let now = Utc::now();
        let stored = Agent {
            id: agentsec_common::ids::new_id("agt_")
                .map_err(|err| ApiError::internal("agent id", err))?,
            tenant: agent.tenant,
            fields,
            status: Status::Active,
            status_reason: String::new(),
            token_generation: 0,
            generation_time: None,
            create_time: now,
            update_time: now,
        };
        let txn = self.begin().await?;
        agents::insert(&txn, &stored)
            .await
            .map_err(save_error(&stored.fields.name))?;
        self.events
            .audit(
                AuditRecord::new(
                    "agent.registered",
                    &stored.tenant,
                    &stored.id,
                    Outcome::Allow,
                )
                .attribute("owner", stored.fields.owner.clone()),
            )
            .await?;
        txn.commit().await.map_err(db_error)?;
        if !stored.fields.attributes.is_empty() {
            // Followers that keep agents' attributes (policy-svc) learn the
            // new agent's.
            self.events
                .invalidate(Invalidation::new(
                    InvalidationKind::AgentUpdated,
                    &stored.tenant,
                    &stored.id,
                ))
                .await;
        }
        Ok(stored)
    }

    pub async fn get(&self, admin: &AdminScope, id: &str) -> Result<Agent, ApiError> {
        self.visible(&self.db, admin, id, false).await
    }

    pub async fn list(
        &self,
        admin: &AdminScope,
        request: &pb::ListAgentsRequest,
    ) -> Result<(Vec<Agent>, String), ApiError> {
        let tenant = match (admin, request.tenant.as_str()) {
            (AdminScope::Tenant(own), "") => Some(own.clone()),
            (AdminScope::Tenant(own), named) if named == own => Some(own.clone()),
            (AdminScope::Tenant(_), _) => {
                return Err(ApiError::PermissionDenied {
                    reason: "a tenant admin may only list its own tenant".to_owned(),
                })
            }
            (AdminScope::Global, "") => None,
            (AdminScope::Global, named) => {
                validate::tenant("tenant", named)?;
                Some(named.to_owned())
            }
        };
        if !request.owner.is_empty() {
            validate::at_most("owner", &request.owner, validate::MAX_NAME)?;
        }
        if request.attributes.len() > MAX_LIST_ATTRIBUTES {
            return Err(ApiError::invalid(
                "attributes",
                format!("at most {MAX_LIST_ATTRIBUTES} entries"),
            ));
        }
        let wanted: BTreeMap<&String, &String> = request.attributes.iter().collect();
        let filter = AgentFilter {
            tenant,
            owner: (!request.owner.is_empty()).then(|| request.owner.clone()),
            status: Status::from_proto(request.status)?,
            updated_since: optional_datetime("updated_since", request.updated_since.as_ref())?,
        };
        let page = Page::parse(
            request.page.as_ref(),
            format!("agents|{filter:?}|{wanted:?}"),
        )?;
        let mut found = Vec::new();
        let mut after = page.after.clone();
        // Attribute filters are applied here, reading on until the page is
        // full or the listing ends.
        let chunk = if wanted.is_empty() {
            page.size + 1
        } else {
            ATTRIBUTE_SCAN_CHUNK
        };
        loop {
            let rows = agents::list(&self.db, &filter, after.as_deref(), chunk)
                .await
                .map_err(store_error)?;
            let exhausted = (rows.len() as u64) < chunk;
            after = rows.last().map(|agent| agent.id.clone()).or(after);
            found.extend(rows.into_iter().filter(|agent| {
                wanted
                    .iter()
                    .all(|(key, value)| agent.fields.attributes.get(*key) == Some(*value))
            }));
            if exhausted || found.len() as u64 > page.size {
                break;
            }
        }
        let more = found.len() as u64 > page.size;
        found.truncate(page.size as usize);
        let next = page.next_token(found.last().map(|agent| agent.id.as_str()), more);
        Ok((found, next))
    }

    pub async fn update(
        &self,
        admin: &AdminScope,
        id: &str,
        update: Option<pb::Agent>,
        mask: Vec<String>,
    ) -> Result<Agent, ApiError> {
        let update = update.ok_or_else(|| ApiError::invalid("agent", "is required"))?;
        let txn = self.begin().await?;
        let mut agent = self.visible(&txn, admin, id, true).await?;
        if agent.status == Status::Revoked {
            return Err(ApiError::FailedPrecondition {
                reason: "the agent is revoked".to_owned(),
            });
        }
        agent.fields = agent.fields.updated(&update, &mask)?;
        agent.update_time = Utc::now();
        agents::save(&txn, &agent)
            .await
            .map_err(save_error(&agent.fields.name))?;
        self.events
            .audit(
                AuditRecord::new("agent.updated", &agent.tenant, &agent.id, Outcome::Allow)
                    .attribute("fields", mask.join(",")),
            )
            .await?;
        txn.commit().await.map_err(db_error)?;
        self.standing.forget_agent(&agent.id);
        self.events
            .invalidate(Invalidation::new(
                InvalidationKind::AgentUpdated,
                &agent.tenant,
                &agent.id,
            ))
            .await;
        Ok(agent)
    }

    pub async fn transition(
        &self,
        admin: &AdminScope,
        id: &str,
        transition: Transition,
        reason: &str,
    ) -> Result<Agent, ApiError> {
        validate::required("reason", reason, validate::MAX_REASON)?;
        let txn = self.begin().await?;
        let mut agent = self.visible(&txn, admin, id, true).await?;
        let (target, kind, invalidation) = match transition {
            Transition::Suspend => (
                Status::Suspended,
                "agent.suspended",
                InvalidationKind::AgentSuspended,
            ),
            Transition::Reactivate => (
                Status::Active,
                "agent.reactivated",
                InvalidationKind::AgentReactivated,
            ),
            Transition::Revoke => (
                Status::Revoked,
                "agent.revoked",
                InvalidationKind::AgentRevoked,
            ),
        };
        if agent.status == Status::Revoked && target != Status::Revoked {
            return Err(ApiError::FailedPrecondition {
                reason: "the agent is revoked, which is final".to_owned(),
            });
        }
        if agent.status == target {
            // Idempotent: nothing changes, nothing to audit.
            return Ok(agent);
        }
        let now = Utc::now();
        if target != Status::Active {
            // Tokens carry the generation they were issued in: every token
            // issued so far stops being active, and a later reactivation
            // does not bring them back.
            agent.token_generation += 1;
            agent.generation_time = Some(now);
        }
        agent.status = target;
        agent.status_reason = reason.to_owned();
        agent.update_time = now;
        agents::save(&txn, &agent).await.map_err(store_error)?;
        self.events
            .audit(AuditRecord::new(kind, &agent.tenant, &agent.id, Outcome::Allow).reason(reason))
            .await?;
        txn.commit().await.map_err(db_error)?;
        self.standing.forget_agent(&agent.id);
        let mut invalidation = Invalidation::new(invalidation, &agent.tenant, &agent.id);
        invalidation.token_generation = agent.token_generation;
        self.events.invalidate(invalidation).await;
        Ok(agent)
    }

    /// Creates a client secret; returns the stored credential and the
    /// secret, which is not kept anywhere.
    pub async fn create_secret(
        &self,
        admin: &AdminScope,
        request: &pb::CreateClientSecretRequest,
    ) -> Result<(Credential, String), ApiError> {
        validate::at_most(
            "description",
            &request.description,
            validate::MAX_CREDENTIAL_DESCRIPTION,
        )?;
        let now = Utc::now();
        let expire_time = match &request.ttl {
            None => None,
            Some(ttl)
                if ttl.seconds > 0 && ttl.seconds <= MAX_SECRET_TTL_SECS && ttl.nanos >= 0 =>
            {
                Some(now + chrono::Duration::seconds(ttl.seconds))
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "ttl",
                    "must be positive and at most 2 years",
                ))
            }
        };
        let secret =
            secrets::random_token(32).map_err(|err| ApiError::internal("client secret", err))?;
        let credential = self
            .add_credential(
                admin,
                &request.agent_id,
                u64::from(MAX_SECRETS),
                Credential {
                    kind: Kind::ClientSecret,
                    description: request.description.clone(),
                    create_time: now,
                    expire_time,
                    secret_hash: Some(self.pepper.hash(&secret).to_vec()),
                    secret_prefix: Some(secret.chars().take(8).collect()),
                    ..Credential::empty()
                },
            )
            .await?;
        Ok((credential, secret))
    }

    pub async fn add_public_key(
        &self,
        admin: &AdminScope,
        request: &pb::AddPublicKeyRequest,
    ) -> Result<Credential, ApiError> {
        validate::at_most(
            "description",
            &request.description,
            validate::MAX_CREDENTIAL_DESCRIPTION,
        )?;
        let key = jwk::register(
            request
                .jwk
                .as_ref()
                .ok_or_else(|| ApiError::invalid("jwk", "is required"))?,
        )?;
        let now = Utc::now();
        let expire_time = future_time(request.expire_time.as_ref(), now)?;
        self.add_credential(
            admin,
            &request.agent_id,
            MAX_PUBLIC_KEYS,
            Credential {
                kind: Kind::PublicKey,
                description: request.description.clone(),
                create_time: now,
                expire_time,
                kid: Some(key.kid),
                jwk: Some(key.json),
                ..Credential::empty()
            },
        )
        .await
    }

    /// Registers a federated credential: tokens of a trusted issuer whose
    /// subject and audience match become this agent's tokens through the
    /// jwt-bearer grant.
    pub async fn add_federated_credential(
        &self,
        admin: &AdminScope,
        request: &pb::AddFederatedCredentialRequest,
    ) -> Result<Credential, ApiError> {
        validate::at_most(
            "description",
            &request.description,
            validate::MAX_CREDENTIAL_DESCRIPTION,
        )?;
        let federated = federated_from_proto(
            request
                .federated
                .as_ref()
                .ok_or_else(|| ApiError::invalid("federated", "is required"))?,
        )?;
        let now = Utc::now();
        let expire_time = future_time(request.expire_time.as_ref(), now)?;
        if !self.federation.trusts(&federated.issuer) {
            return Err(ApiError::FailedPrecondition {
                reason: format!(
                    "issuer `{}` is not a trusted issuer of this server (see trusted_issuers in \
                     identity-svc's configuration)",
                    validate::printable(&federated.issuer)
                ),
            });
        }
        self.add_credential(
            admin,
            &request.agent_id,
            MAX_FEDERATED,
            Credential {
                kind: Kind::Federated,
                description: request.description.clone(),
                create_time: now,
                expire_time,
                federated: Some(federated),
                ..Credential::empty()
            },
        )
        .await
    }

    pub async fn list_credentials(
        &self,
        admin: &AdminScope,
        request: &pb::ListCredentialsRequest,
    ) -> Result<(Vec<Credential>, String), ApiError> {
        let agent = self
            .visible(&self.db, admin, &request.agent_id, false)
            .await?;
        let kind = match pb::CredentialType::try_from(request.r#type) {
            Ok(pb::CredentialType::Unspecified) => None,
            Ok(pb::CredentialType::ClientSecret) => Some(Kind::ClientSecret),
            Ok(pb::CredentialType::PublicKey) => Some(Kind::PublicKey),
            Ok(pb::CredentialType::Federated) => Some(Kind::Federated),
            Err(_) => return Err(ApiError::invalid("type", "unknown credential type")),
        };
        let page = Page::parse(
            request.page.as_ref(),
            format!("credentials|{}|{kind:?}", agent.id),
        )?;
        let mut rows = credentials::list(
            &self.db,
            &agent.id,
            kind,
            page.after.as_deref(),
            page.size + 1,
        )
        .await
        .map_err(db_error)?;
        let more = rows.len() as u64 > page.size;
        rows.truncate(page.size as usize);
        let next = page.next_token(rows.last().map(|c| c.id.as_str()), more);
        Ok((rows, next))
    }

    pub async fn delete_credential(
        &self,
        admin: &AdminScope,
        agent_id: &str,
        credential_id: &str,
    ) -> Result<(), ApiError> {
        validate::required("credential_id", credential_id, 64)?;
        let txn = self.begin().await?;
        let agent = self.visible(&txn, admin, agent_id, true).await?;
        if !credentials::delete(&txn, &agent.id, credential_id, Utc::now())
            .await
            .map_err(db_error)?
        {
            return Err(ApiError::not_found(
                "credential",
                validate::printable(credential_id),
            ));
        }
        self.events
            .audit(
                AuditRecord::new(
                    "credential.deleted",
                    &agent.tenant,
                    &agent.id,
                    Outcome::Allow,
                )
                .attribute("credential_id", credential_id),
            )
            .await?;
        txn.commit().await.map_err(db_error)?;
        self.standing.forget_credential(&agent.id, credential_id);
        let mut invalidation = Invalidation::new(
            InvalidationKind::CredentialDeleted,
            &agent.tenant,
            &agent.id,
        );
        invalidation.credential_id = credential_id.to_owned();
        self.events.invalidate(invalidation).await;
        Ok(())
    }

    /// Stores `credential` (its kind-specific fields filled in) for the
    /// agent, within the per-kind cap, audited in the same transaction.
    async fn add_credential(
        &self,
        admin: &AdminScope,
        agent_id: &str,
        max: u64,
        mut credential: Credential,
    ) -> Result<Credential, ApiError> {
        let txn = self.begin().await?;
        let agent = self.visible(&txn, admin, agent_id, true).await?;
        self.usable(&agent)?;
        if credentials::count(&txn, &agent.id, credential.kind)
            .await
            .map_err(db_error)?
            >= max
        {
            return Err(ApiError::FailedPrecondition {
                reason: format!(
                    "the agent already has {max} credentials of type {}; delete one first",
                    credential.kind.as_str()
                ),
            });
        }
        credential.id = agentsec_common::ids::new_id("cred_")
            .map_err(|err| ApiError::internal("credential id", err))?;
        credential.agent_id = agent.id.clone();
        match credentials::insert(&txn, &credential).await {
            Ok(()) => {}
            Err(err) if crate::store::is_duplicate(&err) => {
                return Err(ApiError::AlreadyExists {
                    kind: "public key kid",
                    id: credential.kid.unwrap_or_default(),
                })
            }
            Err(err) => return Err(db_error(err)),
        }
        self.audit_credential(&agent, "credential.created", &credential)
            .await?;
        txn.commit().await.map_err(db_error)?;
        // Its remembered secrets are stale now.
        self.standing.forget_agent(&agent.id);
        Ok(credential)
    }

    fn usable(&self, agent: &Agent) -> Result<(), ApiError> {
        if agent.status == Status::Revoked {
            return Err(ApiError::FailedPrecondition {
                reason: "the agent is revoked".to_owned(),
            });
        }
        Ok(())
    }

    async fn audit_credential(
        &self,
        agent: &Agent,
        kind: &'static str,
        credential: &Credential,
    ) -> Result<(), ApiError> {
        let mut record = AuditRecord::new(kind, &agent.tenant, &agent.id, Outcome::Allow)
            .attribute("credential_id", credential.id.clone())
            .attribute("credential_type", credential.kind.as_str());
        if let Some(federated) = &credential.federated {
            record = record.attribute("federated_issuer", federated.issuer.clone());
        }
        self.events.audit(record).await
    }
}
