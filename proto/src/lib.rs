//! The AgentSec v1 gRPC contracts, generated from `agentsec/**/*.proto`,
//! and the wire-compatible subset of Envoy's ext_authz v3 API policy-svc
//! serves (`envoy/`, with `google.rpc.Status`). One module per package;
//! `FILE_DESCRIPTOR_SET` feeds gRPC reflection.

// Generated code is not held to the workspace's hand-written-code lints.
#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

/// Every message and service of every package, encoded, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("agentsec_descriptor");

pub mod common {
    pub mod v1 {
        tonic::include_proto!("agentsec.common.v1");
    }
}

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("agentsec.identity.v1");
    }
}

pub mod policy {
    pub mod v1 {
        tonic::include_proto!("agentsec.policy.v1");
    }
}

pub mod exchange {
    pub mod v1 {
        tonic::include_proto!("agentsec.exchange.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("agentsec.audit.v1");
    }
}

/// Envoy's packages, nested as prost's cross-package paths expect.
pub mod envoy {
    pub mod config {
        pub mod core {
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }

    pub mod r#type {
        pub mod v3 {
            tonic::include_proto!("envoy.r#type.v3");
        }
    }

    pub mod service {
        pub mod auth {
            pub mod v3 {
                tonic::include_proto!("envoy.service.auth.v3");
            }
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
