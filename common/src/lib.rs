//! What every AgentSec service shares: layered configuration, telemetry,
//! the server bootstrap (gRPC + HTTP + health + reflection on one port),
//! database connections with migrations, the API error type, and signing keys.
//!
//! This crate is infrastructure only: it holds no service's rules.

pub mod admin_token;
pub mod audit;
pub mod bearer;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod follower;
pub mod foundation;
pub mod http_boundary;
pub mod ids;
pub mod invalidation;
pub mod issuer_config;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod oauth_http;
pub mod page;
pub mod readiness;
pub mod redact;
pub mod redis;
pub mod remote_jwks;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod upstream;
pub mod verified;
