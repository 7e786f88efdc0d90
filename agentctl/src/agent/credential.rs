//! `agentctl agent credential ...`: an agent's client secrets, public keys
//! (private_key_jwt) and federated credentials (jwt-bearer).

use std::path::PathBuf;

use agentsec_proto::common::v1::Jwk;
use agentsec_proto::identity::v1::credential::Details;
use agentsec_proto::identity::v1::federated_credential_info::SubjectMatch;
use agentsec_proto::identity::v1::{
    AddFederatedCredentialRequest, AddPublicKeyRequest, CreateClientSecretRequest, Credential,
    CredentialType, DeleteCredentialRequest, FederatedCredentialInfo, ListCredentialsRequest,
};
use anyhow::Context as _;
use serde_json::{json, Value};

use super::Admin;
use crate::admin::{bearer, failed};
use crate::output::{time, Column, Format};
use crate::page::{LimitArgs, Pager};

#[derive(Debug, clap::Subcommand)]
#[command(after_help = "Examples:
  agentctl agent credential add-secret --agent-id agt_... --expires-in 2592000
  agentctl agent credential add-key --agent-id agt_... --jwk-file key.pub.jwk
  agentctl agent credential add-federated --agent-id agt_... \\
    --issuer https://kubernetes.default.svc \\
    --subject-pattern 'system:serviceaccount:agents:*' --audience agentsec
  agentctl agent credential list --agent-id agt_...
  agentctl agent credential delete --agent-id agt_... --credential-id cred_...")]
