//! What policy-svc adds to a request's span: the ids and
//! outcomes of the decisions it made, the same as in their audit events.
//! Nothing else of the request: the token, the principal and the request's
//! attributes stay out of traces, which are read more widely than the
//! audit trail.

use agentsec_proto::common::v1::{Decision, Effect};
use opentelemetry::{Array, StringValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// One decision: `agentsec.decision.id` and `agentsec.decision.outcome`.
pub fn record_decision(decision: &Decision) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    span.set_attribute("agentsec.decision.id", decision.decision_id.clone());
    span.set_attribute("agentsec.decision.outcome", outcome(decision));
}

/// A batch's decisions, in item order: `agentsec.decision.ids` and
/// `agentsec.decision.outcomes`.
pub fn record_decisions<'a>(decisions: impl Iterator<Item = &'a Decision>) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let (ids, outcomes): (Vec<StringValue>, Vec<StringValue>) = decisions
        .map(|decision| {
            (
                StringValue::from(decision.decision_id.clone()),
                StringValue::from(outcome(decision)),
            )
        })
        .unzip();
    span.set_attribute("agentsec.decision.ids", Value::Array(Array::String(ids)));
    span.set_attribute(
        "agentsec.decision.outcomes",
        Value::Array(Array::String(outcomes)),
    );
}

/// As the decision's audit event says it: `error` when deciding failed.
fn outcome(decision: &Decision) -> &'static str {
    if decision.evaluation_error {
        "error"
    } else if decision.effect == Effect::Allow as i32 {
        "allow"
    } else {
        "deny"
    }
}
