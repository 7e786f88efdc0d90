//! The OpenID AuthZEN Authorization API 1.0 over HTTP on the gRPC port, so
//! that gateways and PEPs that speak AuthZEN use policy-svc unchanged:
//! `POST /access/v1/evaluation`, `POST /access/v1/evaluations`, and the
//! PDP metadata at `/.well-known/authzen-configuration`. Each evaluation
//! becomes a CheckRequest and is decided by the decision service, as gRPC
//! Check's are (same cache, same audit event); the mapping is in
//! docs/policy-model.md.

use std::collections::HashMap;
use std::sync::Arc;

use agentsec_common::http_boundary::{guard, BodyRules};
use agentsec_proto::common::v1::{
    attribute_value::Kind, Actor, ActorChain, AttributeValue, Decision, Effect, Principal,
    Resource, StringList,
};
use agentsec_proto::policy::v1::{CheckRequest, RequestContext};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tonic::metadata::MetadataMap;

use crate::auth::AdminAuth;
use crate::decisions::{DecisionService, MAX_BATCH};

/// Room for a full batch of evaluations.
const MAX_BODY: usize = 4 * 1024 * 1024;
const EVALUATION_PATH: &str = "/access/v1/evaluation";
const EVALUATIONS_PATH: &str = "/access/v1/evaluations";
/// Subject properties with a meaning of their own; the others are agent
/// attributes.
const TENANT: &str = "tenant";
const PERSON: &str = "person";
const PERSON_PROPERTIES: &str = "person_properties";
const ACTOR_CHAIN: &str = "actor_chain";

/// What the AuthZEN endpoints decide with: the decision service, after
/// the caller check every decision API makes; and what the PDP metadata
/// names this PDP.
#[derive(Clone)]
pub struct Authzen {
    pub decisions: Arc<DecisionService>,
    pub auth: Arc<AdminAuth>,
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
        .route("/.well-known/authzen-configuration", get(metadata));
    guard(
        routes,
        BodyRules {
            max_bytes: MAX_BODY,
            media_type: "application/json",
            post_paths: &[EVALUATION_PATH, EVALUATIONS_PATH],
            render: error_response,
        },
    )
    .with_state(api)
}

/// A request the PDP cannot evaluate: 400 with what is wrong.
struct BadRequest(String);

impl BadRequest {
    fn field(field: &str, reason: impl std::fmt::Display) -> Self {
        Self(format!("{field}: {reason}"))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Evaluation {
    #[serde(default)]
    subject: Option<Entity>,
    #[serde(default)]
    resource: Option<Entity>,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entity {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    #[serde(default)]
    properties: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    name: String,
    #[serde(default)]
    properties: Map<String, Value>,
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

/// `value` as an AttributeValue: strings, integers, numbers, booleans and
/// lists of strings.
fn attribute(field: &str, value: &Value) -> Result<AttributeValue, BadRequest> {
    let kind = match value {
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(int) => Kind::IntValue(int),
            None => Kind::DoubleValue(
                number
                    .as_f64()
                    .ok_or_else(|| BadRequest::field(field, "is not a representable number"))?,
            ),
        },
        Value::Array(items) => Kind::StringListValue(StringList {
            values: items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| BadRequest::field(field, "lists may only hold strings"))?,
        }),
        Value::Null | Value::Object(_) => {
            return Err(BadRequest::field(
                field,
                "must be a string, number, boolean or list of strings",
            ))
        }
    };
    Ok(AttributeValue { kind: Some(kind) })
}

fn attributes<'a>(
    field: &str,
    properties: impl Iterator<Item = (&'a String, &'a Value)>,
) -> Result<HashMap<String, AttributeValue>, BadRequest> {
    properties
        .map(|(key, value)| Ok((key.clone(), attribute(&format!("{field}.{key}"), value)?)))
        .collect()
}

fn string<'a>(field: &str, value: &'a Value) -> Result<&'a str, BadRequest> {
    value
        .as_str()
        .ok_or_else(|| BadRequest::field(field, "must be a string"))
}

