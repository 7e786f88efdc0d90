//! Where a grant's agent is looked up: identity-svc in the service
//! ([`crate::upstream::identity::IdentityClient`]), a table in unit tests.

use std::future::Future;

use crate::error::ExchangeError;

pub trait AgentDirectory: Send + Sync + 'static {
    /// Whether the agent exists, belongs to `tenant` and is ACTIVE; an
    /// error when the directory cannot answer.
    fn agent_is_active(
        &self,
        tenant: &str,
        agent_id: &str,
    ) -> impl Future<Output = Result<bool, ExchangeError>> + Send;
}
