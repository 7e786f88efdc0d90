//! Envoy ext_authz v3 (`envoy.service.auth.v3.Authorization/Check`) on the
//! gRPC port: Envoy asks before forwarding a request, policy-svc answers
//! with a CheckToken decision.
//!
//! * The bearer token of the `authorization` header is the principal
//!   (verified as CheckToken verifies it). Missing or not valid: 401 with a
//!   `www-authenticate: Bearer` header.
//! * The target system (audience) is the route's `agentsec_audience`
//!   context extension if the ext_authz filter sets one, else the request's
//!   host without its port. The token's `aud` must name it.
//! * A JSON-RPC body (the filter's `with_request_body`) is MCP, decided
//!   message by message after the COAZ-MCP method table (see
//!   `domain::mcp`): `tools/call` is action `tools/call` on resource
//!   `mcp.tool` `mcp:<server>/<tool>`, `<server>` being the
//!   `agentsec_mcp_server` context extension or else the audience; `ping`
//!   and notifications need only a valid token; unknown methods are denied;
//!   a batch goes through only when every message would. On a route with
//!   `agentsec_mcp_server`, every non-empty body must be JSON-RPC. An MCP
//!   refusal is a JSON-RPC error (per message, with its `id`; `-32001`
//!   denied, `-32602` unmappable, `-32600` not a request, `-32603` no
//!   decision possible) whose `data` carries the decision.
//! * Any other request is resource `http.path` (the path without its
//!   query) with the action from the method: GET/HEAD/OPTIONS `read`,
//!   POST/PUT/PATCH `write`, DELETE `delete`, any other the method in lower
//!   case.
//! * ALLOW: OK, and `x-agentsec-decision-id` set on the upstream request
//!   (overwriting one a client sent). DENY: 403 with a JSON body (decision,
//!   reason, decision id, policy ids). A request policy-svc cannot decide
//!   (e.g. unknown tenant): 403 with the reason; key sets unreachable: 503.
//!   Never an allow on an error.

use std::collections::HashMap;
use std::sync::Arc;

use agentsec_proto::common::v1::{Decision, Effect, Resource};
use agentsec_proto::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
};
use agentsec_proto::envoy::r#type::v3::{HttpStatus, StatusCode};
use agentsec_proto::envoy::service::auth::v3::attribute_context::HttpRequest;
use agentsec_proto::envoy::service::auth::v3::authorization_server::Authorization;
use agentsec_proto::envoy::service::auth::v3::{
    check_response::HttpResponse, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use agentsec_proto::google::rpc::Status as RpcStatus;
use agentsec_proto::policy::v1::CheckTokenRequest;
use serde_json::json;
use tonic::{Code, Request, Response, Status};

use crate::auth::AdminAuth;
use crate::decisions::DecisionService;
use crate::domain::mcp as table;
use crate::tokens::MAX_TOKEN_BYTES;

mod mcp;

/// The header carrying the decision id upstream.
pub const DECISION_ID_HEADER: &str = "x-agentsec-decision-id";
/// Context extension naming the target system of a route.
const AUDIENCE_EXTENSION: &str = "agentsec_audience";
/// Context extension naming the MCP server of a route.
const MCP_SERVER_EXTENSION: &str = "agentsec_mcp_server";

pub struct ExtAuthz {
    decisions: Arc<DecisionService>,
    auth: Arc<AdminAuth>,
}

impl ExtAuthz {
    pub fn new(decisions: Arc<DecisionService>, auth: Arc<AdminAuth>) -> Self {
        Self { decisions, auth }
    }
}

/// What the request asks for, in policy terms.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    audience: String,
    action: String,
    resource_type: String,
    resource_id: String,
}

/// Why a request is refused before any decision.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Unauthenticated(String),
    Forbidden(String),
}

fn header<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a str> {
    if let Some(value) = http.headers.get(name) {
        return Some(value);
    }
    // encode_raw_headers: a list with raw values instead of the map.
    http.header_map.as_ref().and_then(|map| {
        map.headers
            .iter()
            .find(|header| header.key.eq_ignore_ascii_case(name))
            .and_then(|header| {
                if header.value.is_empty() {
                    std::str::from_utf8(&header.raw_value).ok()
                } else {
                    Some(header.value.as_str())
                }
            })
    })
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(http: &HttpRequest) -> Result<String, Refusal> {
    let value = header(http, "authorization")
        .ok_or_else(|| Refusal::Unauthenticated("no authorization header".to_owned()))?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(|| {
        Refusal::Unauthenticated("the authorization is not a bearer token".to_owned())
    })?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Refusal::Unauthenticated(
            "the authorization is not a bearer token".to_owned(),
        ));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Unauthenticated(
            "the bearer token is larger than 8 KiB".to_owned(),
        ));
    }
    Ok(token.to_owned())
}

/// `host[:port]` or `[v6]:port` without the port.
fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(inside, _)| inside);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

fn action_of(method: &str) -> String {
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" => "read".to_owned(),
        "POST" | "PUT" | "PATCH" => "write".to_owned(),
        "DELETE" => "delete".to_owned(),
        _ => method.to_ascii_lowercase(),
    }
}

