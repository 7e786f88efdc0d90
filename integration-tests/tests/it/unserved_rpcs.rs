//! RPCs that a later release serves answer UNIMPLEMENTED with a message
//! naming who delivers them, and change nothing.

use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::audit::v1::AppendEventsRequest;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::CheckRequest;

#[tokio::test]
async fn unserved_rpcs_are_unimplemented_and_name_their_owner() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let mut policy = PolicyServiceClient::new(cluster.channel(Service::Policy).await?);
    let status = policy
        .check(CheckRequest::default())
        .await
        .expect_err("Check must not answer before the policy engine exists");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("policy-svc issue"),
        "{}",
        status.message()
    );

    let mut audit = AuditServiceClient::new(cluster.channel(Service::Audit).await?);
    let status = audit
        .append_events(AppendEventsRequest::default())
        .await
        .expect_err("append is not served yet");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        status.message().contains("AppendEvents"),
        "{}",
        status.message()
    );
    cluster.shutdown().await
}
