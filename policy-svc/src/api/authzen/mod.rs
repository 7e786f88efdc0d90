//! The OpenID AuthZEN Authorization API 1.0 over HTTP on the gRPC port, so
//! that gateways and PEPs that speak AuthZEN use policy-svc unchanged:
//! `POST /access/v1/evaluation`, `POST /access/v1/evaluations`, and the
//! PDP metadata at `/.well-known/authzen-configuration`. Each evaluation
//! becomes a CheckRequest ([`mapping`]) and is decided by the decision
//! service, as gRPC Check's are (same cache, same audit event); the mapping
//! is in docs/authzen.md.

pub mod mapping;
mod search;

use std::sync::Arc;

use agentsec_common::error::ApiError;
use agentsec_common::http_boundary::{guard, BodyRules};
use agentsec_proto::common::v1::{Decision, Effect};
use agentsec_proto::policy::v1::{CheckRequest, CheckResponse};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tonic::metadata::MetadataMap;

use crate::auth::AdminAuth;
use crate::decisions::{DecisionService, MAX_BATCH};
use crate::domain::engine::error::printable;
use mapping::{BadRequest, Evaluation, Mapped, MappingRules};

/// Room for a full batch of evaluations.
const MAX_BODY: usize = 4 * 1024 * 1024;
const EVALUATION_PATH: &str = "/access/v1/evaluation";
const EVALUATIONS_PATH: &str = "/access/v1/evaluations";

/// What the AuthZEN endpoints decide with: the decision service, after
/// the caller check every decision API makes; how requests map to
/// CheckRequests; and what the PDP metadata names this PDP.
#[derive(Clone)]
pub struct Authzen {
    pub decisions: Arc<DecisionService>,
    pub auth: Arc<AdminAuth>,
    pub rules: Arc<MappingRules>,
    pub identity: PdpIdentity,
}

/// The PDP identifier of the metadata (`policy_decision_point`).
#[derive(Debug, Clone)]
pub enum PdpIdentity {
    /// Configured (`authzen.pdp_url`).
    Configured(Arc<str>),
    /// This port's scheme and the request's `Host`.
    FromRequest { tls: bool },
}

impl PdpIdentity {
    fn base_url(&self, headers: &HeaderMap) -> String {
        match self {
            Self::Configured(url) => url.to_string(),
            Self::FromRequest { tls } => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("localhost");
                let scheme = if *tls { "https" } else { "http" };
                format!("{scheme}://{host}")
            }
        }
    }
}

