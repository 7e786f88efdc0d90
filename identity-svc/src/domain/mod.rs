//! identity-svc's rules, free of transport and storage types: agents and
//! their lifecycle, credentials, the registry that changes them through the
//! stores, and the scope and audience rules of a token request.

pub mod agent;
pub mod credential;
pub mod credentials;
pub mod jwk;
pub mod paging;
pub mod registry;
pub mod scope;
pub mod validate;
