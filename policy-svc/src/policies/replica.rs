//! Keeping this replica's engine current. A replica installs the versions
//! it stores itself, loads every tenant's current version at start and
//! follows the POLICY_CHANGED events of the other replicas (see
//! `follower`): it reloads a tenant whose published version is newer than
//! the one it has, and reloads every tenant after (re)subscribing and,
//! while Redis is unreachable, every poll interval. This is prompt but not
//! synchronous: a replica may answer from the previous version for the
//! moment between another replica's commit and the event's arrival and
//! reload (measured in BENCHMARKS.md, "Cross-replica invalidation"), and up
//! to the poll interval while Redis is unreachable. PutPolicySet does not
//! wait for the other replicas.

use std::sync::Arc;

use super::{compile, decode, Policies};
use crate::domain::policy_set::StoredVersion;
use crate::error::PolicyError;
use crate::store::versions::PolicyVersionStore;

impl<S: PolicyVersionStore> Policies<S> {
    /// Installs `stored` unless this replica already has it or a newer one.
    async fn install_stored(&self, stored: &StoredVersion) -> Result<(), PolicyError> {
        if stored.version <= self.installed_version(&stored.tenant) {
            return Ok(());
        }
        let set = Arc::new(decode(stored)?);
        let compiled = compile(&stored.tenant, stored.version, set).await?;
        self.install(compiled);
        tracing::info!(tenant = %stored.tenant, version = stored.version, "policy set reloaded");
        Ok(())
    }

    /// Loads the tenant's current version if it is newer than the one here.
    async fn reload(&self, tenant: &str) -> Result<(), PolicyError> {
        let current = self.store.current_version(tenant).await?;
        if current <= self.installed_version(tenant) {
            return Ok(());
        }
        if let Some(stored) = self.store.get(tenant, current).await? {
            self.install_stored(&stored).await?;
        }
        Ok(())
    }

    /// Loads every tenant's current version that is newer than the one here.
    pub async fn reload_all(&self) -> Result<(), PolicyError> {
        for stored in self.store.all_current().await? {
            if let Err(err) = self.install_stored(&stored).await {
                tracing::error!(tenant = %stored.tenant, error = %err, "policy set not reloaded");
            }
        }
        Ok(())
    }

    /// A replica stored `version` of `tenant`: loads it unless this one
    /// already has it or a newer one.
    pub async fn policy_changed(&self, tenant: &str, version: u64) {
        if version > self.installed_version(tenant) {
            if let Err(err) = self.reload(tenant).await {
                tracing::error!(%tenant, error = %err, "policy set not reloaded");
            }
        }
    }
}
