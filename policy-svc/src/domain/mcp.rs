//! The MCP method table: what each JSON-RPC message a client sends to an
//! MCP server asks for, in policy terms, after the default mappings of the
//! AuthZEN COAZ-MCP binding. The binding's resource types (`mcp_server`,
//! `tool`, `resource`, `prompt`, `task`) become `mcp.server`, `mcp.tool`,
//! `mcp.resource`, `mcp.prompt` and `mcp.task`; their ids are prefixed
//! with the server (`mcp:<server>` for the server itself, else
//! `mcp:<server>/<name, uri or task id>`), so one policy set can name the
//! tools of several servers.
//!
//! * `ping`, notifications (`notifications/*`) and responses to the
//!   server's own requests pass through: no decision is asked for.
//! * A method the table does not know is refused, so methods of later MCP
//!   versions fail closed.
//! * A message the table cannot map (a missing `params.name`, an unknown
//!   `ref.type`) is refused as the binding's mapping error (`-32602`).
//! * `resources/templates/list`, which the binding's table lacks, is
//!   decided like `resources/list`: the MCP SDKs' clients send it, and
//!   refusing it would break them.

use serde_json::Value;

/// The JSON-RPC error code of a denial (COAZ-MCP "Authorization Denial").
pub const DENIED: i64 = -32001;
/// The JSON-RPC error code of a message that cannot be mapped (COAZ-MCP
/// "Mapping Errors", JSON-RPC "Invalid params").
pub const MAPPING_ERROR: i64 = -32602;
/// The JSON-RPC error code of a message that is not a JSON-RPC request.
pub const INVALID_REQUEST: i64 = -32600;
/// The JSON-RPC error code when the decision could not be made (COAZ-MCP
/// "PDP Communication Errors").
pub const INTERNAL_ERROR: i64 = -32603;

/// What one message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Allowed without a decision (the token is still checked).
    PassThrough,
    /// A decision on `action` over the resource.
    Decide {
        action: String,
        resource_type: &'static str,
        resource_id: String,
    },
    /// Refused without a decision, with a JSON-RPC error code.
    Refused { code: i64, reason: String },
}

/// One JSON-RPC message of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The request's `id`; `None` for a notification or a message without
    /// one (JSON-RPC answers those with `id: null`).
    pub id: Option<Value>,
    pub ask: Ask,
}

/// A request body, read as MCP.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Not JSON-RPC: the request is decided as plain HTTP.
    NotJsonRpc,
    /// One message.
    Single(Message),
    /// A batch: every message is decided, and the body goes through only
    /// when each of them would.
    Batch(Vec<Message>),
}

impl Body {
    /// Reads `body` as JSON-RPC messages to the MCP server `server`. On an
    /// MCP route (`mcp_route`: the route names its MCP server) every
    /// non-empty body must be JSON-RPC; elsewhere a body is JSON-RPC when
    /// a message has a `jsonrpc` member or a `method` the table knows.
    pub fn read(body: &[u8], server: &str, mcp_route: bool) -> Self {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Self::NotJsonRpc;
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return if mcp_route {
                Self::Single(invalid(None, "the body is not JSON"))
            } else {
                Self::NotJsonRpc
            };
        };
        match &value {
            Value::Array(messages) => {
                if !mcp_route && !messages.iter().any(looks_like_json_rpc) {
                    return Self::NotJsonRpc;
                }
                if messages.is_empty() {
                    return Self::Single(invalid(None, "an empty JSON-RPC batch"));
                }
                Self::Batch(
                    messages
                        .iter()
                        .map(|message| message_of(message, server))
                        .collect(),
                )
            }
            message if mcp_route || looks_like_json_rpc(message) => {
                Self::Single(message_of(message, server))
            }
            _ => Self::NotJsonRpc,
        }
    }
}

fn looks_like_json_rpc(message: &Value) -> bool {
    message.get("jsonrpc").is_some()
        || message
            .get("method")
            .and_then(Value::as_str)
            .is_some_and(|method| ask_of(method, &Value::Null, "").is_some())
}

fn invalid(id: Option<Value>, reason: &str) -> Message {
    Message {
        id,
        ask: Ask::Refused {
            code: INVALID_REQUEST,
            reason: reason.to_owned(),
        },
    }
}

fn message_of(message: &Value, server: &str) -> Message {
    let Some(object) = message.as_object() else {
        return invalid(None, "a JSON-RPC message must be an object");
    };
    let id = object.get("id").filter(|id| !id.is_null()).cloned();
    let Some(method) = object.get("method") else {
        // A response to one of the server's requests (sampling,
        // elicitation, roots): it asks for nothing.
        if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            return Message {
                id,
                ask: Ask::PassThrough,
            };
        }
        return invalid(id, "a JSON-RPC request needs a `method`");
    };
    let Some(method) = method.as_str() else {
        return invalid(id, "the JSON-RPC `method` must be a string");
    };
    let params = object.get("params").unwrap_or(&Value::Null);
    let ask = match method {
        "ping" => Ask::PassThrough,
        notification if notification.starts_with("notifications/") => Ask::PassThrough,
        _ => ask_of(method, params, server).unwrap_or_else(|| Ask::Refused {
            code: DENIED,
            reason: format!("the MCP method `{method}` is not one policy-svc decides"),
        }),
    };
    Message { id, ask }
}

