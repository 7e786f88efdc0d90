//! Delegation grants: a person lets an agent act on their behalf. Every
//! change is written in one unit of work that also queues its audit event
//! (a change that cannot be audited does not happen); revocation then
//! publishes a GRANT_REVOKED invalidation event. Exchanges find the grant
//! that authorizes them here too ([`selection`]).

mod directory;
pub mod selection;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use agentsec_common::invalidation::{Invalidation, InvalidationKind};
use agentsec_common::oauth_http::printable;
use agentsec_common::page::Page;
use agentsec_proto::common::v1::{Outcome, PageRequest};
use chrono::{DateTime, Utc};

use crate::config::GrantConfig;
use crate::domain::caller::{Caller, ListQuery, Person};
use crate::domain::grant::{
    check_reason, revocation_horizon, stored_now, GrantRequest, GrantView, RevokedGrant,
};
use crate::error::ExchangeError;
use crate::events::{AuditRecord, Events};
use crate::store::grants::{GrantStore, GrantTx, SqlGrantStore};
use crate::upstream::identity::IdentityClient;
pub use directory::AgentDirectory;

/// An audit attribute value holds at most 4,096 bytes.
const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// `values` joined by spaces, cut to what an audit attribute holds.
fn attribute_list(values: &[String]) -> String {
    let mut joined = values.join(" ");
    if joined.len() > MAX_ATTRIBUTE_BYTES {
        let mut end = MAX_ATTRIBUTE_BYTES;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        joined.truncate(end);
    }
    joined
}

/// A page of a listing and the cursor of the next one (empty: the last).
#[derive(Debug)]
pub struct GrantPage {
    pub grants: Vec<GrantView>,
    pub next_page_token: String,
}

pub struct Grants<S: GrantStore = SqlGrantStore, D: AgentDirectory = IdentityClient> {
    store: S,
    events: Events,
    config: GrantConfig,
    /// Where a new grant's agent is checked (`identity.endpoint`).
    directory: Option<Arc<D>>,
}

impl<S: GrantStore, D: AgentDirectory> Grants<S, D> {
    pub fn new(store: S, events: Events, config: GrantConfig, directory: Option<Arc<D>>) -> Self {
        Self {
            store,
            events,
            config,
            directory,
        }
    }

