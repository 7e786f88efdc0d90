//! Field checks shared by the registry and credential RPCs. Each error names
//! the field path as the caller wrote it (`agent.attributes["tier"]`).

use crate::error::IdentityError;

pub const MAX_NAME: usize = 256;
pub const MAX_DESCRIPTION: usize = 2048;
pub const MAX_REASON: usize = 1024;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_ATTRIBUTE_VALUE: usize = 256;
pub const MAX_AUDIENCES: usize = 64;
pub const MAX_SCOPES: usize = 128;
pub const MAX_SCOPE: usize = 128;
pub const MAX_CREDENTIAL_DESCRIPTION: usize = 256;

pub fn required(field: &str, value: &str, max: usize) -> Result<(), IdentityError> {
    if value.is_empty() {
        return Err(IdentityError::invalid(field, "is required"));
    }
    at_most(field, value, max)
}

pub fn at_most(field: &str, value: &str, max: usize) -> Result<(), IdentityError> {
    if value.chars().count() > max {
        return Err(IdentityError::invalid(
            field,
            format!("must be at most {max} chars"),
        ));
    }
    Ok(())
}

/// `[a-z0-9][a-z0-9_-]{0,63}` (common.proto).
pub fn tenant(field: &str, value: &str) -> Result<(), IdentityError> {
    let bytes = value.as_bytes();
    let valid = (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
    if !valid {
        return Err(IdentityError::invalid(
            field,
            "must match [a-z0-9][a-z0-9_-]{0,63}",
        ));
    }
    Ok(())
}

/// `[a-z][a-z0-9_]{0,63}` (common.proto).
pub fn attribute_key(field: &str, key: &str) -> Result<(), IdentityError> {
    let bytes = key.as_bytes();
    let valid = (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if !valid {
        return Err(IdentityError::invalid(
            format!("{field}[\"{}\"]", printable(key)),
            "attribute keys must match [a-z][a-z0-9_]{0,63}",
        ));
    }
    Ok(())
}

/// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
pub fn scope_token(field: &str, scope: &str) -> Result<(), IdentityError> {
    let valid = (1..=MAX_SCOPE).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if !valid {
        return Err(IdentityError::invalid(
            field,
            format!("must be an RFC 6749 scope token of 1-{MAX_SCOPE} chars"),
        ));
    }
    Ok(())
}

/// A value shortened and stripped of control characters, for error messages
/// about non-secret input.
pub fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_and_keys_follow_the_common_grammar() {
        assert!(tenant("t", "acme-1_x").is_ok());
        assert!(tenant("t", "-acme").is_err());
        assert!(tenant("t", "Acme").is_err());
        assert!(tenant("t", &"a".repeat(65)).is_err());
        assert!(attribute_key("a", "trust_tier").is_ok());
        let err = attribute_key("agent.attributes", "9x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.attributes[\"9x\"]"), "{err}");
        assert!(scope_token("s", "repo:read").is_ok());
        assert!(scope_token("s", "a b").is_err());
        assert!(scope_token("s", "").is_err());
    }
}
