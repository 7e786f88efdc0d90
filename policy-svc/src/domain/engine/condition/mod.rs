//! The condition language of policy rules: a small, side-effect-free boolean
//! expression language over the attributes of a decision request.
//!
//! ```text
//! condition := or
//! or        := and ( "||" and )*
//! and       := unary ( "&&" unary )*
//! unary     := "!" unary | compare
//! compare   := operand ( ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") operand )?
//! operand   := literal | list | variable | call | "(" or ")"
//! literal   := "string" | 'string' | int | double | true | false
//! list      := "[" literal ( "," literal )* "]"
//! variable  := (agent | person | resource | context) "." key | audience | action
//! call      := name "(" ( or ( "," or )* )? ")"
//! ```
//!
//! Variables read the request's attribute maps, except the built-ins
//! `agent.id`, `person.subject`, `resource.type`, `resource.id`,
//! `context.time`, `context.environment`, `context.delegation_depth`,
//! `context.risk_score`, `context.actor_chain`, `audience` and `action`.
//! Functions: `hour`, `minute`, `weekday` (ISO, Monday = 1) of a time with an
//! optional fixed UTC offset (`hour(context.time, "+02:00")`), `has(var)`,
//! `starts_with`, `ends_with`, `contains` and `glob(value, "pattern")`.
//!
//! A condition is parsed once, when its policy set is compiled, into an AST
//! that is type-checked against the built-ins and the set's attribute
//! declarations; undeclared attributes are checked when evaluated. `&&` and
//! `||` evaluate left to right and stop early. Evaluation never panics and
//! never allocates on the success path; a missing attribute or a value of
//! the wrong type is an error, which makes the decision a DENY.

mod eval;
mod lexer;
mod parser;

use std::collections::HashMap;

use chrono::FixedOffset;

pub use eval::Trace;
pub use lexer::Pos;

use super::glob::Glob;
use super::value::{is_plain_key, AttrType, Source};

/// policy.proto: a condition is at most 4,096 chars.
pub const MAX_CONDITION_CHARS: usize = 4096;
/// Deepest nesting of parentheses, `!` and calls, so that neither parsing
/// nor evaluation can exhaust the stack.
pub const MAX_NESTING: usize = 32;

/// A condition that does not parse or type-check, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

impl ParseError {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Self {
            pos,
            message: message.into(),
        }
    }
}

/// The attribute declarations of a policy set: (source, key) -> type.
#[derive(Debug, Clone, Default)]
pub struct Declarations {
    // One map per source, so that a lookup borrows the key.
    by_source: [HashMap<String, AttrType>; 4],
}

impl Declarations {
    fn slot(source: Source) -> usize {
        match source {
            Source::Agent => 0,
            Source::Person => 1,
            Source::Resource => 2,
            Source::Context => 3,
        }
    }

    /// Declares `key`; returns the earlier declaration if there was one.
    pub fn insert(&mut self, source: Source, key: &str, attr_type: AttrType) -> Option<AttrType> {
        self.by_source[Self::slot(source)].insert(key.to_owned(), attr_type)
    }

    /// A declared key of `source` equal to `key` but for ASCII case.
    pub fn key_like(&self, source: Source, key: &str) -> Option<&str> {
        self.by_source[Self::slot(source)]
            .keys()
            .find(|declared| declared.eq_ignore_ascii_case(key))
            .map(String::as_str)
    }

