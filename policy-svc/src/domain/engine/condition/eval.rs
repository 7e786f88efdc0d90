//! Evaluation of a parsed condition against a decision request. Values are
//! borrowed from the request and the AST; an error (missing attribute, wrong
//! type) is returned as a message that names the variable.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::{Builtin, CmpOp, Condition, Expr, Literal, StrTest, TimePart, Var};
use crate::domain::engine::request::DecisionRequest;
use crate::domain::engine::value::AttrValue;

/// Collects the values a condition read, for Explain.
pub struct Trace<'t>(Option<&'t mut Vec<String>>);

impl<'t> Trace<'t> {
    pub fn off() -> Self {
        Self(None)
    }

    pub fn recording(reads: &'t mut Vec<String>) -> Self {
        Self(Some(reads))
    }

    fn record(&mut self, line: impl FnOnce() -> String) {
        if let Some(reads) = self.0.as_deref_mut() {
            let line = line();
            if !reads.contains(&line) {
                reads.push(line);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    List(&'a [String]),
    Time(DateTime<Utc>),
    Literals(&'a [Literal]),
}

impl Val<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "an int",
            Self::Double(_) => "a double",
            Self::Bool(_) => "a bool",
            Self::List(_) => "a string list",
            Self::Time(_) => "a time",
            Self::Literals(_) => "a list",
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Self::Int(number) => Some(*number as f64),
            Self::Double(number) => Some(*number),
            _ => None,
        }
    }
}

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(text) => write!(f, "{:?}", crate::domain::engine::error::printable(text)),
            Self::Int(number) => write!(f, "{number}"),
            Self::Double(number) => write!(f, "{number:?}"),
            Self::Bool(flag) => write!(f, "{flag}"),
            Self::List(values) => write!(
                f,
                "{}",
                AttrValue::StringList(values.iter().take(9).cloned().collect())
            ),
            Self::Time(time) => write!(f, "{}", time.to_rfc3339()),
            Self::Literals(items) => write!(f, "[{} values]", items.len()),
        }
    }
}

impl Condition {
    /// Evaluates the condition; `Err` holds a message naming what failed.
    pub fn evaluate(
        &self,
        request: &DecisionRequest,
        trace: &mut Trace<'_>,
    ) -> Result<bool, String> {
        let value = eval(self.root(), request, trace)?;
        match value {
            Val::Bool(flag) => Ok(flag),
            other => Err(format!(
                "the condition is {} ({}), not true or false",
                other.kind(),
                describe(self.root())
            )),
        }
    }
}

