//! Database connections for SQLite and PostgreSQL through sea-orm; the
//! service's migrations, run (one migrator at a time per schema) or checked
//! before it serves.

use std::path::Path;
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create the SQLite directory `{path}`: {reason}")]
    SqliteDirectory { path: String, reason: String },
    #[error("cannot connect to the database ({kind}): {reason}")]
    Connect { kind: &'static str, reason: String },
    #[error("cannot prepare PostgreSQL schema `{schema}`: {reason}")]
    Schema { schema: String, reason: String },
    #[error("database migration failed: {reason}")]
    Migrate { reason: String },
    #[error(
        "the database schema is not current: {} migration(s) pending ({}); run the service \
         with `--migrate` first (the chart's migrations Job or init container does) or set \
         `database.migrate_on_start = true`",
        pending.len(),
        pending.join(", ")
    )]
    NotMigrated { pending: Vec<String> },
    #[error("reading the database at start-up failed: {reason}")]
    StartupRead { reason: String },
}

/// The two databases the services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

impl DatabaseKind {
    /// Classifies a database URL; the error says what is wrong with it.
    pub fn of_url(url: &str) -> Result<Self, String> {
        if url == "sqlite::memory:" {
            return Ok(Self::Sqlite);
        }
        let parsed = url::Url::parse(url).map_err(|err| format!("is not a URL: {err}"))?;
        match parsed.scheme() {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => {
                if parsed.host_str().unwrap_or_default().is_empty() {
                    return Err("names no PostgreSQL host".to_owned());
                }
                Ok(Self::Postgres)
            }
            other => Err(format!(
                "has scheme `{other}`; expected `sqlite` or `postgres`"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A PostgreSQL schema name we are willing to interpolate into DDL.
pub fn check_schema_name(schema: &str) -> Result<(), String> {
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err("must be 1-63 characters of a-z, 0-9 and _, not starting with a digit".to_owned())
    }
}

/// Connects, prepares the schema (PostgreSQL) or file (SQLite), and runs `M`'s
/// pending migrations.
pub async fn connect_and_migrate<M: MigratorTrait>(
    config: &DatabaseConfig,
) -> Result<DatabaseConnection, DbError> {
    let db = connect(config).await?;
    migrate::<M>(&db).await?;
    Ok(db)
}

/// Connects and runs `M`'s pending migrations when
/// `database.migrate_on_start` is set; otherwise only checks that none is
/// pending.
pub async fn connect_for_service<M: MigratorTrait>(
    config: &DatabaseConfig,
) -> Result<DatabaseConnection, DbError> {
    if config.migrate_on_start {
        return connect_and_migrate::<M>(config).await;
    }
    let db = connect(config).await?;
    check_migrated::<M>(&db).await?;
    Ok(db)
}

/// Runs `M`'s pending migrations. On PostgreSQL, replicas and migration
/// Jobs starting at once take turns: sea-orm-migration runs the migrations
/// in one transaction but takes no lock, so two migrators would both see
/// the same migrations pending and the second would fail on objects the
/// first created. A transaction-scoped advisory lock named after the schema
/// serialises them; whoever comes second finds nothing pending.
pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbError> {
    let failed = |err: sea_orm::DbErr| DbError::Migrate {
        reason: err.to_string(),
    };
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return M::up(db, None).await.map_err(failed);
    }
    let transaction = db.begin().await.map_err(failed)?;
    transaction
        .execute_unprepared(MIGRATION_LOCK)
        .await
        .map_err(failed)?;
    M::up(&transaction, None).await.map_err(failed)?;
    transaction.commit().await.map_err(failed)
}

/// Waits for this schema's migration lock until the transaction ends.
const MIGRATION_LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtext('agentsec migrations ' || current_schema()))";

/// Fails with [`DbError::NotMigrated`] naming the pending migrations, if
/// any. Reading the list creates sea-orm-migration's bookkeeping table on
/// an empty schema; that happens in a transaction rolled back here, so a
/// check changes nothing.
pub async fn check_migrated<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbError> {
    let failed = |err: sea_orm::DbErr| DbError::Migrate {
        reason: err.to_string(),
    };
    let transaction = db.begin().await.map_err(failed)?;
    let pending = M::get_pending_migrations(&transaction).await;
    transaction.rollback().await.map_err(failed)?;
    let pending: Vec<String> = pending
        .map_err(failed)?
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect();
    if pending.is_empty() {
        Ok(())
    } else {
        Err(DbError::NotMigrated { pending })
    }
}

/// Connects to the configured database without migrating.
pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbError> {
    let kind = DatabaseKind::of_url(&config.url).map_err(|reason| DbError::Connect {
        kind: "unknown",
        reason,
    })?;
    if kind == DatabaseKind::Sqlite {
        ensure_sqlite_directory(&config.url)?;
    }
    if kind == DatabaseKind::Postgres {
        // The pool below gives up after `acquire_timeout_ms` (requests must
        // fail fast); start-up waits up to `connect_timeout_secs` here.
        reach_postgres(config).await?;
    }
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .sqlx_logging(false);
    if let (DatabaseKind::Postgres, Some(schema)) = (kind, &config.schema) {
        options.set_schema_search_path(schema.clone());
    }
    let db = Database::connect(options)
        .await
        .map_err(|err| DbError::Connect {
            kind: kind.name(),
            reason: err.to_string(),
        })?;
    if kind == DatabaseKind::Sqlite {
        // WAL lets readers run beside the single writer; synchronous=FULL
        // makes every commit durable across power loss, not only crashes.
        for pragma in [
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=FULL",
            "PRAGMA busy_timeout=5000",
        ] {
            db.execute_unprepared(pragma)
                .await
                .map_err(|err| DbError::Connect {
                    kind: kind.name(),
                    reason: err.to_string(),
                })?;
        }
    }
    Ok(db)
}

/// Connects once within `connect_timeout_secs` and creates the configured
/// schema if it is missing.
async fn reach_postgres(config: &DatabaseConfig) -> Result<(), DbError> {
    if let Some(schema) = &config.schema {
        check_schema_name(schema).map_err(|reason| DbError::Schema {
            schema: schema.clone(),
            reason,
        })?;
    }
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .acquire_timeout(Duration::from_secs(config.connect_timeout_secs))
        .sqlx_logging(false);
    let admin = Database::connect(options)
        .await
        .map_err(|err| DbError::Connect {
            kind: "postgres",
            reason: err.to_string(),
        })?;
    let Some(schema) = &config.schema else {
        admin.close().await.ok();
        return Ok(());
    };
    let statement = Statement::from_string(
        admin.get_database_backend(),
        format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
    );
    let result = admin.execute(statement).await;
    // Concurrent creators race on the catalog; the schema exists either way.
    if let Err(err) = result {
        let text = err.to_string();
        if !text.contains("already exists") && !text.contains("duplicate key") {
            return Err(DbError::Schema {
                schema: schema.clone(),
                reason: text,
            });
        }
    }
    admin.close().await.ok();
    Ok(())
}

fn ensure_sqlite_directory(url: &str) -> Result<(), DbError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    let Some(parent) = Path::new(path).parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(parent).map_err(|err| DbError::SqliteDirectory {
        path: parent.display().to_string(),
        reason: err.to_string(),
    })
}

/// `query` locking the rows it reads until the transaction ends, on
/// PostgreSQL (`FOR UPDATE`); SQLite serialises writers anyway and has no
/// such clause.
pub fn for_update<E: sea_orm::EntityTrait>(
    query: sea_orm::Select<E>,
    db: &impl sea_orm::ConnectionTrait,
) -> sea_orm::Select<E> {
    use sea_orm::QuerySelect as _;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        query.lock_exclusive()
    } else {
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_urls() {
        assert_eq!(
            DatabaseKind::of_url("sqlite::memory:"),
            Ok(DatabaseKind::Sqlite)
        );
        assert_eq!(
            DatabaseKind::of_url("sqlite://./.agentsec/identity.db?mode=rwc"),
            Ok(DatabaseKind::Sqlite)
        );
        assert_eq!(
            DatabaseKind::of_url("postgres://postgres@127.0.0.1:5432/test"),
            Ok(DatabaseKind::Postgres)
        );
        assert!(DatabaseKind::of_url("mysql://root@localhost/test")
            .unwrap_err()
            .contains("mysql"));
        assert!(DatabaseKind::of_url("not a url").is_err());
    }

    #[test]
    fn schema_names_are_restricted() {
        assert!(check_schema_name("t_0123_identity").is_ok());
        assert!(check_schema_name("Robert\"; DROP").is_err());
        assert!(check_schema_name("9lives").is_err());
        assert!(check_schema_name("").is_err());
    }
}

/// Whether `err` means the database could not be reached (no connection
/// from the pool in time, a connection refused or broken), as opposed to a
/// statement that failed on a working connection.
pub fn is_unreachable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            matches!(
                err,
                Sqlx::Io(_)
                    | Sqlx::Tls(_)
                    | Sqlx::PoolTimedOut
                    | Sqlx::PoolClosed
                    | Sqlx::WorkerCrashed
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod unreachable {
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};

    use super::is_unreachable;
    use crate::error::ApiError;

    #[test]
    fn an_unreachable_database_is_unavailable_and_a_failed_statement_internal() {
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let unreachable = [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::Conn(RuntimeErr::Internal("refused".into())),
            DbErr::Query(RuntimeErr::SqlxError(sea_orm::sqlx::Error::Io(broken))),
            DbErr::Exec(RuntimeErr::SqlxError(sea_orm::sqlx::Error::PoolTimedOut)),
        ];
        for err in unreachable {
            assert!(is_unreachable(&err), "{err}");
            let status = tonic::Status::from(ApiError::database("reading", err));
            assert_eq!(status.code(), tonic::Code::Unavailable);
            assert_eq!(status.message(), "the database is unavailable");
        }
        let failed = [
            DbErr::Query(RuntimeErr::Internal("syntax error".into())),
            DbErr::RecordNotFound("x".into()),
            DbErr::Exec(RuntimeErr::SqlxError(sea_orm::sqlx::Error::RowNotFound)),
        ];
        for err in failed {
            assert!(!is_unreachable(&err), "{err}");
            let status = tonic::Status::from(ApiError::database("reading", err));
            assert_eq!(status.code(), tonic::Code::Internal);
        }
    }
}
