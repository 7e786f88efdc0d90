//! The registry's tables in the service's database: [`SqlRegistryStore`]
//! reads them, [`SqlRegistryTx`] is a database transaction over them (the
//! per-table queries are in `agents` and `credentials`).

use agentsec_common::store::{db_err, StoreError};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use super::{RegistryStore, RegistryTx};

#[derive(Clone)]
pub struct SqlRegistryStore {
    pub(super) db: DatabaseConnection,
}

impl SqlRegistryStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

pub struct SqlRegistryTx {
    pub(super) txn: DatabaseTransaction,
}

impl RegistryStore for SqlRegistryStore {
    type Tx = SqlRegistryTx;

    async fn begin(&self) -> Result<SqlRegistryTx, StoreError> {
        let txn = self
            .db
            .begin()
            .await
            .map_err(db_err("starting a transaction"))?;
        Ok(SqlRegistryTx { txn })
    }
}

impl RegistryTx for SqlRegistryTx {
    async fn commit(self) -> Result<(), StoreError> {
        self.txn
            .commit()
            .await
            .map_err(db_err("committing a transaction"))
    }
}