/// The default mapping of `method`; `None` for a method outside the table.
fn ask_of(method: &str, params: &Value, server: &str) -> Option<Ask> {
    let on_server = || decide(method, "mcp.server", format!("mcp:{server}"));
    let named = |resource_type: &'static str, field: &str| match params
        .get(field)
        .and_then(Value::as_str)
    {
        Some(name) if !name.is_empty() => {
            decide(method, resource_type, format!("mcp:{server}/{name}"))
        }
        _ => mapping_error(format!("`{method}` without `params.{field}`")),
    };
    Some(match method {
        "initialize"
        | "tools/list"
        | "resources/list"
        | "resources/templates/list"
        | "prompts/list"
        | "logging/setLevel"
        | "tasks/list" => on_server(),
        "tools/call" => named("mcp.tool", "name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            named("mcp.resource", "uri")
        }
        "prompts/get" => named("mcp.prompt", "name"),
        "tasks/get" | "tasks/result" | "tasks/cancel" => named("mcp.task", "taskId"),
        "completion/complete" => {
            let reference = params.get("ref").unwrap_or(&Value::Null);
            let (resource_type, field) = match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => ("mcp.prompt", "name"),
                Some("ref/resource") => ("mcp.resource", "uri"),
                _ => {
                    return Some(mapping_error(
                        "`completion/complete` needs `params.ref.type` `ref/prompt` or \
                         `ref/resource`"
                            .to_owned(),
                    ))
                }
            };
            match reference.get(field).and_then(Value::as_str) {
                Some(name) if !name.is_empty() => {
                    decide(method, resource_type, format!("mcp:{server}/{name}"))
                }
                _ => mapping_error(format!(
                    "`completion/complete` without `params.ref.{field}`"
                )),
            }
        }
        _ => return None,
    })
}

fn decide(action: &str, resource_type: &'static str, resource_id: String) -> Ask {
    Ask::Decide {
        action: action.to_owned(),
        resource_type,
        resource_id,
    }
}

