//! The development issuer of people's tokens. `agentctl dev` creates its
//! Ed25519 key under the data directory and makes exchange-svc trust it;
//! `agentctl token user` signs person tokens with that key. It exists only
//! in agentctl, only for a data directory `agentctl dev` has prepared:
//! no service can be configured to run it.

use std::path::{Path, PathBuf};

use agentsec_common::keys::{SigningAlgorithm, SigningKey};
use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The `iss` of development person tokens.
pub const DEV_USER_ISSUER: &str = "http://localhost/agentsec-dev-users";
/// The `aud` exchange-svc expects on them.
pub const DEV_USER_AUDIENCE: &str = "agentsec-dev";

fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-user-issuer.pem")
}

/// The issuer's key, created (owner-only) on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<SigningKey> {
    let path = key_file(data_dir);
    if path.exists() {
        return load(data_dir);
    }
    let key = SigningKey::generate(SigningAlgorithm::EdDsa)
        .map_err(|err| anyhow::anyhow!("generating the dev user key: {err}"))?;
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
    crate::dev::write_private(&path, &pem)?;
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
