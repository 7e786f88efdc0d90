//! Verification of an external token (the jwt-bearer grant's `assertion`)
//! against its trusted issuer, by the shared verifier
//! (`agentsec_common::jwt`, RFC 7523 §3): any `typ`, the audience left to
//! the matching of federated credentials.

use agentsec_common::jwt::{Clock, TrustedIssuers};

use super::FederationError;

/// The claims of a verified external token that the grant uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
}

/// Verifies `token` with the trusted issuer named by its `iss`.
pub async fn verify(
    issuers: &TrustedIssuers,
    token: &str,
    now: i64,
) -> Result<ExternalClaims, FederationError> {
    let verified = issuers
        .verify(token, Clock::At(now))
        .await
        .map_err(FederationError::Token)?;
    Ok(ExternalClaims {
        iss: verified.issuer,
        sub: verified.subject,
        aud: verified.audiences,
    })
}

#[cfg(test)]
mod tests {
    use agentsec_common::jwt::{AudienceRule, JwtError, Rules, TokenType, TrustedIssuer};
    use agentsec_common::keys::{SigningAlgorithm, SigningKey};
    use agentsec_common::remote_jwks::RemoteJwks;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jsonwebtoken::{Algorithm, EncodingKey, Header as JwtHeader};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://issuer.test";
    const NOW: i64 = 1_900_000_000;

    /// A 2048-bit RSA test key (generated for these tests only).
    const RSA_PRIVATE_PEM: &str = include_str!("testdata/rsa-2048.pem");
    const RSA_N: &str = include_str!("testdata/rsa-2048.n");

    fn jwks_json(keys: &[serde_json::Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    fn issuer_with(keys: &[serde_json::Value], algorithms: &[Algorithm]) -> TrustedIssuers {
        TrustedIssuers::new(vec![TrustedIssuer {
            rules: Rules {
                issuer: ISSUER.to_owned(),
                algorithms: algorithms.to_vec(),
                token_type: TokenType::Any,
                audience: AudienceRule::Any,
                subject: None,
                leeway_secs: 30,
            },
            keys: RemoteJwks::inline(&jwks_json(keys)).unwrap(),
        }])
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut claims = json!({
            "iss": ISSUER,
            "sub": "system:serviceaccount:agents:planner",
            "aud": ["agentsec", "other"],
            "exp": NOW + 600,
            "iat": NOW,
            "nbf": NOW,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    fn rsa_jwk() -> serde_json::Value {
        json!({"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": RSA_N.trim(), "e": "AQAB"})
    }

    fn rsa_token(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = JwtHeader::new(alg);
        header.kid = Some(kid.to_owned());
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// The current time must be NOW for jsonwebtoken's exp/nbf checks: the
    /// claims are made relative to the real clock instead.
    fn live(extra: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = claims(json!({"exp": now + 600, "iat": now, "nbf": now}));
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (name, value) in extra {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        claims
    }

    async fn check_live(
        issuers: &TrustedIssuers,
        token: &str,
    ) -> Result<ExternalClaims, FederationError> {
        verify(issuers, token, chrono::Utc::now().timestamp()).await
    }

    #[tokio::test]
    async fn rsa_tokens_verify_like_kubernetes_service_account_tokens() {
        let issuers = issuer_with(&[rsa_jwk()], &[Algorithm::RS256]);
        let token = rsa_token(Algorithm::RS256, "rsa-1", &live(json!({})));
        let verified = check_live(&issuers, &token).await.unwrap();
        assert_eq!(verified.iss, ISSUER);
        assert_eq!(verified.sub, "system:serviceaccount:agents:planner");
        assert_eq!(verified.aud, ["agentsec", "other"]);
        // A single string audience is fine too.
        let token = rsa_token(Algorithm::RS256, "rsa-1", &live(json!({"aud": "agentsec"})));
        assert_eq!(
            check_live(&issuers, &token).await.unwrap().aud,
            ["agentsec"]
        );
    }

    #[tokio::test]
    async fn the_algorithm_must_be_allowed_and_fit_the_key() {
        let ed = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
        let ed_jwk = serde_json::to_value(ed.public_jwk()).unwrap();
        // EdDSA not in the allow-list.
        let issuers = issuer_with(std::slice::from_ref(&ed_jwk), &[Algorithm::RS256]);
        let token = ed.sign("JWT", &live(json!({}))).unwrap();
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::Token(JwtError::AlgorithmNotAllowed { .. }))
        ));
        // PS256 allowed, but the key is registered for RS256.
        let issuers = issuer_with(&[rsa_jwk()], &[Algorithm::RS256, Algorithm::PS256]);
        let token = rsa_token(Algorithm::PS256, "rsa-1", &live(json!({})));
        assert!(matches!(
            check_live(&issuers, &token).await,
            Err(FederationError::Token(JwtError::KeyMismatch(_)))
        ));
        // `none` and HMAC with the public key as secret.
        let issuers = issuer_with(&[ed_jwk, rsa_jwk()], &[Algorithm::RS256, Algorithm::EdDSA]);
        let none = unsigned(json!({"alg": "none", "kid": ed.kid()}), &live(json!({})));
        assert!(matches!(
            check_live(&issuers, &none).await,
            Err(FederationError::Token(JwtError::AlgorithmNotAllowed { alg })) if alg == "none"
        ));
        let mut header = JwtHeader::new(Algorithm::HS256);
        header.kid = Some("rsa-1".to_owned());
        let secret = EncodingKey::from_secret(RSA_N.trim().as_bytes()).unwrap();
        let forged = jsonwebtoken::encode(&header, &live(json!({})), &secret).unwrap();
        assert!(matches!(
            check_live(&issuers, &forged).await,
            Err(FederationError::Token(JwtError::AlgorithmNotAllowed { .. }))
        ));
    }
}
