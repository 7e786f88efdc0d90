//! The rules of one exchange hop, apart from the stores and services they
//! read: which grant authorizes it, how long a chain may grow, and which
//! scopes the new token gets (they only shrink).

use agentsec_common::oauth_http::printable;
use chrono::{DateTime, Utc};

use super::grant::Grant;
use crate::error::ExchangeError;

/// How long a chain of agents may grow.
#[derive(Debug, Clone, Copy)]
pub struct DepthLimits {
    /// `grants.max_chain_depth`: the deepest chain any grant allows.
    pub grants: u32,
    /// `exchange.max_chain_depth`: the deepest chain without a grant
    /// (`may_act`).
    pub may_act: u32,
}

fn too_deep(depth: usize, limit: u32, what: &str) -> ExchangeError {
    ExchangeError::grant_refused(format!(
        "a chain of {depth} agents exceeds {what} ({limit})"
    ))
}

/// The first hop: among the person's grants to the agent, the first active
/// one that covers `audience`.
pub fn first_hop_grant(
    grants: Vec<Grant>,
    audience: &str,
    now: DateTime<Utc>,
) -> Result<Grant, ExchangeError> {
    grants
        .into_iter()
        .filter(|grant| grant.is_active(now))
        .find(|grant| grant.covers(audience))
        .ok_or_else(|| {
            ExchangeError::grant_refused(
                "no active grant of this person lets this agent act for this audience",
            )
        })
}

/// A deeper hop of a chain begun under `grant_id` (empty: begun under
/// `may_act`, which cannot go further): `grant` is that grant as stored
/// now; it must still be active, cover `audience`, and allow a chain of
/// `depth` agents, as must the service.
pub fn next_hop_grant(
    grant_id: &str,
    grant: Option<Grant>,
    audience: &str,
    depth: usize,
    limits: DepthLimits,
    now: DateTime<Utc>,
) -> Result<Grant, ExchangeError> {
    if grant_id.is_empty() {
        if depth > limits.may_act as usize {
            return Err(too_deep(depth, limits.may_act, "exchange.max_chain_depth"));
        }
        return Err(ExchangeError::grant_refused("the subject_token was authorized by may_act, not a grant; it cannot be delegated further",
        ));
    }
    let grant = grant.filter(|grant| grant.is_active(now)).ok_or_else(|| {
        ExchangeError::grant_refused("the grant behind the subject_token is no longer active")
    })?;
    if !grant.covers(audience) {
        return Err(ExchangeError::grant_refused(
            "the grant behind the subject_token does not cover this audience",
        ));
    }
    if depth > grant.max_chain_depth as usize {
        return Err(too_deep(
            depth,
            grant.max_chain_depth,
            "the grant's max_chain_depth",
        ));
    }
    if depth > limits.grants as usize {
        return Err(too_deep(depth, limits.grants, "grants.max_chain_depth"));
    }
    Ok(grant)
}

/// What may be delegated: the agent's scopes that the grant (when there is
/// one) and the subject token (when it names scopes) also hold. A request
/// must stay within it; no request means all of it.
pub fn delegable_scopes(
    grant: Option<&Grant>,
    subject_scopes: Option<&[String]>,
    agent_scopes: &[String],
    requested: Option<&[String]>,
) -> Result<Vec<String>, ExchangeError> {
    let delegable: Vec<String> = agent_scopes
        .iter()
        .filter(|scope| grant.is_none_or(|grant| grant.scopes.contains(scope)))
        .filter(|scope| subject_scopes.is_none_or(|scopes| scopes.contains(scope)))
        .cloned()
        .collect();
    let candidates = match requested {
        Some(requested) => {
            if let Some(beyond) = requested.iter().find(|scope| !delegable.contains(scope)) {
                return Err(ExchangeError::scope_refused(format!(
                    "scope `{}` is beyond what may be delegated (grant, subject token and agent)",
                    printable(beyond)
                )));
            }
            requested.to_vec()
        }
        None => delegable,
    };
    if candidates.is_empty() {
        return Err(ExchangeError::scope_refused(
            "no scope may be delegated (grant, subject token and agent have none in common)",
        ));
    }
    Ok(candidates)
}

/// The candidates policy allows: all of an explicit request (`explicit`),
/// or at least one.
pub fn policy_scopes(
    candidates: &[String],
    allowed: &[String],
    explicit: bool,
) -> Result<Vec<String>, ExchangeError> {
    if explicit {
        if let Some(denied) = candidates.iter().find(|scope| !allowed.contains(scope)) {
            return Err(ExchangeError::scope_refused(format!(
                "policy does not allow scope `{}`",
                printable(denied)
            )));
        }
    }
    if allowed.is_empty() {
        return Err(ExchangeError::scope_refused(
            "policy allows none of the scopes that may be delegated",
        ));
    }
    Ok(allowed.to_vec())
}

#[cfg(test)]
mod tests {
    use agentsec_common::error::{OAuthError, OAuthErrorCode};
    use chrono::Duration;

    use super::*;

