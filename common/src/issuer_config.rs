//! What every "trusted issuer" entry of a service's config shares
//! (identity-svc `[[trusted_issuers]]`, exchange-svc `[[user_issuers]]`):
//! the issuer URL, its key set inline or at a URL, the algorithms allowed,
//! and how long a fetched key set is kept. Errors name the entry's key.

use crate::config::{check_http_url, ConfigError};
use crate::remote_jwks::{parse_inline, SUPPORTED_ALGORITHMS};

pub const MAX_ISSUER_CHARS: usize = 512;
pub const MIN_JWKS_CACHE_SECS: u64 = 10;
pub const MAX_JWKS_CACHE_SECS: u64 = 24 * 3600;

/// The algorithms an entry accepts when it names none.
pub fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(str::to_owned).to_vec()
}

/// How long a fetched key set is kept when the entry does not say.
pub fn default_jwks_cache_secs() -> u64 {
    300
}

/// The shared fields of one entry, borrowed from the service's own type.
pub struct IssuerEntry<'a> {
    pub issuer: &'a str,
    pub jwks: Option<&'a str>,
    pub jwks_uri: Option<&'a str>,
    pub algorithms: &'a [String],
    pub jwks_cache_secs: u64,
}

/// An https URL, or http on 127.0.0.1/localhost (this machine, where
/// nobody can tamper with the traffic); never with credentials in it.
pub fn check_secure_url(key: &str, value: &str) -> Result<(), ConfigError> {
    let url = check_http_url(key, value)?;
    // The URL parser lowercases host names.
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1"));
    if url.scheme() == "http" && !loopback {
        return Err(ConfigError::invalid(
            key,
            "must be an https URL (http is accepted only for 127.0.0.1 and localhost)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(key, "must not carry credentials"));
    }
    Ok(())
}

/// Checks entry `index` of `section` (issuers earlier in `entries` must
/// not repeat its issuer).
pub fn check_issuer_entry(
    section: &str,
    entries: &[IssuerEntry<'_>],
    index: usize,
) -> Result<(), ConfigError> {
    let entry = &entries[index];
    let key = |field: &str| format!("{section}[{index}].{field}");
    if entry.issuer.is_empty() || entry.issuer.chars().count() > MAX_ISSUER_CHARS {
        return Err(ConfigError::invalid(
            key("issuer"),
            format!("must be 1-{MAX_ISSUER_CHARS} chars"),
        ));
    }
    check_secure_url(&key("issuer"), entry.issuer)?;
    if let Some(first) = entries[..index]
        .iter()
        .position(|other| other.issuer == entry.issuer)
    {
        return Err(ConfigError::invalid(
            key("issuer"),
            format!("is already {section}[{first}].issuer"),
        ));
    }
    match (entry.jwks, entry.jwks_uri) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ConfigError::invalid(
                key("jwks"),
                "set exactly one of `jwks` (the key set as JSON) and `jwks_uri`",
            ))
        }
        (Some(jwks), None) => {
            parse_inline(jwks).map_err(|err| ConfigError::invalid(key("jwks"), err.to_string()))?;
        }
        (None, Some(uri)) => check_secure_url(&key("jwks_uri"), uri)?,
    }
    if entry.algorithms.is_empty() {
        return Err(ConfigError::invalid(
            key("algorithms"),
            "must name at least one algorithm",
        ));
    }
    for (position, algorithm) in entry.algorithms.iter().enumerate() {
        if !SUPPORTED_ALGORITHMS.contains(&algorithm.as_str()) {
            return Err(ConfigError::invalid(
                key("algorithms"),
                format!(
                    "`{}` is not one of {}",
                    algorithm.chars().take(32).collect::<String>(),
                    SUPPORTED_ALGORITHMS.join(", ")
                ),
            ));
        }
        if entry.algorithms[..position].contains(algorithm) {
            return Err(ConfigError::invalid(
                key("algorithms"),
                format!("names `{algorithm}` twice"),
            ));
        }
    }
    if !(MIN_JWKS_CACHE_SECS..=MAX_JWKS_CACHE_SECS).contains(&entry.jwks_cache_secs) {
        return Err(ConfigError::invalid(
            key("jwks_cache_secs"),
            format!("must be between {MIN_JWKS_CACHE_SECS} and {MAX_JWKS_CACHE_SECS}"),
        ));
    }
    Ok(())
}
