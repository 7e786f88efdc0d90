//! The test harness: [`TestCluster`] starts all four services in this
//! process on listeners bound to port 0, against SQLite by default, or
//! against PostgreSQL and Redis when `AGENTSEC_TEST_DATABASE_URL` and
//! `AGENTSEC_TEST_REDIS_URL` are set. Each cluster gets its own databases
//! (SQLite files or PostgreSQL schemas) and Redis key prefix, so tests run in
//! parallel.

pub mod audit_trail;
pub mod backend;
pub mod cluster;
pub mod eventually;
pub mod http;
pub mod relay;
pub mod tls;

pub use backend::TestBackend;
pub use cluster::{Service, TestCluster};
pub use eventually::eventually;

/// A gRPC request carrying `authorization: Bearer <token>`, or none when
/// `token` is empty (an anonymous caller).
pub fn with_optional_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    if token.is_empty() {
        tonic::Request::new(message)
    } else {
        with_bearer(message, token)
    }
}

/// A gRPC request carrying `authorization: Bearer <token>`.
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// CheckToken for `tools/call` on the MCP tool `tool` at `audience`.
pub fn check_token(
    token: &str,
    audience: &str,
    tool: &str,
) -> agentsec_proto::policy::v1::CheckTokenRequest {
    agentsec_proto::policy::v1::CheckTokenRequest {
        token: token.to_owned(),
        audience: audience.to_owned(),
        action: "tools/call".to_owned(),
        resource: Some(agentsec_proto::common::v1::Resource {
            r#type: "mcp.tool".to_owned(),
            id: tool.to_owned(),
            ..Default::default()
        }),
        context: None,
    }
}
