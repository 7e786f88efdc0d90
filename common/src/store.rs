//! What every service's store shares: the error a store returns (the
//! database unreachable, which a caller may retry, or anything else), and
//! an in-memory table set with the same unit-of-work shape as a database
//! transaction, for the in-memory stores the services' rules are unit
//! tested through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::ApiError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed store call. `context` says doing what; the cause is logged,
/// never answered.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: the database is unreachable")]
    Unavailable {
        context: &'static str,
        source: BoxError,
    },
    #[error("stored {kind} `{id}` is unreadable: {reason}")]
    Corrupt {
        kind: &'static str,
        id: String,
        reason: String,
    },
    #[error("{context} failed")]
    Internal {
        context: &'static str,
        source: BoxError,
    },
}

impl StoreError {
    /// A failed database call: UNAVAILABLE when the database cannot be
    /// reached ([`crate::db::is_unreachable`]), INTERNAL otherwise.
    pub fn db(context: &'static str, err: sea_orm::DbErr) -> Self {
        if crate::db::is_unreachable(&err) {
            Self::Unavailable {
                context,
                source: err.into(),
            }
        } else {
            Self::Internal {
                context,
                source: err.into(),
            }
        }
    }

    /// Whether a retry may succeed (the database was unreachable).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// `map_err` for a sea-orm call made doing `context`.
pub fn db_err(context: &'static str) -> impl Fn(sea_orm::DbErr) -> StoreError {
    move |err| StoreError::db(context, err)
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable { context, source } => {
                tracing::error!(context, error = %source, "the database is unreachable");
                ApiError::Unavailable {
                    what: "the database".to_owned(),
                }
            }
            StoreError::Corrupt { .. } => ApiError::internal("reading the store", err),
            StoreError::Internal { context, source } => ApiError::Internal { context, source },
        }
    }
}

/// Tables held in memory (`S`, usually a few maps), shared by clones.
/// [`MemoryTables::begin`] gives a unit of work like a database
/// transaction: it holds the tables exclusively, changes a copy, and
/// [`MemoryTx::commit`] installs the copy; a transaction dropped without
/// commit changes nothing. [`MemoryTables::set_unreachable`] makes every
/// call fail as an unreachable database does.
pub struct MemoryTables<S> {
    tables: Arc<Mutex<S>>,
    unreachable: Arc<AtomicBool>,
}

impl<S> Clone for MemoryTables<S> {
    fn clone(&self) -> Self {
        Self {
            tables: self.tables.clone(),
            unreachable: self.unreachable.clone(),
        }
    }
}

impl<S: Default> Default for MemoryTables<S> {
    fn default() -> Self {
        Self {
            tables: Arc::new(Mutex::new(S::default())),
            unreachable: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl<S: Clone + Send + 'static> MemoryTables<S> {
    /// From now on every call fails with [`StoreError::Unavailable`]
    /// (`true`), or succeeds again (`false`).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::SeqCst);
    }

    fn reachable(&self) -> Result<(), StoreError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                context: "the in-memory store",
                source: "set unreachable".into(),
            });
        }
        Ok(())
    }

    /// `read` over the committed tables.
    pub async fn read<R>(&self, read: impl FnOnce(&S) -> R) -> Result<R, StoreError> {
        self.reachable()?;
        Ok(read(&*self.tables.lock().await))
    }

    /// `write` over the tables, committed at once when it succeeds.
    pub async fn write<R>(
        &self,
        write: impl FnOnce(&mut S) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut tx = self.begin().await?;
        let result = write(&mut tx)?;
        tx.commit().await?;
        Ok(result)
    }

    /// A unit of work over the tables (see [`MemoryTables`]).
    pub async fn begin(&self) -> Result<MemoryTx<S>, StoreError> {
        self.reachable()?;
        let guard = self.tables.clone().lock_owned().await;
        let working = guard.clone();
        Ok(MemoryTx {
            guard,
            working,
            unreachable: self.unreachable.clone(),
        })
    }
}

/// A unit of work over [`MemoryTables`]; derefs to the working copy.
pub struct MemoryTx<S> {
    guard: OwnedMutexGuard<S>,
    working: S,
    unreachable: Arc<AtomicBool>,
}

impl<S> MemoryTx<S> {
    /// Installs the working copy, unless the store was made unreachable
    /// meanwhile (then nothing changes, as with a failed commit).
    pub async fn commit(mut self) -> Result<(), StoreError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                context: "committing to the in-memory store",
                source: "set unreachable".into(),
            });
        }
        std::mem::swap(&mut *self.guard, &mut self.working);
        Ok(())
    }
}

impl<S> std::ops::Deref for MemoryTx<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.working
    }
}

impl<S> std::ops::DerefMut for MemoryTx<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.working
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type Tables = BTreeMap<String, u32>;

    #[tokio::test]
    async fn a_unit_of_work_changes_nothing_until_committed() {
        let tables = MemoryTables::<Tables>::default();
        let mut tx = tables.begin().await.unwrap();
        tx.insert("a".into(), 1);
        drop(tx);
        assert_eq!(tables.read(|t| t.len()).await.unwrap(), 0);

        let mut tx = tables.begin().await.unwrap();
        tx.insert("a".into(), 1);
        tx.commit().await.unwrap();
        assert_eq!(tables.read(|t| t.get("a").copied()).await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_every_call_and_commits_nothing() {
        let tables = MemoryTables::<Tables>::default();
        let mut tx = tables.begin().await.unwrap();
        tx.insert("a".into(), 1);
        tables.set_unreachable(true);
        assert!(tx.commit().await.unwrap_err().is_unavailable());
        assert!(tables.read(|t| t.len()).await.unwrap_err().is_unavailable());
        assert!(tables.begin().await.is_err());
        tables.set_unreachable(false);
        assert_eq!(tables.read(|t| t.len()).await.unwrap(), 0);
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_the_rest_internal() {
        let unreachable = StoreError::db(
            "reading",
            sea_orm::DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout),
        );
        assert!(matches!(
            ApiError::from(unreachable),
            ApiError::Unavailable { .. }
        ));
        let failed = StoreError::db("reading", sea_orm::DbErr::Custom("syntax".into()));
        assert!(!failed.is_unavailable());
        assert!(matches!(ApiError::from(failed), ApiError::Internal { .. }));
    }
}