pub enum CredentialCommand {
    /// Create a client secret; the secret is printed only this once.
    AddSecret(AddSecret),
    /// Register a public JWK the agent signs client assertions with
    /// (private_key_jwt, RFC 7523).
    AddKey {
        #[arg(long)]
        agent_id: String,
        /// A file holding the PUBLIC JWK as JSON (with `alg`; a private
        /// key is refused before anything is sent).
        #[arg(long)]
        jwk_file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Let tokens of a trusted external issuer (Kubernetes, SPIFFE, CI)
    /// become the agent's token (jwt-bearer grant).
    AddFederated {
        #[arg(long)]
        agent_id: String,
        /// The external issuer (`iss`), as identity-svc trusts it.
        #[arg(long)]
        issuer: String,
        /// The exact `sub` of the external tokens.
        #[arg(long, required_unless_present = "subject_pattern")]
        subject: Option<String>,
        /// A glob over `sub` (`*` matches any run of characters).
        #[arg(long, conflicts_with = "subject")]
        subject_pattern: Option<String>,
        /// The audience the external tokens carry.
        #[arg(long)]
        audience: String,
        #[command(flatten)]
        common: Common,
    },
    /// List an agent's credentials (never secret values).
    List {
        #[arg(long)]
        agent_id: String,
        /// Only this kind.
        #[arg(long = "type", value_enum)]
        kind: Option<Kind>,
        #[command(flatten)]
        limit: LimitArgs,
    },
    /// Delete a credential; tokens obtained with it stop working at once.
    Delete {
        #[arg(long)]
        agent_id: String,
        #[arg(long)]
        credential_id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddSecret {
    #[arg(long)]
    agent_id: String,
    #[command(flatten)]
    common: Common,
}

/// What every new credential may have.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Free text shown in listings.
    #[arg(long, default_value = "")]
    description: String,
    /// Seconds until the credential is refused (default: never).
    #[arg(long)]
    expires_in: Option<i64>,
}

impl Common {
    fn expire_time(&self) -> anyhow::Result<Option<prost_types::Timestamp>> {
        self.expires_in
            .map(|seconds| {
                anyhow::ensure!(
                    seconds > 0,
                    "--expires-in must be a positive number of seconds"
                );
                Ok(prost_types::Timestamp {
                    seconds: crate::output::now()? + seconds,
                    nanos: 0,
                })
            })
            .transpose()
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    ClientSecret,
    PublicKey,
    Federated,
}

impl From<Kind> for CredentialType {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::ClientSecret => Self::ClientSecret,
            Kind::PublicKey => Self::PublicKey,
            Kind::Federated => Self::Federated,
        }
    }
}

const CREDENTIAL: [Column; 6] = [
    Column::new("ID", "id"),
    Column::enumeration("TYPE", "type", "CREDENTIAL_TYPE_"),
    Column::drawn("DETAILS", details),
    Column::new("DESCRIPTION", "description"),
    Column::new("CREATED", "create_time"),
    Column::new("EXPIRES", "expire_time"),
];

/// What tells one credential from another, in a few words.
fn details(credential: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    if let Some(secret) = credential.get("client_secret") {
        format!("prefix {}", text(&secret["prefix"]))
    } else if let Some(key) = credential.get("public_key") {
        format!(
            "kid {} ({})",
            text(&key["jwk"]["kid"]),
            text(&key["jwk"]["alg"])
        )
    } else if let Some(federated) = credential.get("federated") {
        let subject = federated
            .get("subject")
            .or_else(|| federated.get("subject_pattern"))
            .map(text)
            .unwrap_or_default();
        format!(
            "{} sub {subject} aud {}",
            text(&federated["issuer"]),
            text(&federated["audience"])
        )
    } else {
        "-".to_owned()
    }
}

fn jwk_json(jwk: &Jwk) -> Value {
    let mut members = serde_json::Map::new();
    for (name, value) in [
        ("kty", &jwk.kty),
        ("kid", &jwk.kid),
        ("use", &jwk.r#use),
        ("alg", &jwk.alg),
        ("crv", &jwk.crv),
        ("x", &jwk.x),
        ("y", &jwk.y),
        ("n", &jwk.n),
        ("e", &jwk.e),
    ] {
        if !value.is_empty() {
            members.insert(name.to_owned(), json!(value));
        }
    }
    Value::Object(members)
}

/// A credential as agentctl prints it in JSON (proto field names; the
/// details under the name of the one that is set).
fn credential_json(credential: &Credential) -> Value {
    let mut value = json!({
        "id": credential.id,
        "agent_id": credential.agent_id,
        "type": credential.r#type().as_str_name(),
        "description": credential.description,
        "create_time": time(credential.create_time.as_ref()),
        "expire_time": time(credential.expire_time.as_ref()),
    });
    let (name, details) = match &credential.details {
        Some(Details::ClientSecret(secret)) => ("client_secret", json!({"prefix": secret.prefix})),
        Some(Details::PublicKey(key)) => (
            "public_key",
            json!({
                "jwk": key.jwk.as_ref().map(jwk_json),
                "thumbprint": key.thumbprint,
            }),
        ),
        Some(Details::Federated(federated)) => {
            let mut details = json!({
                "issuer": federated.issuer,
                "audience": federated.audience,
            });
            match &federated.subject_match {
                Some(SubjectMatch::Subject(subject)) => details["subject"] = json!(subject),
                Some(SubjectMatch::SubjectPattern(pattern)) => {
                    details["subject_pattern"] = json!(pattern);
                }
                None => {}
            }
            ("federated", details)
        }
        None => return value,
    };
    value[name] = details;
    value
}

/// The public JWK in `path`; a private key is refused here, so that it
/// never leaves the machine.
fn read_public_jwk(path: &PathBuf) -> anyhow::Result<Jwk> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let members: serde_json::Map<String, Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON object (a JWK)", path.display()))?;
    // RFC 7518 §6.2.2, §6.3.2 and RFC 8037 §2: the private members.
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        anyhow::ensure!(
            !members.contains_key(private),
            "{} holds a private key (member `{private}`): give the public key only",
            path.display()
        );
    }
    let member = |name: &str| -> anyhow::Result<String> {
        match members.get(name) {
            None => Ok(String::new()),
            Some(Value::String(value)) => Ok(value.clone()),
            Some(_) => anyhow::bail!("{}: `{name}` is not a string", path.display()),
        }
    };
    Ok(Jwk {
        kty: member("kty")?,
        kid: member("kid")?,
        r#use: member("use")?,
        alg: member("alg")?,
        crv: member("crv")?,
        x: member("x")?,
        y: member("y")?,
        n: member("n")?,
        e: member("e")?,
    })
}

impl AddSecret {
    /// Creates the secret; what is printed (the secret, this once).
    pub async fn run(self, admin: &mut Admin, format: Format) -> anyhow::Result<String> {
        let request = CreateClientSecretRequest {
            agent_id: self.agent_id,
            description: self.common.description.clone(),
            ttl: self
                .common
                .expires_in
                .map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
        };
        let created = admin
            .client
            .create_client_secret(bearer(request, &admin.token)?)
            .await
            .map_err(failed)?
            .into_inner();
        let credential = created.credential.unwrap_or_default();
        let value = json!({
            "client_id": created.client_id,
            "client_secret": created.client_secret,
            "credential": credential_json(&credential),
        });
        Ok(format.one(
            &value,
            &[
                Column::new("CLIENT ID", "client_id"),
                Column::new("CLIENT SECRET", "client_secret"),
                Column::drawn("CREDENTIAL", |value| {
                    value["credential"]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                }),
                Column::drawn("EXPIRES", |value| {
                    value["credential"]["expire_time"]
                        .as_str()
                        .unwrap_or("never")
                        .to_owned()
                }),
            ],
        ))
    }
}

