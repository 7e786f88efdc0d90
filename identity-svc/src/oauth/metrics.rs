//! What the token endpoint puts on `/metrics`: tokens issued and refused by
//! grant type (and refusals by OAuth error code), over HTTP and gRPC alike.

use agentsec_common::error::OAuthError;
use agentsec_common::metrics::{Counter, Family, Metrics};

use super::{CLIENT_CREDENTIALS, JWT_BEARER};

type Labels<const N: usize> = [(&'static str, &'static str); N];

#[derive(Clone)]
pub struct TokenMetrics {
    issued: Family<Labels<1>, Counter>,
    refused: Family<Labels<2>, Counter>,
}

impl TokenMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            issued: Family::default(),
            refused: Family::default(),
        };
        metrics.register(
            "agentsec_identity_tokens_issued",
            "Access tokens issued, by grant type",
            this.issued.clone(),
        );
        metrics.register(
            "agentsec_identity_tokens_refused",
            "Token requests refused, by grant type and OAuth error code",
            this.refused.clone(),
        );
        this
    }

    /// Counts the answer to a token request of `grant_type`.
    pub fn record<T>(&self, grant_type: &str, answer: &Result<T, OAuthError>) {
        let grant_type = grant_type_label(grant_type);
        match answer {
            Ok(_) => self
                .issued
                .get_or_create(&[("grant_type", grant_type)])
                .inc(),
            Err(err) => self
                .refused
                .get_or_create(&[("grant_type", grant_type), ("error", err.code())])
                .inc(),
        };
    }
}

/// The grant types served by name; a missing one is `none` and any other
/// `other`, so that made-up grant types cannot grow the label set.
fn grant_type_label(grant_type: &str) -> &'static str {
    match grant_type {
        CLIENT_CREDENTIALS => CLIENT_CREDENTIALS,
        JWT_BEARER => JWT_BEARER,
        "" => "none",
        _ => "other",
    }
}
