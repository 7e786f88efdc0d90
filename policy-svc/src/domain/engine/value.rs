//! Typed attribute values of a decision request (common.proto's
//! AttributeValue) and the attribute types and sources a policy set declares.

use std::fmt;

use agentsec_proto::common::v1 as common;
use agentsec_proto::policy::v1 as pb;

use super::error::RequestError;

/// common.proto: a string value is at most 1,024 chars.
pub const MAX_STRING_VALUE: usize = 1024;
/// common.proto: a string list has at most 64 values.
pub const MAX_LIST_VALUES: usize = 64;

/// Which attribute map an attribute lives in (and its prefix in conditions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Agent,
    Person,
    Resource,
    Context,
}

impl Source {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Person => "person",
            Self::Resource => "resource",
            Self::Context => "context",
        }
    }

    pub fn from_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "agent" => Some(Self::Agent),
            "person" => Some(Self::Person),
            "resource" => Some(Self::Resource),
            "context" => Some(Self::Context),
            _ => None,
        }
    }

    pub fn from_proto(source: i32) -> Option<Self> {
        match pb::AttributeSource::try_from(source) {
            Ok(pb::AttributeSource::Agent) => Some(Self::Agent),
            Ok(pb::AttributeSource::Person) => Some(Self::Person),
            Ok(pb::AttributeSource::Resource) => Some(Self::Resource),
            Ok(pb::AttributeSource::Context) => Some(Self::Context),
            Ok(pb::AttributeSource::Unspecified) | Err(_) => None,
        }
    }

    /// The request field that carries this attribute map.
    pub fn request_field(self) -> &'static str {
        match self {
            Self::Agent => "principal.agent_attributes",
            Self::Person => "principal.person_attributes",
            Self::Resource => "resource.attributes",
            Self::Context => "context.attributes",
        }
    }
}

/// The declared type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    String,
    Int,
    Double,
    Bool,
    StringList,
}

impl AttrType {
    pub fn from_proto(kind: i32) -> Option<Self> {
        match pb::AttributeType::try_from(kind) {
            Ok(pb::AttributeType::String) => Some(Self::String),
            Ok(pb::AttributeType::Int) => Some(Self::Int),
            Ok(pb::AttributeType::Double) => Some(Self::Double),
            Ok(pb::AttributeType::Bool) => Some(Self::Bool),
            Ok(pb::AttributeType::StringList) => Some(Self::StringList),
            Ok(pb::AttributeType::Unspecified) | Err(_) => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Double => "double",
            Self::Bool => "bool",
            Self::StringList => "string list",
        }
    }
}

/// One attribute value of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    String(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    StringList(Vec<String>),
}

impl AttrValue {
    pub fn attr_type(&self) -> AttrType {
        match self {
            Self::String(_) => AttrType::String,
            Self::Int(_) => AttrType::Int,
            Self::Double(_) => AttrType::Double,
            Self::Bool(_) => AttrType::Bool,
            Self::StringList(_) => AttrType::StringList,
        }
    }

    /// Converts and bounds a proto value; `field` names it in errors.
    pub fn from_proto(field: &str, value: &common::AttributeValue) -> Result<Self, RequestError> {
        use common::attribute_value::Kind;
        match &value.kind {
            None => Err(RequestError::invalid(
                field,
                "exactly one value kind must be set",
            )),
            Some(Kind::StringValue(text)) => {
                bounded_string(field, text)?;
                Ok(Self::String(text.clone()))
            }
            Some(Kind::IntValue(number)) => Ok(Self::Int(*number)),
            Some(Kind::DoubleValue(number)) => {
                if !number.is_finite() {
                    return Err(RequestError::invalid(
                        field,
                        "NaN and infinities are not allowed",
                    ));
                }
                Ok(Self::Double(*number))
            }
            Some(Kind::BoolValue(flag)) => Ok(Self::Bool(*flag)),
            Some(Kind::StringListValue(list)) => {
                if list.values.len() > MAX_LIST_VALUES {
                    return Err(RequestError::invalid(
                        field,
                        format!("a string list holds at most {MAX_LIST_VALUES} values"),
                    ));
                }
                for (i, item) in list.values.iter().enumerate() {
                    bounded_string(&format!("{field}[{i}]"), item)?;
                }
                Ok(Self::StringList(list.values.clone()))
            }
        }
    }

    pub fn to_proto(&self) -> common::AttributeValue {
        use common::attribute_value::Kind;
        let kind = match self {
            Self::String(text) => Kind::StringValue(text.clone()),
            Self::Int(number) => Kind::IntValue(*number),
            Self::Double(number) => Kind::DoubleValue(*number),
            Self::Bool(flag) => Kind::BoolValue(*flag),
            Self::StringList(values) => Kind::StringListValue(common::StringList {
                values: values.clone(),
            }),
        };
        common::AttributeValue { kind: Some(kind) }
    }

