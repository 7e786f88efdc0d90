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
//! * An MCP JSON-RPC `tools/call` in the forwarded body (the filter's
//!   `with_request_body`) is action `tools/call` on resource `mcp.tool`
//!   `mcp:<server>/<tool>`, `<server>` being the `agentsec_mcp_server`
//!   context extension or else the audience. A JSON-RPC batch holding a
//!   `tools/call` is denied (each call needs its own decision). Any other
//!   request is resource `http.path` (the path without its query) with the
//!   action from the method: GET/HEAD/OPTIONS `read`, POST/PUT/PATCH
//!   `write`, DELETE `delete`, any other the method in lower case.
//! * ALLOW: OK, and `x-agentsec-decision-id` set on the upstream request
//!   (overwriting one a client sent). DENY: 403 with a JSON body (decision,
//!   reason, decision id, policy ids). A request policy-svc cannot decide
//!   (e.g. unknown tenant): 403 with the reason; key sets unreachable: 503.
//!   Never an allow on an error.

use std::collections::HashMap;
use std::sync::Arc;

use agentsec_proto::common::v1::{Effect, Resource};
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
use crate::tokens::MAX_TOKEN_BYTES;

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

/// The tool name of an MCP `tools/call` body; Err for a batch holding one.
fn mcp_tool(body: &[u8]) -> Result<Option<String>, Refusal> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Ok(None);
    };
    let is_call = |message: &serde_json::Value| {
        message.get("method").and_then(serde_json::Value::as_str) == Some("tools/call")
    };
    match &value {
        serde_json::Value::Array(messages) if messages.iter().any(is_call) => Err(
            Refusal::Forbidden("a JSON-RPC batch with tools/call is not decided as one".to_owned()),
        ),
        message if is_call(message) => {
            let name = message
                .get("params")
                .and_then(|params| params.get("name"))
                .and_then(serde_json::Value::as_str)
                .filter(|name| !name.is_empty())
                .ok_or_else(|| Refusal::Forbidden("a tools/call without params.name".to_owned()))?;
            Ok(Some(name.to_owned()))
        }
        _ => Ok(None),
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

fn target(http: &HttpRequest, extensions: &HashMap<String, String>) -> Result<Target, Refusal> {
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
    if let Some(tool) = mcp_tool(body)? {
        let server = extensions
            .get(MCP_SERVER_EXTENSION)
            .filter(|server| !server.is_empty())
            .unwrap_or(&audience);
        return Ok(Target {
            resource_id: format!("mcp:{server}/{tool}"),
            audience,
            action: "tools/call".to_owned(),
            resource_type: "mcp.tool".to_owned(),
        });
    }
    let path = http.path.split(['?', '#']).next().unwrap_or_default();
    Ok(Target {
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
            message: body
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http as i32 }),
            headers,
            body: body.to_string(),
        })),
    }
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
        let asked = bearer(&http).and_then(|token| {
            target(&http, &attributes.context_extensions).map(|target| (token, target))
        });
        let (token, target) = match asked {
            Ok(asked) => asked,
            Err(refusal) => return Ok(Response::new(refused(refusal))),
        };
        let decided = self
            .decisions
            .check_token(CheckTokenRequest {
                token,
                audience: target.audience,
                action: target.action,
                resource: Some(Resource {
                    r#type: target.resource_type,
                    id: target.resource_id,
                    ..Resource::default()
                }),
                context: None,
            })
            .await;
        let decision = match decided {
            Ok(response) => response.decision.unwrap_or_default(),
            Err(err) => return Ok(Response::new(failed(&err.into()))),
        };
        if decision.effect == Effect::Allow as i32 && !decision.evaluation_error {
            return Ok(Response::new(CheckResponse {
                status: Some(RpcStatus {
                    code: Code::Ok as i32,
                    message: String::new(),
                    details: Vec::new(),
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![header_option(DECISION_ID_HEADER, &decision.decision_id)],
                    headers_to_remove: Vec::new(),
                    response_headers_to_add: Vec::new(),
                })),
            }));
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
            let _ = mcp_tool(&body);
            let request = HttpRequest {
                method,
                host,
                path,
                body: String::from_utf8_lossy(&body).into_owned(),
                ..HttpRequest::default()
            };
            let _ = target(&request, &HashMap::new());
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

    #[test]
    fn the_target_comes_from_host_path_and_method() {
        let plain = target(
            &http("GET", "api.example.com:8443", "/repos/x?page=2", ""),
            &HashMap::new(),
        )
        .unwrap();
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
            target(&http("GET", "h", "/", ""), &routed)
                .unwrap()
                .audience,
            "github"
        );
    }

    #[test]
    fn an_mcp_tools_call_names_the_tool() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue","arguments":{}}}"#;
        let extensions = HashMap::from([(MCP_SERVER_EXTENSION.to_owned(), "github".to_owned())]);
        let target = target(&http("POST", "mcp.internal", "/mcp", body), &extensions).unwrap();
        assert_eq!(target.action, "tools/call");
        assert_eq!(target.resource_type, "mcp.tool");
        assert_eq!(target.resource_id, "mcp:github/create_issue");
        // Other JSON-RPC methods are plain requests.
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert_eq!(target_of(list).action, "write");
        // A batch smuggling a call, or a call without a name: refused.
        let batch = format!("[{body}]");
        assert!(matches!(
            super::target(&http("POST", "m", "/mcp", &batch), &HashMap::new()),
            Err(Refusal::Forbidden(_))
        ));
        let nameless = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#;
        assert!(super::target(&http("POST", "m", "/mcp", nameless), &HashMap::new()).is_err());
    }

    fn target_of(body: &str) -> Target {
        target(&http("POST", "m", "/mcp", body), &HashMap::new()).unwrap()
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
