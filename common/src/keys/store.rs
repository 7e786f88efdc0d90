//! Persistence of signing keys in the service's own database, so the JWKS is
//! the same across restarts and replicas. The table is created by the
//! migration [`CreateSigningKeys`], which each signing service adds to its
//! migrator.
//!
//! Private keys are kept as PKCS#8 DER in the database unless a key file is
//! configured; restrict access to the database accordingly.

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue, DatabaseConnection, QueryOrder};
use sea_orm_migration::prelude::{ColumnDef, DeriveIden, MigrationTrait, SchemaManager, Table};

use super::{Jwks, KeyError, PublicJwk, SigningAlgorithm, SigningKey};
use crate::config::SigningConfig;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read the signing key file `{path}`: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("signing key storage failed: {0}")]
    Database(#[from] DbErr),
    #[error("stored key `{kid}` is unreadable: {reason}")]
    Corrupt { kid: String, reason: String },
}

pub mod entity {
    //! The `signing_keys` table.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        pub algorithm: String,
        /// PKCS#8 DER; `None` when the private key lives in a key file.
        pub private_pkcs8: Option<Vec<u8>>,
        /// The public JWK as JSON.
        pub public_jwk: String,
        pub created_at: DateTimeUtc,
        /// When the key stopped signing; `None` while it is active.
        pub retired_at: Option<DateTimeUtc>,
        /// Until when a retired key stays in the JWKS (the longest lifetime of
        /// a token it signed).
        pub publish_until: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Algorithm,
    PrivatePkcs8,
    PublicJwk,
    CreatedAt,
    RetiredAt,
    PublishUntil,
}

/// Creates the `signing_keys` table.
pub struct CreateSigningKeys;

impl sea_orm_migration::MigrationName for CreateSigningKeys {
    fn name(&self) -> &str {
        "m20261129_000001_create_signing_keys"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for CreateSigningKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SigningKeys::Kid)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(SigningKeys::Algorithm)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(SigningKeys::PrivatePkcs8).binary().null())
                    .col(ColumnDef::new(SigningKeys::PublicJwk).text().not_null())
                    .col(
                        ColumnDef::new(SigningKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SigningKeys::RetiredAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(SigningKeys::PublishUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SigningKeys::Table).to_owned())
            .await
    }
}

/// The key a service signs with now, and every key it still publishes.
#[derive(Debug)]
pub struct KeyRing {
    pub active: SigningKey,
    pub published: Jwks,
}

/// Loads the active signing key (from the key file, or the newest stored key
/// of the configured algorithm, generating and storing one when there is
/// none) and the set of keys to publish.
pub async fn load_or_create(
    db: &DatabaseConnection,
    config: &SigningConfig,
) -> Result<KeyRing, KeyStoreError> {
    let active = match &config.key_file {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|err| KeyStoreError::KeyFile {
                path: path.display().to_string(),
                reason: err.to_string(),
            })?;
            let key = SigningKey::from_pkcs8_pem(config.algorithm, &pem)?;
            ensure_published(db, &key, false).await?;
            key
        }
        None => match newest_stored_key(db, config.algorithm).await? {
            Some(key) => key,
            None => {
                let key = SigningKey::generate(config.algorithm)?;
                ensure_published(db, &key, true).await?;
                key
            }
        },
    };
    let published = published_keys(db).await?;
    Ok(KeyRing { active, published })
}

async fn newest_stored_key(
    db: &DatabaseConnection,
    algorithm: SigningAlgorithm,
) -> Result<Option<SigningKey>, KeyStoreError> {
    let row = entity::Entity::find()
        .filter(entity::Column::Algorithm.eq(algorithm.as_str()))
        .filter(entity::Column::RetiredAt.is_null())
        .filter(entity::Column::PrivatePkcs8.is_not_null())
        .order_by_desc(entity::Column::CreatedAt)
        .one(db)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let der = row.private_pkcs8.unwrap_or_default();
    SigningKey::from_pkcs8_der(algorithm, &der)
        .map(Some)
        .map_err(|err| KeyStoreError::Corrupt {
            kid: row.kid,
            reason: err.to_string(),
        })
}

async fn ensure_published(
    db: &DatabaseConnection,
    key: &SigningKey,
    store_private: bool,
) -> Result<(), KeyStoreError> {
    if entity::Entity::find_by_id(key.kid().to_owned())
        .one(db)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let public_jwk =
        serde_json::to_string(key.public_jwk()).map_err(|err| KeyStoreError::Corrupt {
            kid: key.kid().to_owned(),
            reason: err.to_string(),
        })?;
    let row = entity::ActiveModel {
        kid: ActiveValue::Set(key.kid().to_owned()),
        algorithm: ActiveValue::Set(key.algorithm().as_str().to_owned()),
        private_pkcs8: ActiveValue::Set(store_private.then(|| key.pkcs8_der().to_vec())),
        public_jwk: ActiveValue::Set(public_jwk),
        created_at: ActiveValue::Set(Utc::now()),
        retired_at: ActiveValue::Set(None),
        publish_until: ActiveValue::Set(None),
    };
    entity::Entity::insert(row).exec(db).await?;
    Ok(())
}

