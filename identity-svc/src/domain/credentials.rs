//! An agent's credentials in the registry: client secrets, public keys and
//! federated credentials are added (each kind within its cap, never to a
//! revoked agent), listed and deleted; each change audited in its unit of
//! work.

use agentsec_common::admin_token::AdminScope;
use chrono::{DateTime, Utc};

use super::agent::Agent;
use super::credential::{Credential, CredentialQuery, Kind, NewFederated, NewPublicKey, NewSecret};
use super::paging::PageRequest;
use super::registry::{usable, Registry};
use super::{jwk, validate};
use crate::error::IdentityError;
use crate::events::{self, Invalidation, InvalidationKind};
use crate::secrets;
use crate::store::{CredentialTx, RegistryStore, RegistryTx, Written};

/// Most client secrets per agent (rotation needs two; five leaves room).
pub const MAX_SECRETS: u32 = 5;
const MAX_PUBLIC_KEYS: u64 = 10;
const MAX_FEDERATED: u64 = 20;
const MAX_SECRET_TTL_SECS: i64 = 2 * 365 * 24 * 3600;
/// Longest credential id accepted in a request.
const MAX_CREDENTIAL_ID: usize = 64;
/// How many characters of a secret are kept to tell secrets apart.
const SECRET_PREFIX_CHARS: usize = 8;

