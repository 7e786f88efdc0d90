//! How a batch reaches audit-svc: one `AppendEvents` call, with the
//! service's bearer token, in a client span of the events' trace.

use std::future::Future;
use std::sync::Arc;

use agentsec_proto::audit::v1::{AppendEventsRequest, AppendEventsResponse, Event};
use opentelemetry::trace::TraceContextExt as _;
use tonic::{Code, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::*;
use crate::telemetry::{self};
use crate::upstream::{authorized, TokenSource};

/// Sends one `AppendEvents` call. The tonic client in production, a fake in
/// tests. The future is `'static` so the task can race it against shutdown.
pub(super) trait AppendTransport: Send + 'static {
    fn append(
        &self,
        request: AppendEventsRequest,
    ) -> impl Future<Output = Result<AppendEventsResponse, Status>> + Send + 'static;
}

/// The tonic client, with the service's bearer token.
pub(super) struct GrpcTransport {
    pub(super) client: GrpcAuditClient,
    pub(super) tokens: Option<Arc<dyn TokenSource>>,
    /// The token audit-svc last refused: the next call asks for a new one.
    pub(super) refused: Arc<std::sync::Mutex<Option<String>>>,
}

impl AppendTransport for GrpcTransport {
    fn append(
        &self,
        request: AppendEventsRequest,
    ) -> impl Future<Output = Result<AppendEventsResponse, Status>> + Send + 'static {
        // Cloning shares the channel (and its connection).
        let mut client = self.client.clone();
        let tokens = self.tokens.clone();
        let refused = Arc::clone(&self.refused);
        async move {
            let Some(tokens) = tokens else {
                return client
                    .append_events(request)
                    .await
                    .map(tonic::Response::into_inner);
            };
            let stale = refused
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take();
            let token = tokens.token(stale.as_deref()).await?;
            let result = client
                .append_events(authorized(request, &token)?)
                .await
                .map(tonic::Response::into_inner);
            if matches!(&result, Err(status) if status.code() == Code::Unauthenticated) {
                *refused
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(token);
            }
            result
        }
    }
}

/// The full name of the method that appends events.
pub(super) const APPEND_METHOD: &str = "agentsec.audit.v1.AuditService/AppendEvents";
/// OpenTelemetry's default limit of links per span.
pub(super) const MAX_LINKS: usize = 128;

/// The client span of one AppendEvents call, in the trace context of the
/// service that sent the events. A batch whose events all come from one
/// trace continues it, as a child of its first event's span, so the append
/// and audit-svc's handling of it show up in the trace of the action they
/// record; a batch mixing traces starts a trace of its own and links to
/// each event's span rather than join whichever came first.
pub(super) fn append_span(events: &[Event]) -> tracing::Span {
    let span = telemetry::grpc_client_span(APPEND_METHOD);
    if span.is_disabled() {
        return span;
    }
    let service = events
        .first()
        .map(|event| event.service.clone())
        .unwrap_or_default();
    let causes: Vec<_> = events
        .iter()
        .filter_map(|event| telemetry::remote_span_context(&event.trace_id, &event.span_id))
        .collect();
    let one_trace = causes.len() == events.len()
        && causes
            .windows(2)
            .all(|pair| pair[0].trace_id() == pair[1].trace_id());
    let mut parent = telemetry::service_context(service);
    match causes.first() {
        Some(first) if one_trace => parent = parent.with_remote_span_context(first.clone()),
        _ => {
            let mut linked: Vec<&opentelemetry::trace::SpanContext> = Vec::new();
            for cause in &causes {
                if linked.len() == MAX_LINKS {
                    break;
                }
                if !linked.contains(&cause) {
                    linked.push(cause);
                    span.add_link(cause.clone());
                }
            }
        }
    }
    // Fails only when no OpenTelemetry layer is installed.
    let _ = span.set_parent(parent);
    span.set_attribute("agentsec.audit.batch_size", events.len() as i64);
    span
}
