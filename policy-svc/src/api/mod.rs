//! policy-svc's API layer: gRPC handlers (AuthZEN and ext_authz
//! arrive with the policy-svc issue).

pub mod authzen;
pub mod grpc;
