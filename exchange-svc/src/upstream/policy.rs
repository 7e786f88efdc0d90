//! policy-svc as exchange-svc uses it: one BatchCheck per exchange asks
//! whether the acting agent, for this person and chain, may exchange for
//! the target audience, and which of the candidate scopes it may carry.
//!
//! Items (action `token:exchange`, `audience` = the target):
//! - 0: resource type `audience`, id `audience:<target>`: the exchange
//!   itself;
//! - 1..: resource type `scope`, id `scope:<name>`, one per candidate
//!   scope.

use std::sync::Arc;
use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::telemetry::TraceContextInterceptor;
use agentsec_common::tls::ClientTls;
use agentsec_proto::common::v1::{Decision, Effect, Principal, Resource};
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::{BatchCheckRequest, CheckRequest};

use super::{authorized, channel, unavailable, TracedChannel};
use crate::config::PolicyConfig;

pub const ACTION: &str = "token:exchange";

const SERVICE: &str = "policy-svc";

pub struct PolicyClient {
    client: PolicyServiceClient<TracedChannel>,
}

/// policy-svc's answer for one exchange.
#[derive(Debug)]
pub struct ExchangeDecision {
    /// The decision on the exchange itself.
    pub exchange: Decision,
    /// The candidate scopes policy allows, in the order asked.
    pub allowed_scopes: Vec<String>,
}

impl ExchangeDecision {
    pub fn allowed(&self) -> bool {
        self.exchange.effect == Effect::Allow as i32
    }
}

impl PolicyClient {
    /// `None` when `policy.endpoint` is unset.
    pub fn new(config: &PolicyConfig, tls: &Arc<ClientTls>) -> Result<Option<Self>, String> {
        let Some(endpoint) = &config.endpoint else {
            return Ok(None);
        };
        let channel = channel(
            "policy.endpoint",
            endpoint,
            Duration::from_millis(config.timeout_ms),
            tls,
        )?;
        Ok(Some(Self {
            client: PolicyServiceClient::with_interceptor(channel, TraceContextInterceptor),
        }))
    }

    /// Decides the exchange and each candidate scope. Any failure, or an
    /// answer that does not fit the question, is an error: no token.
    /// PERMISSION_DENIED when policy-svc cannot decide this request.
    /// `bearer` is exchange-svc's service token, for a policy-svc that
    /// authenticates its callers.
    pub async fn decide(
        &self,
        principal: &Principal,
        audience: &str,
        scopes: &[String],
        bearer: &str,
    ) -> Result<ExchangeDecision, ApiError> {
        let item = |resource_type: &str, id: String| CheckRequest {
            principal: Some(principal.clone()),
            audience: audience.to_owned(),
            action: ACTION.to_owned(),
            resource: Some(Resource {
                r#type: resource_type.to_owned(),
                id,
                ..Resource::default()
            }),
            // policy-svc derives the delegation depth from the chain.
            context: None,
        };
        let mut items = vec![item("audience", format!("audience:{audience}"))];
        items.extend(
            scopes
                .iter()
                .map(|scope| item("scope", format!("scope:{scope}"))),
        );
        let results = self
            .client
            .clone()
            .batch_check(authorized(BatchCheckRequest { items }, bearer)?)
            .await
            .map_err(|status| match status.code() {
                // E.g. a tenant without a policy set: no policy allows it.
                tonic::Code::InvalidArgument => ApiError::PermissionDenied {
                    reason: format!("policy-svc cannot decide: {}", status.message()),
                },
                _ => unavailable(SERVICE, &status),
            })?
            .into_inner()
            .results;
        if results.len() != scopes.len() + 1 {
            return Err(ApiError::internal(
                "policy-svc answer",
                format!("{} results for {} items", results.len(), scopes.len() + 1),
            ));
        }
        let mut decisions = results.into_iter().map(|result| result.decision);
        let exchange = decisions
            .next()
            .flatten()
            .ok_or_else(|| ApiError::internal("policy-svc answer", "a result has no decision"))?;
        let allowed_scopes = scopes
            .iter()
            .zip(decisions)
            .filter(|(_, decision)| {
                decision
                    .as_ref()
                    .is_some_and(|decision| decision.effect == Effect::Allow as i32)
            })
            .map(|(scope, _)| scope.clone())
            .collect();
        Ok(ExchangeDecision {
            exchange,
            allowed_scopes,
        })
    }
}
