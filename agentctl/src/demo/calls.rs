//! How the demo reaches the services: one gRPC client per service, every
//! request carrying the demo's W3C `traceparent` (so that the services'
//! spans and audit events all belong to one trace) and, when the caller
//! has one, its bearer token.

use std::sync::Arc;
use std::time::Duration;

use agentsec_common::tls::ClientTls;
use agentsec_proto::audit::v1::audit_service_client::AuditServiceClient;
use agentsec_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use agentsec_proto::exchange::v1::exchange_service_client::ExchangeServiceClient;
use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use anyhow::Context as _;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::admin::connect;

/// How long the services may take to say SERVING.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// The clients, and the trace every call belongs to.
pub struct Calls {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    traceparent: MetadataValue<Ascii>,
    pub identity: IdentityServiceClient<Channel>,
    pub policy: PolicyServiceClient<Channel>,
    pub exchange: ExchangeServiceClient<Channel>,
    /// policy-svc's Envoy ext_authz service, as a mesh's Envoy calls it.
    pub envoy: AuthorizationClient<Channel>,
    pub audit: AuditServiceClient<Channel>,
}

/// The four services' base URLs.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub identity: String,
    pub policy: String,
    pub exchange: String,
    pub audit: String,
}

impl Endpoints {
    /// Each URL with the service's name.
    pub fn named(&self) -> [(&'static str, &str); 4] {
        [
            ("identity-svc", &self.identity),
            ("policy-svc", &self.policy),
            ("exchange-svc", &self.exchange),
            ("audit-svc", &self.audit),
        ]
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

impl Calls {
    /// Waits until every service answers gRPC health with SERVING, then
    /// connects to each; the trace id is new.
    pub async fn connect(endpoints: &Endpoints, tls: &Arc<ClientTls>) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        for (name, url) in endpoints.named() {
            wait_until_serving(name, url, tls, deadline).await?;
        }
        let trace_id = random_hex(16)?;
        // The demo's own span: the parent of every service span (sampled).
        let traceparent = format!("00-{trace_id}-{}-01", random_hex(8)?)
            .parse()
            .context("traceparent is not valid metadata")?;
        Ok(Self {
            trace_id,
            traceparent,
            identity: IdentityServiceClient::new(
                connect(&endpoints.identity, "identity-svc", tls).await?,
            ),
            policy: PolicyServiceClient::new(connect(&endpoints.policy, "policy-svc", tls).await?),
            exchange: ExchangeServiceClient::new(
                connect(&endpoints.exchange, "exchange-svc", tls).await?,
            ),
            envoy: AuthorizationClient::new(connect(&endpoints.policy, "policy-svc", tls).await?),
            audit: AuditServiceClient::new(connect(&endpoints.audit, "audit-svc", tls).await?),
        })
    }

    /// `message` in the demo's trace, without credentials.
    pub fn plain<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("traceparent", self.traceparent.clone());
        request
    }

    /// `message` in the demo's trace, with `authorization: Bearer <token>`.
    pub fn bearer<T>(&self, message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
        let mut request = crate::admin::bearer(message, token)?;
        request
            .metadata_mut()
            .insert("traceparent", self.traceparent.clone());
        Ok(request)
    }
}

async fn wait_until_serving(
    name: &str,
    url: &str,
    tls: &Arc<ClientTls>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match health(name, url, tls).await {
            Ok(ServingStatus::Serving) => return Ok(()),
            Ok(status) => last = format!("{status:?}"),
            Err(err) => last = format!("{err:#}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("{name} at {url} is not SERVING after {READY_DEADLINE:?}: {last}")
}

async fn health(name: &str, url: &str, tls: &Arc<ClientTls>) -> anyhow::Result<ServingStatus> {
    let mut client = HealthClient::new(connect(url, name, tls).await?);
    let status = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status;
    ServingStatus::try_from(status).map_err(|_| anyhow::anyhow!("unknown health status {status}"))
}
