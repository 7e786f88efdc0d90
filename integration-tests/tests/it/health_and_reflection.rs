//! Every service answers `grpc.health.v1` and lists itself over reflection.

use std::time::Duration;

use agentsec_integration_tests::cluster::health_status;
use agentsec_integration_tests::eventually;
use agentsec_integration_tests::{Service, TestCluster};
use tokio_stream::StreamExt as _;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test]
async fn all_four_services_report_serving() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    for service in Service::ALL {
        let addr = cluster.addr(service);
        assert_eq!(
            health_status(addr, "").await?,
            ServingStatus::Serving,
            "{service:?}"
        );
        // Readiness: policy-svc's turns SERVING once it has loaded the
        // revocation state from identity-svc and exchange-svc.
        let name = service.grpc_name();
        eventually(
            &format!("{name} SERVING"),
            Duration::from_secs(30),
            || async move {
                let status = health_status(addr, name).await?;
                Ok((status == ServingStatus::Serving).then_some(()))
            },
        )
        .await?;
    }
    // A name the server does not serve is NOT_FOUND, per the health protocol.
    let unknown = health_status(cluster.addr(Service::Identity), "agentsec.nope.v1.Nope").await;
    let status = unknown
        .unwrap_err()
        .downcast::<tonic::Status>()
        .map(|status| status.code());
    assert_eq!(status.ok(), Some(tonic::Code::NotFound));
    cluster.shutdown().await
}

#[tokio::test]
async fn reflection_lists_each_service_and_describes_it() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    for service in Service::ALL {
        let mut client = ServerReflectionClient::new(cluster.channel(service).await?);
        let requests = tokio_stream::iter([
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    service.grpc_name().to_owned(),
                )),
            },
        ]);
        let mut responses = client.server_reflection_info(requests).await?.into_inner();

        let listed = match responses
            .next()
            .await
            .transpose()?
            .and_then(|r| r.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => anyhow::bail!("unexpected reflection answer {other:?}"),
        };
        assert!(
            listed.contains(&service.grpc_name().to_owned()),
            "{listed:?}"
        );
        assert!(
            listed.contains(&"grpc.health.v1.Health".to_owned()),
            "{listed:?}"
        );
        let other_services: Vec<_> = Service::ALL
            .iter()
            .filter(|other| **other != service)
            .map(|other| other.grpc_name())
            .filter(|name| listed.iter().any(|l| l == name))
            .collect();
        assert!(
            other_services.is_empty(),
            "{service:?} advertises {other_services:?}"
        );

        match responses
            .next()
            .await
            .transpose()?
            .and_then(|r| r.message_response)
        {
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                assert!(!files.file_descriptor_proto.is_empty());
            }
            other => anyhow::bail!("no descriptor for {}: {other:?}", service.grpc_name()),
        }
    }
    cluster.shutdown().await
}

#[tokio::test]
async fn shutdown_drains_and_stops_every_service() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let addr = cluster.addr(Service::Policy);
    let backend = cluster.stop().await?;
    // The port is closed once serve has returned.
    assert!(health_status(addr, "").await.is_err());
    let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
    backend.clean_up(&names).await
}
