//! Logging and tracing: a `tracing` subscriber with an env filter and an
//! OpenTelemetry layer, and W3C trace context carried in gRPC metadata and
//! HTTP headers so that one agent action across services is one trace.
//!
//! Spans always get OpenTelemetry trace and span ids, so audit events name
//! the trace that caused them; they are exported over OTLP/gRPC only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Several services may share a process (`agentctl dev`, the test cluster).
//! Each then has a tracer provider of its own, so that exported spans name
//! their service in `service.name`: a server puts its service's name in the
//! OpenTelemetry context of every request span ([`service_context`]), child
//! spans inherit that context, and [`ServiceTracer`] starts each span with
//! the provider of the service its parent context names (spans outside any
//! request go to the process's own provider).

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::filter::Directive;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// The standard variable that switches the OTLP exporter on.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The `tracing` target of the spans that carry trace context (a server's
/// request span, the audit client's append span). The log filter always
/// enables it at INFO: without these spans audit events would lose their
/// trace ids whenever `RUST_LOG` is quieter than INFO.
pub const SPAN_TARGET: &str = "agentsec::trace";

/// The OpenTelemetry instrumentation scope of every span.
const SCOPE: &str = "agentsec";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("cannot flush spans to the OTLP exporter: {0}")]
    Flush(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// The tracer providers of a process: one for the process, and one per
/// service when several services share it. Without an exporter there is a
/// single provider that only hands out ids.
pub struct Tracers {
    tracer: ServiceTracer,
    providers: Vec<SdkTracerProvider>,
    exporting: bool,
}

impl Tracers {
    /// Trace and span ids without export. The sampler stays the SDK's
    /// default (parent-based, always on), so a caller's sampled flag passes
    /// on unchanged to the services this one calls.
    pub fn local() -> Self {
        let provider = SdkTracerProvider::builder().build();
        Self {
            tracer: ServiceTracer {
                process: provider.tracer(SCOPE),
                services: Arc::from([]),
            },
            providers: vec![provider],
            exporting: false,
        }
    }

    /// Providers exporting over OTLP/gRPC to `endpoint` (headers and
    /// timeouts follow the other standard `OTEL_EXPORTER_OTLP_*` variables):
    /// spans outside any service's requests as `process_name` (or
    /// `OTEL_SERVICE_NAME` when set), each of `services`' own spans under
    /// that service's name.
    pub fn otlp(
        endpoint: &str,
        process_name: &str,
        services: &[&'static str],
    ) -> Result<Self, TelemetryError> {
        let process_name =
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| process_name.to_owned());
        let process = otlp_provider(&process_name, endpoint)?;
        let mut providers = vec![process.clone()];
        let mut service_tracers = Vec::with_capacity(services.len());
        for service in services {
            let provider = otlp_provider(service, endpoint)?;
            service_tracers.push((*service, provider.tracer(SCOPE)));
            providers.push(provider);
        }
        Ok(Self {
            tracer: ServiceTracer {
                process: process.tracer(SCOPE),
                services: service_tracers.into(),
            },
            providers,
            exporting: true,
        })
    }

    /// OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, else [`Self::local`].
    pub fn from_env(process_name: &str, services: &[&'static str]) -> Result<Self, TelemetryError> {
        match std::env::var(OTLP_ENDPOINT_ENV) {
            Ok(endpoint) if !endpoint.is_empty() => Self::otlp(&endpoint, process_name, services),
            _ => Ok(Self::local()),
        }
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// The `tracing` layer that gives spans OpenTelemetry ids and hands
    /// them to these providers.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, ServiceTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        // Every span pays for what is switched on here, and request futures
        // enter their span on each poll: code locations, thread names
        // (allocated per span) and busy/idle timings (two clock reads per
        // poll) say little about a request, and nothing here reads
        // OpenTelemetry's thread-local context (trace context is read from
        // `tracing` spans), so entering a span need not activate it.
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
    }

    /// Exports every finished span now (blocking; call it off the async
    /// runtime, e.g. in `spawn_blocking`).
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        for provider in &self.providers {
            provider
                .force_flush()
                .map_err(|err| TelemetryError::Flush(err.to_string()))?;
        }
        Ok(())
    }

    /// Exports what is left and stops the exporters (blocking, like
    /// [`Self::force_flush`]).
    pub fn shutdown(&self) {
        for provider in &self.providers {
            if let Err(err) = provider.shutdown() {
                eprintln!("trace exporter shutdown failed: {err}");
            }
        }
    }
}

/// Flushes and stops the span exporters when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    tracers: Tracers,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.tracers.exporting()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.tracers.shutdown();
    }
}

/// Installs the global subscriber of a process that runs one service,
/// `service_name`. Call once per process.
pub fn init(
    config: &TelemetryConfig,
    service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    init_services(config, service_name, &[])
}

