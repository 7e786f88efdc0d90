//! audit-svc's API layer: gRPC handlers and the conversions at the boundary.

mod convert;
pub mod grpc;
mod streams;
