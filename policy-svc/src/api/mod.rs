//! policy-svc's API layer, one module per transport: gRPC, AuthZEN over
//! HTTP and Envoy ext_authz. Each checks its caller and converts; the
//! decisions themselves are the decision service's (`crate::decisions`).

pub mod authzen;
mod convert;
pub mod ext_authz;
pub mod grpc;
