//! Authentication of admin calls (GetGrant, ListGrants, RevokeGrant): an
//! admin token of identity-svc (a JWT signed with one of the keys it
//! publishes at `admin.jwks_uri`, issued by `admin.issuer`, for
//! `admin.audience`, with scope `agentsec:admin`), verified locally by
//! [`AdminVerifier`]. A `tenant` claim makes the admin tenant-scoped.
//!
//! Limit: the token is verified offline (signature, issuer,
//! time claims); a token identity-svc has revoked stays accepted here until
//! it expires (admin tokens are short-lived).

use std::sync::Arc;

use agentsec_common::admin_token::{AdminConfig, AdminVerifier};
use agentsec_common::tls::ClientTls;

/// What the grant RPCs accept, for the PERMISSION_DENIED of a token that
/// claims identity-svc's issuer but is not an admin token.
const NEEDS: &str = "a person token or an admin token";

/// The admin-token verifier; `None` when `admin.jwks_uri` is unset (then
/// only people's tokens are accepted).
pub fn admin_auth(
    config: &AdminConfig,
    tls: &Arc<ClientTls>,
) -> Result<Option<AdminVerifier>, String> {
    AdminVerifier::new(config, NEEDS, tls)
}