/// What a request asks for: a plain HTTP request's one target, or MCP
/// messages.
#[derive(Debug, PartialEq)]
enum Asked {
    Http(Target),
    Mcp {
        audience: String,
        messages: Vec<table::Message>,
        batch: bool,
    },
}

fn asked(http: &HttpRequest, extensions: &HashMap<String, String>) -> Asked {
    let audience = extensions
        .get(AUDIENCE_EXTENSION)
        .filter(|audience| !audience.is_empty())
        .cloned()
        .unwrap_or_else(|| {
            let host = if http.host.is_empty() {
                header(http, ":authority")
                    .or_else(|| header(http, "host"))
                    .unwrap_or_default()
            } else {
                http.host.as_str()
            };
            host_without_port(host).to_ascii_lowercase()
        });
    let body: &[u8] = if http.raw_body.is_empty() {
        http.body.as_bytes()
    } else {
        &http.raw_body
    };
    let server = extensions
        .get(MCP_SERVER_EXTENSION)
        .filter(|server| !server.is_empty());
    let (messages, batch) =
        match table::Body::read(body, server.unwrap_or(&audience), server.is_some()) {
            table::Body::NotJsonRpc => (Vec::new(), false),
            table::Body::Single(message) => (vec![message], false),
            table::Body::Batch(messages) => (messages, true),
        };
    if !messages.is_empty() {
        return Asked::Mcp {
            audience,
            messages,
            batch,
        };
    }
    let path = http.path.split(['?', '#']).next().unwrap_or_default();
    Asked::Http(Target {
        audience,
        action: action_of(&http.method),
        resource_type: "http.path".to_owned(),
        resource_id: if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
    })
}

fn header_option(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        // A client's own header of that name is replaced, never kept.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

fn denied(
    code: Code,
    http: StatusCode,
    mut headers: Vec<HeaderValueOption>,
    body: serde_json::Value,
) -> CheckResponse {
    headers.push(header_option("content-type", "application/json"));
    CheckResponse {
        status: Some(RpcStatus {
            code: code as i32,
            message: reason_of(&body).to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers,
            body: body.to_string(),
        })),
    }
}

