//! gRPC handlers of `agentsec.audit.v1.AuditService`.

use agentsec_common::error::not_yet_served;
use agentsec_common::keys::Jwks;
use agentsec_proto::audit::v1::audit_service_server::AuditService;
use agentsec_proto::audit::v1::*;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

/// Who delivers the RPCs this release does not serve yet.
const OWNER: &str = "the audit-svc issue (#3)";

pub struct AuditApi {
    active_key_id: String,
    verification_keys: Jwks,
}

impl AuditApi {
    pub fn new(active_key_id: String, verification_keys: Jwks) -> Self {
        Self {
            active_key_id,
            verification_keys,
        }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn get_verification_keys(
        &self,
        _request: Request<GetVerificationKeysRequest>,
    ) -> Result<Response<GetVerificationKeysResponse>, Status> {
        Ok(Response::new(GetVerificationKeysResponse {
            jwks: Some((&self.verification_keys).into()),
            active_key_id: self.active_key_id.clone(),
        }))
    }

    async fn append_events(
        &self,
        _request: Request<AppendEventsRequest>,
    ) -> Result<Response<AppendEventsResponse>, Status> {
        not_yet_served("AppendEvents", OWNER)
    }

    async fn append_event_stream(
        &self,
        _request: Request<Streaming<AppendEventStreamRequest>>,
    ) -> Result<Response<AppendEventStreamResponse>, Status> {
        not_yet_served("AppendEventStream", OWNER)
    }

    async fn query_events(
        &self,
        _request: Request<QueryEventsRequest>,
    ) -> Result<Response<QueryEventsResponse>, Status> {
        not_yet_served("QueryEvents", OWNER)
    }

    type TailEventsStream = BoxStream<TailEventsResponse>;

    async fn tail_events(
        &self,
        _request: Request<TailEventsRequest>,
    ) -> Result<Response<Self::TailEventsStream>, Status> {
        not_yet_served("TailEvents", OWNER)
    }

    async fn verify_chain(
        &self,
        _request: Request<VerifyChainRequest>,
    ) -> Result<Response<VerifyChainResponse>, Status> {
        not_yet_served("VerifyChain", OWNER)
    }

    async fn list_checkpoints(
        &self,
        _request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        not_yet_served("ListCheckpoints", OWNER)
    }

    async fn get_checkpoint(
        &self,
        _request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        not_yet_served("GetCheckpoint", OWNER)
    }

    type ExportEventsStream = BoxStream<ExportEventsResponse>;

    async fn export_events(
        &self,
        _request: Request<ExportEventsRequest>,
    ) -> Result<Response<Self::ExportEventsStream>, Status> {
        not_yet_served("ExportEvents", OWNER)
    }
}
