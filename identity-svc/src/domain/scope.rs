//! Scopes and audiences of a token request against the agent's ceiling.

use super::validate::printable;
use crate::error::IdentityError;

/// The largest `scope` parameter accepted (proto: 2,048 chars).
pub const MAX_SCOPE_PARAM: usize = 2048;
pub const MAX_AUDIENCE: usize = 256;

/// The scopes to grant: all of the ceiling when none are asked for, else
/// exactly those asked for, each of which must be in the ceiling. The
/// result keeps the request's order without duplicates.
pub fn grant(requested: &str, ceiling: &[String]) -> Result<Vec<String>, IdentityError> {
    if requested.len() > MAX_SCOPE_PARAM {
        return Err(IdentityError::TokenRequest {
            field: "scope",
            description: format!("scope is longer than {MAX_SCOPE_PARAM} chars"),
        });
    }
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !ceiling.iter().any(|allowed| allowed == scope) {
            return Err(IdentityError::ScopeNotAllowed {
                scope: printable(scope),
            });
        }
        if !granted.iter().any(|s| s == scope) {
            granted.push(scope.to_owned());
        }
    }
    if granted.is_empty() && requested.trim().is_empty() {
        granted = ceiling.to_vec();
    }
    Ok(granted)
}

/// The one audience of the token, from `audience` and/or `resource`
/// (RFC 8707), which must be in the ceiling.
pub fn audience(
    audience: &str,
    resource: &str,
    ceiling: &[String],
) -> Result<String, IdentityError> {
    for (name, value) in [("audience", audience), ("resource", resource)] {
        if value.len() > MAX_AUDIENCE {
            return Err(IdentityError::TokenRequest {
                field: name,
                description: format!("{name} is longer than {MAX_AUDIENCE} chars"),
            });
        }
    }
    let chosen = match (audience.is_empty(), resource.is_empty()) {
        (false, false) if audience != resource => {
            return Err(IdentityError::TokenRequest {
                field: "audience",
                description:
                    "audience and resource name different targets; a token has one audience"
                        .to_owned(),
            })
        }
        (false, _) => audience.to_owned(),
        (true, false) => resource.to_owned(),
        (true, true) => match ceiling {
            [only] => only.clone(),
            _ => {
                return Err(IdentityError::TokenRequest {
                    field: "audience",
                    description: "audience (or resource) is required: the agent may obtain \
                                  tokens for several audiences"
                        .to_owned(),
                })
            }
        },
    };
    if !ceiling.contains(&chosen) {
        return Err(IdentityError::AudienceNotAllowed {
            audience: printable(&chosen),
        });
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scopes_only_shrink() {
        let ceiling = list(&["a", "b", "c"]);
        assert_eq!(grant("", &ceiling).unwrap(), ceiling);
        assert_eq!(grant("b a b", &ceiling).unwrap(), list(&["b", "a"]));
        assert!(matches!(
            grant("a d", &ceiling).unwrap_err(),
            IdentityError::ScopeNotAllowed { scope } if scope == "d"
        ));
    }

    #[test]
    fn one_audience_from_the_ceiling() {
        let ceiling = list(&["x", "y"]);
        assert_eq!(audience("x", "", &ceiling).unwrap(), "x");
        assert_eq!(audience("", "y", &ceiling).unwrap(), "y");
        assert_eq!(audience("x", "x", &ceiling).unwrap(), "x");
        assert!(matches!(
            audience("x", "y", &ceiling).unwrap_err(),
            IdentityError::TokenRequest { .. }
        ));
        assert!(matches!(
            audience("", "", &ceiling).unwrap_err(),
            IdentityError::TokenRequest { .. }
        ));
        assert_eq!(audience("", "", &list(&["x"])).unwrap(), "x");
        assert!(matches!(
            audience("z", "", &ceiling).unwrap_err(),
            IdentityError::AudienceNotAllowed { audience } if audience == "z"
        ));
    }
}
