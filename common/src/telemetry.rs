//! Logging and tracing: a `tracing` subscriber with an env filter, an OTLP
//! span exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace
//! context carried in gRPC metadata and HTTP headers so that one agent action
//! across services is one trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

/// The standard variable that switches the OTLP exporter on.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes and stops the span exporter when dropped.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(err) = provider.shutdown() {
                eprintln!("trace exporter shutdown failed: {err}");
            }
        }
    }
}

/// Installs the global subscriber for `service_name`. Call once per process.
pub fn init(
    config: &TelemetryConfig,
    service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => config.log_filter.clone(),
    };
    let env_filter = EnvFilter::try_new(&filter).map_err(|err| TelemetryError::Filter {
        filter: filter.clone(),
        reason: err.to_string(),
    })?;
    let fmt_layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let provider = match std::env::var(OTLP_ENDPOINT_ENV) {
        Ok(endpoint) if !endpoint.is_empty() => Some(otlp_provider(service_name, &endpoint)?),
        _ => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_owned()))
    });
    tracing_subscriber::registry()
        .with(env_filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` (in a service:
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; headers and timeouts follow the other
/// standard `OTEL_EXPORTER_OTLP_*` variables).
pub fn otlp_provider(
    service_name: &str,
    endpoint: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
    let service_name =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name)
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Reads W3C `traceparent`/`tracestate` from HTTP headers (gRPC metadata is
/// HTTP/2 headers, so this covers both).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the W3C trace context of `context` into HTTP headers.
pub fn inject_context(context: &Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(context, &mut HeaderInjector(headers));
}

/// The span a server opens for each request: a child of the caller's trace
/// when the request carries `traceparent`. Used as tonic's `trace_fn`.
pub fn server_request_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        rpc.method = %request.uri().path(),
    );
    let parent = extract_context(request.headers());
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed; the span is
        // then a plain tracing span, which is what we want.
        let _ = span.set_parent(parent);
    }
    span
}

/// The trace id of the current span, as 32 lowercase hex digits, when it is
/// part of a sampled or propagated trace.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// A tonic client interceptor that sends the current trace context along.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context = tracing::Span::current().context();
        let mut headers = http::HeaderMap::new();
        inject_context(&context, &mut headers);
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

    #[test]
    fn missing_or_garbled_traceparent_gives_no_parent() {
        let mut headers = http::HeaderMap::new();
        assert!(!extract_context(&headers).span().span_context().is_valid());
        headers.insert("traceparent", http::HeaderValue::from_static("00-zz-yy-01"));
        assert!(!extract_context(&headers).span().span_context().is_valid());
    }
}
