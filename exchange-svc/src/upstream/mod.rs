//! The services exchange-svc consults for every exchange: identity-svc
//! (actor tokens, agent status) and policy-svc (the `token:exchange`
//! decision). Calls carry the caller's trace context and a deadline; any
//! failure fails the exchange closed.

pub mod identity;
pub mod policy;

pub use agentsec_common::upstream::{authorized, channel, unavailable, TracedChannel};