fn principal(subject: &Entity) -> Result<Principal, BadRequest> {
    if subject.kind != "agent" {
        return Err(BadRequest::field(
            "subject.type",
            "must be `agent` (the acting agent; the person goes in subject.properties.person)",
        ));
    }
    let properties = &subject.properties;
    let tenant = properties
        .get(TENANT)
        .ok_or_else(|| BadRequest::field("subject.properties.tenant", "is required"))
        .and_then(|value| string("subject.properties.tenant", value))?;
    let person_subject = match properties.get(PERSON) {
        Some(value) => string("subject.properties.person", value)?.to_owned(),
        None => String::new(),
    };
    let person_attributes = match properties.get(PERSON_PROPERTIES) {
        None => HashMap::new(),
        Some(Value::Object(map)) => attributes("subject.properties.person_properties", map.iter())?,
        Some(_) => {
            return Err(BadRequest::field(
                "subject.properties.person_properties",
                "must be an object",
            ))
        }
    };
    let actor_chain = match properties.get(ACTOR_CHAIN) {
        None => None,
        Some(Value::Array(ids)) => Some(ActorChain {
            actors: ids
                .iter()
                .map(|id| {
                    Ok(Actor {
                        agent_id: string("subject.properties.actor_chain[]", id)?.to_owned(),
                        issuer: String::new(),
                    })
                })
                .collect::<Result<_, BadRequest>>()?,
        }),
        Some(_) => {
            return Err(BadRequest::field(
                "subject.properties.actor_chain",
                "must be a list of agent ids, the acting agent first",
            ))
        }
    };
    let agent_attributes = attributes(
        "subject.properties",
        properties.iter().filter(|(key, _)| {
            ![TENANT, PERSON, PERSON_PROPERTIES, ACTOR_CHAIN].contains(&key.as_str())
        }),
    )?;
    Ok(Principal {
        tenant: tenant.to_owned(),
        agent_id: subject.id.clone(),
        agent_attributes,
        person_subject,
        person_attributes,
        actor_chain,
    })
}

/// context: `audience` (required), `time` (RFC 3339), `environment`,
/// `risk_score`, `delegation_depth`; everything else (and the action's
/// properties) are request attributes.
fn context(
    context: &Map<String, Value>,
    action: &Action,
) -> Result<(String, RequestContext), BadRequest> {
    let audience = context
        .get("audience")
        .ok_or_else(|| BadRequest::field("context.audience", "is required (the target system)"))
        .and_then(|value| string("context.audience", value))?
        .to_owned();
    let mut request = RequestContext::default();
    if let Some(time) = context.get("time") {
        let parsed = chrono::DateTime::parse_from_rfc3339(string("context.time", time)?)
            .map_err(|err| BadRequest::field("context.time", err))?;
        request.time = Some(prost_types::Timestamp {
            seconds: parsed.timestamp(),
            nanos: parsed.timestamp_subsec_nanos() as i32,
        });
    }
    if let Some(environment) = context.get("environment") {
        request.environment = string("context.environment", environment)?.to_owned();
    }
    let small = |field: &str, value: &Value| {
        value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| BadRequest::field(field, "must be a non-negative integer"))
    };
    if let Some(risk) = context.get("risk_score") {
        request.risk_score = Some(small("context.risk_score", risk)?);
    }
    if let Some(depth) = context.get("delegation_depth") {
        request.delegation_depth = small("context.delegation_depth", depth)?;
    }
    const NAMED: [&str; 5] = [
        "audience",
        "time",
        "environment",
        "risk_score",
        "delegation_depth",
    ];
    request.attributes = attributes(
        "context",
        context
            .iter()
            .filter(|(key, _)| !NAMED.contains(&key.as_str()))
            .chain(action.properties.iter()),
    )?;
    Ok((audience, request))
}

