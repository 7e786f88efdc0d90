//! Spans reach a real OTLP/gRPC receiver, and a server span continues the
//! caller's W3C trace.

use std::net::SocketAddr;
use std::time::Duration;

use agentsec_common::server::bind;
use agentsec_common::telemetry::{current_trace_id, otlp_provider, server_request_span};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio::sync::mpsc;
use tonic::codegen::http;
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// A minimal OTLP trace collector.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_and_continue_the_callers_trace() -> anyhow::Result<()> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (sender, mut exported) = mpsc::unbounded_channel();
    let collector = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sender)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let provider = otlp_provider("identity-svc", &format!("http://{addr}"))?;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("agentsec-test")));
    let mut request = http::Request::new(());
    request.headers_mut().insert(
        "traceparent",
        http::HeaderValue::from_str(&format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))?,
    );
    let seen_inside = tracing::subscriber::with_default(subscriber, || {
        let span = server_request_span(&request);
        let _entered = span.enter();
        current_trace_id()
    });
    assert_eq!(seen_inside.as_deref(), Some(TRACE_ID));

    let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await?;
    flushed?;
    let batch = tokio::time::timeout(Duration::from_secs(20), exported.recv())
        .await?
        .ok_or_else(|| anyhow::anyhow!("collector stopped"))?;
    let resource_spans = &batch.resource_spans[0];
    let service_name = resource_spans
        .resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.clone());
    assert_eq!(
        service_name,
        Some(Value::StringValue("identity-svc".into()))
    );
    let span = &resource_spans.scope_spans[0].spans[0];
    assert_eq!(span.name, "request");
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), PARENT_SPAN_ID);
    collector.abort();
    Ok(())
}
