//! RPCs that a later release serves answer UNIMPLEMENTED with a message
//! naming who delivers them, and change nothing.

use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::exchange::v1::CreateGrantRequest;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::CheckTokenRequest;

#[tokio::test]
async fn unserved_rpcs_are_unimplemented_and_name_their_owner() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut policy = PolicyServiceClient::new(cluster.channel(Service::Policy).await?);
    let status = policy
        .check_token(CheckTokenRequest::default())
        .await
        .expect_err("CheckToken is not served yet");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("policy-svc issue"),
        "{}",
        status.message()
    );

    let mut exchange = ExchangeServiceClient::new(cluster.channel(Service::Exchange).await?);
    let status = exchange
        .create_grant(CreateGrantRequest::default())
        .await
        .expect_err("grants are not served yet");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("CreateGrant"),
        "{}",
        status.message()
    );
    cluster.shutdown().await
}
