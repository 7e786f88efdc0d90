//! MCP bodies under ext_authz: each JSON-RPC message decided after the
//! method table of `domain::mcp`, the body let through only when every
//! message is, and a refusal answered as the JSON-RPC errors of the
//! COAZ-MCP binding, one per message that expects an answer.

use agentsec_proto::common::v1::Decision;
use agentsec_proto::envoy::r#type::v3::StatusCode;
use agentsec_proto::envoy::service::auth::v3::check_response::HttpResponse;
use agentsec_proto::envoy::service::auth::v3::CheckResponse;
use serde_json::{json, Value};
use tonic::{Code, Status};

use super::{
    allowed, decide, denied, header_option, is_allow, refused, Refusal, Target, DECISION_ID_HEADER,
};
use crate::decisions::DecisionService;
use crate::domain::mcp::{Ask, Message, DENIED, INTERNAL_ERROR, INVALID_REQUEST};

/// The most messages one batch may hold: each is a decision of its own.
pub const MAX_BATCH: usize = 100;

/// What became of one message.
enum Outcome {
    /// Let through; the decision id when a decision was made.
    Allowed(Option<String>),
    /// Refused with a JSON-RPC error code; the decision when one was made.
    Refused {
        code: i64,
        reason: String,
        decision: Option<Decision>,
    },
}

/// The answer to the MCP `messages` of one request (`batch`: the body was
/// a JSON-RPC array), asked with `token` of `audience`.
pub(super) async fn decide_messages(
    decisions: &DecisionService,
    token: &str,
    audience: &str,
    messages: Vec<Message>,
    batch: bool,
) -> CheckResponse {
    if messages.len() > MAX_BATCH {
        let reason = format!("a JSON-RPC batch of more than {MAX_BATCH} messages");
        return refusal(&[error(None, INVALID_REQUEST, &reason, None)], false);
    }
    let mut authenticated = false;
    let mut outcomes = Vec::with_capacity(messages.len());
    for message in &messages {
        let outcome = match &message.ask {
            Ask::PassThrough if authenticated => Outcome::Allowed(None),
            Ask::PassThrough => match decisions.authenticate(token, audience).await {
                Ok(()) => {
                    authenticated = true;
                    Outcome::Allowed(None)
                }
                Err(err) => match undecidable(Status::from(err), &messages, batch) {
                    Ok(outcome) => outcome,
                    Err(response) => return *response,
                },
            },
            Ask::Decide {
                action,
                resource_type,
                resource_id,
            } => {
                let target = Target {
                    audience: audience.to_owned(),
                    action: action.clone(),
                    resource_type: (*resource_type).to_owned(),
                    resource_id: resource_id.clone(),
                };
                match decide(decisions, token, target).await {
                    Ok(decision) if is_allow(&decision) => {
                        Outcome::Allowed(Some(decision.decision_id))
                    }
                    Ok(decision) => Outcome::Refused {
                        code: DENIED,
                        reason: decision.reason.clone(),
                        decision: Some(decision),
                    },
                    Err(status) => match undecidable(status, &messages, batch) {
                        Ok(outcome) => outcome,
                        Err(response) => return *response,
                    },
                }
            }
            Ask::Refused { code, reason } => Outcome::Refused {
                code: *code,
                reason: reason.clone(),
                decision: None,
            },
        };
        outcomes.push(outcome);
    }
    let decision_ids: Vec<String> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Allowed(id) => id.clone(),
            Outcome::Refused { decision, .. } => decision
                .as_ref()
                .map(|decision| decision.decision_id.clone()),
        })
        .collect();
    if outcomes
        .iter()
        .all(|outcome| matches!(outcome, Outcome::Allowed(_)))
    {
        return allowed(&decision_ids);
    }
    let errors: Vec<Value> = messages
        .iter()
        .zip(&outcomes)
        .filter_map(|(message, outcome)| match outcome {
            // A notification expects no answer.
            Outcome::Allowed(_) if message.id.is_none() => None,
            Outcome::Allowed(_) => Some(error(
                message.id.as_ref(),
                DENIED,
                "not forwarded: another message of the batch was refused",
                None,
            )),
            Outcome::Refused {
                code,
                reason,
                decision,
            } => Some(error(
                message.id.as_ref(),
                *code,
                reason,
                decision.as_ref().map(|decision| {
                    json!({
                        "decision": "deny",
                        "reason": decision.reason,
                        "decision_id": decision.decision_id,
                        "policy_ids": decision.policy_ids,
                    })
                }),
            )),
        })
        .collect();
    let mut response = refusal(&errors, batch);
    if !decision_ids.is_empty() {
        if let Some(HttpResponse::DeniedResponse(denied)) = &mut response.http_response {
            denied
                .headers
                .push(header_option(DECISION_ID_HEADER, &decision_ids.join(", ")));
        }
    }
    response
}

/// A message that could not be decided: an invalid token is the whole
/// request's 401, an unreachable key set or view its 503 (`Err`); any other
/// error refuses the message alone.
fn undecidable(
    status: Status,
    messages: &[Message],
    batch: bool,
) -> Result<Outcome, Box<CheckResponse>> {
    match status.code() {
        Code::Unauthenticated => Err(Box::new(refused(Refusal::Unauthenticated(
            status.message().to_owned(),
        )))),
        Code::Unavailable => {
            let reason = format!("no decision could be made: {}", status.message());
            let errors: Vec<_> = messages
                .iter()
                .filter(|message| message.id.is_some() || !batch)
                .map(|message| error(message.id.as_ref(), INTERNAL_ERROR, &reason, None))
                .collect();
            Err(Box::new(denied(
                Code::Unavailable,
                StatusCode::ServiceUnavailable,
                Vec::new(),
                body(&errors, batch),
            )))
        }
        _ => Ok(Outcome::Refused {
            code: DENIED,
            reason: status.message().to_owned(),
            decision: None,
        }),
    }
}

/// The 403 carrying `errors`.
fn refusal(errors: &[Value], batch: bool) -> CheckResponse {
    denied(
        Code::PermissionDenied,
        StatusCode::Forbidden,
        Vec::new(),
        body(errors, batch),
    )
}

/// One error object, or the array of a batch.
fn body(errors: &[Value], batch: bool) -> Value {
    match errors {
        [only] if !batch => only.clone(),
        _ => Value::Array(errors.to_vec()),
    }
}

/// A JSON-RPC error response to the request `id` (`null` when unknown).
fn error(id: Option<&Value>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id.cloned().unwrap_or(Value::Null), "error": error })
}
