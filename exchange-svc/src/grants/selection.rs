//! Which grant authorizes an exchange hop, read through the grant store
//! and decided by the hop rules ([`crate::domain::hop`]).

use chrono::{DateTime, Utc};

use super::{AgentDirectory, Grants};
use crate::domain::grant::{Grant, GrantFilter};
use crate::domain::hop::{self, DepthLimits};
use crate::error::ExchangeError;
use crate::store::grants::GrantStore;

/// How many grants of one person to one agent an exchange considers.
const MAX_GRANTS_CONSIDERED: u64 = 100;

/// The first hop of a chain: a person's token exchanged by an agent.
#[derive(Debug, Clone, Copy)]
pub struct FirstHop<'a> {
    pub person_issuer: &'a str,
    pub person_subject: &'a str,
    /// The acting agent's tenant.
    pub tenant: &'a str,
    pub agent_id: &'a str,
    pub audience: &'a str,
}

impl<S: GrantStore, D: AgentDirectory> Grants<S, D> {
    /// The person's newest active grant to the agent, in the agent's
    /// tenant, that covers the audience (`invalid_grant` when none does).
    pub async fn for_first_hop(
        &self,
        hop: FirstHop<'_>,
        now: DateTime<Utc>,
    ) -> Result<Grant, ExchangeError> {
        let filter = GrantFilter {
            person: Some((hop.person_issuer.to_owned(), hop.person_subject.to_owned())),
            tenant: Some(hop.tenant.to_owned()),
            agent_id: Some(hop.agent_id.to_owned()),
            active_at: Some(now),
            ..GrantFilter::default()
        };
        let grants = self
            .store
            .list(&filter, None, MAX_GRANTS_CONSIDERED)
            .await?;
        hop::first_hop_grant(grants, hop.audience, now)
    }

    /// A deeper hop of a chain begun under `grant_id` (empty: begun under
    /// `may_act`): that grant as stored now must still allow it.
    pub async fn for_next_hop(
        &self,
        grant_id: &str,
        audience: &str,
        depth: usize,
        limits: DepthLimits,
        now: DateTime<Utc>,
    ) -> Result<Grant, ExchangeError> {
        let grant = if grant_id.is_empty() {
            None
        } else {
            self.store.get(grant_id).await?
        };
        hop::next_hop_grant(grant_id, grant, audience, depth, limits, now)
    }

    /// Whether the grant a delegated token was issued under is still
    /// active (a missing grant is not).
    pub async fn is_active(
        &self,
        grant_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, ExchangeError> {
        Ok(self
            .store
            .get(grant_id)
            .await?
            .is_some_and(|grant| grant.is_active(now)))
    }
}
