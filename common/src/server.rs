//! The server bootstrap: one port serves a service's gRPC API, its HTTP
//! endpoints, `grpc.health.v1.Health`, gRPC server reflection and the
//! service's Prometheus metrics (`GET /metrics`, see `metrics`). Every
//! request to a known route but health runs in a span of the service (see
//! `telemetry`) and is counted in the request metrics; so are requests to
//! unknown routes, as `unmatched`. The gRPC service names report readiness
//! (see `readiness`), the overall status liveness. Shutdown flips health to
//! NOT_SERVING first, then drains in-flight requests within the configured
//! grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::Instrument as _;

use crate::db::DbError;
use crate::keys::store::KeyStoreError;
use crate::metrics::requests::{GrpcCall, GrpcMethods, RequestMetrics, UNMATCHED};
use crate::metrics::Metrics;
use crate::redis::RedisError;
use crate::telemetry;
use crate::tls::{ServerTls, TlsError};

/// The path prefix of `grpc.health.v1.Health`'s methods.
const HEALTH_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} (`server.listen`): {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
    #[error("the server failed: {0}")]
    Serve(String),
    /// A service-specific start-up step failed; `what` names it (and the
    /// config key to look at, where there is one).
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
}

impl StartError {
    /// A service-specific step that failed: `what` names it (and the config
    /// key to look at, where there is one).
    pub fn setup(what: &str, reason: impl std::fmt::Display) -> Self {
        Self::Setup {
            what: what.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Binds the service's port; the error names the setting and the cause
/// (most often: address already in use).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| StartError::Bind {
            addr,
            reason: err.to_string(),
        })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// What one service puts on its port.
pub struct ServiceEndpoints {
    /// For logs, e.g. `identity-svc`.
    pub name: &'static str,
    /// Fully qualified gRPC service names, reported by health and reflection.
    pub grpc_services: Vec<&'static str>,
    /// Encoded file descriptor sets that describe `grpc_services`.
    pub descriptor_sets: Vec<&'static [u8]>,
    /// The gRPC services themselves.
    pub grpc: Routes,
    /// Plain HTTP endpoints (OAuth, JWKS, AuthZEN, ...) on the same port.
    pub http: axum::Router,
    /// The service's registry, served on `GET /metrics`.
    pub metrics: Metrics,
}

/// Serves `endpoints` on `listener` (over TLS with `tls`) until `shutdown`
/// resolves, then drains for at most `grace`. The status of each gRPC
/// service name follows `ready`.
pub async fn serve(
    endpoints: ServiceEndpoints,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
    ready: tokio::sync::watch::Receiver<bool>,
) -> Result<(), StartError> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let readiness = tokio::spawn(
        crate::readiness::report(
            ready,
            health_reporter.clone(),
            endpoints.grpc_services.clone(),
        )
        .await,
    );

    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection");
    for set in &endpoints.descriptor_sets {
        reflection = reflection.register_encoded_file_descriptor_set(set);
    }
    for name in &endpoints.grpc_services {
        reflection = reflection.with_service_name(*name);
    }
    let reflection = reflection
        .build_v1()
        .map_err(|err| StartError::Reflection(err.to_string()))?;

