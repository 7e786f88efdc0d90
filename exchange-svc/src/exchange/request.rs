//! RFC 8693 §2.1 request parameters, checked before any token is looked at.

use std::collections::BTreeSet;

use agentsec_common::error::{OAuthError, OAuthErrorCode};
pub use agentsec_common::oauth_http::printable;
use agentsec_proto::exchange::v1::ExchangeRequest;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Largest subject or actor token.
pub const MAX_TOKEN_BYTES: usize = agentsec_common::jwt::MAX_TOKEN_BYTES;
const MAX_TARGET_CHARS: usize = 256;
const MAX_SCOPE_CHARS: usize = 2048;

pub fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, description)
}

/// A well-formed exchange request.
#[derive(Debug)]
pub struct Parsed {
    pub subject_token: String,
    pub actor_token: String,
    /// The one target (audience or resource).
    pub audience: String,
    /// The scopes asked for, in order and without repeats; `None` = all
    /// that may be delegated.
    pub requested_scopes: Option<Vec<String>>,
    pub issued_token_type: &'static str,
}

fn token_type(field: &str, value: &str, accepted: &[&'static str]) -> Result<(), OAuthError> {
    if accepted.contains(&value) {
        Ok(())
    } else if value.is_empty() {
        Err(invalid_request(format!("{field} is required")))
    } else {
        Err(invalid_request(format!(
            "{field} `{}` is not supported (use {})",
            printable(value),
            accepted.join(" or ")
        )))
    }
}

fn token(field: &str, value: &str) -> Result<(), OAuthError> {
    if value.is_empty() {
        return Err(invalid_request(format!("{field} is required")));
    }
    if value.len() > MAX_TOKEN_BYTES {
        return Err(invalid_request(format!(
            "{field} is larger than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok(())
}

/// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn target(request: &ExchangeRequest) -> Result<String, OAuthError> {
    let mut targets = BTreeSet::new();
    for (field, values) in [
        ("audience", &request.audience),
        ("resource", &request.resource),
    ] {
        for value in values {
            let chars = value.chars().count();
            if chars == 0 || chars > MAX_TARGET_CHARS {
                return Err(invalid_request(format!(
                    "each {field} must be 1-{MAX_TARGET_CHARS} chars"
                )));
            }
            targets.insert(value.as_str());
        }
    }
    let mut targets = targets.into_iter();
    match (targets.next(), targets.next()) {
        (None, _) => Err(invalid_request(
            "audience or resource is required (the target system)",
        )),
        (Some(target), None) => Ok(target.to_owned()),
        (Some(_), Some(_)) => Err(OAuthError::new(
            OAuthErrorCode::InvalidTarget,
            "exactly one target (audience or resource) is accepted per token",
        )),
    }
}

fn scopes(scope: &str) -> Result<Option<Vec<String>>, OAuthError> {
    if scope.is_empty() {
        return Ok(None);
    }
    if scope.len() > MAX_SCOPE_CHARS {
        return Err(invalid_request(format!(
            "scope is longer than {MAX_SCOPE_CHARS} chars"
        )));
    }
    let mut requested: Vec<String> = Vec::new();
    for scope in scope.split(' ') {
        if !is_scope_token(scope) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidScope,
                "scope must be scope tokens separated by single spaces",
            ));
        }
        if !requested.iter().any(|seen| seen == scope) {
            requested.push(scope.to_owned());
        }
    }
    Ok(Some(requested))
}

/// Checks every parameter; the first problem is the answer.
pub fn parse(request: ExchangeRequest) -> Result<Parsed, OAuthError> {
    token("subject_token", &request.subject_token)?;
    token_type(
        "subject_token_type",
        &request.subject_token_type,
        &[ACCESS_TOKEN_TYPE, JWT_TYPE, ID_TOKEN_TYPE],
    )?;
    if request.actor_token.is_empty() {
        return Err(invalid_request(
            "actor_token is required: the acting agent's access token from identity-svc",
        ));
    }
    token("actor_token", &request.actor_token)?;
    token_type(
        "actor_token_type",
        &request.actor_token_type,
        &[ACCESS_TOKEN_TYPE, JWT_TYPE],
    )?;
    let issued_token_type = match request.requested_token_type.as_str() {
        "" | ACCESS_TOKEN_TYPE => ACCESS_TOKEN_TYPE,
        JWT_TYPE => JWT_TYPE,
        other => {
            return Err(invalid_request(format!(
            "requested_token_type `{}` is not supported (use {ACCESS_TOKEN_TYPE} or {JWT_TYPE})",
            printable(other)
        )))
        }
    };
    let audience = target(&request)?;
    let requested_scopes = scopes(&request.scope)?;
    Ok(Parsed {
        subject_token: request.subject_token,
        actor_token: request.actor_token,
        audience,
        requested_scopes,
        issued_token_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ExchangeRequest {
        ExchangeRequest {
            subject_token: "s.t.x".into(),
            subject_token_type: JWT_TYPE.into(),
            actor_token: "a.t.x".into(),
            actor_token_type: ACCESS_TOKEN_TYPE.into(),
            audience: vec!["https://api.test".into()],
            ..ExchangeRequest::default()
        }
    }

    fn code(request: ExchangeRequest) -> &'static str {
        parse(request).err().map(|err| err.code()).unwrap_or("ok")
    }

    #[test]
    fn a_complete_request_parses() {
        let parsed = parse(ExchangeRequest {
            resource: vec!["https://api.test".into()],
            scope: "read write read".into(),
            ..request()
        })
        .unwrap();
        assert_eq!(parsed.audience, "https://api.test");
        assert_eq!(parsed.requested_scopes.unwrap(), ["read", "write"]);
        assert_eq!(parsed.issued_token_type, ACCESS_TOKEN_TYPE);
    }

    #[test]
    fn each_bad_parameter_has_its_error() {
        assert_eq!(
            code(ExchangeRequest {
                subject_token: String::new(),
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                subject_token: "x".repeat(MAX_TOKEN_BYTES + 1),
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                subject_token_type: "urn:x".into(),
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                actor_token: String::new(),
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                actor_token_type: String::new(),
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                requested_token_type: "urn:x".into(),
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                audience: vec![],
                ..request()
            }),
            "invalid_request"
        );
        assert_eq!(
            code(ExchangeRequest {
                resource: vec!["https://other.test".into()],
                ..request()
            }),
            "invalid_target"
        );
        assert_eq!(
            code(ExchangeRequest {
                scope: "a  b".into(),
                ..request()
            }),
            "invalid_scope"
        );
        assert_eq!(
            code(ExchangeRequest {
                scope: "a\"b".into(),
                ..request()
            }),
            "invalid_scope"
        );
    }
}