/// An optional expiry, which must lie ahead of `now`.
fn future(
    time: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, IdentityError> {
    if time.is_some_and(|expire| expire <= now) {
        return Err(IdentityError::invalid(
            "expire_time",
            "must be in the future",
        ));
    }
    Ok(time)
}

fn description(description: &str) -> Result<(), IdentityError> {
    validate::at_most(
        "description",
        description,
        validate::MAX_CREDENTIAL_DESCRIPTION,
    )
}

impl<S: RegistryStore> Registry<S> {
    /// Creates a client secret; returns the stored credential and the
    /// secret, which is not kept anywhere.
    pub async fn create_secret(
        &self,
        admin: &AdminScope,
        request: NewSecret,
    ) -> Result<(Credential, String), IdentityError> {
        description(&request.description)?;
        let now = Utc::now();
        let expire_time = match request.ttl {
            None => None,
            Some(ttl)
                if ttl.seconds > 0 && ttl.seconds <= MAX_SECRET_TTL_SECS && ttl.nanos >= 0 =>
            {
                Some(now + chrono::Duration::seconds(ttl.seconds))
            }
            Some(_) => {
                return Err(IdentityError::invalid(
                    "ttl",
                    "must be positive and at most 2 years",
                ))
            }
        };
        let secret = secrets::random_token(32)
            .map_err(|err| IdentityError::internal("client secret", err))?;
        let credential = self
            .add_credential(
                admin,
                &request.agent_id,
                u64::from(MAX_SECRETS),
                Credential {
                    kind: Kind::ClientSecret,
                    description: request.description,
                    create_time: now,
                    expire_time,
                    secret_hash: Some(self.pepper.hash(&secret).to_vec()),
                    secret_prefix: Some(secret.chars().take(SECRET_PREFIX_CHARS).collect()),
                    ..Credential::empty()
                },
            )
            .await?;
        Ok((credential, secret))
    }

    /// Registers a public key the agent signs `private_key_jwt` client
    /// assertions with.
    pub async fn add_public_key(
        &self,
        admin: &AdminScope,
        request: NewPublicKey,
    ) -> Result<Credential, IdentityError> {
        description(&request.description)?;
        let key = jwk::register(
            request
                .jwk
                .as_ref()
                .ok_or_else(|| IdentityError::invalid("jwk", "is required"))?,
        )?;
        let now = Utc::now();
        let expire_time = future(request.expire_time, now)?;
        self.add_credential(
            admin,
            &request.agent_id,
            MAX_PUBLIC_KEYS,
            Credential {
                kind: Kind::PublicKey,
                description: request.description,
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
        request: NewFederated,
    ) -> Result<Credential, IdentityError> {
        description(&request.description)?;
        let federated = request
            .federated
            .as_ref()
            .ok_or_else(|| IdentityError::invalid("federated", "is required"))?
            .validate()?;
        let now = Utc::now();
        let expire_time = future(request.expire_time, now)?;
        if !self.federation.trusts(&federated.issuer) {
            return Err(IdentityError::precondition(format!(
                "issuer `{}` is not a trusted issuer of this server (see trusted_issuers in \
                 identity-svc's configuration)",
                validate::printable(&federated.issuer)
            )));
        }
        self.add_credential(
            admin,
            &request.agent_id,
            MAX_FEDERATED,
            Credential {
                kind: Kind::Federated,
                description: request.description,
                create_time: now,
                expire_time,
                federated: Some(federated),
                ..Credential::empty()
            },
        )
        .await
    }

    /// One page of the agent's credentials, by id, and the cursor of the
    /// next page ("" after the last).
    pub async fn list_credentials(
        &self,
        admin: &AdminScope,
        query: CredentialQuery,
        page: impl PageRequest,
    ) -> Result<(Vec<Credential>, String), IdentityError> {
        let agent = self.get(admin, &query.agent_id).await?;
        let kind = query.kind;
        let page = page.page(format!("credentials|{}|{kind:?}", agent.id))?;
        let mut rows = self
            .store
            .credentials(&agent.id, kind, page.after.as_deref(), page.size + 1)
            .await?;
        let more = rows.len() as u64 > page.size;
        rows.truncate(page.size as usize);
        let next = page.next_token(rows.last().map(|c| c.id.as_str()), more);
        Ok((rows, next))
    }

    /// Deletes the credential; tokens obtained with it stop being active.
    pub async fn delete_credential(
        &self,
        admin: &AdminScope,
        agent_id: &str,
        credential_id: &str,
    ) -> Result<(), IdentityError> {
        validate::required("credential_id", credential_id, MAX_CREDENTIAL_ID)?;
        let mut tx = self.store.begin().await?;
        let agent = Self::locked(&mut tx, admin, agent_id).await?;
        if !tx
            .delete_credential(&agent.id, credential_id, Utc::now())
            .await?
        {
            return Err(IdentityError::not_found(
                "credential",
                validate::printable(credential_id),
            ));
        }
        self.events
            .audit(
                events::change("credential.deleted", &agent.tenant, &agent.id)
                    .attribute("credential_id", credential_id),
            )
            .await?;
        tx.commit().await?;
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
    /// agent, within the per-kind cap, audited in the same unit of work.
    async fn add_credential(
        &self,
        admin: &AdminScope,
        agent_id: &str,
        max: u64,
        mut credential: Credential,
    ) -> Result<Credential, IdentityError> {
        let mut tx = self.store.begin().await?;
        let agent = Self::locked(&mut tx, admin, agent_id).await?;
        usable(&agent)?;
        if tx.count_credentials(&agent.id, credential.kind).await? >= max {
            return Err(IdentityError::precondition(format!(
                "the agent already has {max} credentials of type {}; delete one first",
                credential.kind.as_str()
            )));
        }
        credential.id = agentsec_common::ids::new_id("cred_")
            .map_err(|err| IdentityError::internal("credential id", err))?;
        credential.agent_id = agent.id.clone();
        if tx.insert_credential(&credential).await? == Written::Duplicate {
            return Err(IdentityError::AlreadyExists {
                kind: "public key kid",
                id: credential.kid.unwrap_or_default(),
            });
        }
        self.events.audit(created(&agent, &credential)).await?;
        tx.commit().await?;
        // Its remembered secrets are stale now.
        self.standing.forget_agent(&agent.id);
        Ok(credential)
    }
}

fn created(agent: &Agent, credential: &Credential) -> crate::events::AuditRecord {
    let mut record = events::change("credential.created", &agent.tenant, &agent.id)
        .attribute("credential_id", credential.id.clone())
        .attribute("credential_type", credential.kind.as_str());
    if let Some(federated) = &credential.federated {
        record = record.attribute("federated_issuer", federated.issuer.clone());
    }
    record
}