    /// The grants revoked at or after `since` (never earlier than the
    /// longest token lifetime before `now`), for enforcement points (the
    /// caller may read every tenant's).
    pub async fn revoked(
        &self,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RevokedGrant>, ExchangeError> {
        Ok(self
            .store
            .revoked_since(revocation_horizon(since, now))
            .await?)
    }

    pub async fn create(
        &self,
        person: &Person,
        request: GrantRequest,
    ) -> Result<GrantView, ExchangeError> {
        let now = stored_now();
        let grant = request.into_grant(person, &self.config, now)?;
        self.agent_may_receive(&grant.tenant, &grant.agent_id)
            .await?;
        let mut tx = self.store.begin().await?;
        tx.insert(&grant).await?;
        self.events
            .audit(
                AuditRecord::new(
                    "grant.created",
                    &grant.tenant,
                    &grant.agent_id,
                    Outcome::Allow,
                )
                .person(&grant.person_subject)
                .resource("grant", &grant.id)
                .attribute("person_issuer", grant.person_issuer.clone())
                .attribute("audiences", attribute_list(&grant.audiences))
                .attribute("scopes", attribute_list(&grant.scopes))
                .attribute("max_chain_depth", grant.max_chain_depth.to_string())
                .attribute("expire_time", grant.expire_time.to_rfc3339()),
            )
            .await?;
        tx.commit().await?;
        Ok(GrantView::at(grant, now))
    }

    /// A grant goes only to an agent that exists and is ACTIVE in the
    /// person's tenant (FAILED_PRECONDITION otherwise); without identity-svc
    /// nothing can be granted.
    async fn agent_may_receive(&self, tenant: &str, agent_id: &str) -> Result<(), ExchangeError> {
        let directory = self
            .directory
            .as_ref()
            .ok_or_else(|| ExchangeError::Unavailable {
                what: "identity-svc is not configured on this server (identity.endpoint)"
                    .to_owned(),
            })?;
        if directory.agent_is_active(tenant, agent_id).await? {
            return Ok(());
        }
        Err(ExchangeError::Precondition {
            reason: format!("agent {agent_id} is not an ACTIVE agent of tenant {tenant}"),
        })
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<GrantView, ExchangeError> {
        if id.is_empty() {
            return Err(ExchangeError::invalid("grant_id", "is required"));
        }
        let grant = self
            .store
            .get(id)
            .await?
            .filter(|grant| caller.sees(grant))
            .ok_or_else(|| not_found(id))?;
        Ok(GrantView::at(grant, Utc::now()))
    }

    pub async fn list(
        &self,
        caller: &Caller,
        query: &ListQuery,
        page: Option<&PageRequest>,
    ) -> Result<GrantPage, ExchangeError> {
        let now = Utc::now();
        let filter = caller.list_filter(query, now)?;
        let fingerprint = format!(
            "grants|iss={:?}|sub={:?}|tenant={:?}|any_sub={:?}|agent={:?}|all={}",
            filter.person.as_ref().map(|p| &p.0),
            filter.person.as_ref().map(|p| &p.1),
            filter.tenant,
            filter.person_subject,
            filter.agent_id,
            query.include_inactive
        );
        let page = Page::parse(page, fingerprint)?;
        let mut rows = self
            .store
            .list(&filter, page.after.as_deref(), page.size + 1)
            .await?;
        let more = rows.len() as u64 > page.size;
        rows.truncate(page.size as usize);
        let next_page_token = page.next_token(rows.last().map(|grant| grant.id.as_str()), more);
        Ok(GrantPage {
            grants: rows
                .into_iter()
                .map(|grant| GrantView::at(grant, now))
                .collect(),
            next_page_token,
        })
    }

    /// Revokes a grant the caller sees; revoking a revoked grant changes
    /// nothing and answers it as it is.
    pub async fn revoke(
        &self,
        caller: &Caller,
        grant_id: &str,
        reason: &str,
    ) -> Result<GrantView, ExchangeError> {
        if grant_id.is_empty() {
            return Err(ExchangeError::invalid("grant_id", "is required"));
        }
        check_reason(reason)?;
        let mut tx = self.store.begin().await?;
        let mut grant = tx
            .get_for_update(grant_id)
            .await?
            .filter(|grant| caller.sees(grant))
            .ok_or_else(|| not_found(grant_id))?;
        let now = stored_now();
        if grant.revoke_time.is_some() {
            // Idempotent: nothing changes, nothing to audit.
            return Ok(GrantView::at(grant, now));
        }
        grant.revoke_time = Some(now);
        grant.revoked_by = caller.subject().to_owned();
        grant.revoke_reason = reason.to_owned();
        tx.save(&grant).await?;
        self.events
            .audit(
                AuditRecord::new(
                    "grant.revoked",
                    &grant.tenant,
                    &grant.agent_id,
                    Outcome::Allow,
                )
                .person(&grant.person_subject)
                .resource("grant", &grant.id)
                .reason(grant.revoke_reason.clone())
                .attribute("person_issuer", grant.person_issuer.clone())
                .attribute("audiences", attribute_list(&grant.audiences))
                .attribute("revoked_by", grant.revoked_by.clone()),
            )
            .await?;
        tx.commit().await?;
        let mut invalidation = Invalidation::new(
            InvalidationKind::GrantRevoked,
            &grant.tenant,
            &grant.agent_id,
        );
        invalidation.grant_id = grant.id.clone();
        self.events.invalidate(invalidation).await;
        Ok(GrantView::at(grant, now))
    }
}

fn not_found(id: &str) -> ExchangeError {
    ExchangeError::NotFound {
        kind: "grant",
        id: printable(id),
    }
}
