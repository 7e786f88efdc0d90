//! The token revocation list and the client-assertion replay store (used
//! when no Redis is configured).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Set,
};

use super::entities::{revoked_token, used_assertion};

/// Puts `jti` on the revocation list until `expire_time` (the token's
/// `exp`); revoking twice is not an error. Rows of tokens that have expired
/// anyway are dropped on the way.
pub async fn revoke(
    db: &impl ConnectionTrait,
    jti: &str,
    agent_id: &str,
    expire_time: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    revoked_token::Entity::delete_many()
        .filter(revoked_token::Column::ExpireTime.lt(now.timestamp()))
        .exec(db)
        .await?;
    let row = revoked_token::ActiveModel {
        jti: Set(jti.to_owned()),
        agent_id: Set(agent_id.to_owned()),
        expire_time: Set(expire_time),
        revoke_time: Set(now),
    };
    match row.insert(db).await {
        Ok(_) => Ok(()),
        Err(err) if super::is_duplicate(&err) => Ok(()),
        Err(err) => Err(err),
    }
}

pub async fn is_revoked(db: &impl ConnectionTrait, jti: &str) -> Result<bool, DbErr> {
    let found: Option<String> = revoked_token::Entity::find_by_id(jti.to_owned())
        .select_only()
        .column(revoked_token::Column::Jti)
        .into_tuple()
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// Every revoked token that has not expired yet: jti -> exp.
pub async fn revocation_list(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64)>, DbErr> {
    revoked_token::Entity::find()
        .select_only()
        .column(revoked_token::Column::Jti)
        .column(revoked_token::Column::ExpireTime)
        .filter(revoked_token::Column::ExpireTime.gte(now.timestamp()))
        .into_tuple()
        .all(db)
        .await
}

/// Records a client assertion as used until `expire_time`; false when it was
/// already used (a replay).
pub async fn claim_assertion(
    db: &impl ConnectionTrait,
    key: &str,
    expire_time: i64,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    used_assertion::Entity::delete_many()
        .filter(used_assertion::Column::ExpireTime.lt(now.timestamp()))
        .exec(db)
        .await?;
    let row = used_assertion::ActiveModel {
        key: Set(key.to_owned()),
        expire_time: Set(expire_time),
    };
    match row.insert(db).await {
        Ok(_) => Ok(true),
        Err(err) if super::is_duplicate(&err) => Ok(false),
        Err(err) => Err(err),
    }
}
