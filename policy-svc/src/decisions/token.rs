//! Decisions on a bearer token (CheckToken, Envoy ext_authz): the token is
//! verified against the trusted issuers and the revocation view, its
//! principal decides like Check's with the agent's registry attributes, a
//! token for another audience is denied, and no answer outlives the token.

use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_proto::common::v1::{attribute_value, AttributeValue, StringList};
use agentsec_proto::policy::v1::{
    CheckRequest, CheckResponse, CheckTokenRequest, CheckTokenResponse, RequestContext,
};
use chrono::Utc;

use super::{trace, DecisionService};
use crate::domain::engine::{self, AgentAttributeOrigin, Decision};
use crate::tokens::{VerifiedToken, MAX_TOKEN_BYTES};

/// The context attribute that carries a token's `scope` values in
/// token-based decisions (`context.token_scope` in conditions).
pub const TOKEN_SCOPE_ATTRIBUTE: &str = "token_scope";

/// How long a token decision waits for the revocation state right after
/// start, before failing closed.
pub(super) const FIRST_LOAD_WAIT: Duration = Duration::from_secs(5);

pub(super) async fn check_token(
    service: &DecisionService,
    request: CheckTokenRequest,
) -> Result<CheckTokenResponse, ApiError> {
    check_token_size(&request.token)?;
    let verified = verify_unrevoked(service, &request.token).await?;
    let mut principal = verified.principal.clone();
    // policy.proto: the principal carries the agent's registry attributes,
    // from the view (a token cannot carry its own).
    principal.agent_attributes = service
        .revocations
        .attributes_of(&principal.tenant, &principal.agent_id);
    let as_check = CheckRequest {
        principal: Some(principal.clone()),
        audience: request.audience,
        action: request.action,
        resource: request.resource,
        context: Some(token_context(request.context, &verified)),
    };
    let engine = service.policies.engine();
    let (mut decision, mut cached) = service
        .decide(
            &engine,
            &as_check,
            "",
            Utc::now(),
            AgentAttributeOrigin::Registry,
        )
        .await
        .map_err(|err| {
            // The principal comes from the token: name it, not a request
            // field the caller did not send.
            match err.field().strip_prefix("principal.") {
                Some(derived) => ApiError::invalid(
                    "token",
                    format!("the principal's `{derived}` derived from the token: {err}"),
                ),
                None => ApiError::from(err),
            }
        })?;
    if !verified.is_for(&as_check.audience) {
        // A valid token presented to another system (policy.proto: a DENY
        // decision, not an error), whatever the policies say.
        decision = audience_denial(&verified, &as_check.audience, decision.policy_version);
        cached = false;
    }
    let mut answer = service.answer(&as_check, &decision, cached)?;
    if let Some(decided) = &answer.decision {
        trace::record_decision(decided);
    }
    clamp_to_expiry(&mut answer, verified.expires_at, Utc::now().timestamp());
    Ok(CheckTokenResponse {
        decision: answer.decision,
        principal: Some(principal),
    })
}

/// Whether `token` may be presented to `audience` at all, without a
/// decision: verified, not revoked, and for that audience. For what needs
/// no policy decision (MCP `ping` and notifications under ext_authz).
pub(super) async fn authenticate(
    service: &DecisionService,
    token: &str,
    audience: &str,
) -> Result<(), ApiError> {
    check_token_size(token)?;
    let verified = verify_unrevoked(service, token).await?;
    if verified.is_for(audience) {
        return Ok(());
    }
    Err(ApiError::PermissionDenied {
        reason: audience_denial(&verified, audience, 0).reason,
    })
}

