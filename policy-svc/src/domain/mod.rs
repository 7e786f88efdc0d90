//! policy-svc's rules: the policy language and its decisions (`engine`),
//! and the rules of a tenant's policy set history (`policy_set`). The
//! policy language's types are the protobuf contract's (`PolicySet`,
//! `CheckRequest`): the contract defines the language. Nothing here
//! imports a transport or a store.

pub mod engine;
pub mod mcp;
pub mod policy_set;
