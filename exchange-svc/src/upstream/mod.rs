//! The services exchange-svc consults for every exchange: identity-svc
//! (actor tokens, agent status) and policy-svc (the `token:exchange`
//! decision). Calls carry the caller's trace context and a deadline; any
//! failure fails the exchange closed.

pub mod identity;
pub mod policy;

use std::time::Duration;

use agentsec_common::error::ApiError;
use agentsec_common::telemetry::TraceContextInterceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub type TracedChannel = InterceptedService<Channel, TraceContextInterceptor>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily connected channel to `url` (validated with the config).
pub fn channel(key: &str, url: &str, timeout: Duration) -> Result<Channel, String> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|err| format!("{key}: {err}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

/// `message` with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> Result<tonic::Request<T>, ApiError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| ApiError::internal("service token", "not a header value"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// What a failed call to `service` means for an exchange: the answer is
/// unknown, so nothing is issued.
pub fn unavailable(service: &str, status: &tonic::Status) -> ApiError {
    tracing::warn!(service, code = ?status.code(), message = status.message(), "upstream call failed");
    ApiError::Unavailable {
        what: service.to_owned(),
    }
}
