//! exchange-svc's API layer: gRPC handlers (HTTP routes come from `common`
//! until the OAuth endpoints land).

pub mod grpc;