impl CredentialCommand {
    /// Runs the command; what it prints.
    pub async fn run(self, admin: &mut Admin, format: Format) -> anyhow::Result<String> {
        let token = admin.token.clone();
        let client = &mut admin.client;
        let credential = match self {
            Self::AddSecret(add) => return add.run(admin, format).await,
            Self::AddKey {
                agent_id,
                jwk_file,
                common,
            } => {
                let request = AddPublicKeyRequest {
                    agent_id,
                    jwk: Some(read_public_jwk(&jwk_file)?),
                    description: common.description.clone(),
                    expire_time: common.expire_time()?,
                };
                client
                    .add_public_key(bearer(request, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .credential
            }
            Self::AddFederated {
                agent_id,
                issuer,
                subject,
                subject_pattern,
                audience,
                common,
            } => {
                let subject_match = match (subject, subject_pattern) {
                    (Some(subject), _) => SubjectMatch::Subject(subject),
                    (None, Some(pattern)) => SubjectMatch::SubjectPattern(pattern),
                    (None, None) => anyhow::bail!("give --subject or --subject-pattern"),
                };
                let request = AddFederatedCredentialRequest {
                    agent_id,
                    federated: Some(FederatedCredentialInfo {
                        issuer,
                        audience,
                        subject_match: Some(subject_match),
                    }),
                    description: common.description.clone(),
                    expire_time: common.expire_time()?,
                };
                client
                    .add_federated_credential(bearer(request, &token)?)
                    .await
                    .map_err(failed)?
                    .into_inner()
                    .credential
            }
            Self::List {
                agent_id,
                kind,
                limit,
            } => {
                let mut pager = Pager::new(&limit);
                let mut credentials = Vec::new();
                while let Some(page) = pager.next_page() {
                    let request = ListCredentialsRequest {
                        agent_id: agent_id.clone(),
                        r#type: kind.map_or(CredentialType::Unspecified, Into::into) as i32,
                        page: Some(page),
                    };
                    let response = client
                        .list_credentials(bearer(request, &token)?)
                        .await
                        .map_err(failed)?
                        .into_inner();
                    pager.take(&mut credentials, response.credentials, response.page);
                }
                let credentials: Vec<Value> = credentials.iter().map(credential_json).collect();
                return Ok(format.list(
                    &credentials,
                    &CREDENTIAL,
                    &format!("agent {agent_id} has no credentials"),
                ));
            }
            Self::Delete {
                agent_id,
                credential_id,
            } => {
                let request = DeleteCredentialRequest {
                    agent_id: agent_id.clone(),
                    credential_id: credential_id.clone(),
                };
                client
                    .delete_credential(bearer(request, &token)?)
                    .await
                    .map_err(failed)?;
                return Ok(format.said(
                    &format!("deleted credential {credential_id} of agent {agent_id}"),
                    &json!({"agent_id": agent_id, "credential_id": credential_id, "deleted": true}),
                ));
            }
        };
        Ok(format.one(
            &credential_json(&credential.unwrap_or_default()),
            &CREDENTIAL,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_jwk_is_refused_before_it_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.jwk");
        std::fs::write(
            &path,
            r#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"abc","d":"secret"}"#,
        )
        .unwrap();
        let err = read_public_jwk(&path).unwrap_err().to_string();
        assert!(err.contains("private key (member `d`)"), "{err}");
        assert!(!err.contains("secret"), "{err}");

        std::fs::write(
            &path,
            r#"{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"abc","kid":"k1"}"#,
        )
        .unwrap();
        let jwk = read_public_jwk(&path).unwrap();
        assert_eq!((jwk.kty.as_str(), jwk.kid.as_str()), ("OKP", "k1"));
        assert_eq!(
            jwk_json(&jwk),
            json!({"kty":"OKP","crv":"Ed25519","alg":"EdDSA","x":"abc","kid":"k1"})
        );
    }
}
