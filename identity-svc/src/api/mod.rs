//! Transports: the gRPC service (the HTTP endpoints live with the OAuth
//! logic in `oauth::http`).

pub mod grpc;
