//! How policy-svc follows the rest of the system (one loop, see
//! `agentsec_common::follower`): POLICY_CHANGED reloads a tenant's policy
//! set; every other event updates the revocation view (AGENT_UPDATED: the
//! agent's registry attributes, read again from identity-svc) and evicts
//! the agent's cached decisions. After (re)subscribing everything is reloaded;
//! while no subscription is live, the policy sets and the revocation view
//! catch up from their owners every poll interval (agents' attributes
//! included: those updated since the previous listing are read again), and
//! the decision cache stays off.

use std::sync::Arc;

use agentsec_common::follower::{BoxError, Follow};
use agentsec_common::invalidation::{InvalidationKind, ReceivedInvalidation};
use chrono::Utc;

use crate::cache::DecisionCache;
use crate::policies::Policies;
use crate::revocations::owners::Owners;
use crate::revocations::RevocationView;

pub struct PolicyFollower {
    pub policies: Arc<Policies>,
    pub cache: Arc<DecisionCache>,
    pub view: Arc<RevocationView>,
    pub owners: Option<Arc<Owners>>,
    /// Events arrive in process (no Redis): the view is current whenever
    /// subscribed.
    pub in_process: bool,
}

impl PolicyFollower {
    /// Reads the agent's attributes again beside the event loop, so that a
    /// slow identity-svc never holds up the events behind this one.
    fn refresh_attributes(&self, agent_id: &str) {
        let Some(owners) = self.owners.clone() else {
            return;
        };
        let view = self.view.clone();
        let agent_id = agent_id.to_owned();
        let number = view.refresh_started(&agent_id);
        tokio::spawn(async move {
            match owners.attributes_of(&agent_id).await {
                Ok(attributes) => view.set_attributes(&agent_id, number, attributes),
                Err(err) => tracing::warn!(
                    %agent_id,
                    error = %err,
                    "agent attributes not refreshed; they are read again at the next catch-up"
                ),
            }
        });
    }

    async fn sync_view(&self, full: bool) -> Result<(), BoxError> {
        let Some(owners) = &self.owners else {
            return Ok(());
        };
        let started = Utc::now();
        let revocations = owners.list(full).await?;
        if full {
            // Attributes first: a view that counts as loaded has them too.
            self.view
                .replace_attributes(owners.agent_attributes(None).await?);
            self.view.replace(revocations, started);
        } else {
            self.view.merge(revocations, started);
        }
        Ok(())
    }
}

impl Follow for PolicyFollower {
    async fn reload(&self) -> Result<(), BoxError> {
        self.policies.reload_all().await?;
        self.sync_view(true).await?;
        self.view.set_in_process(self.in_process);
        self.cache.subscription_live().await;
        Ok(())
    }

    async fn apply(&self, received: ReceivedInvalidation) {
        let event = &received.event;
        if event.kind == InvalidationKind::PolicyChanged {
            self.policies
                .policy_changed(&event.tenant, event.policy_version)
                .await;
            return;
        }
        // The view first: token decisions consult it before the cache.
        self.view.apply(&received);
        if event.kind == InvalidationKind::AgentUpdated {
            self.refresh_attributes(&event.agent_id);
        }
        if !event.tenant.is_empty() && !event.agent_id.is_empty() {
            self.cache
                .agent_changed(&event.tenant, &event.agent_id)
                .await;
        }
    }

    fn lost(&self) {
        self.view.set_in_process(false);
        self.cache.subscription_lost();
    }

    async fn catch_up(&self) -> Result<(), BoxError> {
        let policies = self.policies.reload_all().await;
        let view = self.sync_view(!self.view.is_loaded()).await;
        policies?;
        view
    }

    async fn healthy(&self) {
        // Answered in order after every event published before it.
        self.view.confirm(Utc::now());
        if !self.cache.is_on() {
            self.cache.subscription_live().await;
        }
    }

    fn interrupted(&self) -> impl std::future::Future<Output = ()> + Send {
        self.cache.switched_off()
    }
}
