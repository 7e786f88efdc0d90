//! What identity-svc tells the rest of the system (`agentsec_common::events`).

pub use agentsec_common::audit::record::AuditRecord;
pub use agentsec_common::events::Events;
pub use agentsec_common::invalidation::{Invalidation, InvalidationKind, INVALIDATION_CHANNEL};

/// The sender named in identity-svc's audit events.
pub const SERVICE: &str = "identity-svc";
