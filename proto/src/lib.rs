//! The AgentSec v1 gRPC contracts, generated from `agentsec/**/*.proto`.
//! One module per package; `FILE_DESCRIPTOR_SET` feeds gRPC reflection.

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