/// Installs the global subscriber of a process (`process_name`) that runs
/// several `services`, each reporting its spans under its own name. Call
/// once per process.
pub fn init_services(
    config: &TelemetryConfig,
    process_name: &str,
    services: &[&'static str],
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => config.log_filter.clone(),
    };
    let invalid = |reason: String| TelemetryError::Filter {
        filter: filter.clone(),
        reason,
    };
    let trace_spans: Directive = format!("{SPAN_TARGET}=info")
        .parse()
        .map_err(|err: tracing_subscriber::filter::ParseError| invalid(err.to_string()))?;
    let env_filter = EnvFilter::try_new(&filter)
        .map_err(|err| invalid(err.to_string()))?
        .add_directive(trace_spans);
    let fmt_layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let tracers = Tracers::from_env(process_name, services)?;
    tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt_layer)
        .with(tracers.layer())
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { tracers })
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` as
/// `service_name`.
fn otlp_provider(service_name: &str, endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The service a span belongs to, as a value of its OpenTelemetry context.
#[derive(Debug, Clone)]
struct ServiceName(Cow<'static, str>);

/// An OpenTelemetry context naming `service`: spans started under it (and
/// their children) are reported as that service's. Add the caller's span
/// context to it (e.g. with [`extract_context_into`]) to continue a trace.
pub fn service_context(service: impl Into<Cow<'static, str>>) -> Context {
    Context::new().with_value(ServiceName(service.into()))
}

/// Starts each span with the tracer of the service its parent context
/// names, or with the process's tracer.
#[derive(Clone, Debug)]
pub struct ServiceTracer {
    process: SdkTracer,
    services: Arc<[(&'static str, SdkTracer)]>,
}

impl ServiceTracer {
    fn for_context(&self, parent: &Context) -> &SdkTracer {
        let Some(ServiceName(name)) = parent.get::<ServiceName>() else {
            return &self.process;
        };
        self.services
            .iter()
            .find(|(service, _)| *service == name.as_ref())
            .map_or(&self.process, |(_, tracer)| tracer)
    }
}

impl opentelemetry::trace::Tracer for ServiceTracer {
    type Span = opentelemetry_sdk::trace::Span;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> Self::Span {
        self.for_context(parent_cx)
            .build_with_context(builder, parent_cx)
    }
}

/// Reads W3C `traceparent`/`tracestate` from HTTP headers (gRPC metadata is
/// HTTP/2 headers, so this covers both).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// `base` with the caller's span from W3C `traceparent`/`tracestate` in
/// `headers` (unchanged when they carry none).
pub fn extract_context_into(base: &Context, headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract_with_context(base, &HeaderExtractor(headers))
}

/// Writes the W3C trace context of `context` into HTTP headers.
pub fn inject_context(context: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(context, &mut HeaderInjector(headers));
}

/// Writes the W3C trace context of the current span into the headers of
/// an outgoing request (nothing outside a trace).
pub fn inject_current_context(headers: &mut http::HeaderMap) {
    inject_context(&tracing::Span::current().context(), headers);
}

/// The span of one gRPC call to `path` (`/package.Service/Method`) on the
/// service `service` names: a child of the caller's span when `headers`
/// carry `traceparent`. Named and described as OpenTelemetry's RPC
/// conventions say: the path without its leading slash, `rpc.*` attributes.
pub fn grpc_server_span(path: &str, headers: &http::HeaderMap, service: &Context) -> tracing::Span {
    let full_method = path.strip_prefix('/').unwrap_or(path);
    let (rpc_service, rpc_method) = full_method.split_once('/').unwrap_or((full_method, ""));
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.name = full_method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    continue_trace(&span, headers, service);
    span
}

/// The span of one HTTP request matched to `route` (e.g. `POST
/// /oauth2/token`) on the service `service` names: a child of the caller's
/// span when `headers` carry `traceparent`. Named and described as
/// OpenTelemetry's HTTP conventions say.
pub fn http_server_span(
    method: &http::Method,
    route: &str,
    headers: &http::HeaderMap,
    service: &Context,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method.as_str(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
    );
    continue_trace(&span, headers, service);
    span
}

fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap, service: &Context) {
    if span.is_disabled() {
        return;
    }
    // Fails only when no OpenTelemetry layer is installed; the span is then
    // a plain tracing span.
    let _ = span.set_parent(extract_context_into(service, headers));
}

