//! Delegation grants: a person lets an agent act on their behalf. Every
//! change is written in one transaction that also queues its audit event
//! (a change that cannot be audited does not happen); revocation then
//! publishes a GRANT_REVOKED invalidation event.

use std::collections::HashSet;
use std::sync::Arc;

use agentsec_common::error::ApiError;
use agentsec_common::invalidation::{Invalidation, InvalidationKind};
use agentsec_common::page::Page;
use agentsec_proto::common::v1::{Outcome, PageResponse};
use agentsec_proto::exchange::v1 as pb;
use chrono::{DateTime, SubsecRound as _, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use crate::admin::Admin;
use crate::config::GrantConfig;
use crate::events::{AuditRecord, Events};
use crate::person::Person;
use crate::store::grants::{self, Grant, GrantFilter};
use crate::upstream::identity::IdentityClient;

const MAX_AUDIENCES: usize = 32;
const MAX_AUDIENCE_CHARS: usize = 256;
const MAX_SCOPES: usize = 128;
const MAX_SCOPE_CHARS: usize = 128;
const MAX_PURPOSE_CHARS: usize = 1024;
const MAX_REASON_CHARS: usize = 1024;
const MAX_SUBJECT_CHARS: usize = 256;
/// An audit attribute value holds at most 4,096 bytes.
const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// Now, at the precision both databases store (microseconds), so that an
/// answer equals what a later read returns.
fn stored_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub use agentsec_common::time::timestamp;

pub fn timestamp_of_seconds(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn db_error(err: sea_orm::DbErr) -> ApiError {
    ApiError::database("database", err)
}

/// The grant's state at `now` (computed).
pub fn status(grant: &Grant, now: DateTime<Utc>) -> pb::GrantStatus {
    if grant.revoke_time.is_some() {
        pb::GrantStatus::Revoked
    } else if grant.expire_time <= now {
        pb::GrantStatus::Expired
    } else {
        pb::GrantStatus::Active
    }
}

pub fn to_proto(grant: Grant, now: DateTime<Utc>) -> pb::Grant {
    pb::Grant {
        status: status(&grant, now) as i32,
        id: grant.id,
        tenant: grant.tenant,
        person_subject: grant.person_subject,
        person_issuer: grant.person_issuer,
        agent_id: grant.agent_id,
        audiences: grant.audiences,
        scopes: grant.scopes,
        expire_time: Some(timestamp(grant.expire_time)),
        max_chain_depth: grant.max_chain_depth,
        purpose: grant.purpose,
        create_time: Some(timestamp(grant.create_time)),
        revoke_time: grant.revoke_time.map(timestamp),
        revoked_by: grant.revoked_by,
        revoke_reason: grant.revoke_reason,
    }
}

/// Checks a list of names: `1..=max_items` entries of `1..=max_chars`
/// chars, no whitespace or control chars, no duplicates.
fn check_names(
    field: &str,
    values: &[String],
    max_items: usize,
    max_chars: usize,
) -> Result<(), ApiError> {
    if values.is_empty() || values.len() > max_items {
        return Err(ApiError::invalid(
            field,
            format!("must hold 1-{max_items} values"),
        ));
    }
    let mut seen = HashSet::new();
    for (index, value) in values.iter().enumerate() {
        let item = format!("{field}[{index}]");
        let chars = value.chars().count();
        if chars == 0 || chars > max_chars {
            return Err(ApiError::invalid(
                item,
                format!("must be 1-{max_chars} chars"),
            ));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::invalid(
                item,
                "must not contain whitespace or control characters",
            ));
        }
        if !seen.insert(value.as_str()) {
            return Err(ApiError::invalid(item, "is a duplicate"));
        }
    }
    Ok(())
}

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

/// Who calls a grant RPC.
pub enum Caller {
    Person(Person),
    Admin(Admin),
}

impl Caller {
    fn sees(&self, grant: &Grant) -> bool {
        match self {
            Caller::Person(person) => {
                grant.person_issuer == person.issuer && grant.person_subject == person.subject
            }
            Caller::Admin(admin) => admin
                .tenant
                .as_ref()
                .is_none_or(|tenant| *tenant == grant.tenant),
        }
    }

    fn subject(&self) -> &str {
        match self {
            Caller::Person(person) => &person.subject,
            Caller::Admin(admin) => &admin.subject,
        }
    }
}

/// No delegated token outlives its actor token, and none of those lives
/// longer than a day: a grant revoked earlier than this affects no
/// unexpired token.
const LONGEST_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

pub struct Grants {
    pub db: DatabaseConnection,
    pub events: Events,
    pub config: GrantConfig,
    /// Where a new grant's agent is checked (`identity.endpoint`).
    pub identity: Option<Arc<IdentityClient>>,
}

impl Grants {
    async fn begin(&self) -> Result<DatabaseTransaction, ApiError> {
        self.db.begin().await.map_err(db_error)
    }

    /// The grants revoked at or after `since` (never earlier than the
    /// longest token lifetime before `now`), for enforcement points (the
    /// caller may read every tenant's).
    pub async fn revoked(
        &self,
        since: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<grants::RevokedGrant>, ApiError> {
        let horizon = now - LONGEST_TOKEN_LIFETIME;
        let since = since.map_or(horizon, |since| since.max(horizon));
        grants::revoked_since(&self.db, since)
            .await
            .map_err(ApiError::from)
    }

    /// A new grant from `person`, validated.
    fn new_grant(
        &self,
        person: &Person,
        request: Option<pb::Grant>,
        now: DateTime<Utc>,
    ) -> Result<Grant, ApiError> {
        let request = request.ok_or_else(|| ApiError::invalid("grant", "is required"))?;
        if request.agent_id.is_empty() {
            return Err(ApiError::invalid("grant.agent_id", "is required"));
        }
        if !agentsec_common::ids::is_id(&request.agent_id, "agt_") {
            return Err(ApiError::invalid(
                "grant.agent_id",
                "must be an agent id (`agt_` + 26-char ULID)",
            ));
        }
        check_names(
            "grant.audiences",
            &request.audiences,
            MAX_AUDIENCES,
            MAX_AUDIENCE_CHARS,
        )?;
        check_names("grant.scopes", &request.scopes, MAX_SCOPES, MAX_SCOPE_CHARS)?;
        let expire_time = request
            .expire_time
            .as_ref()
            .ok_or_else(|| ApiError::invalid("grant.expire_time", "is required"))
            .and_then(|time| agentsec_common::time::required_datetime("grant.expire_time", time))?
            .trunc_subsecs(6);
        if expire_time <= now {
            return Err(ApiError::invalid(
                "grant.expire_time",
                "must be in the future",
            ));
        }
        let max_lifetime = chrono::Duration::seconds(self.config.max_lifetime_secs as i64);
        if expire_time > now + max_lifetime {
            return Err(ApiError::invalid(
                "grant.expire_time",
                format!(
                    "must be at most {} seconds from now (grants.max_lifetime_secs)",
                    self.config.max_lifetime_secs
                ),
            ));
        }
        let max_chain_depth = match request.max_chain_depth {
            0 => 1,
            depth => depth,
        };
        if max_chain_depth > self.config.max_chain_depth {
            return Err(ApiError::invalid(
                "grant.max_chain_depth",
                format!(
                    "must be at most {} (grants.max_chain_depth)",
                    self.config.max_chain_depth
                ),
            ));
        }
        let purpose_chars = request.purpose.chars().count();
        if purpose_chars == 0 || purpose_chars > MAX_PURPOSE_CHARS {
            return Err(ApiError::invalid(
                "grant.purpose",
                format!("must be 1-{MAX_PURPOSE_CHARS} chars"),
            ));
        }
        let id = agentsec_common::ids::new_id("grt_")
            .map_err(|err| ApiError::internal("grant id", err))?;
        Ok(Grant {
            id,
            tenant: person
                .tenant
                .clone()
                .unwrap_or_else(|| self.config.default_tenant.clone()),
            person_issuer: person.issuer.clone(),
            person_subject: person.subject.clone(),
            agent_id: request.agent_id,
            audiences: request.audiences,
            scopes: request.scopes,
            expire_time,
            max_chain_depth,
            purpose: request.purpose,
            create_time: now,
            revoke_time: None,
            revoked_by: String::new(),
            revoke_reason: String::new(),
        })
    }

    pub async fn create(
        &self,
        person: &Person,
        request: Option<pb::Grant>,
    ) -> Result<pb::Grant, ApiError> {
        let now = stored_now();
        let grant = self.new_grant(person, request, now)?;
        self.agent_may_receive(&grant).await?;
        let txn = self.begin().await?;
        grants::insert(&txn, &grant).await.map_err(ApiError::from)?;
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
        txn.commit().await.map_err(db_error)?;
        Ok(to_proto(grant, now))
    }

    /// A grant goes only to an agent that exists and is ACTIVE in the
    /// person's tenant (FAILED_PRECONDITION otherwise); without identity-svc
    /// nothing can be granted.
    async fn agent_may_receive(&self, grant: &Grant) -> Result<(), ApiError> {
        let identity = self
            .identity
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable {
                what: "identity-svc is not configured on this server (identity.endpoint)"
                    .to_owned(),
            })?;
        if identity
            .agent_is_active(&grant.tenant, &grant.agent_id)
            .await?
        {
            return Ok(());
        }
        Err(ApiError::FailedPrecondition {
            reason: format!(
                "agent {} is not an ACTIVE agent of tenant {}",
                grant.agent_id, grant.tenant
            ),
        })
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<pb::Grant, ApiError> {
        if id.is_empty() {
            return Err(ApiError::invalid("grant_id", "is required"));
        }
        let grant = grants::get(&self.db, id)
            .await
            .map_err(ApiError::from)?
            .filter(|grant| caller.sees(grant))
            .ok_or_else(|| ApiError::not_found("grant", printable_id(id)))?;
        Ok(to_proto(grant, Utc::now()))
    }

    pub async fn list(
        &self,
        caller: &Caller,
        request: &pb::ListGrantsRequest,
    ) -> Result<(Vec<pb::Grant>, PageResponse), ApiError> {
        if request.person_subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ApiError::invalid(
                "person_subject",
                format!("must be at most {MAX_SUBJECT_CHARS} chars"),
            ));
        }
        if request.agent_id.len() > 64 {
            return Err(ApiError::invalid("agent_id", "must be at most 64 chars"));
        }
        let mut filter = GrantFilter {
            agent_id: (!request.agent_id.is_empty()).then(|| request.agent_id.clone()),
            ..GrantFilter::default()
        };
        match caller {
            Caller::Person(person) => {
                if !request.person_subject.is_empty() && request.person_subject != person.subject {
                    return Err(ApiError::PermissionDenied {
                        reason: "a person may only list their own grants (`person_subject`)"
                            .to_owned(),
                    });
                }
                filter.person = Some((person.issuer.clone(), person.subject.clone()));
            }
            Caller::Admin(admin) => {
                filter.tenant.clone_from(&admin.tenant);
                filter.person_subject =
                    (!request.person_subject.is_empty()).then(|| request.person_subject.clone());
            }
        }
        let now = Utc::now();
        if !request.include_inactive {
            filter.active_at = Some(now);
        }
        let fingerprint = format!(
            "grants|iss={:?}|sub={:?}|tenant={:?}|any_sub={:?}|agent={:?}|all={}",
            filter.person.as_ref().map(|p| &p.0),
            filter.person.as_ref().map(|p| &p.1),
            filter.tenant,
            filter.person_subject,
            filter.agent_id,
            request.include_inactive
        );
        let page = Page::parse(request.page.as_ref(), fingerprint)?;
        let mut rows = grants::list(&self.db, &filter, page.after.as_deref(), page.size + 1)
            .await
            .map_err(ApiError::from)?;
        let more = rows.len() as u64 > page.size;
        rows.truncate(page.size as usize);
        let next_page_token = page.next_token(rows.last().map(|grant| grant.id.as_str()), more);
        let grants = rows.into_iter().map(|grant| to_proto(grant, now)).collect();
        Ok((grants, PageResponse { next_page_token }))
    }

    pub async fn revoke(
        &self,
        caller: &Caller,
        request: &pb::RevokeGrantRequest,
    ) -> Result<pb::Grant, ApiError> {
        if request.grant_id.is_empty() {
            return Err(ApiError::invalid("grant_id", "is required"));
        }
        if request.reason.chars().count() > MAX_REASON_CHARS {
            return Err(ApiError::invalid(
                "reason",
                format!("must be at most {MAX_REASON_CHARS} chars"),
            ));
        }
        let txn = self.begin().await?;
        let mut grant = grants::get_for_update(&txn, &request.grant_id)
            .await
            .map_err(ApiError::from)?
            .filter(|grant| caller.sees(grant))
            .ok_or_else(|| ApiError::not_found("grant", printable_id(&request.grant_id)))?;
        let now = stored_now();
        if grant.revoke_time.is_some() {
            // Idempotent: nothing changes, nothing to audit.
            return Ok(to_proto(grant, now));
        }
        grant.revoke_time = Some(now);
        grant.revoked_by = caller.subject().to_owned();
        grant.revoke_reason = request.reason.clone();
        grants::save(&txn, &grant).await.map_err(ApiError::from)?;
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
        txn.commit().await.map_err(db_error)?;
        let mut invalidation = Invalidation::new(
            InvalidationKind::GrantRevoked,
            &grant.tenant,
            &grant.agent_id,
        );
        invalidation.grant_id = grant.id.clone();
        self.events.invalidate(invalidation).await;
        Ok(to_proto(grant, now))
    }
}

