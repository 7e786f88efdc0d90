//! The development issuer of people's tokens. `agentctl dev` (and
//! `agentctl demo`, in its temporary directory) creates its Ed25519 key
//! under the data directory and makes exchange-svc trust it; `agentctl
//! token user` and the demo sign person tokens with that key. It exists
//! only in agentctl, only for a data directory agentctl has prepared: no
//! service can be configured to run it.

use std::path::{Path, PathBuf};

use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The `iss` of development person tokens.
pub const DEV_USER_ISSUER: &str = "http://localhost/agentsec-dev-users";
/// The `aud` exchange-svc expects on them.
pub const DEV_USER_AUDIENCE: &str = "agentsec-dev";

/// Where the issuer's key is kept in a data directory.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-user-issuer.pem")
}

/// The issuer's key, created (owner-only) on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<SigningKey> {
    load_or_create_key(&key_file(data_dir))
}

/// The Ed25519 key in the PKCS#8 PEM file `path`, generated there
/// (owner-only) when the file does not exist yet.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return SigningKey::from_pkcs8_pem(SigningAlgorithm::EdDsa, &pem)
            .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()));
    }
    let key = SigningKey::generate(SigningAlgorithm::EdDsa)
        .map_err(|err| anyhow::anyhow!("generating {}: {err}", path.display()))?;
    let body = STANDARD.encode(key.pkcs8_der());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    crate::stack::write_private(path, &pem)?;
    Ok(key)
}

/// The issuer's key, which `agentctl dev` must have created.
pub fn load(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = key_file(data_dir);
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no development user issuer in {} (run `agentctl dev` there first)",
            data_dir.display()
        )
    })?;
    SigningKey::from_pkcs8_pem(SigningAlgorithm::EdDsa, &pem)
        .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))
}

/// What a development person token says.
#[derive(Debug, Clone)]
pub struct PersonClaims<'a> {
    /// The person (`sub`).
    pub sub: &'a str,
    /// The person's tenant (`tenant` claim).
    pub tenant: &'a str,
    /// The scopes the token carries; none = no `scope` claim.
    pub scopes: &'a [String],
    /// An agent id allowed to act for the person without a grant
    /// (RFC 8693 `may_act`).
    pub may_act: Option<&'a str>,
    /// Lifetime in seconds.
    pub lifetime_secs: i64,
}

/// A person token signed with the development issuer's `key`.
pub fn person_token(key: &SigningKey, claims: &PersonClaims<'_>) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs() as i64;
    let mut body = serde_json::json!({
        "iss": DEV_USER_ISSUER,
        "sub": claims.sub,
        "aud": DEV_USER_AUDIENCE,
        "tenant": claims.tenant,
        "iat": now,
        "nbf": now,
        "exp": now + claims.lifetime_secs,
    });
    if !claims.scopes.is_empty() {
        body["scope"] = claims.scopes.join(" ").into();
    }
    if let Some(agent) = claims.may_act {
        body["may_act"] = serde_json::json!({ "sub": agent });
    }
    key.sign("JWT", &body)
        .map_err(|err| anyhow::anyhow!("signing: {err}"))
}
