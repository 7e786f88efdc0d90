//! Conversions between the contract (`agentsec.exchange.v1`,
//! `agentsec.common.v1`) and exchange-svc's domain types.

use agentsec_common::admin_token::AdminToken;
use agentsec_common::time::{required_datetime, timestamp};
use agentsec_proto::common::v1 as common;
use agentsec_proto::exchange::v1 as pb;

use crate::domain::caller::{Admin, ListQuery};
use crate::domain::claims::Actor;
use crate::domain::grant::{GrantRequest, GrantStatus, GrantView, RevokedGrant};
use crate::error::ExchangeError;

/// CreateGrant's `grant`: required; its `expire_time`, when set, must be a
/// valid time (the rest is checked by [`GrantRequest::into_grant`]).
pub fn grant_request(grant: Option<pb::Grant>) -> Result<GrantRequest, ExchangeError> {
    let grant = grant.ok_or_else(|| ExchangeError::invalid("grant", "is required"))?;
    let expire_time = grant
        .expire_time
        .as_ref()
        .map(|time| required_datetime("grant.expire_time", time))
        .transpose()?;
    Ok(GrantRequest {
        agent_id: grant.agent_id,
        audiences: grant.audiences,
        scopes: grant.scopes,
        expire_time,
        max_chain_depth: grant.max_chain_depth,
        purpose: grant.purpose,
    })
}

impl From<GrantStatus> for pb::GrantStatus {
    fn from(status: GrantStatus) -> Self {
        match status {
            GrantStatus::Active => pb::GrantStatus::Active,
            GrantStatus::Expired => pb::GrantStatus::Expired,
            GrantStatus::Revoked => pb::GrantStatus::Revoked,
        }
    }
}

impl From<GrantView> for pb::Grant {
    fn from(view: GrantView) -> Self {
        let grant = view.grant;
        pb::Grant {
            status: pb::GrantStatus::from(view.status) as i32,
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
}

impl From<&pb::ListGrantsRequest> for ListQuery {
    fn from(request: &pb::ListGrantsRequest) -> Self {
        Self {
            person_subject: request.person_subject.clone(),
            agent_id: request.agent_id.clone(),
            include_inactive: request.include_inactive,
        }
    }
}

impl From<&RevokedGrant> for pb::RevokedGrantEntry {
    fn from(grant: &RevokedGrant) -> Self {
        Self {
            grant_id: grant.id.clone(),
            tenant: grant.tenant.clone(),
            agent_id: grant.agent_id.clone(),
            revoke_time: Some(timestamp(grant.revoke_time)),
        }
    }
}

impl From<AdminToken> for Admin {
    fn from(token: AdminToken) -> Self {
        Self {
            subject: token.subject,
            tenant: token.tenant,
        }
    }
}

impl From<&Actor> for common::Actor {
    fn from(actor: &Actor) -> Self {
        Self {
            agent_id: actor.agent_id.clone(),
            issuer: actor.issuer.clone(),
        }
    }
}

/// A chain of agents, outermost first.
pub fn actor_chain(actors: &[Actor]) -> common::ActorChain {
    common::ActorChain {
        actors: actors.iter().map(common::Actor::from).collect(),
    }
}

/// Whole seconds since the epoch, as a timestamp.
pub fn timestamp_of_seconds(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::grant::Grant;

    #[test]
    fn a_grant_request_needs_a_grant_and_a_valid_expire_time() {
        let field = |result: Result<GrantRequest, ExchangeError>| match result {
            Err(ExchangeError::Api(agentsec_common::error::ApiError::InvalidArgument {
                field,
                ..
            })) => field,
            Err(ExchangeError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(grant_request(None)), "grant");
        let unreadable = pb::Grant {
            expire_time: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: -1,
            }),
            ..pb::Grant::default()
        };
        assert_eq!(field(grant_request(Some(unreadable))), "grant.expire_time");
        let missing = grant_request(Some(pb::Grant::default())).unwrap();
        assert_eq!(missing.expire_time, None);
    }

    #[test]
    fn a_grant_answers_with_its_status() {
        let time = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).unwrap();
        let grant = Grant {
            id: "grt_1".into(),
            tenant: "acme".into(),
            person_issuer: "https://users".into(),
            person_subject: "alice".into(),
            agent_id: "agt_1".into(),
            audiences: vec!["a".into()],
            scopes: vec!["s".into()],
            expire_time: time,
            max_chain_depth: 2,
            purpose: "p".into(),
            create_time: time,
            revoke_time: Some(time),
            revoked_by: "alice".into(),
            revoke_reason: "done".into(),
        };
        let answered = pb::Grant::from(GrantView::at(grant, time));
        assert_eq!(answered.status, pb::GrantStatus::Revoked as i32);
        assert_eq!(answered.revoke_time, Some(timestamp(time)));
        assert_eq!(answered.max_chain_depth, 2);
    }
}