    let observer = RequestObserver {
        service: telemetry::service_context(endpoints.name),
        metrics: endpoints.metrics.requests().clone(),
        grpc_methods: Arc::new(GrpcMethods::of(
            &[
                endpoints.grpc_services.as_slice(),
                &["grpc.reflection.v1.ServerReflection"],
            ]
            .concat(),
            &[
                endpoints.descriptor_sets.as_slice(),
                &[tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET],
            ]
            .concat(),
        )),
    };
    let metrics = endpoints.metrics.clone();
    let unmatched = observer.metrics.clone();
    let router = endpoints
        .grpc
        .add_service(health_service)
        .add_service(reflection)
        .into_axum_router()
        .merge(endpoints.http)
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = metrics.encode();
                async move { ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text) }
            }),
        )
        // Only matched routes get a span: an unknown path names no operation.
        .route_layer(axum::middleware::from_fn_with_state(
            observer,
            trace_request,
        ))
        .fallback(move |request| unknown_route(unmatched, request));

    let local_addr = listener.local_addr().ok();
    tracing::info!(
        service = endpoints.name,
        addr = ?local_addr,
        tls = tls.is_some(),
        "serving"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        stop_rx.await.ok();
    };
    let router = Server::builder()
        .accept_http1(true)
        .add_routes(Routes::from(router));
    let server = match tls {
        // TCP_NODELAY: without it, Nagle's algorithm and delayed ACKs hold
        // small responses back for tens of milliseconds.
        None => futures::future::Either::Left(router.serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            stopped,
        )),
        Some(tls) => futures::future::Either::Right(
            router.serve_with_incoming_shutdown(tls.incoming(listener), stopped),
        ),
    };
    tokio::pin!(server);

    tokio::select! {
        result = &mut server => {
            readiness.abort();
            let _ = readiness.await;
            return result.map_err(|err| StartError::Serve(err.to_string()));
        }
        () = shutdown => {}
    }
    // Stopped for good before the shutdown is reported, so that a readiness
    // change cannot turn a name SERVING again.
    readiness.abort();
    let _ = readiness.await;

    tracing::info!(
        service = endpoints.name,
        "shutting down: health is NOT_SERVING, draining"
    );
    health_reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for name in &endpoints.grpc_services {
        health_reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.map_err(|err| StartError::Serve(err.to_string())),
        Err(_) => {
            tracing::warn!(
                service = endpoints.name,
                ?grace,
                "grace period over, dropping open requests"
            );
            Ok(())
        }
    }
}

/// What the request middleware needs: the service's trace context and
/// its request metrics.
#[derive(Clone)]
struct RequestObserver {
    service: opentelemetry::Context,
    metrics: Arc<RequestMetrics>,
    grpc_methods: Arc<GrpcMethods>,
}

/// Runs a request in its span, a child of the caller's (W3C
/// `traceparent`) in the trace context of the service, records its status
/// there and counts it in the request metrics. Health checks get neither:
/// probes every few seconds would bury the traces of what agents do.
async fn trace_request(
    State(observer): State<RequestObserver>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path.starts_with(HEALTH_PATH_PREFIX) {
        return next.run(request).await;
    }
    if is_grpc(request.headers()) {
        let call = GrpcCall::start(observer.metrics, observer.grpc_methods.label(path));
        let span = telemetry::grpc_server_span(path, request.headers(), &observer.service);
        let response = next.run(request).instrument(span.clone()).await;
        return with_grpc_status_recorded(span, call, response);
    }
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(path, MatchedPath::as_str);
    let span = telemetry::http_server_span(&method, route, request.headers(), &observer.service);
    let response = next.run(request).instrument(span.clone()).await;
    telemetry::record_http_status(&span, response.status());
    let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    observer
        .metrics
        .http(&method, route, response.status(), started);
    response
}

/// Records the call's gRPC status on `span` and in `call`: from the
/// headers of a trailers-only answer (how tonic answers an error), else
/// from the trailers at the end of the body, which keeps the span open
/// until then.
fn with_grpc_status_recorded(
    span: tracing::Span,
    mut call: GrpcCall,
    response: Response,
) -> Response {
    if let Some(code) = grpc_status(response.headers()) {
        telemetry::record_grpc_status(&span, code, true);
        call.finish(code);
        return response;
    }
    response.map(|body| {
        axum::body::Body::new(body.map_frame(move |frame| {
            if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                telemetry::record_grpc_status(&span, code, true);
                call.finish(code);
            }
            frame
        }))
    })
}

fn grpc_status(headers: &HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// Unknown gRPC methods answer UNIMPLEMENTED as gRPC; anything else 404.
/// Both are counted as `unmatched`.
async fn unknown_route(metrics: Arc<RequestMetrics>, request: axum::extract::Request) -> Response {
    if is_grpc(request.headers()) {
        GrpcCall::start(metrics, UNMATCHED.into()).finish(tonic::Code::Unimplemented);
        let path = request.uri().path().to_owned();
        return tonic::Status::unimplemented(format!("unknown method `{path}`"))
            .into_http::<axum::body::Body>()
            .into_response();
    }
    metrics.http(
        request.method(),
        UNMATCHED,
        StatusCode::NOT_FOUND,
        Instant::now(),
    );
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            serde_json::json!({ "error": "not_found", "error_description": "no such endpoint" }),
        ),
    )
        .into_response()
}
