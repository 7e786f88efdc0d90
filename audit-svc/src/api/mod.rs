//! audit-svc's API layer: gRPC handlers.

pub mod grpc;
