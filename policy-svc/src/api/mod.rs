//! policy-svc's API layer: the gRPC handlers and the AuthZEN HTTP API (both
//! decide through the same path; Envoy ext_authz is `crate::ext_authz`).

pub mod authzen;
pub mod grpc;
mod trace;
