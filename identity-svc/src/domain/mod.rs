//! The registry's rules, independent of transport and storage.

pub mod agent;
pub mod jwk;
pub mod scope;
pub mod validate;
