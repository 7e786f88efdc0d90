//! What identity-svc tells the rest of the system (`agentsec_common::events`).

pub use agentsec_common::audit::record::AuditRecord;
pub use agentsec_common::events::Events;
pub use agentsec_common::invalidation::{Invalidation, InvalidationKind, INVALIDATION_CHANNEL};
use agentsec_proto::common::v1::Outcome;

/// The sender named in identity-svc's audit events.
pub const SERVICE: &str = "identity-svc";

/// The audit record of a change that went ahead.
pub fn change(kind: &'static str, tenant: &str, agent_id: &str) -> AuditRecord {
    AuditRecord::new(kind, tenant, agent_id, Outcome::Allow)
}