/// The reason in a denial body: its `reason`, or the first JSON-RPC
/// error's message.
fn reason_of(body: &serde_json::Value) -> &str {
    let first = body
        .as_array()
        .and_then(|errors| errors.first())
        .unwrap_or(body);
    body.get("reason")
        .or_else(|| first.pointer("/error/message"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

fn refused(refusal: Refusal) -> CheckResponse {
    match refusal {
        Refusal::Unauthenticated(reason) => denied(
            Code::Unauthenticated,
            StatusCode::Unauthorized,
            vec![header_option("www-authenticate", "Bearer")],
            json!({ "error": "unauthenticated", "reason": reason }),
        ),
        Refusal::Forbidden(reason) => denied(
            Code::PermissionDenied,
            StatusCode::Forbidden,
            Vec::new(),
            json!({ "decision": "deny", "reason": reason }),
        ),
    }
}

/// The answer to a CheckToken error: nothing is allowed on an error.
fn failed(status: &Status) -> CheckResponse {
    match status.code() {
        Code::Unauthenticated => refused(Refusal::Unauthenticated(status.message().to_owned())),
        Code::Unavailable => denied(
            Code::Unavailable,
            StatusCode::ServiceUnavailable,
            Vec::new(),
            json!({ "decision": "deny", "reason": status.message() }),
        ),
        _ => refused(Refusal::Forbidden(status.message().to_owned())),
    }
}

/// The OK of an allowed request: the decision ids (none for what needed
/// no decision) replace whatever `x-agentsec-decision-id` the client sent.
fn allowed(decision_ids: &[String]) -> CheckResponse {
    let (headers, headers_to_remove) = if decision_ids.is_empty() {
        (Vec::new(), vec![DECISION_ID_HEADER.to_owned()])
    } else {
        (
            vec![header_option(DECISION_ID_HEADER, &decision_ids.join(", "))],
            Vec::new(),
        )
    };
    CheckResponse {
        status: Some(RpcStatus {
            code: Code::Ok as i32,
            message: String::new(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            response_headers_to_add: Vec::new(),
        })),
    }
}

/// A decision on one target, or the error that prevented it.
async fn decide(
    decisions: &DecisionService,
    token: &str,
    target: Target,
) -> Result<Decision, Status> {
    decisions
        .check_token(CheckTokenRequest {
            token: token.to_owned(),
            audience: target.audience,
            action: target.action,
            resource: Some(Resource {
                r#type: target.resource_type,
                id: target.resource_id,
                ..Resource::default()
            }),
            context: None,
        })
        .await
        .map(|response| response.decision.unwrap_or_default())
        .map_err(Status::from)
}

fn is_allow(decision: &Decision) -> bool {
    decision.effect == Effect::Allow as i32 && !decision.evaluation_error
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // Envoy's own credentials (its gRPC initial metadata), when
        // decisions.callers asks for them.
        self.auth.decision_caller(request.metadata()).await?;
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes
            .request
            .and_then(|request| request.http)
            .unwrap_or_default();
        let token = match bearer(&http) {
            Ok(token) => token,
            Err(refusal) => return Ok(Response::new(refused(refusal))),
        };
        let target = match asked(&http, &attributes.context_extensions) {
            Asked::Http(target) => target,
            Asked::Mcp {
                audience,
                messages,
                batch,
            } => {
                return Ok(Response::new(
                    mcp::decide_messages(&self.decisions, &token, &audience, messages, batch).await,
                ))
            }
        };
        let decision = match decide(&self.decisions, &token, target).await {
            Ok(decision) => decision,
            Err(status) => return Ok(Response::new(failed(&status))),
        };
        if is_allow(&decision) {
            return Ok(Response::new(allowed(&[decision.decision_id])));
        }
        Ok(Response::new(denied(
            Code::PermissionDenied,
            StatusCode::Forbidden,
            vec![header_option(DECISION_ID_HEADER, &decision.decision_id)],
            json!({
                "decision": "deny",
                "reason": decision.reason,
                "decision_id": decision.decision_id,
                "policy_ids": decision.policy_ids,
            }),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_body_or_request_line_is_decided_or_refused_without_panicking(
            body: Vec<u8>,
            method: String,
            host: String,
            path: String,
        ) {
            let request = HttpRequest {
                method,
                host,
                path,
                body: String::from_utf8_lossy(&body).into_owned(),
                ..HttpRequest::default()
            };
            let _ = asked(&request, &HashMap::new());
        }
    }

    fn http(method: &str, host: &str, path: &str, body: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            body: body.into(),
            headers: HashMap::from([("authorization".into(), "Bearer abc.def.ghi".into())]),
            ..HttpRequest::default()
        }
    }

    fn target(request: &HttpRequest, extensions: &HashMap<String, String>) -> Target {
        match asked(request, extensions) {
            Asked::Http(target) => target,
            mcp => panic!("not plain HTTP: {mcp:?}"),
        }
    }

    #[test]
    fn the_target_comes_from_host_path_and_method() {
        let plain = target(
            &http("GET", "api.example.com:8443", "/repos/x?page=2", ""),
            &HashMap::new(),
        );
        assert_eq!(
            plain,
            Target {
                audience: "api.example.com".into(),
                action: "read".into(),
                resource_type: "http.path".into(),
                resource_id: "/repos/x".into(),
            }
        );
        assert_eq!(action_of("delete"), "delete");
        assert_eq!(action_of("PATCH"), "write");
        assert_eq!(host_without_port("[::1]:80"), "::1");
        let routed = HashMap::from([(AUDIENCE_EXTENSION.to_owned(), "github".to_owned())]);
        assert_eq!(
            target(&http("GET", "h", "/", ""), &routed).audience,
            "github"
        );
        // A JSON body that is not JSON-RPC is plain HTTP too.
        assert_eq!(
            target(
                &http("POST", "h", "/repos", r#"{"method": "card"}"#),
                &routed
            )
            .action,
            "write"
        );
    }

    #[test]
    fn json_rpc_bodies_are_mcp_messages_of_the_routed_server() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{}}}"#;
        let extensions = HashMap::from([(MCP_SERVER_EXTENSION.to_owned(), "github".to_owned())]);
        let Asked::Mcp {
            audience,
            messages,
            batch,
        } = asked(&http("POST", "mcp.internal", "/mcp", body), &extensions)
        else {
            panic!("not MCP");
        };
        assert_eq!(audience, "mcp.internal");
        assert!(!batch);
        assert_eq!(
            messages[0].ask,
            table::Ask::Decide {
                action: "tools/call".into(),
                resource_type: "mcp.tool",
                resource_id: "mcp:github/create_issue".into(),
            }
        );
        // Without the extension, the server is the audience.
        let Asked::Mcp { messages, .. } =
            asked(&http("POST", "mcp.internal", "/mcp", body), &HashMap::new())
        else {
            panic!("not MCP");
        };
        assert!(matches!(&messages[0].ask,
            table::Ask::Decide { resource_id, .. } if resource_id == "mcp:mcp.internal/create_issue"));
        // A batch is a batch, and a GET without a body on an MCP route is
        // plain HTTP.
        let batch = format!("[{body}]");
        assert!(matches!(
            asked(&http("POST", "m", "/mcp", &batch), &HashMap::new()),
            Asked::Mcp { batch: true, .. }
        ));
        assert!(matches!(
            asked(&http("GET", "m", "/mcp", ""), &extensions),
            Asked::Http(_)
        ));
    }

    #[test]
    fn only_bearer_tokens_are_taken() {
        assert_eq!(bearer(&http("GET", "h", "/", "")).unwrap(), "abc.def.ghi");
        let mut basic = http("GET", "h", "/", "");
        basic
            .headers
            .insert("authorization".into(), "Basic dXNlcg==".into());
        assert!(matches!(bearer(&basic), Err(Refusal::Unauthenticated(_))));
        basic.headers.clear();
        assert!(matches!(bearer(&basic), Err(Refusal::Unauthenticated(_))));
    }
}
