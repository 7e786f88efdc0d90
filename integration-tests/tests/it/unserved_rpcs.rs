//! RPCs that a later release serves answer UNIMPLEMENTED with a message
//! naming who delivers them, and change nothing.

use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::IntrospectTokenRequest;

#[tokio::test]
async fn unserved_rpcs_are_unimplemented_and_name_their_owner() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut exchange = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let status = exchange
        .introspect_token(IntrospectTokenRequest::default())
        .await
        .expect_err("introspection is not served yet");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("IntrospectToken"),
        "{}",
        status.message()
    );
    cluster.shutdown().await
}