/// One evaluation as a CheckRequest; `defaults` fill what it leaves out.
fn check_request(
    evaluation: &Evaluation,
    defaults: &Evaluation,
) -> Result<CheckRequest, BadRequest> {
    let subject = evaluation
        .subject
        .as_ref()
        .or(defaults.subject.as_ref())
        .ok_or_else(|| BadRequest::field("subject", "is required"))?;
    let resource = evaluation
        .resource
        .as_ref()
        .or(defaults.resource.as_ref())
        .ok_or_else(|| BadRequest::field("resource", "is required"))?;
    let action = evaluation
        .action
        .as_ref()
        .or(defaults.action.as_ref())
        .ok_or_else(|| BadRequest::field("action", "is required"))?;
    let empty = Map::new();
    let context_map = evaluation
        .context
        .as_ref()
        .or(defaults.context.as_ref())
        .unwrap_or(&empty);
    let (audience, request_context) = context(context_map, action)?;
    Ok(CheckRequest {
        principal: Some(principal(subject)?),
        audience,
        action: action.name.clone(),
        resource: Some(Resource {
            r#type: resource.kind.clone(),
            id: resource.id.clone(),
            attributes: attributes("resource.properties", resource.properties.iter())?,
        }),
        context: Some(request_context),
    })
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
    let code = match status.code() {
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
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
    let request = match parse::<Evaluation>(&headers, &body)
        .and_then(|evaluation| check_request(&evaluation, &Evaluation::default()))
    {
        Ok(request) => request,
        Err(err) => return answer(&headers, bad_request(err)),
    };
    let response = match api.decisions.check(&request).await {
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
    let requests = match items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            check_request(item, &parsed.defaults)
                .map_err(|err| BadRequest(format!("evaluations[{index}].{}", err.0)))
        })
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(requests) => requests,
        Err(err) => return answer(&headers, bad_request(err)),
    };
    let results = match api.decisions.batch_check(&requests).await {
        Ok(results) => results,
        Err(err) => return answer(&headers, status_response(err.into())),
    };
    let mut decisions = Vec::with_capacity(results.len());
    for result in results {
        let Some(decision) = result.decision else {
            return answer(
                &headers,
                status_response(tonic::Status::internal("no decision")),
            );
        };
        let allowed = decision.effect == Effect::Allow as i32;
        decisions.push(decision_json(&decision));
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
                    if let Err(err) = check_request(&evaluation, &Evaluation::default()) {
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
                if let Err(err) = check_request(&evaluation, &Evaluation::default()) {
                    proptest::prop_assert!(!err.0.is_empty());
                }
            }
        }
    }
}

#[cfg(test)]
mod mapping {
    use serde_json::json;

    use super::*;

    fn evaluation(body: Value) -> Evaluation {
        serde_json::from_value(body).unwrap()
    }

    fn mapped(body: Value) -> Result<CheckRequest, String> {
        check_request(&evaluation(body), &Evaluation::default()).map_err(|err| err.0)
    }

    fn full() -> Value {
        json!({
            "subject": {"type": "agent", "id": "agt_1", "properties": {
                "tenant": "acme",
                "person": "alice@example.com",
                "person_properties": {"department": "sre"},
                "actor_chain": ["agt_1", "agt_0"],
                "trust_tier": 2,
            }},
            "action": {"name": "tools/call", "properties": {"dry_run": true}},
            "resource": {"type": "mcp.tool", "id": "mcp:github/list_issues",
                         "properties": {"labels": ["bug", "p1"], "weight": 0.5}},
            "context": {"audience": "mcp:github", "time": "2026-12-06T10:00:00Z",
                        "environment": "prod", "risk_score": 7, "delegation_depth": 1,
                        "ticket": "INC-1"},
        })
    }

    fn value(kind: Kind) -> AttributeValue {
        AttributeValue { kind: Some(kind) }
    }