/// The span of one gRPC call this process makes to `full_method`
/// (`package.Service/Method`); the caller sets its parent.
pub fn grpc_client_span(full_method: &'static str) -> tracing::Span {
    let (rpc_service, rpc_method) = full_method.split_once('/').unwrap_or((full_method, ""));
    tracing::info_span!(
        target: SPAN_TARGET,
        parent: None,
        "call",
        otel.name = full_method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// Records the gRPC status of a call on its span. Server spans of the codes
/// that mean the server failed are errors (OpenTelemetry's gRPC
/// conventions); a client span is an error for any code but OK.
pub fn record_grpc_status(span: &tracing::Span, code: tonic::Code, server: bool) {
    use tonic::Code;
    span.record("rpc.grpc.status_code", code as i64);
    let failed = if server {
        matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        )
    } else {
        code != Code::Ok
    };
    if failed {
        span.record("otel.status_code", "error");
    }
}

/// Records the status of an HTTP response on its server span; 5xx is an
/// error (OpenTelemetry's HTTP conventions).
pub fn record_http_status(span: &tracing::Span, status: http::StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// The span context that W3C ids in lowercase hex stand for, as the parent
/// or link of a span in another process; `None` unless both are valid.
/// Marked sampled: the ids do not record the original decision.
pub fn remote_span_context(trace_id: &str, span_id: &str) -> Option<SpanContext> {
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let span_context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    span_context.is_valid().then_some(span_context)
}

/// The trace id and span id of a span, as lowercase hex (32 and 16
/// digits); both empty when the span is not part of a trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: String,
    pub span_id: String,
}

/// The ids of the current span (what an audit event records as its cause).
pub fn current_trace_ids() -> TraceIds {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    if !span_context.is_valid() {
        return TraceIds::default();
    }
    TraceIds {
        trace_id: span_context.trace_id().to_string(),
        span_id: span_context.span_id().to_string(),
    }
}

/// A tonic client interceptor that sends the current trace context along.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = http::HeaderMap::new();
        inject_current_context(&mut headers);
        let metadata = request.metadata_mut();
        for (name, value) in &headers {
            if let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes()) {
                metadata.insert(
                    tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes())
                        .map_err(|_| tonic::Status::internal("invalid trace header name"))?,
                    value,
                );
            }
        }
        Ok(request)
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn trace_context_round_trips_through_headers() {
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let remote = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = Context::new().with_remote_span_context(remote);
        let mut headers = http::HeaderMap::new();
        inject_context(&context, &mut headers);
        assert_eq!(
            headers.get("traceparent").and_then(|v| v.to_str().ok()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let extracted = extract_context(&headers);
        assert_eq!(extracted.span().span_context().trace_id(), trace_id);
        assert_eq!(extracted.span().span_context().span_id(), span_id);
    }

    fn with_local_tracing<T>(f: impl FnOnce() -> T) -> T {
        let tracers = Tracers::local();
        let subscriber = tracing_subscriber::registry().with(tracers.layer());
        tracing::subscriber::with_default(subscriber, f)
    }

    fn traceparent_headers() -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        headers
    }

    #[test]
    fn spans_have_ids_without_an_exporter_and_continue_the_callers_trace() {
        let service = service_context("policy-svc");
        let (continued, child, fresh, outside) = with_local_tracing(|| {
            let span = grpc_server_span(
                "/agentsec.policy.v1.PolicyService/Check",
                &traceparent_headers(),
                &service,
            );
            let continued = span.in_scope(current_trace_ids);
            let child = span.in_scope(|| tracing::info_span!("inner").in_scope(current_trace_ids));
            let fresh = grpc_server_span(
                "/agentsec.policy.v1.PolicyService/Check",
                &http::HeaderMap::new(),
                &service,
            )
            .in_scope(current_trace_ids);
            (continued, child, fresh, current_trace_ids())
        });
        assert_eq!(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(continued.span_id.len(), 16);
        assert_ne!(continued.span_id, "00f067aa0ba902b7");
        assert_eq!(child.trace_id, continued.trace_id);
        assert_ne!(child.span_id, continued.span_id);
        assert_eq!(fresh.trace_id.len(), 32);
        assert_ne!(fresh.trace_id, continued.trace_id);
        assert_eq!(outside, TraceIds::default());
    }

    #[test]
    fn a_span_goes_to_the_tracer_of_the_service_its_context_names() {
        let provider = SdkTracerProvider::builder().build();
        let tracer = ServiceTracer {
            process: provider.tracer("the-process"),
            services: Arc::from([
                ("identity-svc", provider.tracer("the-identity-svc")),
                ("policy-svc", provider.tracer("the-policy-svc")),
            ]),
        };
        let chosen = |context: &Context| format!("{:?}", tracer.for_context(context));
        assert!(chosen(&service_context("policy-svc")).contains("the-policy-svc"));
        // The caller's span joins the context; the service stays.
        let continued =
            extract_context_into(&service_context("identity-svc"), &traceparent_headers());
        assert!(continued.span().span_context().is_valid());
        assert!(chosen(&continued).contains("the-identity-svc"));
        assert!(chosen(&Context::new()).contains("the-process"));
        assert!(chosen(&service_context("unknown-svc")).contains("the-process"));
    }

    #[test]
    fn remote_span_contexts_come_only_from_valid_ids() {
        let valid = remote_span_context("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        assert!(valid.is_some_and(|context| context.is_remote() && context.is_sampled()));
        assert!(remote_span_context("", "").is_none());
        assert!(remote_span_context("4bf92f3577b34da6a3ce929d0e0e4736", "").is_none());
        assert!(remote_span_context(&"0".repeat(32), "00f067aa0ba902b7").is_none());
        assert!(remote_span_context("xyz", "00f067aa0ba902b7").is_none());
    }

    #[test]
    fn missing_or_garbled_traceparent_gives_no_parent() {
        let mut headers = http::HeaderMap::new();
        assert!(!extract_context(&headers).span().span_context().is_valid());
        headers.insert("traceparent", http::HeaderValue::from_static("00-zz-yy-01"));
        assert!(!extract_context(&headers).span().span_context().is_valid());
    }
}
