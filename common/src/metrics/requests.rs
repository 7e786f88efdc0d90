//! The request metrics of every service, recorded by `server`'s request
//! middleware: gRPC calls by full method and status code, HTTP requests by
//! method, matched route and status, each a latency histogram whose
//! `_count` is the number of requests.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prost::Message as _;

use super::{latency_family, LatencyFamily};

/// The method or route label of a request that matched nothing the
/// service serves, so that arbitrary paths cannot grow the label set.
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: Arc<str>,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: Arc<str>,
    status: u16,
}

pub(crate) struct RequestMetrics {
    grpc: LatencyFamily<GrpcLabels>,
    http: LatencyFamily<HttpLabels>,
}

impl RequestMetrics {
    pub(crate) fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let grpc = latency_family();
        let http = latency_family();
        registry.register_with_unit(
            "agentsec_grpc_server_request_duration",
            "gRPC calls served, by full method and status code, until the status was sent",
            prometheus_client::registry::Unit::Seconds,
            grpc.clone(),
        );
        registry.register_with_unit(
            "agentsec_http_server_request_duration",
            "HTTP requests served, by method, matched route and status, until the response head was sent",
            prometheus_client::registry::Unit::Seconds,
            http.clone(),
        );
        Self { grpc, http }
    }

    /// Records an HTTP request that started at `started`.
    pub(crate) fn http(
        &self,
        method: &http::Method,
        route: &str,
        status: http::StatusCode,
        started: Instant,
    ) {
        let labels = HttpLabels {
            method: method_label(method),
            route: Arc::from(route),
            status: status.as_u16(),
        };
        self.http
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

/// One gRPC call being served: recorded once, with the status sent, or as
/// CANCELLED when the response is dropped before its status (the client
/// went away).
pub(crate) struct GrpcCall {
    metrics: Arc<RequestMetrics>,
    method: Arc<str>,
    started: Instant,
    recorded: bool,
}

impl GrpcCall {
    pub(crate) fn start(metrics: Arc<RequestMetrics>, method: Arc<str>) -> Self {
        Self {
            metrics,
            method,
            started: Instant::now(),
            recorded: false,
        }
    }

    pub(crate) fn finish(&mut self, code: tonic::Code) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let labels = GrpcLabels {
            method: self.method.clone(),
            code: grpc_code_label(code),
        };
        self.metrics
            .grpc
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for GrpcCall {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}

/// The full gRPC method paths (`/package.Service/Method`) a service serves:
/// the only values of the `method` label besides [`UNMATCHED`].
#[derive(Debug, Default)]
pub struct GrpcMethods(HashSet<Arc<str>>);

impl GrpcMethods {
    /// The methods of `services` (fully qualified names) described in the
    /// encoded file descriptor sets `descriptor_sets`.
    pub fn of(services: &[&str], descriptor_sets: &[&[u8]]) -> Self {
        let mut methods = HashSet::new();
        for set in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let service_name = service.name.unwrap_or_default();
                    let full = if package.is_empty() {
                        service_name
                    } else {
                        format!("{package}.{service_name}")
                    };
                    if !services.contains(&full.as_str()) {
                        continue;
                    }
                    for method in service.method {
                        let method = method.name.unwrap_or_default();
                        methods.insert(Arc::from(format!("/{full}/{method}")));
                    }
                }
            }
        }
        Self(methods)
    }

    /// The `method` label of a call to `path`.
    pub(crate) fn label(&self, path: &str) -> Arc<str> {
        self.0
            .get(path)
            .cloned()
            .unwrap_or_else(|| Arc::from(UNMATCHED))
    }
}

/// gRPC's canonical code names, as grpc-go and the status documentation
/// spell them.
pub fn grpc_code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The standard methods by name; any other is `_OTHER` (OpenTelemetry's
/// convention), so that made-up methods cannot grow the label set.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_described_methods_of_the_served_services_are_labels() {
        let methods = GrpcMethods::of(
            &["grpc.health.v1.Health"],
            &[tonic_health::pb::FILE_DESCRIPTOR_SET],
        );
        assert_eq!(
            &*methods.label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(&*methods.label("/grpc.health.v1.Health/Nope"), UNMATCHED);
        assert_eq!(&*methods.label("/anything/else"), UNMATCHED);
        let none = GrpcMethods::of(&["other.Service"], &[tonic_health::pb::FILE_DESCRIPTOR_SET]);
        assert_eq!(&*none.label("/grpc.health.v1.Health/Check"), UNMATCHED);
    }

    #[test]
    fn abandoned_calls_count_as_cancelled_and_each_call_once() {
        let metrics = crate::metrics::Metrics::new();
        let method: Arc<str> = Arc::from("/a.B/C");
        let mut answered = GrpcCall::start(metrics.requests().clone(), method.clone());
        answered.finish(tonic::Code::NotFound);
        drop(answered);
        drop(GrpcCall::start(metrics.requests().clone(), method));
        let text = metrics.encode();
        assert!(
            text.contains(
                "agentsec_grpc_server_request_duration_seconds_count{method=\"/a.B/C\",code=\"NOT_FOUND\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "agentsec_grpc_server_request_duration_seconds_count{method=\"/a.B/C\",code=\"CANCELLED\"} 1\n"
            ),
            "{text}"
        );
    }
}
