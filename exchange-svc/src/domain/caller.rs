//! Who calls a grant operation, and which grants they may see and list.

use chrono::{DateTime, Utc};

use super::grant::{Grant, GrantFilter};
use crate::error::ExchangeError;

const MAX_SUBJECT_CHARS: usize = 256;
const MAX_AGENT_ID_CHARS: usize = 64;

/// A verified person: the issuer and `sub` of their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub issuer: String,
    pub subject: String,
    /// The token's `tenant` claim, when it has one.
    pub tenant: Option<String>,
}

/// A verified admin of identity-svc (`tenant` `None` = a global admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub subject: String,
    pub tenant: Option<String>,
}

/// Who calls a grant operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Person(Person),
    Admin(Admin),
}

/// What a listing asks for (empty strings: no condition).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub person_subject: String,
    pub agent_id: String,
    pub include_inactive: bool,
}

impl Caller {
    /// A person sees their own grants (issuer and subject both match); an
    /// admin those of their tenant, a global admin every grant.
    pub fn sees(&self, grant: &Grant) -> bool {
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

    pub fn subject(&self) -> &str {
        match self {
            Caller::Person(person) => &person.subject,
            Caller::Admin(admin) => &admin.subject,
        }
    }

    /// The grants `query` lists for this caller at `now`: a person only
    /// their own (naming another person is PERMISSION_DENIED), an admin
    /// within their tenant.
    pub fn list_filter(
        &self,
        query: &ListQuery,
        now: DateTime<Utc>,
    ) -> Result<GrantFilter, ExchangeError> {
        if query.person_subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ExchangeError::invalid(
                "person_subject",
                format!("must be at most {MAX_SUBJECT_CHARS} chars"),
            ));
        }
        if query.agent_id.len() > MAX_AGENT_ID_CHARS {
            return Err(ExchangeError::invalid(
                "agent_id",
                format!("must be at most {MAX_AGENT_ID_CHARS} chars"),
            ));
        }
        let mut filter = GrantFilter {
            agent_id: (!query.agent_id.is_empty()).then(|| query.agent_id.clone()),
            ..GrantFilter::default()
        };
        match self {
            Caller::Person(person) => {
                if !query.person_subject.is_empty() && query.person_subject != person.subject {
                    return Err(ExchangeError::Denied {
                        reason: "a person may only list their own grants (`person_subject`)"
                            .to_owned(),
                    });
                }
                filter.person = Some((person.issuer.clone(), person.subject.clone()));
            }
            Caller::Admin(admin) => {
                filter.tenant.clone_from(&admin.tenant);
                filter.person_subject =
                    (!query.person_subject.is_empty()).then(|| query.person_subject.clone());
            }
        }
        if !query.include_inactive {
            filter.active_at = Some(now);
        }
        Ok(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::grant::tests::stored as grant;

    fn person(issuer: &str, subject: &str) -> Caller {
        Caller::Person(Person {
            issuer: issuer.into(),
            subject: subject.into(),
            tenant: None,
        })
    }

    fn admin(tenant: Option<&str>) -> Caller {
        Caller::Admin(Admin {
            subject: "root".into(),
            tenant: tenant.map(str::to_owned),
        })
    }

    #[test]
    fn callers_see_their_own_grants_or_their_tenant() {
        let grant = grant();
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
    fn a_listing_is_bound_to_the_caller() {
        let now = Utc::now();
        let query = |subject: &str| ListQuery {
            person_subject: subject.into(),
            ..ListQuery::default()
        };
        let own = person("https://users", "alice")
            .list_filter(&query("alice"), now)
            .unwrap();
        assert_eq!(
            own.person,
            Some(("https://users".to_owned(), "alice".to_owned()))
        );
        assert_eq!(own.active_at, Some(now));
        assert!(matches!(
            person("https://users", "alice").list_filter(&query("bob"), now),
            Err(ExchangeError::Denied { .. })
        ));
        let tenant = admin(Some("acme")).list_filter(&query("bob"), now).unwrap();
        assert_eq!(tenant.tenant.as_deref(), Some("acme"));
        assert_eq!(tenant.person_subject.as_deref(), Some("bob"));
        let all = admin(None)
            .list_filter(
                &ListQuery {
                    include_inactive: true,
                    ..ListQuery::default()
                },
                now,
            )
            .unwrap();
        assert_eq!(all, GrantFilter::default());
        assert!(matches!(
            admin(None).list_filter(&query(&"s".repeat(257)), now),
            Err(ExchangeError::Invalid { field, .. }) if field == "person_subject"
        ));
    }
}
