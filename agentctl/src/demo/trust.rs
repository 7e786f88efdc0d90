//! What a stack started elsewhere must trust for `agentctl demo --running`:
//! the development person-token issuer (alice's token, at exchange-svc)
//! and the demo's workload issuer (triage-bot's workload identity, at
//! identity-svc). Both keys live in the data directory; `agentctl demo
//! --print-trust-config` prints the services' settings for them as
//! environment variables, in the form a shell, a compose `.env` file or a
//! Kubernetes Secret can carry.

use std::path::Path;

use agentsec_common::keys::SigningKey;
use serde_json::Value;

use super::workload::WorkloadIssuer;
use crate::dev_users;

/// exchange-svc's `[[user_issuers]]` entry for the development person-token
/// issuer whose key is `key`.
pub fn user_issuer(key: &SigningKey) -> agentsec_exchange::UserIssuerConfig {
    agentsec_exchange::UserIssuerConfig {
        issuer: dev_users::DEV_USER_ISSUER.to_owned(),
        jwks: Some(serde_json::json!({ "keys": [key.public_jwk()] }).to_string()),
        jwks_uri: None,
        audience: dev_users::DEV_USER_AUDIENCE.to_owned(),
        algorithms: vec!["EdDSA".to_owned()],
        jwks_cache_secs: agentsec_common::issuer_config::default_jwks_cache_secs(),
    }
}

/// The keys of the two issuers in `data_dir`, which must be there already:
/// a key made now would be one the running stack does not trust.
pub fn existing_keys(data_dir: &Path) -> anyhow::Result<(SigningKey, WorkloadIssuer)> {
    for path in [
        dev_users::key_file(data_dir),
        super::workload::key_file(data_dir),
    ] {
        anyhow::ensure!(
            path.exists(),
            "{} does not exist: `agentctl demo --print-trust-config --data-dir {}` creates the \
             demo's issuer keys and prints what the running stack must trust",
            path.display(),
            data_dir.display()
        );
    }
    Ok((
        dev_users::load_or_create(data_dir)?,
        WorkloadIssuer::load_or_create(data_dir)?,
    ))
}

/// The environment variables that make identity-svc trust the workload
/// issuer and exchange-svc the person-token issuer of `data_dir` (keys
/// created there if missing), with a comment line before each.
pub fn environment(data_dir: &Path) -> anyhow::Result<String> {
    let workload = WorkloadIssuer::load_or_create(data_dir)?;
    let people = dev_users::load_or_create(data_dir)?;
    let trusted = serde_json::to_value(vec![workload.trusted()])?;
    let users = serde_json::to_value(vec![user_issuer(&people)])?;
    Ok(format!(
        "# identity-svc: the demo's workload issuer ({}, key {}/dev-workload-issuer.pem)\n\
         AGENTSEC_TRUSTED_ISSUERS='{}'\n\
         # exchange-svc: the development person-token issuer ({}, key {}/dev-user-issuer.pem)\n\
         AGENTSEC_USER_ISSUERS='{}'\n",
        super::workload::WORKLOAD_ISSUER,
        data_dir.display(),
        env_value(&trusted),
        dev_users::DEV_USER_ISSUER,
        data_dir.display(),
        env_value(&users),
    ))
}

/// The same settings as JSON, by service and configuration key:
/// `{"identity-svc": {"trusted_issuers": [...]}, "exchange-svc":
/// {"user_issuers": [...]}}` (for a Helm values file, say).
pub fn json(data_dir: &Path) -> anyhow::Result<Value> {
    let workload = WorkloadIssuer::load_or_create(data_dir)?;
    let people = dev_users::load_or_create(data_dir)?;
    Ok(serde_json::json!({
        "identity-svc": { "trusted_issuers": [workload.trusted()] },
        "exchange-svc": { "user_issuers": [user_issuer(&people)] },
    }))
}

/// `value` in the syntax the services parse `AGENTSEC_*` values with
/// (figment's: `[..]` arrays, `{key=value}` tables, double-quoted strings
/// with `\"` and `\\` escapes).
fn env_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")),
        Value::Array(values) => {
            let values: Vec<String> = values.iter().map(env_value).collect();
            format!("[{}]", values.join(", "))
        }
        Value::Object(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .filter(|(_, value)| !value.is_null())
                .map(|(key, value)| format!("{key}={}", env_value(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `KEY='value'` lines of `text`.
    fn variables(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.trim_matches('\'').to_owned()))
            .collect()
    }

    #[test]
    fn the_printed_settings_are_what_the_services_load_from_their_environment() {
        let dir = tempfile::tempdir().unwrap();
        let printed = environment(dir.path()).unwrap();
        let env = variables(&printed);
        assert_eq!(env.len(), 2, "{printed}");

        let only = |name: &str| -> Vec<(String, String)> {
            env.iter().filter(|(key, _)| key == name).cloned().collect()
        };
        let identity: agentsec_identity::Config =
            agentsec_common::config::load_from(None, only("AGENTSEC_TRUSTED_ISSUERS")).unwrap();
        let workload = WorkloadIssuer::load_or_create(dir.path()).unwrap();
        assert_eq!(
            serde_json::to_value(&identity.trusted_issuers).unwrap(),
            serde_json::to_value(vec![workload.trusted()]).unwrap()
        );
        let exchange: agentsec_exchange::Config =
            agentsec_common::config::load_from(None, only("AGENTSEC_USER_ISSUERS")).unwrap();
        let people = dev_users::load(dir.path()).unwrap();
        assert_eq!(
            serde_json::to_value(&exchange.user_issuers).unwrap(),
            serde_json::to_value(vec![user_issuer(&people)]).unwrap()
        );

        // The keys are kept: printing again names the same ones.
        assert_eq!(environment(dir.path()).unwrap(), printed);
        // The JSON form holds the same entries.
        let json = json(dir.path()).unwrap();
        assert_eq!(
            json["identity-svc"]["trusted_issuers"],
            serde_json::to_value(vec![workload.trusted()]).unwrap()
        );
        assert_eq!(
            json["exchange-svc"]["user_issuers"],
            serde_json::to_value(vec![user_issuer(&people)]).unwrap()
        );
    }

    #[test]
    fn quotes_and_backslashes_in_strings_are_escaped() {
        let value = serde_json::json!({"a": "say \"hi\" \\ bye", "n": null});
        assert_eq!(env_value(&value), r#"{a="say \"hi\" \\ bye"}"#);
    }
}