    pub fn get(&self, source: Source, key: &str) -> Option<AttrType> {
        self.by_source[Self::slot(source)].get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.by_source.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The values a condition can name that are not attribute-map entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    AgentId,
    PersonSubject,
    ResourceType,
    ResourceId,
    Time,
    Environment,
    DelegationDepth,
    RiskScore,
    ActorChain,
    Audience,
    Action,
}

impl Builtin {
    pub fn lookup(source: Source, key: &str) -> Option<Self> {
        match (source, key) {
            (Source::Agent, "id") => Some(Self::AgentId),
            (Source::Person, "subject") => Some(Self::PersonSubject),
            (Source::Resource, "type") => Some(Self::ResourceType),
            (Source::Resource, "id") => Some(Self::ResourceId),
            (Source::Context, "time") => Some(Self::Time),
            (Source::Context, "environment") => Some(Self::Environment),
            (Source::Context, "delegation_depth") => Some(Self::DelegationDepth),
            (Source::Context, "risk_score") => Some(Self::RiskScore),
            (Source::Context, "actor_chain") => Some(Self::ActorChain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::AgentId => "agent.id",
            Self::PersonSubject => "person.subject",
            Self::ResourceType => "resource.type",
            Self::ResourceId => "resource.id",
            Self::Time => "context.time",
            Self::Environment => "context.environment",
            Self::DelegationDepth => "context.delegation_depth",
            Self::RiskScore => "context.risk_score",
            Self::ActorChain => "context.actor_chain",
            Self::Audience => "audience",
            Self::Action => "action",
        }
    }

    fn ty(self) -> Ty {
        match self {
            Self::AgentId
            | Self::PersonSubject
            | Self::ResourceType
            | Self::ResourceId
            | Self::Environment
            | Self::Audience
            | Self::Action => Ty::Str,
            Self::Time => Ty::Time,
            Self::DelegationDepth | Self::RiskScore => Ty::Int,
            Self::ActorChain => Ty::List,
        }
    }
}

/// A variable of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Var {
    Attr { source: Source, key: Box<str> },
    Builtin(Builtin),
}

impl Var {
    pub fn describe(&self) -> String {
        match self {
            Self::Attr { source, key } if is_plain_key(key) => {
                format!("{}.{key}", source.prefix())
            }
            // As a condition quotes it (serde_json escapes like the lexer).
            Self::Attr { source, key } => format!(
                "{}[{}]",
                source.prefix(),
                serde_json::Value::from(key.as_ref())
            ),
            Self::Builtin(builtin) => builtin.name().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(Box<str>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    Hour,
    Minute,
    Weekday,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// The AST of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    List(Vec<Literal>),
    Var(Var),
    Not(Box<Expr>),
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Box<Expr>),
    TimePart(TimePart, Box<Expr>, FixedOffset),
    StrTest(StrTest, Box<Expr>, Box<Expr>),
    Glob(Box<Expr>, Glob),
    Has(Var),
}

/// Static types; `Any` is an undeclared attribute, checked at evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Double,
    Bool,
    List,
    Time,
    StrLiterals,
    NumLiterals,
    Any,
}

impl Ty {
    fn of(attr_type: AttrType) -> Self {
        match attr_type {
            AttrType::String => Self::Str,
            AttrType::Int => Self::Int,
            AttrType::Double => Self::Double,
            AttrType::Bool => Self::Bool,
            AttrType::StringList => Self::List,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Str => "a string",
            Self::Int => "an int",
            Self::Double => "a double",
            Self::Bool => "a bool",
            Self::List => "a string list",
            Self::Time => "a time",
            Self::StrLiterals => "a list of strings",
            Self::NumLiterals => "a list of numbers",
            Self::Any => "an undeclared attribute",
        }
    }

    fn is_number(self) -> bool {
        matches!(self, Self::Int | Self::Double | Self::Any)
    }
}

/// A parsed, type-checked condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    root: Expr,
    reads_time: bool,
}

impl Condition {
    /// Parses and type-checks `text` against the built-ins and `declarations`.
    pub fn parse(text: &str, declarations: &Declarations) -> Result<Self, ParseError> {
        if text.chars().count() > MAX_CONDITION_CHARS {
            return Err(ParseError::new(
                Pos { line: 1, column: 1 },
                format!("a condition is at most {MAX_CONDITION_CHARS} chars"),
            ));
        }
        let root = parser::parse(text, declarations)?;
        let reads_time = reads_time(&root);
        Ok(Self { root, reads_time })
    }

    /// True when the outcome can change with the time of the request (the
    /// condition reads `context.time`): such decisions must not be cached
    /// across a time boundary.
    pub fn reads_time(&self) -> bool {
        self.reads_time
    }

    pub fn root(&self) -> &Expr {
        &self.root
    }
}

fn reads_time(expr: &Expr) -> bool {
    match expr {
        Expr::Literal(_) | Expr::List(_) => false,
        Expr::Var(var) | Expr::Has(var) => *var == Var::Builtin(Builtin::Time),
        Expr::Not(inner) | Expr::Glob(inner, _) => reads_time(inner),
        Expr::TimePart(..) => true,
        Expr::All(items) | Expr::Any(items) => items.iter().any(reads_time),
        Expr::Compare(_, left, right) | Expr::In(left, right) | Expr::StrTest(_, left, right) => {
            reads_time(left) || reads_time(right)
        }
    }
}

#[cfg(test)]
mod untrusted_input {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text: String) {
            let _ = Condition::parse(&text, &Declarations::default());
        }

        #[test]
        fn any_expression_shaped_text_parses_or_is_refused(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "agent.", "trust_tier", "has(", ")", "(", " && ", " || ", "!", " == ",
                    " < ", "1", "2.5", "\"x\"", "[", "]", ",", " in ", "context.time",
                    "size(", "true", "-", "'", "\\", ".", "person.", "resource.id",
                ]),
                0..40,
            )
        ) {
            let text: String = parts.concat();
            if let Err(err) = Condition::parse(&text, &Declarations::default()) {
                proptest::prop_assert!(!err.message.is_empty() && err.pos.line >= 1);
            }
        }
    }
}
