//! An agent's credentials: client secrets (kept only as a keyed hash),
//! public keys for `private_key_jwt`, federated credentials; and what a
//! caller sends to add one.

use chrono::{DateTime, Utc};

use super::jwk::Jwk;
use super::validate;
use crate::error::IdentityError;

/// Longest issuer, subject and subject pattern of a federated credential.
const MAX_FEDERATED_SUBJECT: usize = 512;
const MAX_FEDERATED_AUDIENCE: usize = 256;

/// Which kind of credential it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClientSecret,
    PublicKey,
    Federated,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::PublicKey => "public_key",
            Self::Federated => "federated",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "client_secret" => Some(Self::ClientSecret),
            "public_key" => Some(Self::PublicKey),
            "federated" => Some(Self::Federated),
            _ => None,
        }
    }
}

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub agent_id: String,
    pub kind: Kind,
    pub description: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub secret_hash: Option<Vec<u8>>,
    pub secret_prefix: Option<String>,
    pub kid: Option<String>,
    pub jwk: Option<String>,
    /// What a federated credential accepts.
    pub federated: Option<Federated>,
}

/// Which external tokens a federated credential accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Federated {
    pub issuer: String,
    pub subject: SubjectMatch,
    pub audience: String,
}

/// How the external token's `sub` must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    Exact(String),
    /// A glob where `*` matches any run of characters.
    Pattern(String),
}

impl Credential {
    /// A credential with every field empty, to fill in with `..`.
    pub fn empty() -> Self {
        Self {
            id: String::new(),
            agent_id: String::new(),
            kind: Kind::ClientSecret,
            description: String::new(),
            create_time: DateTime::<Utc>::default(),
            expire_time: None,
            secret_hash: None,
            secret_prefix: None,
            kid: None,
            jwk: None,
            federated: None,
        }
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expire_time.is_some_and(|expire| expire <= now)
    }
}

/// A client secret's lifetime as sent (seconds and nanos of a duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub seconds: i64,
    pub nanos: i32,
}

/// A client secret to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSecret {
    pub agent_id: String,
    pub description: String,
    /// `None`: the secret does not expire.
    pub ttl: Option<Ttl>,
}

/// A public key to register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewPublicKey {
    pub agent_id: String,
    pub description: String,
    pub jwk: Option<Jwk>,
    pub expire_time: Option<DateTime<Utc>>,
}

/// A federated credential's match rules as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FederatedInput {
    pub issuer: String,
    /// Exactly one of subject and subject pattern (`None`: neither).
    pub subject: Option<SubjectMatch>,
    pub audience: String,
}

/// A federated credential to register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewFederated {
    pub agent_id: String,
    pub description: String,
    pub federated: Option<FederatedInput>,
    pub expire_time: Option<DateTime<Utc>>,
}

/// A listing of an agent's credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialQuery {
    pub agent_id: String,
    /// `None`: every kind.
    pub kind: Option<Kind>,
}

impl FederatedInput {
    /// The match rules, validated (paths under `federated.`).
    pub fn validate(&self) -> Result<Federated, IdentityError> {
        validate::required("federated.issuer", &self.issuer, MAX_FEDERATED_SUBJECT)?;
        let subject = match &self.subject {
            Some(SubjectMatch::Exact(subject)) => {
                validate::required("federated.subject", subject, MAX_FEDERATED_SUBJECT)?;
                SubjectMatch::Exact(subject.clone())
            }
            Some(SubjectMatch::Pattern(pattern)) => {
                validate::required("federated.subject_pattern", pattern, MAX_FEDERATED_SUBJECT)?;
                // A leading `*` would let the credential accept subjects of
                // every namespace or repository of the issuer.
                if pattern.starts_with('*') {
                    return Err(IdentityError::invalid(
                        "federated.subject_pattern",
                        "must not begin with `*`",
                    ));
                }
                SubjectMatch::Pattern(pattern.clone())
            }
            None => {
                return Err(IdentityError::invalid(
                    "federated.subject_match",
                    "set exactly one of subject and subject_pattern",
                ))
            }
        };
        validate::required("federated.audience", &self.audience, MAX_FEDERATED_AUDIENCE)?;
        Ok(Federated {
            issuer: self.issuer.clone(),
            subject,
            audience: self.audience.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(subject: Option<SubjectMatch>) -> FederatedInput {
        FederatedInput {
            issuer: "https://issuer.test".into(),
            subject,
            audience: "agentsec".into(),
        }
    }

    #[test]
    fn a_federated_credential_names_one_subject_rule() {
        let exact = input(Some(SubjectMatch::Exact("ns:sa".into())));
        assert_eq!(
            exact.validate().unwrap().subject,
            SubjectMatch::Exact("ns:sa".into())
        );
        let err = input(None).validate().unwrap_err().to_string();
        assert!(err.contains("federated.subject_match"), "{err}");
        let err = input(Some(SubjectMatch::Pattern("*:sa".into())))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("federated.subject_pattern"), "{err}");
        let mut no_audience = exact;
        no_audience.audience.clear();
        let err = no_audience.validate().unwrap_err().to_string();
        assert!(err.contains("federated.audience"), "{err}");
    }
}