fn eval<'a>(
    expr: &'a Expr,
    request: &'a DecisionRequest,
    trace: &mut Trace<'_>,
) -> Result<Val<'a>, String> {
    match expr {
        Expr::Literal(literal) => Ok(literal_value(literal)),
        Expr::List(items) => Ok(Val::Literals(items)),
        Expr::Var(var) => {
            let value = read(var, request)?;
            trace.record(|| format!("{} = {value}", var.describe()));
            Ok(value)
        }
        Expr::Has(var) => {
            let present = has(var, request);
            trace.record(|| format!("has({}) = {present}", var.describe()));
            Ok(Val::Bool(present))
        }
        Expr::Not(inner) => Ok(Val::Bool(!boolean(inner, request, trace, "`!`")?)),
        Expr::All(items) => {
            for item in items {
                if !boolean(item, request, trace, "`&&`")? {
                    return Ok(Val::Bool(false));
                }
            }
            Ok(Val::Bool(true))
        }
        Expr::Any(items) => {
            for item in items {
                if boolean(item, request, trace, "`||`")? {
                    return Ok(Val::Bool(true));
                }
            }
            Ok(Val::Bool(false))
        }
        Expr::Compare(op, left, right) => {
            let left_value = eval(left, request, trace)?;
            let right_value = eval(right, request, trace)?;
            compare(*op, left_value, right_value)
                .map(Val::Bool)
                .ok_or_else(|| {
                    format!(
                        "`{}` cannot compare {} ({}) with {} ({})",
                        op.symbol(),
                        describe(left),
                        left_value.kind(),
                        describe(right),
                        right_value.kind()
                    )
                })
        }
        Expr::In(item, set) => {
            let item_value = eval(item, request, trace)?;
            let set_value = eval(set, request, trace)?;
            contains(set_value, item_value)
                .map(Val::Bool)
                .ok_or_else(|| {
                    format!(
                        "`in` cannot look for {} ({}) in {} ({})",
                        describe(item),
                        item_value.kind(),
                        describe(set),
                        set_value.kind()
                    )
                })
        }
        Expr::TimePart(part, time, offset) => {
            let Val::Time(at) = eval(time, request, trace)? else {
                return Err(format!("{} is not a time", describe(time)));
            };
            let local = at.with_timezone(offset);
            let value = match part {
                TimePart::Hour => i64::from(local.hour()),
                TimePart::Minute => i64::from(local.minute()),
                TimePart::Weekday => i64::from(local.weekday().number_from_monday()),
            };
            trace.record(|| format!("{} = {value}", describe(expr)));
            Ok(Val::Int(value))
        }
        Expr::StrTest(test, value, needle) => {
            let text = string(value, request, trace)?;
            let needle_text = string(needle, request, trace)?;
            Ok(Val::Bool(match test {
                StrTest::StartsWith => text.starts_with(needle_text),
                StrTest::EndsWith => text.ends_with(needle_text),
                StrTest::Contains => text.contains(needle_text),
            }))
        }
        Expr::Glob(value, glob) => {
            let text = string(value, request, trace)?;
            Ok(Val::Bool(glob.matches(text)))
        }
    }
}

fn boolean(
    expr: &Expr,
    request: &DecisionRequest,
    trace: &mut Trace<'_>,
    op: &str,
) -> Result<bool, String> {
    match eval(expr, request, trace)? {
        Val::Bool(flag) => Ok(flag),
        other => Err(format!(
            "{op} needs true or false, {} is {}",
            describe(expr),
            other.kind()
        )),
    }
}

fn string<'a>(
    expr: &'a Expr,
    request: &'a DecisionRequest,
    trace: &mut Trace<'_>,
) -> Result<&'a str, String> {
    match eval(expr, request, trace)? {
        Val::Str(text) => Ok(text),
        other => Err(format!(
            "{} is {}, not a string",
            describe(expr),
            other.kind()
        )),
    }
}

fn literal_value(literal: &Literal) -> Val<'_> {
    match literal {
        Literal::Str(text) => Val::Str(text),
        Literal::Int(number) => Val::Int(*number),
        Literal::Double(number) => Val::Double(*number),
        Literal::Bool(flag) => Val::Bool(*flag),
    }
}

fn read<'a>(var: &Var, request: &'a DecisionRequest) -> Result<Val<'a>, String> {
    let missing = || format!("{} is missing", var.describe());
    match var {
        Var::Attr { source, key } => match request.attributes(*source).get(&**key) {
            Some(AttrValue::String(text)) => Ok(Val::Str(text)),
            Some(AttrValue::Int(number)) => Ok(Val::Int(*number)),
            Some(AttrValue::Double(number)) => Ok(Val::Double(*number)),
            Some(AttrValue::Bool(flag)) => Ok(Val::Bool(*flag)),
            Some(AttrValue::StringList(values)) => Ok(Val::List(values)),
            None => Err(missing()),
        },
        Var::Builtin(builtin) => match builtin {
            Builtin::AgentId => request
                .agent_id
                .as_deref()
                .map(Val::Str)
                .ok_or_else(|| format!("{} (a person decides without an agent)", missing())),
            Builtin::PersonSubject => request
                .person_subject
                .as_deref()
                .map(Val::Str)
                .ok_or_else(|| format!("{} (the agent acts for no person)", missing())),
            Builtin::ResourceType => Ok(Val::Str(&request.resource_type)),
            Builtin::ResourceId => Ok(Val::Str(&request.resource_id)),
            Builtin::Time => Ok(Val::Time(request.time)),
            Builtin::Environment => request
                .environment
                .as_deref()
                .map(Val::Str)
                .ok_or_else(missing),
            Builtin::DelegationDepth => Ok(Val::Int(i64::from(request.delegation_depth))),
            Builtin::RiskScore => request
                .risk_score
                .map(|score| Val::Int(i64::from(score)))
                .ok_or_else(missing),
            Builtin::ActorChain => Ok(Val::List(&request.actor_chain)),
            Builtin::Audience => Ok(Val::Str(&request.audience)),
            Builtin::Action => Ok(Val::Str(&request.action)),
        },
    }
}

