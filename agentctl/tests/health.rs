//! `agentctl health` as compose's healthchecks run it: exit status 0 only
//! for SERVING, the status on stdout, and a reason on stderr otherwise.

use std::process::{Command, Output};

use agentsec_integration_tests::cluster::{Service, TestCluster};

async fn health(args: &[&str]) -> anyhow::Result<Output> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agentctl"));
    command.arg("health").args(args).env_remove("RUST_LOG");
    Ok(tokio::task::spawn_blocking(move || command.output()).await??)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

#[tokio::test]
async fn health_exits_zero_only_for_a_serving_service() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start_only(&[Service::Identity, Service::Audit]).await?;
    let url = format!("http://{}", cluster.addr(Service::Identity));

    for service in ["", Service::Identity.grpc_name()] {
        let output = health(&[&url, "--service", service]).await?;
        assert!(output.status.success(), "{service:?}: {output:?}");
        assert_eq!(text(&output.stdout), "SERVING");
    }

    let unknown = health(&[&url, "--service", "agentsec.nothing.v1.Nothing"]).await?;
    assert!(!unknown.status.success(), "{unknown:?}");
    assert!(
        text(&unknown.stderr).contains("`agentsec.nothing.v1.Nothing` at"),
        "{unknown:?}"
    );

    cluster.kill(Service::Identity).await?;
    let down = health(&[&url]).await?;
    assert!(!down.status.success(), "{down:?}");
    assert!(
        text(&down.stderr).contains(&format!("connecting to the server at {url}")),
        "{down:?}"
    );
    cluster.stop().await?;
    Ok(())
}
