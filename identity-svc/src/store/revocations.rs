//! What enforcement points list to know which tokens no longer hold
//! (identity.proto `ListRevocations`): revoked tokens, deleted credentials
//! (tombstones) and agents whose status or token generation changed.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::entities::{agent, deleted_credential, revoked_token};
use crate::domain::agent::Status;

/// No token of this service lives longer (`tokens.max_lifetime_secs` is
/// capped at 24 h): a change older than this affects no unexpired token.
pub const LONGEST_TOKEN_LIFETIME: Duration = Duration::hours(24);

pub struct RevokedToken {
    pub jti: String,
    pub agent_id: String,
    pub expire_time: i64,
    pub revoke_time: DateTime<Utc>,
}

pub struct DeletedCredential {
    pub id: String,
    pub agent_id: String,
    pub delete_time: DateTime<Utc>,
}

pub struct AgentStanding {
    pub agent_id: String,
    pub tenant: String,
    /// `None` for a status this build does not know (listed as unspecified).
    pub status: Option<Status>,
    pub token_generation: i64,
    pub generation_time: Option<DateTime<Utc>>,
}

/// Id, tenant, status, token generation and its start, as selected.
type StandingRow = (String, String, String, i64, Option<DateTime<Utc>>);

/// Everything listed, each list in a stable order.
pub struct Revocations {
    pub tokens: Vec<RevokedToken>,
    pub credentials: Vec<DeletedCredential>,
    pub agents: Vec<AgentStanding>,
}

/// Keeps a tombstone of a deleted credential (in the deleting transaction);
/// tombstones past the longest token lifetime go on the way.
pub async fn credential_deleted(
    db: &impl ConnectionTrait,
    id: &str,
    agent_id: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    deleted_credential::Entity::delete_many()
        .filter(deleted_credential::Column::DeleteTime.lt(now - LONGEST_TOKEN_LIFETIME))
        .exec(db)
        .await?;
    deleted_credential::ActiveModel {
        id: Set(id.to_owned()),
        agent_id: Set(agent_id.to_owned()),
        delete_time: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// What changed at or after `since`, or (without it) everything that can
/// still make an unexpired token inactive at `now`.
pub async fn list(
    db: &impl ConnectionTrait,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Revocations, DbErr> {
    let horizon = now - LONGEST_TOKEN_LIFETIME;
    let mut tokens = revoked_token::Entity::find()
        .filter(revoked_token::Column::ExpireTime.gte(now.timestamp()))
        .order_by_asc(revoked_token::Column::Jti);
    if let Some(since) = since {
        tokens = tokens.filter(revoked_token::Column::RevokeTime.gte(since));
    }
    let tokens = tokens
        .all(db)
        .await?
        .into_iter()
        .map(|row| RevokedToken {
            jti: row.jti,
            agent_id: row.agent_id,
            expire_time: row.expire_time,
            revoke_time: row.revoke_time,
        })
        .collect();
    let credentials = deleted_credential::Entity::find()
        .filter(deleted_credential::Column::DeleteTime.gte(since.unwrap_or(horizon).max(horizon)))
        .order_by_asc(deleted_credential::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|row| DeletedCredential {
            id: row.id,
            agent_id: row.agent_id,
            delete_time: row.delete_time,
        })
        .collect();
    let changed = match since {
        // Any change of the row: a reactivation must reach followers too.
        Some(since) => Condition::all().add(agent::Column::UpdateTime.gte(since)),
        None => Condition::all().add(agent::Column::TokenGenerationTime.gte(horizon)),
    };
    let agents: Vec<StandingRow> = agent::Entity::find()
        .select_only()
        .column(agent::Column::Id)
        .column(agent::Column::Tenant)
        .column(agent::Column::Status)
        .column(agent::Column::TokenGeneration)
        .column(agent::Column::TokenGenerationTime)
        .filter(changed)
        .order_by_asc(agent::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let agents = agents
        .into_iter()
        .map(
            |(agent_id, tenant, status, token_generation, generation_time)| AgentStanding {
                agent_id,
                tenant,
                status: Status::parse(&status),
                token_generation,
                generation_time,
            },
        )
        .collect();
    Ok(Revocations {
        tokens,
        credentials,
        agents,
    })
}