fn has(var: &Var, request: &DecisionRequest) -> bool {
    match var {
        Var::Attr { source, key } => request.attributes(*source).contains_key(&**key),
        Var::Builtin(Builtin::AgentId) => request.agent_id.is_some(),
        Var::Builtin(Builtin::PersonSubject) => request.person_subject.is_some(),
        Var::Builtin(Builtin::Environment) => request.environment.is_some(),
        Var::Builtin(Builtin::RiskScore) => request.risk_score.is_some(),
        Var::Builtin(_) => true,
    }
}

/// `None` when the two values cannot be compared with `op`.
fn compare(op: CmpOp, left: Val<'_>, right: Val<'_>) -> Option<bool> {
    let ordering = match (left, right) {
        (Val::Int(a), Val::Int(b)) => a.cmp(&b),
        (Val::Str(a), Val::Str(b)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => a.cmp(b),
        (Val::Bool(a), Val::Bool(b)) if matches!(op, CmpOp::Eq | CmpOp::Ne) => a.cmp(&b),
        (a, b) => a.number()?.partial_cmp(&b.number()?)?,
    };
    Some(match op {
        CmpOp::Eq => ordering.is_eq(),
        CmpOp::Ne => ordering.is_ne(),
        CmpOp::Lt => ordering.is_lt(),
        CmpOp::Le => ordering.is_le(),
        CmpOp::Gt => ordering.is_gt(),
        CmpOp::Ge => ordering.is_ge(),
    })
}

/// `None` when `set` is not a list or holds another kind than `item`.
fn contains(set: Val<'_>, item: Val<'_>) -> Option<bool> {
    match (set, item) {
        (Val::List(values), Val::Str(text)) => Some(values.iter().any(|value| value == text)),
        (Val::Literals(items), Val::Str(text)) => Some(
            items
                .iter()
                .any(|literal| matches!(literal, Literal::Str(value) if **value == *text)),
        ),
        (Val::Literals(items), item) => {
            let number = item.number()?;
            Some(items.iter().any(|literal| match literal {
                Literal::Int(value) => *value as f64 == number,
                Literal::Double(value) => *value == number,
                Literal::Str(_) | Literal::Bool(_) => false,
            }))
        }
        _ => None,
    }
}

/// How an operand reads in a message: its variable name, or its kind.
fn describe(expr: &Expr) -> String {
    match expr {
        Expr::Var(var) => var.describe(),
        Expr::Literal(Literal::Str(text)) => {
            format!("{:?}", crate::domain::engine::error::printable(text))
        }
        Expr::Literal(Literal::Int(number)) => number.to_string(),
        Expr::Literal(Literal::Double(number)) => format!("{number:?}"),
        Expr::Literal(Literal::Bool(flag)) => flag.to_string(),
        Expr::TimePart(part, time, _) => {
            let name = match part {
                TimePart::Hour => "hour",
                TimePart::Minute => "minute",
                TimePart::Weekday => "weekday",
            };
            format!("{name}({})", describe(time))
        }
        Expr::List(_) => "the list".to_owned(),
        _ => "the expression".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::engine::condition::Declarations;
    use crate::domain::engine::request::tests::request;

    fn eval_text(text: &str, request: &DecisionRequest) -> Result<bool, String> {
        Condition::parse(text, &Declarations::default())
            .unwrap()
            .evaluate(request, &mut Trace::off())
    }

    #[test]
    fn reads_every_source_and_the_builtins() {
        let request = request();
        for text in [
            "agent.trust_tier == 1 && agent.project == \"apollo\"",
            "person.department == 'eng' && 'admins' in person.groups",
            "resource.classification == \"internal\" && resource.type == 'mcp.tool'",
            "context.source_ip == \"10.0.0.1\" && context.environment == 'prod'",
            "context.delegation_depth == 2 && context.risk_score < 50",
            "agent.id == 'agt_a' && person.subject == 'alice' && audience == 'github-mcp'",
            "action == 'tools/call' && resource.id == 'mcp:github/create_issue'",
            "'agt_b' in context.actor_chain",
            "hour(context.time) == 14 && minute(context.time) == 30 && weekday(context.time) == 3",
            "hour(context.time, '+02:00') == 16 && hour(context.time, \"-10:00\") == 4",
            "agent.score >= 0.5 && agent.score < 1 && agent.enabled",
            "starts_with(resource.id, 'mcp:') && ends_with(resource.id, '_issue') && contains(audience, 'hub')",
            "glob(resource.id, 'mcp:*/create_*') && !glob(resource.id, 'mcp:*/delete_*')",
            "agent.trust_tier in [1, 2] && agent.project in ['apollo', 'gemini']",
            "has(agent.project) && !has(agent.nothing) && has(person.subject)",
        ] {
            assert_eq!(eval_text(text, &request), Ok(true), "{text}");
        }
        assert_eq!(
            eval_text(
                "agent.trust_tier > 1 || agent.project != 'apollo'",
                &request
            ),
            Ok(false)
        );
    }

    #[test]
    fn missing_and_mistyped_values_are_errors_naming_the_variable() {
        let mut request = request();
        assert_eq!(
            eval_text("agent.nothing == 1", &request),
            Err("agent.nothing is missing".to_owned())
        );
        assert_eq!(
            eval_text("agent.project < 2", &request),
            Err("`<` cannot compare agent.project (a string) with 2 (an int)".to_owned())
        );
        assert_eq!(
            eval_text("agent.project", &request),
            Err("the condition is a string (agent.project), not true or false".to_owned())
        );
        assert_eq!(
            eval_text("agent.trust_tier in context.source_ip", &request),
            Err(
                "`in` cannot look for agent.trust_tier (an int) in context.source_ip (a string)"
                    .to_owned()
            )
        );
        request.person_subject = None;
        let err = eval_text("person.subject == 'x'", &request).unwrap_err();
        assert!(err.contains("acts for no person"), "{err}");
        request.risk_score = None;
        assert_eq!(
            eval_text("context.risk_score > 1", &request),
            Err("context.risk_score is missing".to_owned())
        );
        assert_eq!(eval_text("has(context.risk_score)", &request), Ok(false));
    }

    #[test]
    fn and_or_stop_early_left_to_right() {
        let request = request();
        assert_eq!(
            eval_text("has(agent.nothing) && agent.nothing > 1", &request),
            Ok(false)
        );
        assert_eq!(eval_text("true || agent.nothing > 1", &request), Ok(true));
        assert!(eval_text("agent.nothing > 1 || true", &request).is_err());
    }

    #[test]
    fn trace_records_the_values_read() {
        let request = request();
        let condition = Condition::parse(
            "agent.trust_tier < 2 && hour(context.time) >= 9",
            &Declarations::default(),
        )
        .unwrap();
        let mut reads = Vec::new();
        assert_eq!(
            condition.evaluate(&request, &mut Trace::recording(&mut reads)),
            Ok(true)
        );
        assert_eq!(
            reads,
            vec![
                "agent.trust_tier = 1",
                "context.time = 2025-01-01T14:30:00+00:00",
                "hour(context.time) = 14"
            ]
        );
        assert!(condition.reads_time());
    }
}
