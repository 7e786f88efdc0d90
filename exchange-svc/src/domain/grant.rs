//! A delegation grant: a person lets an agent act on their behalf towards
//! some audiences with some scopes, until it expires or is revoked.

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound as _, Utc};

use super::caller::Person;
use crate::config::GrantConfig;
use crate::error::ExchangeError;

const MAX_AUDIENCES: usize = 32;
const MAX_AUDIENCE_CHARS: usize = 256;
const MAX_SCOPES: usize = 128;
const MAX_SCOPE_CHARS: usize = 128;
const MAX_PURPOSE_CHARS: usize = 1024;
pub const MAX_REASON_CHARS: usize = 1024;

/// No delegated token outlives its actor token, and none of those lives
/// longer than a day: a grant revoked earlier than this affects no
/// unexpired token.
const LONGEST_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// Now, at the precision both databases store (microseconds), so that an
/// answer equals what a later read returns.
pub fn stored_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A stored grant; its status is computed ([`Grant::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub tenant: String,
    pub person_issuer: String,
    pub person_subject: String,
    pub agent_id: String,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    pub expire_time: DateTime<Utc>,
    pub max_chain_depth: u32,
    pub purpose: String,
    pub create_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub revoked_by: String,
    pub revoke_reason: String,
}

/// A grant's state at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    Active,
    Expired,
    Revoked,
}

impl Grant {
    pub fn status(&self, now: DateTime<Utc>) -> GrantStatus {
        if self.revoke_time.is_some() {
            GrantStatus::Revoked
        } else if self.expire_time <= now {
            GrantStatus::Expired
        } else {
            GrantStatus::Active
        }
    }

    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.status(now) == GrantStatus::Active
    }

    pub fn covers(&self, audience: &str) -> bool {
        self.audiences.iter().any(|aud| aud == audience)
    }
}

/// A grant with its status at the time it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantView {
    pub grant: Grant,
    pub status: GrantStatus,
}

impl GrantView {
    pub fn at(grant: Grant, now: DateTime<Utc>) -> Self {
        let status = grant.status(now);
        Self { grant, status }
    }
}

/// A grant as a person asks for it, before it is checked.
#[derive(Debug, Clone, Default)]
pub struct GrantRequest {
    pub agent_id: String,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    /// `None` when not given.
    pub expire_time: Option<DateTime<Utc>>,
    /// 0 = one agent.
    pub max_chain_depth: u32,
    pub purpose: String,
}

impl GrantRequest {
    /// The grant `person` asks for at `now`, within `config`'s bounds;
    /// INVALID_ARGUMENT naming the first field that is not.
    pub fn into_grant(
        self,
        person: &Person,
        config: &GrantConfig,
        now: DateTime<Utc>,
    ) -> Result<Grant, ExchangeError> {
        if self.agent_id.is_empty() {
            return Err(ExchangeError::invalid("grant.agent_id", "is required"));
        }
        if !agentsec_common::ids::is_id(&self.agent_id, "agt_") {
            return Err(ExchangeError::invalid(
                "grant.agent_id",
                "must be an agent id (`agt_` + 26-char ULID)",
            ));
        }
        check_names(
            "grant.audiences",
            &self.audiences,
            MAX_AUDIENCES,
            MAX_AUDIENCE_CHARS,
        )?;
        check_names("grant.scopes", &self.scopes, MAX_SCOPES, MAX_SCOPE_CHARS)?;
        let expire_time = self
            .expire_time
            .ok_or_else(|| ExchangeError::invalid("grant.expire_time", "is required"))?
            .trunc_subsecs(6);
        if expire_time <= now {
            return Err(ExchangeError::invalid(
                "grant.expire_time",
                "must be in the future",
            ));
        }
        let max_lifetime = chrono::Duration::seconds(config.max_lifetime_secs as i64);
        if expire_time > now + max_lifetime {
            return Err(ExchangeError::invalid(
                "grant.expire_time",
                format!(
                    "must be at most {} seconds from now (grants.max_lifetime_secs)",
                    config.max_lifetime_secs
                ),
            ));
        }
        let max_chain_depth = match self.max_chain_depth {
            0 => 1,
            depth => depth,
        };
        if max_chain_depth > config.max_chain_depth {
            return Err(ExchangeError::invalid(
                "grant.max_chain_depth",
                format!(
                    "must be at most {} (grants.max_chain_depth)",
                    config.max_chain_depth
                ),
            ));
        }
        let purpose_chars = self.purpose.chars().count();
        if purpose_chars == 0 || purpose_chars > MAX_PURPOSE_CHARS {
            return Err(ExchangeError::invalid(
                "grant.purpose",
                format!("must be 1-{MAX_PURPOSE_CHARS} chars"),
            ));
        }
        let id = agentsec_common::ids::new_id("grt_")
            .map_err(|err| ExchangeError::internal("grant id", err))?;
        Ok(Grant {
            id,
            tenant: person
                .tenant
                .clone()
                .unwrap_or_else(|| config.default_tenant.clone()),
            person_issuer: person.issuer.clone(),
            person_subject: person.subject.clone(),
            agent_id: self.agent_id,
            audiences: self.audiences,
            scopes: self.scopes,
            expire_time,
            max_chain_depth,
            purpose: self.purpose,
            create_time: now,
            revoke_time: None,
            revoked_by: String::new(),
            revoke_reason: String::new(),
        })
    }
}

/// Checks a list of names: `1..=max_items` entries of `1..=max_chars`
/// chars, no whitespace or control chars, no duplicates.
fn check_names(
    field: &str,
    values: &[String],
    max_items: usize,
    max_chars: usize,
) -> Result<(), ExchangeError> {
    if values.is_empty() || values.len() > max_items {
        return Err(ExchangeError::invalid(
            field,
            format!("must hold 1-{max_items} values"),
        ));
    }
    let mut seen = HashSet::new();
    for (index, value) in values.iter().enumerate() {
        let item = format!("{field}[{index}]");
        let chars = value.chars().count();
        if chars == 0 || chars > max_chars {
            return Err(ExchangeError::invalid(
                item,
                format!("must be 1-{max_chars} chars"),
            ));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ExchangeError::invalid(
                item,
                "must not contain whitespace or control characters",
            ));
        }
        if !seen.insert(value.as_str()) {
            return Err(ExchangeError::invalid(item, "is a duplicate"));
        }
    }
    Ok(())
}

/// A revocation reason: at most [`MAX_REASON_CHARS`] chars.
pub fn check_reason(reason: &str) -> Result<(), ExchangeError> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ExchangeError::invalid(
            "reason",
            format!("must be at most {MAX_REASON_CHARS} chars"),
        ));
    }
    Ok(())
}

/// Which grants a listing returns; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// (issuer, subject) of the person.
    pub person: Option<(String, String)>,
    /// Only grants of this tenant (tenant-scoped admins).
    pub tenant: Option<String>,
    /// The person's `sub`, any issuer (admin listings).
    pub person_subject: Option<String>,
    pub agent_id: Option<String>,
    /// Only grants neither revoked nor expired at this time.
    pub active_at: Option<DateTime<Utc>>,
}

impl GrantFilter {
    /// The conditions as the in-memory store applies them; the SQL store
    /// states the same conditions in its query.
    #[cfg(test)]
    pub fn matches(&self, grant: &Grant) -> bool {
        self.person.as_ref().is_none_or(|(issuer, subject)| {
            grant.person_issuer == *issuer && grant.person_subject == *subject
        }) && self
            .tenant
            .as_ref()
            .is_none_or(|tenant| grant.tenant == *tenant)
            && self
                .person_subject
                .as_ref()
                .is_none_or(|subject| grant.person_subject == *subject)
            && self
                .agent_id
                .as_ref()
                .is_none_or(|agent_id| grant.agent_id == *agent_id)
            && self.active_at.is_none_or(|now| grant.is_active(now))
    }
}

/// A revoked grant as enforcement points need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedGrant {
    pub id: String,
    pub tenant: String,
    pub agent_id: String,
    pub revoke_time: DateTime<Utc>,
}

/// Where a listing of revoked grants starts: at `since`, but never earlier
/// than the longest token lifetime before `now` (older revocations affect
/// no live token).
pub fn revocation_horizon(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let horizon = now - LONGEST_TOKEN_LIFETIME;
    since.map_or(horizon, |since| since.max(horizon))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn name_lists_are_bounded_and_unique() {
        let names = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert!(check_names("a", &names(&["x", "y"]), 2, 3).is_ok());
        let field = |result: Result<(), ExchangeError>| match result {
            Err(ExchangeError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(check_names("a", &[], 2, 3)), "a");
        assert_eq!(field(check_names("a", &names(&["x", "x"]), 2, 3)), "a[1]");
        assert_eq!(field(check_names("a", &names(&["x y"]), 2, 3)), "a[0]");
        assert_eq!(field(check_names("a", &names(&["long"]), 2, 3)), "a[0]");
        assert_eq!(field(check_names("a", &names(&["a", "b", "c"]), 2, 3)), "a");
    }

    /// An active grant of alice (https://users) to agt_1 in acme.
    pub(crate) fn stored() -> Grant {
        let now = Utc::now();
        Grant {
            id: "grt_1".into(),
            tenant: "acme".into(),
            person_issuer: "https://users".into(),
            person_subject: "alice".into(),
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
    fn status_is_computed() {
        let mut grant = stored();
        let now = Utc::now();
        assert_eq!(grant.status(now), GrantStatus::Active);
        assert_eq!(
            grant.status(now + chrono::Duration::hours(2)),
            GrantStatus::Expired
        );
        grant.revoke_time = Some(now);
        assert_eq!(grant.status(now), GrantStatus::Revoked);
    }

    #[test]
    fn a_filter_holds_only_when_every_condition_does() {
        let grant = stored();
        let now = Utc::now();
        assert!(GrantFilter::default().matches(&grant));
        let person = |issuer: &str, subject: &str| GrantFilter {
            person: Some((issuer.into(), subject.into())),
            ..GrantFilter::default()
        };
        assert!(person("https://users", "alice").matches(&grant));
        assert!(!person("https://other", "alice").matches(&grant));
        let filter = GrantFilter {
            tenant: Some("acme".into()),
            person_subject: Some("alice".into()),
            agent_id: Some("agt_1".into()),
            active_at: Some(now),
            ..GrantFilter::default()
        };
        assert!(filter.matches(&grant));
        let later = GrantFilter {
            active_at: Some(grant.expire_time),
            ..filter.clone()
        };
        assert!(!later.matches(&grant), "expired at its expire_time");
        let other_agent = GrantFilter {
            agent_id: Some("agt_2".into()),
            ..filter
        };
        assert!(!other_agent.matches(&grant));
    }

    #[test]
    fn the_revocation_horizon_is_at_most_a_token_lifetime_back() {
        let now = Utc::now();
        assert_eq!(revocation_horizon(None, now), now - LONGEST_TOKEN_LIFETIME);
        let recent = now - chrono::Duration::hours(1);
        assert_eq!(revocation_horizon(Some(recent), now), recent);
        let old = now - chrono::Duration::days(3);
        assert_eq!(
            revocation_horizon(Some(old), now),
            now - LONGEST_TOKEN_LIFETIME
        );
    }
}