    #[test]
    fn every_member_lands_in_its_check_request_field() {
        let request = mapped(full()).unwrap();
        let principal = request.principal.unwrap();
        assert_eq!(principal.tenant, "acme");
        assert_eq!(principal.agent_id, "agt_1");
        assert_eq!(principal.person_subject, "alice@example.com");
        assert_eq!(
            principal.person_attributes["department"],
            value(Kind::StringValue("sre".into()))
        );
        let chain: Vec<_> = principal
            .actor_chain
            .unwrap()
            .actors
            .into_iter()
            .map(|actor| actor.agent_id)
            .collect();
        assert_eq!(chain, ["agt_1", "agt_0"]);
        // The other subject properties are the agent's attributes.
        assert_eq!(principal.agent_attributes.len(), 1);
        assert_eq!(
            principal.agent_attributes["trust_tier"],
            value(Kind::IntValue(2))
        );
        assert_eq!(request.audience, "mcp:github");
        assert_eq!(request.action, "tools/call");
        let resource = request.resource.unwrap();
        assert_eq!(
            (resource.r#type.as_str(), resource.id.as_str()),
            ("mcp.tool", "mcp:github/list_issues")
        );
        assert_eq!(
            resource.attributes["labels"],
            value(Kind::StringListValue(StringList {
                values: vec!["bug".into(), "p1".into()]
            }))
        );
        assert_eq!(resource.attributes["weight"], value(Kind::DoubleValue(0.5)));
        let context = request.context.unwrap();
        assert_eq!(context.time.unwrap().seconds, 1_796_551_200);
        assert_eq!(context.environment, "prod");
        assert_eq!(context.risk_score, Some(7));
        assert_eq!(context.delegation_depth, 1);
        // Other context members and the action's properties are request
        // attributes.
        assert_eq!(
            context.attributes["ticket"],
            value(Kind::StringValue("INC-1".into()))
        );
        assert_eq!(context.attributes["dry_run"], value(Kind::BoolValue(true)));
        assert_eq!(context.attributes.len(), 2);
    }

    #[test]
    fn a_batch_item_takes_what_it_leaves_out_from_the_request() {
        let defaults = evaluation(full());
        let item =
            evaluation(json!({"resource": {"type": "mcp.tool", "id": "mcp:github/delete_repo"}}));
        let request = check_request(&item, &defaults)
            .map_err(|err| err.0)
            .unwrap();
        assert_eq!(request.resource.unwrap().id, "mcp:github/delete_repo");
        assert_eq!(request.principal.unwrap().agent_id, "agt_1");
        assert_eq!(request.action, "tools/call");
        assert_eq!(request.audience, "mcp:github");
    }

    #[test]
    fn what_cannot_be_evaluated_is_named() {
        let with = |path: &[&str], replacement: Value| {
            let mut body = full();
            let mut at = &mut body;
            for key in &path[..path.len() - 1] {
                at = &mut at[*key];
            }
            match replacement {
                Value::Null => {
                    at.as_object_mut().unwrap().remove(path[path.len() - 1]);
                }
                other => at[path[path.len() - 1]] = other,
            }
            mapped(body).unwrap_err()
        };
        let cases = [
            (with(&["subject"], Value::Null), "subject"),
            (with(&["subject", "type"], json!("user")), "subject.type"),
            (
                with(&["subject", "properties", "tenant"], Value::Null),
                "subject.properties.tenant",
            ),
            (
                with(&["subject", "properties", "actor_chain"], json!("agt_1")),
                "subject.properties.actor_chain",
            ),
            (
                with(&["context", "audience"], Value::Null),
                "context.audience",
            ),
            (
                with(&["context", "time"], json!("yesterday")),
                "context.time",
            ),
            (
                with(&["context", "risk_score"], json!(-1)),
                "context.risk_score",
            ),
            (
                with(&["resource", "properties", "labels"], json!([1, 2])),
                "resource.properties.labels",
            ),
            (
                with(&["resource", "properties", "weight"], json!({"a": 1})),
                "resource.properties.weight",
            ),
        ];
        for (message, field) in cases {
            assert!(message.starts_with(field), "{field}: {message}");
        }
    }
}
