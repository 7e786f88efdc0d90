//! The `credentials` table: client secrets (keyed hash only), public keys
//! and federated credentials; the sea-orm side of [`CredentialStore`] and
//! [`CredentialTx`].

use agentsec_common::store::{db_err, StoreError};
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::credential::{self, Entity as Credentials};
use super::registry::{SqlRegistryStore, SqlRegistryTx};
use super::{CredentialStore, CredentialTx, Written};
use crate::domain::credential::{Credential, Federated, Kind, SubjectMatch};

/// The credential of a row; `None` for a row this build did not write (an
/// unknown kind, or federated columns out of shape): not usable here, so
/// not listed.
fn from_row(row: credential::Model) -> Option<Credential> {
    let kind = Kind::parse(&row.kind)?;
    let federated = match kind {
        Kind::Federated => {
            let subject = match (row.fed_subject, row.fed_subject_pattern) {
                (Some(subject), None) => SubjectMatch::Exact(subject),
                (None, Some(pattern)) => SubjectMatch::Pattern(pattern),
                _ => return None,
            };
            Some(Federated {
                issuer: row.fed_issuer?,
                subject,
                audience: row.fed_audience?,
            })
        }
        Kind::ClientSecret | Kind::PublicKey => None,
    };
    Some(Credential {
        id: row.id,
        agent_id: row.agent_id,
        kind,
        description: row.description,
        create_time: row.create_time,
        expire_time: row.expire_time,
        secret_hash: row.secret_hash,
        secret_prefix: row.secret_prefix,
        kid: row.kid,
        jwk: row.jwk,
        federated,
    })
}

fn to_row(credential: &Credential) -> credential::ActiveModel {
    let federated = credential.federated.as_ref();
    let (subject, pattern) = match federated.map(|federated| &federated.subject) {
        Some(SubjectMatch::Exact(subject)) => (Some(subject.clone()), None),
        Some(SubjectMatch::Pattern(pattern)) => (None, Some(pattern.clone())),
        None => (None, None),
    };
    credential::ActiveModel {
        id: Set(credential.id.clone()),
        agent_id: Set(credential.agent_id.clone()),
        kind: Set(credential.kind.as_str().to_owned()),
        description: Set(credential.description.clone()),
        create_time: Set(credential.create_time),
        expire_time: Set(credential.expire_time),
        secret_hash: Set(credential.secret_hash.clone()),
        secret_prefix: Set(credential.secret_prefix.clone()),
        kid: Set(credential.kid.clone()),
        jwk: Set(credential.jwk.clone()),
        fed_issuer: Set(federated.map(|federated| federated.issuer.clone())),
        fed_subject: Set(subject),
        fed_subject_pattern: Set(pattern),
        fed_audience: Set(federated.map(|federated| federated.audience.clone())),
    }
}

impl CredentialStore for SqlRegistryStore {
    async fn credentials(
        &self,
        agent_id: &str,
        kind: Option<Kind>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<Credential>, StoreError> {
        let mut query = Credentials::find()
            .filter(credential::Column::AgentId.eq(agent_id))
            .order_by_asc(credential::Column::Id)
            .limit(limit);
        if let Some(kind) = kind {
            query = query.filter(credential::Column::Kind.eq(kind.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(credential::Column::Id.gt(after));
        }
        Ok(query
            .all(&self.db)
            .await
            .map_err(db_err("listing credentials"))?
            .into_iter()
            .filter_map(from_row)
            .collect())
    }

    async fn credential_exists(&self, id: &str) -> Result<bool, StoreError> {
        let found: Option<String> = Credentials::find_by_id(id.to_owned())
            .select_only()
            .column(credential::Column::Id)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(db_err("reading a credential"))?;
        Ok(found.is_some())
    }

    async fn public_key(
        &self,
        agent_id: &str,
        kid: &str,
    ) -> Result<Option<Credential>, StoreError> {
        Ok(Credentials::find()
            .filter(credential::Column::AgentId.eq(agent_id))
            .filter(credential::Column::Kind.eq(Kind::PublicKey.as_str()))
            .filter(credential::Column::Kid.eq(kid))
            .one(&self.db)
            .await
            .map_err(db_err("reading a public key"))?
            .and_then(from_row))
    }

    async fn federated_candidates(
        &self,
        issuer: &str,
        subject: &str,
        audiences: &[String],
    ) -> Result<Vec<Credential>, StoreError> {
        Ok(Credentials::find()
            .filter(credential::Column::FedIssuer.eq(issuer))
            .filter(credential::Column::Kind.eq(Kind::Federated.as_str()))
            .filter(credential::Column::FedAudience.is_in(audiences.iter().cloned()))
            .filter(
                Condition::any()
                    .add(credential::Column::FedSubject.eq(subject))
                    .add(credential::Column::FedSubjectPattern.is_not_null()),
            )
            .order_by_asc(credential::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_err("reading federated credentials"))?
            .into_iter()
            .filter_map(from_row)
            .collect())
    }
}

impl CredentialTx for SqlRegistryTx {
    async fn count_credentials(&mut self, agent_id: &str, kind: Kind) -> Result<u64, StoreError> {
        Credentials::find()
            .filter(credential::Column::AgentId.eq(agent_id))
            .filter(credential::Column::Kind.eq(kind.as_str()))
            .count(&self.txn)
            .await
            .map_err(db_err("counting credentials"))
    }

    async fn insert_credential(&mut self, credential: &Credential) -> Result<Written, StoreError> {
        match to_row(credential).insert(&self.txn).await {
            Ok(_) => Ok(Written::Stored),
            Err(err) if super::is_duplicate(&err) => Ok(Written::Duplicate),
            Err(err) => Err(StoreError::db("writing a credential", err)),
        }
    }

    async fn delete_credential(
        &mut self,
        agent_id: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let context = "deleting a credential";
        let result = Credentials::delete_many()
            .filter(credential::Column::Id.eq(id))
            .filter(credential::Column::AgentId.eq(agent_id))
            .exec(&self.txn)
            .await
            .map_err(db_err(context))?;
        if result.rows_affected == 0 {
            return Ok(false);
        }
        super::revocations::credential_deleted(&self.txn, id, agent_id, now)
            .await
            .map_err(db_err(context))?;
        Ok(true)
    }
}
