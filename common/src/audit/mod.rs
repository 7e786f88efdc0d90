//! What the audit trail's producers and audit-svc share: the limits of an
//! audit event and their validation (run by the client before it queues an
//! event and by audit-svc at its boundary), and the client every service
//! sends its events through.

pub mod client;
pub mod record;
mod validate;

pub use validate::{validate_event, EventError, MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