fn check_token_size(token: &str) -> Result<(), ApiError> {
    if token.is_empty() {
        return Err(ApiError::invalid("token", "is required"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::invalid("token", "must be at most 8 KiB"));
    }
    Ok(())
}

/// `token` verified against the trusted issuers and the revocation view
/// (waiting for its first load right after start).
async fn verify_unrevoked(
    service: &DecisionService,
    token: &str,
) -> Result<VerifiedToken, ApiError> {
    if !service.tokens.is_configured() {
        return Err(ApiError::FailedPrecondition {
            reason: "no token issuer is trusted (token_issuers, or admin.jwks_uri for \
                     identity-svc)"
                .to_owned(),
        });
    }
    let verified = service.tokens.verify(token).await?;
    service.revocations.wait_loaded(FIRST_LOAD_WAIT).await;
    service.revocations.check(&verified, Utc::now())?;
    Ok(verified)
}

/// The caller's context with what only the token may say: the delegation
/// depth is derived from its actor chain, and `token_scope` is its scope,
/// whatever the caller sent.
fn token_context(context: Option<RequestContext>, verified: &VerifiedToken) -> RequestContext {
    let mut context = context.unwrap_or_default();
    context.delegation_depth = 0;
    if verified.scopes.is_empty() {
        context.attributes.remove(TOKEN_SCOPE_ATTRIBUTE);
    } else {
        context.attributes.insert(
            TOKEN_SCOPE_ATTRIBUTE.to_owned(),
            AttributeValue {
                kind: Some(attribute_value::Kind::StringListValue(StringList {
                    values: verified.scopes.clone(),
                })),
            },
        );
    }
    context
}

/// The DENY of a token for another audience, naming the token's.
fn audience_denial(verified: &VerifiedToken, asked: &str, policy_version: u64) -> Decision {
    let audiences = verified
        .audiences
        .iter()
        .map(|aud| format!("`{}`", aud.chars().take(256).collect::<String>()))
        .collect::<Vec<_>>()
        .join(", ");
    Decision {
        effect: engine::Effect::Deny,
        reason: format!(
            "the token's audience ({audiences}) is not the requested audience `{asked}`"
        )
        .chars()
        .take(1024)
        .collect(),
        policy_ids: Vec::new(),
        policy_version,
        evaluation_error: false,
        depends_on_time: false,
    }
}

/// A decision is never cacheable past the token's expiry.
fn clamp_to_expiry(answer: &mut CheckResponse, expires_at: i64, now: i64) {
    let Some(answered) = answer.decision.as_mut() else {
        return;
    };
    let left = (expires_at - now).max(0);
    if let Some(ttl) = answered.cache_ttl.as_mut() {
        ttl.seconds = ttl.seconds.min(left);
    }
    if left == 0 {
        answered.cache_ttl = None;
    }
}

#[cfg(test)]
mod tests {
    use agentsec_proto::common::v1::{Decision as DecisionProto, Principal};

    use super::*;

    fn verified(audiences: &[&str], scopes: &[&str]) -> VerifiedToken {
        VerifiedToken {
            principal: Principal::default(),
            audiences: audiences.iter().map(|aud| (*aud).to_owned()).collect(),
            expires_at: 1_000,
            issued_at: 0,
            not_before: None,
            jti: None,
            credential: None,
            generation: None,
            grant_id: None,
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        }
    }

    #[test]
    fn the_token_sets_its_scope_and_the_depth_whatever_the_caller_sent() {
        let mut sent = RequestContext {
            delegation_depth: 7,
            ..RequestContext::default()
        };
        sent.attributes
            .insert(TOKEN_SCOPE_ATTRIBUTE.to_owned(), AttributeValue::default());
        let scoped = token_context(Some(sent.clone()), &verified(&["a"], &["repo:read"]));
        assert_eq!(scoped.delegation_depth, 0);
        let scope = &scoped.attributes[TOKEN_SCOPE_ATTRIBUTE];
        assert!(matches!(
            &scope.kind,
            Some(attribute_value::Kind::StringListValue(list)) if list.values == ["repo:read"]
        ));
        // A token without scope removes what the caller claimed.
        let unscoped = token_context(Some(sent), &verified(&["a"], &[]));
        assert!(!unscoped.attributes.contains_key(TOKEN_SCOPE_ATTRIBUTE));
    }

    #[test]
    fn another_audience_is_a_deny_naming_the_tokens() {
        let denial = audience_denial(&verified(&["mcp:github"], &[]), "mcp:jira", 4);
        assert_eq!(denial.effect, engine::Effect::Deny);
        assert_eq!(denial.policy_version, 4);
        assert!(denial.policy_ids.is_empty());
        assert!(denial.reason.contains("`mcp:github`"), "{}", denial.reason);
        assert!(denial.reason.contains("`mcp:jira`"), "{}", denial.reason);
        let long = "x".repeat(5_000);
        assert!(
            audience_denial(&verified(&[&long], &[]), "y", 1)
                .reason
                .chars()
                .count()
                <= 1024
        );
    }

    #[test]
    fn no_answer_is_cacheable_past_the_tokens_expiry() {
        let answer = |seconds| CheckResponse {
            decision: Some(DecisionProto {
                cache_ttl: Some(prost_types::Duration { seconds, nanos: 0 }),
                ..DecisionProto::default()
            }),
        };
        let ttl = |answer: &CheckResponse| {
            answer
                .decision
                .as_ref()
                .and_then(|decision| decision.cache_ttl.as_ref())
                .map(|ttl| ttl.seconds)
        };
        let mut long = answer(30);
        clamp_to_expiry(&mut long, 1_010, 1_000);
        assert_eq!(ttl(&long), Some(10));
        let mut short = answer(5);
        clamp_to_expiry(&mut short, 1_010, 1_000);
        assert_eq!(ttl(&short), Some(5));
        let mut expired = answer(30);
        clamp_to_expiry(&mut expired, 1_000, 1_000);
        assert_eq!(ttl(&expired), None);
    }
}
