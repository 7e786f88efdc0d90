//! Credential rows: client secrets (keyed hash only), public keys and
//! federated credentials.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entities::credential::{self, Entity as Credentials};

/// Which kind of credential a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClientSecret,
    PublicKey,
    Federated,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::PublicKey => "public_key",
            Self::Federated => "federated",
        }
    }
}

/// A stored credential.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub agent_id: String,
    pub kind: Kind,
    pub description: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub secret_hash: Option<Vec<u8>>,
    pub secret_prefix: Option<String>,
    pub kid: Option<String>,
    pub jwk: Option<String>,
    /// What a federated credential accepts.
    pub federated: Option<Federated>,
}

/// Which external tokens a federated credential accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federated {
    pub issuer: String,
    pub subject: SubjectMatch,
    pub audience: String,
}

/// How the external token's `sub` must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    Exact(String),
    /// A glob where `*` matches any run of characters.
    Pattern(String),
}

impl Credential {
    /// A credential with every field empty, to fill in with `..`.
    pub fn empty() -> Self {
        Self {
            id: String::new(),
            agent_id: String::new(),
            kind: Kind::ClientSecret,
            description: String::new(),
            create_time: DateTime::<Utc>::default(),
            expire_time: None,
            secret_hash: None,
            secret_prefix: None,
            kid: None,
            jwk: None,
            federated: None,
        }
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expire_time.is_some_and(|expire| expire <= now)
    }
}

fn from_row(row: credential::Model) -> Option<Credential> {
    let kind = match row.kind.as_str() {
        "client_secret" => Kind::ClientSecret,
        "public_key" => Kind::PublicKey,
        "federated" => Kind::Federated,
        // A kind a newer release wrote: not usable here, so not listed.
        _ => return None,
    };
    let federated = match kind {
        Kind::Federated => {
            let subject = match (row.fed_subject, row.fed_subject_pattern) {
                (Some(subject), None) => SubjectMatch::Exact(subject),
                (None, Some(pattern)) => SubjectMatch::Pattern(pattern),
                // Not written by this release: unusable, so not listed.
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

pub async fn insert(db: &impl ConnectionTrait, credential: &Credential) -> Result<(), DbErr> {
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
    .insert(db)
    .await?;
    Ok(())
}

pub async fn count(db: &impl ConnectionTrait, agent_id: &str, kind: Kind) -> Result<u64, DbErr> {
    Credentials::find()
        .filter(credential::Column::AgentId.eq(agent_id))
        .filter(credential::Column::Kind.eq(kind.as_str()))
        .count(db)
        .await
}

/// An agent's credentials of `kind` (all kinds when `None`), by id.
pub async fn list(
    db: &impl ConnectionTrait,
    agent_id: &str,
    kind: Option<Kind>,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Credential>, DbErr> {
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
        .all(db)
        .await?
        .into_iter()
        .filter_map(from_row)
        .collect())
}

/// Deletes the credential if it belongs to `agent_id`, leaving a tombstone
/// for enforcement points (see `revocations`); whether it did.
pub async fn delete(
    db: &impl ConnectionTrait,
    agent_id: &str,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, DbErr> {
    let result = Credentials::delete_many()
        .filter(credential::Column::Id.eq(id))
        .filter(credential::Column::AgentId.eq(agent_id))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(false);
    }
    super::revocations::credential_deleted(db, id, agent_id, now).await?;
    Ok(true)
}

pub async fn exists(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let found: Option<String> = Credentials::find_by_id(id.to_owned())
        .select_only()
        .column(credential::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// The agent's public key with this kid, if registered.
pub async fn public_key(
    db: &impl ConnectionTrait,
    agent_id: &str,
    kid: &str,
) -> Result<Option<Credential>, DbErr> {
    Ok(Credentials::find()
        .filter(credential::Column::AgentId.eq(agent_id))
        .filter(credential::Column::Kind.eq(Kind::PublicKey.as_str()))
        .filter(credential::Column::Kid.eq(kid))
        .one(db)
        .await?
        .and_then(from_row))
}

/// The federated credentials of `issuer` for one of `audiences` that may
/// accept the external subject `subject`: those naming it exactly, and all
/// patterns (the caller matches them). Ordered by id.
pub async fn federated_candidates(
    db: &impl ConnectionTrait,
    issuer: &str,
    subject: &str,
    audiences: &[String],
) -> Result<Vec<Credential>, DbErr> {
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
        .all(db)
        .await?
        .into_iter()
        .filter_map(from_row)
        .collect())
}