    /// The answer the token endpoint gives for a refusal.
    fn oauth(err: ExchangeError) -> OAuthError {
        err.into_oauth("exchange")
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    fn grant(id: &str, audiences: &[&str], scopes: &[&str], depth: u32) -> Grant {
        Grant {
            id: id.to_owned(),
            tenant: "acme".to_owned(),
            person_issuer: "https://users.test".to_owned(),
            person_subject: "alice".to_owned(),
            agent_id: "agt_a".to_owned(),
            audiences: audiences.iter().map(|aud| (*aud).to_owned()).collect(),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            expire_time: now() + Duration::hours(1),
            max_chain_depth: depth,
            purpose: String::new(),
            create_time: now() - Duration::hours(1),
            revoke_time: None,
            revoked_by: String::new(),
            revoke_reason: String::new(),
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    const LIMITS: DepthLimits = DepthLimits {
        grants: 3,
        may_act: 1,
    };

    #[test]
    fn the_first_hop_takes_the_first_active_grant_covering_the_audience() {
        let mut revoked = grant("g1", &["mcp:github"], &["a"], 1);
        revoked.revoke_time = Some(now() - Duration::minutes(1));
        let mut expired = grant("g2", &["mcp:github"], &["a"], 1);
        expired.expire_time = now();
        let other = grant("g3", &["mcp:jira"], &["a"], 1);
        let covering = grant("g4", &["mcp:jira", "mcp:github"], &["a"], 1);
        let later = grant("g5", &["mcp:github"], &["a"], 1);
        let chosen = first_hop_grant(
            vec![revoked, expired, other, covering, later],
            "mcp:github",
            now(),
        )
        .unwrap();
        assert_eq!(chosen.id, "g4");
        let none = oauth(
            first_hop_grant(
                vec![grant("g3", &["mcp:jira"], &["a"], 1)],
                "mcp:github",
                now(),
            )
            .unwrap_err(),
        );
        assert_eq!(none.error, OAuthErrorCode::InvalidGrant);
    }

    #[test]
    fn a_chain_grows_only_under_an_active_grant_within_every_depth_limit() {
        let stored = || Some(grant("g1", &["mcp:github"], &["a"], 2));
        assert_eq!(
            next_hop_grant("g1", stored(), "mcp:github", 2, LIMITS, now())
                .unwrap()
                .id,
            "g1"
        );
        let refusal = |grant_id: &str, grant: Option<Grant>, audience: &str, depth: usize| {
            oauth(next_hop_grant(grant_id, grant, audience, depth, LIMITS, now()).unwrap_err())
                .error_description
        };
        assert!(refusal("g1", None, "mcp:github", 2).contains("no longer active"));
        let mut revoked = grant("g1", &["mcp:github"], &["a"], 2);
        revoked.revoke_time = Some(now());
        assert!(refusal("g1", Some(revoked), "mcp:github", 2).contains("no longer active"));
        assert!(refusal("g1", stored(), "mcp:jira", 2).contains("does not cover"));
        assert!(
            refusal("g1", stored(), "mcp:github", 3).contains("the grant's max_chain_depth (2)")
        );
        let generous = Some(grant("g1", &["mcp:github"], &["a"], 9));
        assert!(refusal("g1", generous, "mcp:github", 4).contains("grants.max_chain_depth (3)"));
        // A chain begun under may_act goes no further, and says why.
        assert!(refusal("", None, "mcp:github", 2).contains("exchange.max_chain_depth (1)"));
        assert!(refusal("", None, "mcp:github", 1).contains("cannot be delegated further"));
    }

    #[test]
    fn scopes_only_shrink_through_grant_subject_and_agent() {
        let grant = grant("g1", &["mcp:github"], &["repo:read", "repo:write"], 1);
        let agent = strings(&["repo:read", "repo:write", "repo:admin"]);
        let subject = strings(&["repo:read", "repo:admin"]);
        // No request: everything all three hold.
        assert_eq!(
            delegable_scopes(Some(&grant), Some(&subject), &agent, None).unwrap(),
            ["repo:read"]
        );
        // A subject token without scopes narrows nothing; may_act (no grant)
        // leaves the agent's and the subject's.
        assert_eq!(
            delegable_scopes(Some(&grant), None, &agent, None).unwrap(),
            ["repo:read", "repo:write"]
        );
        assert_eq!(
            delegable_scopes(None, Some(&subject), &agent, None).unwrap(),
            ["repo:read", "repo:admin"]
        );
        // A request within the intersection is kept as asked; beyond it is
        // invalid_scope naming the scope.
        let asked = strings(&["repo:write"]);
        assert_eq!(
            delegable_scopes(Some(&grant), None, &agent, Some(&asked)).unwrap(),
            ["repo:write"]
        );
        let beyond = strings(&["repo:read", "repo:admin"]);
        let err = oauth(delegable_scopes(Some(&grant), None, &agent, Some(&beyond)).unwrap_err());
        assert_eq!(err.error, OAuthErrorCode::InvalidScope);
        assert!(err.error_description.contains("`repo:admin`"));
        // Nothing in common.
        let disjoint = strings(&["issues:read"]);
        let err = oauth(delegable_scopes(Some(&grant), Some(&disjoint), &agent, None).unwrap_err());
        assert_eq!(err.error, OAuthErrorCode::InvalidScope);
    }

    #[test]
    fn policy_keeps_what_it_allows_and_must_allow_all_of_an_explicit_request() {
        let candidates = strings(&["repo:read", "repo:write"]);
        let allowed = strings(&["repo:read"]);
        assert_eq!(
            policy_scopes(&candidates, &allowed, false).unwrap(),
            ["repo:read"]
        );
        let err = oauth(policy_scopes(&candidates, &allowed, true).unwrap_err());
        assert!(err.error_description.contains("`repo:write`"));
        assert_eq!(
            oauth(policy_scopes(&candidates, &[], false).unwrap_err()).error,
            OAuthErrorCode::InvalidScope
        );
    }
}
