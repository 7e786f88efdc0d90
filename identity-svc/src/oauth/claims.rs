//! The claims of the access tokens this service signs.

use serde::{Deserialize, Serialize};

/// The scope that makes a token (for the admin audience) an admin token.
pub use agentsec_common::admin_token::ADMIN_SCOPE;
/// Largest token accepted anywhere (introspection, revocation, bearer).
pub const MAX_TOKEN_BYTES: usize = agentsec_common::jwt::MAX_TOKEN_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The agent id (or the bootstrap admin's client id).
    pub sub: String,
    /// Exactly one audience.
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// Space-delimited scopes.
    pub scope: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The credential the token was obtained with: deleting it makes the
    /// token inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
    /// The agent's token generation at issuance: suspending the agent
    /// starts a new one, which leaves this token inactive for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen: Option<i64>,
}

impl AccessClaims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }
}

pub use agentsec_common::admin_token::AdminScope;