/// The newest key that signs (not retired, private half stored), whatever
/// its algorithm: what replicas switch to after a rotation.
pub async fn newest_active_key(
    db: &DatabaseConnection,
) -> Result<Option<SigningKey>, KeyStoreError> {
    let row = entity::Entity::find()
        .filter(entity::Column::RetiredAt.is_null())
        .filter(entity::Column::PrivatePkcs8.is_not_null())
        .order_by_desc(entity::Column::CreatedAt)
        .one(db)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt = |reason: String| KeyStoreError::Corrupt {
        kid: row.kid.clone(),
        reason,
    };
    let algorithm = SigningAlgorithm::parse(&row.algorithm)
        .ok_or_else(|| corrupt(format!("unknown algorithm `{}`", row.algorithm)))?;
    let der = row.private_pkcs8.clone().unwrap_or_default();
    SigningKey::from_pkcs8_der(algorithm, &der)
        .map(Some)
        .map_err(|err| corrupt(err.to_string()))
}

/// Public facts about a stored key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub jwk: PublicJwk,
    pub algorithm: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub publish_until: Option<DateTime<Utc>>,
}

/// Makes a new generated key the active one: every key signing until now is
/// retired and stays published until `publish_for` from now (the longest a
/// token it signed can live, plus the time replicas need to notice). One
/// transaction, so replicas never see two active keys or none.
pub async fn rotate(
    db: &DatabaseConnection,
    algorithm: SigningAlgorithm,
    publish_for: chrono::Duration,
) -> Result<SigningKey, KeyStoreError> {
    use sea_orm::TransactionTrait as _;
    let key = SigningKey::generate(algorithm)?;
    let now = Utc::now();
    let txn = db.begin().await?;
    entity::Entity::update_many()
        .col_expr(entity::Column::RetiredAt, Expr::value(now))
        .col_expr(entity::Column::PublishUntil, Expr::value(now + publish_for))
        .filter(entity::Column::RetiredAt.is_null())
        .exec(&txn)
        .await?;
    let public_jwk =
        serde_json::to_string(key.public_jwk()).map_err(|err| KeyStoreError::Corrupt {
            kid: key.kid().to_owned(),
            reason: err.to_string(),
        })?;
    entity::Entity::insert(entity::ActiveModel {
        kid: ActiveValue::Set(key.kid().to_owned()),
        algorithm: ActiveValue::Set(key.algorithm().as_str().to_owned()),
        private_pkcs8: ActiveValue::Set(Some(key.pkcs8_der().to_vec())),
        public_jwk: ActiveValue::Set(public_jwk),
        created_at: ActiveValue::Set(now),
        retired_at: ActiveValue::Set(None),
        publish_until: ActiveValue::Set(None),
    })
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(key)
}

/// The published keys with their dates, newest first.
pub async fn published_key_facts(db: &DatabaseConnection) -> Result<Vec<StoredKey>, KeyStoreError> {
    let now: DateTime<Utc> = Utc::now();
    let rows = entity::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(entity::Column::RetiredAt.is_null())
                .add(entity::Column::PublishUntil.gt(now)),
        )
        .order_by_desc(entity::Column::CreatedAt)
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            let jwk = serde_json::from_str::<PublicJwk>(&row.public_jwk).map_err(|err| {
                KeyStoreError::Corrupt {
                    kid: row.kid.clone(),
                    reason: err.to_string(),
                }
            })?;
            Ok(StoredKey {
                jwk,
                algorithm: row.algorithm,
                created_at: row.created_at,
                retired_at: row.retired_at,
                publish_until: row.publish_until,
            })
        })
        .collect()
}

/// Every key ever stored, retired or not: what verifies old signatures
/// (audit checkpoints stay verifiable for as long as they are kept).
pub async fn all_keys(db: &DatabaseConnection) -> Result<Jwks, KeyStoreError> {
    let rows = entity::Entity::find()
        .order_by_desc(entity::Column::CreatedAt)
        .all(db)
        .await?;
    rows_to_jwks(rows)
}

/// Every key that is active or retired but still covering live tokens.
pub async fn published_keys(db: &DatabaseConnection) -> Result<Jwks, KeyStoreError> {
    let now: DateTime<Utc> = Utc::now();
    let rows = entity::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(entity::Column::RetiredAt.is_null())
                .add(entity::Column::PublishUntil.gt(now)),
        )
        .order_by_desc(entity::Column::CreatedAt)
        .all(db)
        .await?;
    rows_to_jwks(rows)
}

fn rows_to_jwks(rows: Vec<entity::Model>) -> Result<Jwks, KeyStoreError> {
    let keys = rows
        .into_iter()
        .map(|row| {
            serde_json::from_str::<PublicJwk>(&row.public_jwk).map_err(|err| {
                KeyStoreError::Corrupt {
                    kid: row.kid,
                    reason: err.to_string(),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Jwks { keys })
}
