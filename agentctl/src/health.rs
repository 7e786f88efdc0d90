//! `agentctl health`: one service's `grpc.health.v1` status, as a probe
//! (exit status 0 only for SERVING). The image has no shell or
//! `grpc_health_probe`, so compose's healthchecks run this.

use std::sync::Arc;

use agentsec_common::tls::ClientTls;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::admin::connect;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    agentctl health http://127.0.0.1:7401\n  \
    agentctl health http://127.0.0.1:7402 --service agentsec.policy.v1.PolicyService")]
pub struct HealthArgs {
    /// The service's base URL.
    pub url: String,
    /// The gRPC service name to ask about (each service reports its
    /// readiness under its API's name); empty asks for the server's
    /// overall status.
    #[arg(long, default_value = "")]
    pub service: String,
}

/// Prints the status; an error unless it is SERVING.
pub async fn run(args: HealthArgs, tls: &Arc<ClientTls>) -> anyhow::Result<()> {
    let status = status(&args.url, &args.service, tls).await?;
    let name = status.as_str_name();
    println!("{name}");
    if status != ServingStatus::Serving {
        anyhow::bail!("{} is {name}", what(&args.url, &args.service));
    }
    Ok(())
}

/// The `grpc.health.v1` status of `service` ("" for the server) at `url`.
pub async fn status(
    url: &str,
    service: &str,
    tls: &Arc<ClientTls>,
) -> anyhow::Result<ServingStatus> {
    let what = what(url, service);
    let mut client = HealthClient::new(connect(url, &what, tls).await?);
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("{what}: {}", status.message()))?;
    Ok(response.into_inner().status())
}

fn what(url: &str, service: &str) -> String {
    if service.is_empty() {
        format!("the server at {url}")
    } else {
        format!("`{service}` at {url}")
    }
}
