//! audit-svc's API layer: gRPC handlers, who may call them, and the
//! conversions at the boundary.

pub mod auth;
mod convert;
pub mod grpc;
mod streams;
