//! Small named values the service keeps about its own set-up.

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set};

use super::entities::setting;

/// The stored value of `name`, setting it to `value` first if it has none
/// (the first replica to start decides).
pub async fn get_or_init(
    db: &impl ConnectionTrait,
    name: &str,
    value: &str,
) -> Result<String, DbErr> {
    if let Some(row) = setting::Entity::find_by_id(name.to_owned()).one(db).await? {
        return Ok(row.value);
    }
    let row = setting::ActiveModel {
        name: Set(name.to_owned()),
        value: Set(value.to_owned()),
    };
    match row.insert(db).await {
        Ok(_) => Ok(value.to_owned()),
        // Another replica initialised it in between: take its value.
        Err(err) if super::is_duplicate(&err) => setting::Entity::find_by_id(name.to_owned())
            .one(db)
            .await?
            .map(|row| row.value)
            .ok_or(err),
        Err(err) => Err(err),
    }
}