pub fn router(api: Authzen) -> Router {
    let routes = Router::new()
        .route(EVALUATION_PATH, post(evaluation))
        .route(EVALUATIONS_PATH, post(evaluations))
        .route(search::SUBJECT_PATH, post(search::subjects))
        .route(search::RESOURCE_PATH, post(search::resources))
        .route(search::ACTION_PATH, post(search::actions))
        .route("/.well-known/authzen-configuration", get(metadata));
    guard(
        routes,
        BodyRules {
            max_bytes: MAX_BODY,
            media_type: "application/json",
            post_paths: &[
                EVALUATION_PATH,
                EVALUATIONS_PATH,
                search::SUBJECT_PATH,
                search::RESOURCE_PATH,
                search::ACTION_PATH,
            ],
            render: error_response,
        },
    )
    .with_state(api)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Evaluations {
    #[serde(flatten)]
    defaults: Evaluation,
    #[serde(default)]
    evaluations: Option<Vec<Evaluation>>,
    #[serde(default)]
    options: Option<Options>,
}

#[derive(Debug, Default, Deserialize)]
struct Options {
    #[serde(default)]
    evaluations_semantic: Option<String>,
}

/// AuthZEN's decision object: the boolean, and the reason, ids and cache
/// facts in its context.
fn decision_json(decision: &Decision) -> Value {
    json!({
        "decision": decision.effect == Effect::Allow as i32,
        "context": {
            "id": decision.decision_id,
            "reason_admin": {"en": decision.reason},
            "policy_ids": decision.policy_ids,
            "policy_version": decision.policy_version,
            "cached": decision.cached,
            "ttl_secs": decision.cache_ttl.as_ref().map_or(0, |ttl| ttl.seconds),
        }
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, BadRequest> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(BadRequest("the body must be application/json".to_owned()));
    }
    serde_json::from_slice(body)
        .map_err(|err| BadRequest(format!("the body is not a valid request: {err}")))
}

/// The status of a failed decision: INVALID_ARGUMENT is the caller's (400),
/// anything else fails closed (no decision, 5xx).
fn status_response(status: tonic::Status) -> Response {
    let code = http_status(status.code());
    let mut response = (code, Json(json!({"error": status.message()}))).into_response();
    if code == StatusCode::UNAUTHORIZED {
        // RFC 6750 §3: a refused bearer token is answered with a challenge.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

fn http_status(code: tonic::Code) -> StatusCode {
    match code {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An evaluation of a batch that could not be decided (AuthZEN 1.0,
/// "Errors"): closed, with the error in its context.
fn entry_error(status: StatusCode, message: &str) -> Value {
    json!({
        "decision": false,
        "context": {"error": {"status": status.as_u16(), "message": message}}
    })
}

/// A decided evaluation, or the error in its place.
fn entry(result: Result<CheckResponse, ApiError>) -> Value {
    match result.map(|response| response.decision) {
        Ok(Some(decision)) => decision_json(&decision),
        Ok(None) => entry_error(StatusCode::INTERNAL_SERVER_ERROR, "no decision"),
        Err(err) => {
            let status: tonic::Status = err.into();
            entry_error(http_status(status.code()), status.message())
        }
    }
}

/// A tenant without a policy set is unknown too: decided DENY.
fn known(decisions: &DecisionService, mapped: Mapped) -> Mapped {
    match mapped {
        Mapped::Decide(request) => {
            let tenant = request
                .principal
                .as_ref()
                .map_or("", |principal| principal.tenant.as_str());
            if decisions.has_policy_set(tenant) {
                Mapped::Decide(request)
            } else {
                let reason = format!("tenant `{}` has no policy set", printable(tenant));
                Mapped::Unknown(request, reason)
            }
        }
        unknown => unknown,
    }
}

/// AuthZEN: the PDP echoes the PEP's `X-Request-ID`.
fn answer(headers: &HeaderMap, mut response: Response) -> Response {
    if let Some(id) = headers.get("x-request-id") {
        response.headers_mut().insert("x-request-id", id.clone());
    }
    response
}

fn bad_request(err: BadRequest) -> Response {
    error_response(StatusCode::BAD_REQUEST, err.0)
}

/// This PDP's error body: `{"error": <what is wrong>}`.
fn error_response(status: StatusCode, description: String) -> Response {
    (status, Json(json!({ "error": description }))).into_response()
}

/// The caller's credentials as the decision caller check reads them.
fn caller(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
    {
        metadata.insert("authorization", value);
    }
    metadata
}

async fn evaluation(State(api): State<Authzen>, headers: HeaderMap, body: Bytes) -> Response {
    // The caller first: an unauthenticated caller learns nothing of the body.
    if let Err(err) = api.auth.decision_caller(&caller(&headers)).await {
        return answer(&headers, status_response(err.into()));
    }
    let mapped = match parse::<Evaluation>(&headers, &body)
        .and_then(|evaluation| api.rules.map(&evaluation, &Evaluation::default()))
    {
        Ok(mapped) => known(&api.decisions, mapped),
        Err(err) => return answer(&headers, bad_request(err)),
    };
    let decided = match &mapped {
        Mapped::Decide(request) => api.decisions.check(request).await,
        Mapped::Unknown(request, reason) => api.decisions.deny_unknown(request, reason),
    };
    let response = match decided {
        Ok(response) => match response.decision {
            Some(decision) => Json(decision_json(&decision)).into_response(),
            None => status_response(tonic::Status::internal("no decision")),
        },
        Err(err) => status_response(err.into()),
    };
    answer(&headers, response)
}

/// How a batch may stop early (AuthZEN `evaluations_semantic`).
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

async fn evaluations(State(api): State<Authzen>, headers: HeaderMap, body: Bytes) -> Response {
    // The caller first: an unauthenticated caller learns nothing of the body.
    if let Err(err) = api.auth.decision_caller(&caller(&headers)).await {
        return answer(&headers, status_response(err.into()));
    }
    let parsed = match parse::<Evaluations>(&headers, &body) {
        Ok(parsed) => parsed,
        Err(err) => return answer(&headers, bad_request(err)),
    };
    let semantic = match parsed
        .options
        .as_ref()
        .and_then(|options| options.evaluations_semantic.as_deref())
    {
        None | Some("execute_all") => Semantic::ExecuteAll,
        Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
        Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
        Some(other) => {
            return answer(
                &headers,
                bad_request(BadRequest::field(
                    "options.evaluations_semantic",
                    format!(
                    "`{other}` is not execute_all, deny_on_first_deny or permit_on_first_permit"
                ),
                )),
            )
        }
    };
    let items = match parsed.evaluations {
        // Without `evaluations` the request is one evaluation.
        None => vec![Evaluation::default()],
        Some(items) if items.is_empty() || items.len() > MAX_BATCH => {
            return answer(
                &headers,
                bad_request(BadRequest::field(
                    "evaluations",
                    format!("must hold 1-{MAX_BATCH} evaluations"),
                )),
            )
        }
        Some(items) => items,
    };
    // Each entry is decided on its own: one that cannot be is `false` with
    // its error, and the others are still decided.
    let mut answers: Vec<Value> = vec![Value::Null; items.len()];
    let mut to_decide: Vec<CheckRequest> = Vec::with_capacity(items.len());
    let mut positions: Vec<usize> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match api.rules.map(item, &parsed.defaults) {
            Err(err) => {
                answers[index] = entry_error(
                    StatusCode::BAD_REQUEST,
                    &format!("evaluations[{index}].{}", err.0),
                );
            }
            Ok(mapped) => match known(&api.decisions, mapped) {
                Mapped::Unknown(request, reason) => {
                    answers[index] = entry(api.decisions.deny_unknown(&request, &reason));
                }
                Mapped::Decide(request) => {
                    positions.push(index);
                    to_decide.push(request);
                }
            },
        }
    }
    for (index, result) in positions
        .into_iter()
        .zip(api.decisions.check_each(&to_decide).await)
    {
        answers[index] = entry(result);
    }
    let mut decisions = Vec::with_capacity(answers.len());
    for decided in answers {
        let allowed = decided["decision"] == Value::Bool(true);
        decisions.push(decided);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    answer(
        &headers,
        Json(json!({ "evaluations": decisions })).into_response(),
    )
}

/// AuthZEN PDP metadata: the PDP identifier and the endpoints this PDP
/// has. No `capabilities`: no registered capability URN applies, and the
/// 1.0 text has parameters without values omitted.
async fn metadata(State(api): State<Authzen>, headers: HeaderMap) -> Response {
    let base = api.identity.base_url(&headers);
    let mut response = Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}{EVALUATION_PATH}"),
        "access_evaluations_endpoint": format!("{base}{EVALUATIONS_PATH}"),
        "search_subject_endpoint": format!("{base}{}", search::SUBJECT_PATH),
        "search_resource_endpoint": format!("{base}{}", search::RESOURCE_PATH),
        "search_action_endpoint": format!("{base}{}", search::ACTION_PATH),
    }))
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

#[cfg(test)]
mod untrusted_input {
    use super::*;

    #[test]
    fn the_pdp_identifier_follows_the_port_or_the_configuration() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("pdp.internal:7402"));
        let plain = PdpIdentity::FromRequest { tls: false };
        assert_eq!(plain.base_url(&headers), "http://pdp.internal:7402");
        let tls = PdpIdentity::FromRequest { tls: true };
        assert_eq!(tls.base_url(&headers), "https://pdp.internal:7402");
        let configured = PdpIdentity::Configured("https://pdp.example.com".into());
        assert_eq!(configured.base_url(&headers), "https://pdp.example.com");
    }

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        headers
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_read_or_refused_with_a_reason(body: Vec<u8>) {
            let headers = json_headers();
            match parse::<Evaluation>(&headers, &body) {
                Ok(evaluation) => {
                    if let Err(err) = MappingRules::default().map(&evaluation, &Evaluation::default()) {
                        proptest::prop_assert!(!err.0.is_empty());
                    }
                }
                Err(err) => proptest::prop_assert!(!err.0.is_empty()),
            }
            let _ = parse::<Evaluations>(&headers, &body);
        }

        #[test]
        fn any_json_shaped_request_is_read_or_refused_with_a_reason(
            subject_type: String,
            id: String,
            tenant: String,
            action: String,
        ) {
            let body = serde_json::json!({
                "subject": {"type": subject_type, "id": id, "properties": {"tenant": tenant}},
                "action": {"name": action},
                "resource": {"type": "mcp.tool", "id": "mcp:github/x"},
                "context": {"audience": "mcp:github"},
            })
            .to_string();
            if let Ok(evaluation) = parse::<Evaluation>(&json_headers(), body.as_bytes()) {
                if let Err(err) = MappingRules::default().map(&evaluation, &Evaluation::default()) {
                    proptest::prop_assert!(!err.0.is_empty());
                }
            }
        }
    }
}