    /// Converts a registry attribute (always a string in identity-svc) to
    /// the declared type (common.proto: "policy-svc converts the string").
    /// A string list is comma-separated.
    pub fn convert_registry_string(text: &str, to: AttrType) -> Result<Self, String> {
        let trimmed = text.trim();
        match to {
            AttrType::String => Ok(Self::String(text.to_owned())),
            AttrType::Int => trimmed
                .parse::<i64>()
                .map(Self::Int)
                .map_err(|_| format!("`{}` is not an int", super::error::printable(text))),
            AttrType::Double => match trimmed.parse::<f64>() {
                Ok(number) if number.is_finite() => Ok(Self::Double(number)),
                _ => Err(format!(
                    "`{}` is not a finite double",
                    super::error::printable(text)
                )),
            },
            AttrType::Bool => match trimmed {
                "true" => Ok(Self::Bool(true)),
                "false" => Ok(Self::Bool(false)),
                _ => Err(format!(
                    "`{}` is not `true` or `false`",
                    super::error::printable(text)
                )),
            },
            AttrType::StringList => Ok(Self::StringList(
                trimmed
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(text) => write!(f, "{:?}", super::error::printable(text)),
            Self::Int(number) => write!(f, "{number}"),
            Self::Double(number) => write!(f, "{number:?}"),
            Self::Bool(flag) => write!(f, "{flag}"),
            Self::StringList(values) => {
                write!(f, "[")?;
                for (i, value) in values.iter().take(8).enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{:?}", super::error::printable(value))?;
                }
                if values.len() > 8 {
                    write!(f, ", …")?;
                }
                write!(f, "]")
            }
        }
    }
}

fn bounded_string(field: &str, text: &str) -> Result<(), RequestError> {
    if text.chars().count() > MAX_STRING_VALUE {
        return Err(RequestError::invalid(
            field,
            format!("a string value is at most {MAX_STRING_VALUE} chars"),
        ));
    }
    Ok(())
}

/// The longest attribute key of a decision request, in characters.
pub const MAX_ATTRIBUTE_KEY: usize = 128;

/// What `is_attribute_key` requires, for error messages.
pub const ATTRIBUTE_KEY_RULE: &str =
    "attribute keys must be 1-128 characters, none a control character";

/// A key a decision request's attributes may carry: whatever PEPs name
/// their properties (`ownerID`, `x-team`), 1-128 characters without
/// control characters.
pub fn is_attribute_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().count() <= MAX_ATTRIBUTE_KEY
        && !key.chars().any(char::is_control)
}

/// A key a condition may name plainly (`resource.ownerID`):
/// `[A-Za-z_][A-Za-z0-9_]*`. Any other key is quoted
/// (`resource["x-team"]`).
pub fn is_plain_key(key: &str) -> bool {
    key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::attribute_value::Kind;

    fn proto(kind: Kind) -> common::AttributeValue {
        common::AttributeValue { kind: Some(kind) }
    }

    #[test]
    fn proto_values_convert_and_are_bounded() {
        assert_eq!(
            AttrValue::from_proto("f", &proto(Kind::IntValue(3))),
            Ok(AttrValue::Int(3))
        );
        let unset = AttrValue::from_proto(
            "agent.attributes[\"x\"]",
            &common::AttributeValue { kind: None },
        );
        assert_eq!(unset.unwrap_err().field(), "agent.attributes[\"x\"]");
        assert!(AttrValue::from_proto("f", &proto(Kind::DoubleValue(f64::NAN))).is_err());
        let long = "x".repeat(MAX_STRING_VALUE + 1);
        assert!(AttrValue::from_proto("f", &proto(Kind::StringValue(long))).is_err());
        let many = common::StringList {
            values: vec!["a".into(); MAX_LIST_VALUES + 1],
        };
        assert!(AttrValue::from_proto("f", &proto(Kind::StringListValue(many))).is_err());
        let value = AttrValue::StringList(vec!["a".into()]);
        assert_eq!(AttrValue::from_proto("f", &value.to_proto()), Ok(value));
    }

    #[test]
    fn registry_strings_convert_to_the_declared_type() {
        assert_eq!(
            AttrValue::convert_registry_string(" 2 ", AttrType::Int),
            Ok(AttrValue::Int(2))
        );
        assert_eq!(
            AttrValue::convert_registry_string("true", AttrType::Bool),
            Ok(AttrValue::Bool(true))
        );
        assert_eq!(
            AttrValue::convert_registry_string("a, b,", AttrType::StringList),
            Ok(AttrValue::StringList(vec!["a".into(), "b".into()]))
        );
        let err = AttrValue::convert_registry_string("two", AttrType::Int).unwrap_err();
        assert_eq!(err, "`two` is not an int");
        assert!(AttrValue::convert_registry_string("inf", AttrType::Double).is_err());
    }

    #[test]
    fn attribute_keys_follow_the_common_grammar() {
        for key in ["trust_tier", "ownerID", "x-team", "9x", "user id", "é"] {
            assert!(is_attribute_key(key), "{key}");
        }
        assert!(is_attribute_key(&"é".repeat(128)));
        for key in ["", "a\nb", "tab\t"] {
            assert!(!is_attribute_key(key), "{key:?}");
        }
        assert!(!is_attribute_key(&"a".repeat(129)));
        for key in ["trust_tier", "ownerID", "_x", "A1"] {
            assert!(is_plain_key(key), "{key}");
        }
        for key in ["x-team", "9x", "user id", "é", ""] {
            assert!(!is_plain_key(key), "{key}");
        }
    }
}