/// A grant id as it may appear in a message (ids are ASCII; anything else
/// is cut short).
fn printable_id(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_lists_are_bounded_and_unique() {
        let names = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert!(check_names("a", &names(&["x", "y"]), 2, 3).is_ok());
        let field = |result: Result<(), ApiError>| match result {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check_names("a", &[], 2, 3)), "a");
        assert_eq!(field(check_names("a", &names(&["x", "x"]), 2, 3)), "a[1]");
        assert_eq!(field(check_names("a", &names(&["x y"]), 2, 3)), "a[0]");
        assert_eq!(field(check_names("a", &names(&["long"]), 2, 3)), "a[0]");
        assert_eq!(field(check_names("a", &names(&["a", "b", "c"]), 2, 3)), "a");
    }

    fn stored(tenant: &str, issuer: &str, subject: &str) -> Grant {
        let now = Utc::now();
        Grant {
            id: "grt_1".into(),
            tenant: tenant.into(),
            person_issuer: issuer.into(),
            person_subject: subject.into(),
            agent_id: "agt_1".into(),
            audiences: vec!["a".into()],
            scopes: vec!["s".into()],
            expire_time: now + chrono::Duration::hours(1),
            max_chain_depth: 1,
            purpose: "p".into(),
            create_time: now,
            revoke_time: None,
            revoked_by: String::new(),
            revoke_reason: String::new(),
        }
    }

    #[test]
    fn callers_see_their_own_grants_or_their_tenant() {
        let grant = stored("acme", "https://users", "alice");
        let person = |issuer: &str, subject: &str| {
            Caller::Person(Person {
                issuer: issuer.into(),
                subject: subject.into(),
                tenant: None,
            })
        };
        let admin = |tenant: Option<&str>| {
            Caller::Admin(Admin {
                subject: "root".into(),
                tenant: tenant.map(str::to_owned),
            })
        };
        assert!(person("https://users", "alice").sees(&grant));
        assert!(!person("https://users", "bob").sees(&grant));
        assert!(
            !person("https://other", "alice").sees(&grant),
            "the same sub from another issuer is another person"
        );
        assert!(admin(None).sees(&grant));
        assert!(admin(Some("acme")).sees(&grant));
        assert!(!admin(Some("globex")).sees(&grant));
    }

    #[test]
    fn status_is_computed() {
        let mut grant = stored("acme", "i", "s");
        let now = Utc::now();
        assert_eq!(status(&grant, now), pb::GrantStatus::Active);
        assert_eq!(
            status(&grant, now + chrono::Duration::hours(2)),
            pb::GrantStatus::Expired
        );
        grant.revoke_time = Some(now);
        assert_eq!(status(&grant, now), pb::GrantStatus::Revoked);
    }

    #[test]
    fn long_attribute_lists_are_cut() {
        let values = vec!["é".repeat(3000)];
        assert!(attribute_list(&values).len() <= MAX_ATTRIBUTE_BYTES);
    }
}
