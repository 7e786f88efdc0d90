//! `agentctl token decode`: a token's header and claims, its signature
//! verified against its issuer's JWKS (`<iss>/.well-known/jwks.json`, a
//! given URL or file, or for the development person issuer its key in the
//! data directory), and its RFC 8693 `act` chain drawn as the delegation
//! it records.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::jwt::{
    self, AudienceRule, Clock, Rules, TokenType, TrustedIssuer, TrustedIssuers, Unverified,
};
use agentsec_common::remote_jwks::RemoteJwks;
use agentsec_common::tls::ClientTls;
use anyhow::Context as _;
use serde_json::{json, Map, Value};

use super::token_argument;
use crate::dev_users;
use crate::output::{now, time, Column, Format};

/// The algorithms AgentSec services and the issuers they trust sign with.
const ALGORITHMS: [&str; 4] = ["EdDSA", "ES256", "RS256", "PS256"];

#[derive(Debug, clap::Args)]
pub struct Decode {
    /// The token (`-` reads stdin).
    #[arg(long)]
    token: String,
    /// The issuer the token must be from (default: whichever it names).
    #[arg(long)]
    issuer: Option<String>,
    /// Where the issuer's JWKS is (default: `<iss>/.well-known/jwks.json`).
    #[arg(long, conflicts_with = "jwks_file")]
    jwks_uri: Option<String>,
    /// A file holding the issuer's JWKS.
    #[arg(long)]
    jwks_file: Option<PathBuf>,
    /// The data directory of `agentctl dev`, for tokens of its development
    /// person issuer.
    #[arg(long, default_value = ".agentsec")]
    data_dir: PathBuf,
    /// Show the claims without verifying the signature.
    #[arg(long, conflicts_with_all = ["jwks_uri", "jwks_file", "issuer"])]
    no_verify: bool,
}

const DECODED: [Column; 14] = [
    Column::drawn("SIGNATURE", |decoded| {
        match decoded["verified_with"].as_str() {
            Some(source) => format!("verified with {source}"),
            None => "NOT VERIFIED (--no-verify)".to_owned(),
        }
    }),
    Column::new("VALIDITY", "validity"),
    Column::drawn("ISSUER", |decoded| claim(decoded, "iss")),
    Column::drawn("SUBJECT", |decoded| claim(decoded, "sub")),
    Column::drawn("AUDIENCE", |decoded| claim(decoded, "aud")),
    Column::drawn("SCOPE", |decoded| claim(decoded, "scope")),
    Column::drawn("TENANT", |decoded| claim(decoded, "tenant")),
    Column::drawn("CLIENT", |decoded| claim(decoded, "client_id")),
    Column::drawn("GRANT", |decoded| claim(decoded, "grant_id")),
    Column::drawn("ISSUED", |decoded| claim_time(decoded, "iat")),
    Column::drawn("NOT BEFORE", |decoded| claim_time(decoded, "nbf")),
    Column::drawn("EXPIRES", |decoded| claim_time(decoded, "exp")),
    Column::drawn("JTI", |decoded| claim(decoded, "jti")),
    Column::drawn("KEY", |decoded| {
        let header = &decoded["header"];
        format!(
            "{} kid {}",
            header["alg"].as_str().unwrap_or("-"),
            header["kid"].as_str().unwrap_or("-")
        )
    }),
];

fn claim(decoded: &Value, name: &str) -> String {
    crate::output::cell(&decoded["claims"][name])
}

fn claim_time(decoded: &Value, name: &str) -> String {
    decoded["claims"][name]
        .as_i64()
        .map(|seconds| time(Some(&prost_types::Timestamp { seconds, nanos: 0 })))
        .map_or("-".to_owned(), |time| crate::output::cell(&time))
}

/// The agents of an `act` claim, outermost (acting now) first.
fn act_chain(claims: &Map<String, Value>) -> Vec<String> {
    let mut chain = Vec::new();
    let mut act = claims.get("act");
    while let Some(level) = act.and_then(Value::as_object) {
        chain.push(
            level
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
        );
        act = level.get("act");
    }
    chain
}

/// The delegation an `act` chain records, from the subject down to the
/// agent acting now.
fn draw_chain(subject: &str, chain: &[String]) -> String {
    let mut drawing = format!("{subject}  (sub)\n");
    for (depth, agent) in chain.iter().rev().enumerate() {
        let role = if depth + 1 == chain.len() {
            "  (acting)"
        } else {
            ""
        };
        drawing.push_str(&format!("{}└─ {agent}{role}\n", "   ".repeat(depth)));
    }
    drawing
}

