//! The workload issuer the demo plays (a Kubernetes cluster, a CI system):
//! it signs the token triage-bot's workload presents to identity-svc's
//! jwt-bearer grant. Its Ed25519 key lives in the data directory
//! (`dev-workload-issuer.pem`), so a stack started elsewhere can be told to
//! trust it (`agentctl demo --print-trust-config`); `agentctl dev` trusts
//! it on its own.

use std::path::Path;

use agentsec_common::keys::SigningKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

/// The `iss` of the workload tokens.
pub const WORKLOAD_ISSUER: &str = "https://workloads.payments.example";
/// The audience the workload tokens for identity-svc carry.
pub const WORKLOAD_AUDIENCE: &str = "agentsec-identity";
/// How long a workload token is valid.
const WORKLOAD_TOKEN_SECS: i64 = 120;

/// Where the issuer's key is kept in a data directory.
pub fn key_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("dev-workload-issuer.pem")
}

/// The workload issuer, its key read from (or created in) `data_dir`.
pub struct WorkloadIssuer {
    key: SigningKey,
}

impl WorkloadIssuer {
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            key: crate::dev_users::load_or_create_key(&key_file(data_dir))?,
        })
    }

    /// Its key set, as identity-svc's `trusted_issuers[].jwks` holds it.
    pub fn jwks(&self) -> String {
        json!({ "keys": [self.key.public_jwk()] }).to_string()
    }

    /// identity-svc's `[[trusted_issuers]]` entry for it.
    pub fn trusted(&self) -> agentsec_identity::TrustedIssuerConfig {
        agentsec_identity::TrustedIssuerConfig {
            issuer: WORKLOAD_ISSUER.to_owned(),
            jwks: Some(self.jwks()),
            jwks_uri: None,
            algorithms: vec!["EdDSA".to_owned()],
            jwks_cache_secs: agentsec_common::issuer_config::default_jwks_cache_secs(),
        }
    }

    /// A token for identity-svc of the workload `subject`, valid 2 minutes.
    pub fn token(&self, subject: &str, now: i64) -> anyhow::Result<String> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|err| anyhow::anyhow!("random source: {err}"))?;
        self.key
            .sign(
                "JWT",
                &json!({
                    "iss": WORKLOAD_ISSUER,
                    "sub": subject,
                    "aud": WORKLOAD_AUDIENCE,
                    "iat": now,
                    "nbf": now,
                    "exp": now + WORKLOAD_TOKEN_SECS,
                    "jti": URL_SAFE_NO_PAD.encode(jti),
                }),
            )
            .map_err(|err| anyhow::anyhow!("signing the workload token: {err}"))
    }
}