fn mapping_error(reason: String) -> Ask {
    Ask::Refused {
        code: MAPPING_ERROR,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn single(body: Value) -> Message {
        match Body::read(body.to_string().as_bytes(), "github", true) {
            Body::Single(message) => message,
            other => panic!("not one message: {other:?}"),
        }
    }

    fn asked(method: &str, params: Value) -> Ask {
        single(json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).ask
    }

    #[test]
    fn every_method_of_the_binding_maps_to_its_resource() {
        let server = ("mcp.server", "mcp:github".to_owned());
        let cases = [
            (
                "initialize",
                json!({"protocolVersion": "2025-11-25"}),
                server.clone(),
            ),
            ("tools/list", json!({}), server.clone()),
            ("resources/list", json!({}), server.clone()),
            ("resources/templates/list", json!({}), server.clone()),
            ("prompts/list", json!({}), server.clone()),
            ("logging/setLevel", json!({"level": "info"}), server.clone()),
            ("tasks/list", json!({}), server.clone()),
            (
                "tools/call",
                json!({"name": "list_issues", "arguments": {}}),
                ("mcp.tool", "mcp:github/list_issues".to_owned()),
            ),
            (
                "resources/read",
                json!({"uri": "repo://acme/README.md"}),
                (
                    "mcp.resource",
                    "mcp:github/repo://acme/README.md".to_owned(),
                ),
            ),
            (
                "resources/subscribe",
                json!({"uri": "repo://acme"}),
                ("mcp.resource", "mcp:github/repo://acme".to_owned()),
            ),
            (
                "resources/unsubscribe",
                json!({"uri": "repo://acme"}),
                ("mcp.resource", "mcp:github/repo://acme".to_owned()),
            ),
            (
                "prompts/get",
                json!({"name": "triage"}),
                ("mcp.prompt", "mcp:github/triage".to_owned()),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "triage"}, "argument": {}}),
                ("mcp.prompt", "mcp:github/triage".to_owned()),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": "repo://{name}"}}),
                ("mcp.resource", "mcp:github/repo://{name}".to_owned()),
            ),
            (
                "tasks/get",
                json!({"taskId": "t1"}),
                ("mcp.task", "mcp:github/t1".to_owned()),
            ),
            (
                "tasks/result",
                json!({"taskId": "t1"}),
                ("mcp.task", "mcp:github/t1".to_owned()),
            ),
            (
                "tasks/cancel",
                json!({"taskId": "t1"}),
                ("mcp.task", "mcp:github/t1".to_owned()),
            ),
        ];
        for (method, params, (resource_type, resource_id)) in cases {
            assert_eq!(
                asked(method, params),
                Ask::Decide {
                    action: method.to_owned(),
                    resource_type,
                    resource_id,
                },
                "{method}"
            );
        }
    }

    #[test]
    fn ping_notifications_and_responses_pass_through() {
        assert_eq!(asked("ping", json!({})), Ask::PassThrough);
        let notification = single(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(
            notification,
            Message {
                id: None,
                ask: Ask::PassThrough
            }
        );
        let response = single(json!({"jsonrpc": "2.0", "id": 4, "result": {}}));
        assert_eq!(response.ask, Ask::PassThrough);
    }

    #[test]
    fn unknown_methods_are_denied_and_unmappable_ones_are_mapping_errors() {
        for method in [
            "tools/delete",
            "sampling/createMessage",
            "elicitation/create",
            "",
        ] {
            assert!(
                matches!(asked(method, json!({})), Ask::Refused { code: DENIED, .. }),
                "{method}"
            );
        }
        for (method, params) in [
            ("tools/call", json!({})),
            ("tools/call", json!({"name": ""})),
            ("resources/read", json!({"uri": 7})),
            ("prompts/get", json!(null)),
            ("tasks/get", json!({})),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/other", "name": "x"}}),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/prompt"}}),
            ),
        ] {
            assert!(
                matches!(
                    asked(method, params.clone()),
                    Ask::Refused {
                        code: MAPPING_ERROR,
                        ..
                    }
                ),
                "{method} {params}"
            );
        }
        let methodless = single(json!({"jsonrpc": "2.0", "id": 3}));
        assert_eq!(methodless.id, Some(json!(3)));
        assert!(matches!(
            methodless.ask,
            Ask::Refused {
                code: INVALID_REQUEST,
                ..
            }
        ));
    }

    #[test]
    fn batches_keep_each_message_and_its_id() {
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "a"}},
            {"jsonrpc": "2.0", "method": "notifications/progress"},
            {"jsonrpc": "2.0", "id": "x", "method": "prompts/get", "params": {"name": "p"}},
            7,
        ]);
        let Body::Batch(messages) = Body::read(batch.to_string().as_bytes(), "gh", false) else {
            panic!("not a batch");
        };
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].id, Some(json!(1)));
        assert!(
            matches!(&messages[0].ask, Ask::Decide { resource_id, .. } if resource_id == "mcp:gh/a")
        );
        assert_eq!(messages[1].ask, Ask::PassThrough);
        assert_eq!(messages[2].id, Some(json!("x")));
        assert!(matches!(
            messages[3].ask,
            Ask::Refused {
                code: INVALID_REQUEST,
                ..
            }
        ));
        assert_eq!(
            Body::read(b"[]", "gh", true),
            Body::Single(invalid(None, "an empty JSON-RPC batch"))
        );
    }

    #[test]
    fn only_mcp_routes_insist_on_json_rpc() {
        for body in [
            &b""[..],
            b"  ",
            b"{\"title\": \"x\"}",
            b"[1, 2]",
            b"not json",
        ] {
            assert_eq!(Body::read(body, "gh", false), Body::NotJsonRpc, "{body:?}");
        }
        assert_eq!(Body::read(b"", "gh", true), Body::NotJsonRpc);
        // A REST body with a `method` member of its own is not MCP...
        assert_eq!(
            Body::read(br#"{"method": "card"}"#, "gh", false),
            Body::NotJsonRpc
        );
        // ... but on an MCP route, and with `jsonrpc` anywhere, it is.
        for (body, mcp_route) in [
            (&br#"{"method": "card"}"#[..], true),
            (br#"{"jsonrpc": "2.0", "id": 1, "method": "card"}"#, false),
            (br#"{"title": "x"}"#, true),
            (b"not json", true),
        ] {
            assert!(
                matches!(
                    Body::read(body, "gh", mcp_route),
                    Body::Single(Message {
                        ask: Ask::Refused { .. },
                        ..
                    })
                ),
                "{body:?}"
            );
        }
        // A known method without `jsonrpc` is still read as MCP: a call
        // cannot be smuggled past the table by leaving the member out.
        assert!(matches!(
            Body::read(
                br#"{"method": "tools/call", "params": {"name": "x"}}"#,
                "gh",
                false
            ),
            Body::Single(Message {
                ask: Ask::Decide { .. },
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_read_without_panicking(body: Vec<u8>, mcp_route: bool) {
            let _ = Body::read(&body, "gh", mcp_route);
        }
    }
}
