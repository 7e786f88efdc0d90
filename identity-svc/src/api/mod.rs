//! Transports: the gRPC service and the conversions between the contract
//! and the domain (the HTTP endpoints live with the OAuth logic in
//! `oauth::http`).

mod convert;
pub mod grpc;