/// Whether the token's times hold now.
fn validity(claims: &Map<String, Value>, now: i64) -> &'static str {
    let at = |name: &str| claims.get(name).and_then(Value::as_i64);
    match (at("exp"), at("nbf")) {
        (Some(exp), _) if exp <= now => "expired",
        (_, Some(nbf)) if nbf > now => "not yet valid",
        (None, _) => "no expiry (exp)",
        _ => "valid",
    }
}

impl Decode {
    /// The key set the token is verified with, and how to name it.
    fn keys(&self, iss: &str, tls: &Arc<ClientTls>) -> anyhow::Result<(RemoteJwks, String)> {
        if let Some(path) = &self.jwks_file {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let keys = RemoteJwks::inline(&json)
                .map_err(|err| anyhow::anyhow!("{}: {err}", path.display()))?;
            return Ok((keys, path.display().to_string()));
        }
        if iss == dev_users::DEV_USER_ISSUER && self.jwks_uri.is_none() {
            let key = dev_users::load(&self.data_dir)?;
            let json = json!({"keys": [key.public_jwk()]}).to_string();
            let keys = RemoteJwks::inline(&json)
                .map_err(|err| anyhow::anyhow!("the development issuer's key: {err}"))?;
            let source = format!(
                "the development issuer's key in {}",
                self.data_dir.display()
            );
            return Ok((keys, source));
        }
        let uri = self
            .jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/jwks.json", iss.trim_end_matches('/')));
        let keys = RemoteJwks::remote(&uri, Duration::from_secs(60), tls)
            .map_err(|err| anyhow::anyhow!("JWKS URL `{uri}`: {err}"))?;
        Ok((keys, uri))
    }

    pub async fn run(self, tls: &Arc<ClientTls>, format: Format) -> anyhow::Result<String> {
        let token = token_argument(self.token.clone(), "--token")?;
        let unverified = Unverified::parse(&token).map_err(|err| {
            anyhow::anyhow!("{} (is it the whole token?)", err.about("the token"))
        })?;
        let header = unverified.header().clone();
        let (claims, verified_with) = if self.no_verify {
            (unverified.unverified_claims().clone(), None)
        } else {
            let iss = unverified
                .issuer()
                .map_err(|err| anyhow::anyhow!("{}", err.about("the token")))?
                .to_owned();
            if let Some(expected) = &self.issuer {
                anyhow::ensure!(
                    *expected == iss,
                    "the token is from `{iss}`, not from --issuer `{expected}`"
                );
            }
            let (keys, source) = self.keys(&iss, tls)?;
            let algorithms = jwt::algorithms(&ALGORITHMS.map(str::to_owned))
                .map_err(|err| anyhow::anyhow!("{err}"))?;
            let issuers = TrustedIssuers::new(vec![TrustedIssuer {
                rules: Rules {
                    issuer: iss,
                    algorithms,
                    token_type: TokenType::Any,
                    audience: AudienceRule::Any,
                    subject: None,
                    leeway_secs: 0,
                },
                keys,
            }]);
            // The times are shown, not enforced: an expired token still
            // decodes, marked as such.
            let verified = issuers
                .verify(&token, Clock::Ignored)
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "{} (checked with {source}; --no-verify shows the claims anyway)",
                        err.about("the token")
                    )
                })?;
            (verified.claims, Some(source))
        };
        let chain = act_chain(&claims);
        let decoded = json!({
            "verified_with": verified_with,
            "validity": validity(&claims, now()?),
            "header": header,
            "claims": claims,
            "act_chain": chain,
        });
        let mut printed = format.one(&decoded, &DECODED);
        if format == Format::Table && !chain.is_empty() {
            let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("?");
            printed.push_str("\nDelegation (act):\n");
            printed.push_str(&draw_chain(subject, &chain));
        }
        Ok(printed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_act_claim_is_drawn_from_the_person_to_the_acting_agent() {
        let claims = json!({
            "sub": "alice",
            "act": {"sub": "summarizer", "act": {"sub": "triage"}},
        });
        let chain = act_chain(claims.as_object().unwrap());
        assert_eq!(chain, ["summarizer", "triage"]);
        assert_eq!(
            draw_chain("alice", &chain),
            "alice  (sub)\n└─ triage\n   └─ summarizer  (acting)\n"
        );
    }

    #[test]
    fn validity_reads_the_time_claims() {
        let claims = |value: Value| value.as_object().unwrap().clone();
        assert_eq!(validity(&claims(json!({"exp": 100})), 100), "expired");
        assert_eq!(
            validity(&claims(json!({"exp": 200, "nbf": 150})), 100),
            "not yet valid"
        );
        assert_eq!(validity(&claims(json!({"exp": 200})), 100), "valid");
    }
}
