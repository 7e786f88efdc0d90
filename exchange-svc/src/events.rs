//! What exchange-svc tells the rest of the system (`agentsec_common::events`).

pub use agentsec_common::audit::record::AuditRecord;
pub use agentsec_common::events::Events;

/// The sender named in exchange-svc's audit events.
pub const SERVICE: &str = "exchange-svc";
