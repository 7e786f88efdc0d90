//! Secrets never leave the process: how configuration is shown (`Debug`,
//! `--check-config`) with every secret replaced by [`REDACTED`], passwords
//! inside URLs included.

use std::path::Path;

/// What stands in for a secret.
pub const REDACTED: &str = "<redacted>";

/// Configuration keys whose values are secrets.
const SECRET_KEYS: [&str; 3] = ["client_secret", "pepper", "secret"];

/// `url` with its password (if any) replaced by [`REDACTED`].
pub fn url(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}{REDACTED}{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Where the password of `scheme://user:password@host...` lies.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

/// An optional secret for `Debug`: `Some("<redacted>")` or `None`.
pub fn optional(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

/// `config` (a service's whole configuration as JSON) with every secret
/// replaced by a note saying where it came from: the environment variable
/// that set it, or else `file`.
pub fn config_for_display(
    mut config: serde_json::Value,
    file: Option<&Path>,
    env_has: &dyn Fn(&str) -> bool,
) -> serde_json::Value {
    redact_value(&mut config, &mut Vec::new(), file, env_has);
    config
}

fn source(path: &[String], file: Option<&Path>, env_has: &dyn Fn(&str) -> bool) -> String {
    let variable = format!("AGENTSEC_{}", path.join("__").to_ascii_uppercase());
    if env_has(&variable) {
        format!("from the environment ({variable})")
    } else {
        match file {
            Some(file) => format!("from {}", file.display()),
            None => "set in code".to_owned(),
        }
    }
}

fn redact_value(
    value: &mut serde_json::Value,
    path: &mut Vec<String>,
    file: Option<&Path>,
    env_has: &dyn Fn(&str) -> bool,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                let secret = SECRET_KEYS.contains(&key.as_str());
                match child {
                    serde_json::Value::String(text) if secret && !text.is_empty() => {
                        *text = format!("{REDACTED} ({})", source(path, file, env_has));
                    }
                    serde_json::Value::String(text) if password_span(text).is_some() => {
                        *text = format!("{} (password {})", url(text), source(path, file, env_has));
                    }
                    other => redact_value(other, path, file, env_has),
                }
                path.pop();
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                redact_value(item, path, file, env_has);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted_and_nothing_else() {
        assert_eq!(
            url("postgres://agentsec:s3cr%40t@db:5432/agentsec?sslmode=require"),
            "postgres://agentsec:<redacted>@db:5432/agentsec?sslmode=require"
        );
        assert_eq!(
            url("redis://:hunter2@cache:6379/0"),
            "redis://:<redacted>@cache:6379/0"
        );
        for plain in [
            "postgres://postgres@127.0.0.1:5432/test",
            "sqlite://.agentsec/identity.db?mode=rwc",
            "http://127.0.0.1:7401/a:b@c",
        ] {
            assert_eq!(url(plain), plain);
        }
    }

    #[test]
    fn check_config_shows_where_each_secret_came_from() {
        let config = json!({
            "database": {"url": "postgres://agentsec:pw@db/agentsec"},
            "credentials": {"pepper": "pepper-value-0123456789", "pepper_file": null},
            "identity": {"client_id": "exchange_svc", "client_secret": "from-file-secret"},
            "service_clients": {"policy_svc": {"client_secret": "env-secret", "scopes": ["a"]}},
            "bootstrap_admin": {"client_secret": null},
            "admin": {"audience": "agentsec"},
        });
        let env = |name: &str| {
            [
                "AGENTSEC_CREDENTIALS__PEPPER",
                "AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__CLIENT_SECRET",
            ]
            .contains(&name)
        };
        let shown = config_for_display(config, Some(Path::new("/etc/agentsec/x.toml")), &env);
        let text = shown.to_string();
        for secret in ["pw@", "pepper-value", "from-file-secret", "env-secret"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            shown["credentials"]["pepper"],
            "<redacted> (from the environment (AGENTSEC_CREDENTIALS__PEPPER))"
        );
        assert_eq!(
            shown["identity"]["client_secret"],
            "<redacted> (from /etc/agentsec/x.toml)"
        );
        assert_eq!(
            shown["service_clients"]["policy_svc"]["client_secret"],
            "<redacted> (from the environment (AGENTSEC_SERVICE_CLIENTS__POLICY_SVC__CLIENT_SECRET))"
        );
        assert_eq!(
            shown["database"]["url"],
            "postgres://agentsec:<redacted>@db/agentsec (password from /etc/agentsec/x.toml)"
        );
        assert_eq!(
            shown["bootstrap_admin"]["client_secret"],
            serde_json::Value::Null
        );
        assert_eq!(shown["identity"]["client_id"], "exchange_svc");
        assert_eq!(shown["admin"]["audience"], "agentsec");
    }
}
