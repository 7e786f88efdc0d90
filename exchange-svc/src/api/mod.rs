//! exchange-svc's API layer: the gRPC handlers and the OAuth HTTP endpoints
//! (RFC 8693 token exchange, introspection, JWKS, metadata).

mod convert;
pub mod grpc;
pub mod http;
