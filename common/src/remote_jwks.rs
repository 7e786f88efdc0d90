//! The key set of a trusted external issuer (Kubernetes service accounts,
//! SPIFFE JWT-SVIDs, CI OIDC): given inline, or fetched from its `jwks_uri`
//! and cached. Shared by the services that accept external tokens.
//!
//! Fetching is deliberately frugal and fails closed:
//! - the set is fetched again once `cache_ttl` has passed;
//! - a `kid` the set does not hold triggers at most one refetch per
//!   [`UNKNOWN_KID_REFRESH_INTERVAL`], so tokens with forged kids cannot make
//!   us hammer the issuer;
//! - a failed fetch is logged and the last good set stays in use; the next
//!   attempt waits [`RETRY_AFTER_FAILURE`];
//! - with no set at all, every lookup fails ([`JwksError::Unavailable`]).
//!
//! A fetch is one HTTP/1.1 GET (https through rustls with the ring provider
//! and the Mozilla roots of `webpki-roots`), limited to [`FETCH_TIMEOUT`] and
//! [`MAX_JWKS_BYTES`]; redirects are not followed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::tls::ClientTls;

/// Longest a fetch (connect, TLS, request, body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Least time between two refetches caused by an unknown `kid`.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Least time between a failed fetch and the next attempt.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// The asymmetric JWS algorithms an external token may use. HMAC and `none`
/// are never accepted: an issuer's key set is public.
pub const SUPPORTED_ALGORITHMS: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];
/// Smallest RSA modulus accepted (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;
/// Members that only a private or symmetric key has (RFC 7518 §6).
const SECRET_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// A key set that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksParseError {
    #[error("is not a JWKS (a JSON object with a `keys` array): {reason}")]
    NotJwks { reason: String },
    #[error("holds no keys")]
    Empty,
    #[error("key {index} has no `kid`")]
    MissingKid { index: usize },
    #[error("key {index} (`{kid}`) is not a public asymmetric key: it has a `{member}` member")]
    SecretMember {
        index: usize,
        kid: String,
        member: &'static str,
    },
}

/// Why a key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {FETCH_TIMEOUT:?}")]
    Timeout,
    #[error("the URL has no host")]
    NoHost,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("`{host}` is not a valid TLS server name")]
    ServerName { host: String },
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    #[error("answered HTTP {status}")]
    Status { status: u16 },
    #[error("the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the answer {0}")]
    Parse(#[from] JwksParseError),
}

/// A `jwks_uri` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksSetupError {
    #[error("is not a URL: {reason}")]
    NotUrl { reason: String },
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must name a host")]
    NoHost,
}

/// Why no key was found for a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    /// The set was never fetched successfully: fail closed.
    #[error("the issuer's key set is unavailable")]
    Unavailable,
    #[error("the issuer's key set has no key with kid `{kid}`")]
    UnknownKid { kid: String },
}

/// Why a key cannot verify a token of some algorithm.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeyMismatch {
    #[error("the key is not for signatures (`use`/`key_ops`)")]
    NotForSignatures,
    #[error("the key is registered for another algorithm (`alg` {key})")]
    OtherAlgorithm { key: String },
    #[error("the key type does not fit the algorithm")]
    WrongKeyType,
    #[error("the RSA key is shorter than {MIN_RSA_BITS} bits")]
    WeakRsaKey,
    #[error("the key is malformed: {reason}")]
    Malformed { reason: String },
}

/// Parses a key set strictly, as for one given in configuration: at least
/// one key, each with a `kid`, none with private or symmetric members.
pub fn parse_inline(json: &str) -> Result<JwkSet, JwksParseError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|err| JwksParseError::NotJwks {
            reason: err.to_string(),
        })?;
    let keys = value
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| JwksParseError::NotJwks {
            reason: "no `keys` array".to_owned(),
        })?;
    if keys.is_empty() {
        return Err(JwksParseError::Empty);
    }
    for (index, key) in keys.iter().enumerate() {
        let kid = key
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .filter(|kid| !kid.is_empty())
            .ok_or(JwksParseError::MissingKid { index })?;
        if let Some(member) = SECRET_MEMBERS
            .into_iter()
            .find(|member| key.get(*member).is_some())
        {
            return Err(JwksParseError::SecretMember {
                index,
                kid: kid.chars().take(64).collect(),
                member,
            });
        }
    }
    serde_json::from_value(value).map_err(|err| JwksParseError::NotJwks {
        reason: err.to_string(),
    })
}

/// Parses a fetched key set. Keys that cannot be used (no `kid`, symmetric,
/// unknown type) stay in the set; they are simply never picked.
pub fn parse_fetched(body: &[u8]) -> Result<JwkSet, JwksParseError> {
    serde_json::from_slice(body).map_err(|err| JwksParseError::NotJwks {
        reason: err.to_string(),
    })
}

/// The key to verify a token signed with `alg`, if `jwk` fits it: a
/// signature key, registered for `alg` when it names one, of the key type
/// and curve `alg` needs. Symmetric keys never fit.
pub fn decoding_key(jwk: &Jwk, alg: Algorithm) -> Result<DecodingKey, KeyMismatch> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|key_use| *key_use != PublicKeyUse::Signature)
        || jwk
            .common
            .key_operations
            .as_ref()
            .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err(KeyMismatch::NotForSignatures);
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        if key_alg != KeyAlgorithm::from(alg) {
            return Err(KeyMismatch::OtherAlgorithm {
                key: key_alg.to_string(),
            });
        }
    }
    let fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(rsa),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => {
            let modulus = URL_SAFE_NO_PAD
                .decode(rsa.n.trim_end_matches('='))
                .map_err(|err| KeyMismatch::Malformed {
                    reason: format!("`n`: {err}"),
                })?;
            let significant = modulus.iter().skip_while(|byte| **byte == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err(KeyMismatch::WeakRsaKey);
            }
            true
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if !fits {
        return Err(KeyMismatch::WrongKeyType);
    }
    DecodingKey::from_jwk(jwk).map_err(|err| KeyMismatch::Malformed {
        reason: err.to_string(),
    })
}

/// A trusted issuer's key set.
pub struct RemoteJwks {
    source: Source,
    cache_ttl: Duration,
    state: Mutex<CacheState>,
    /// Held while fetching, so that one fetch runs at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// How far tests have moved this set's clock forward.
    #[cfg(test)]
    skew: Mutex<Duration>,
}

enum Source {
    Inline,
    Remote(Fetcher),
}

#[derive(Default)]
struct CacheState {
    keys: Option<Arc<JwkSet>>,
    fetched_at: Option<Instant>,
    failed_at: Option<Instant>,
    unknown_kid_refresh_at: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Expired,
    UnknownKid,
}

impl CacheState {
    fn backing_off(&self, now: Instant) -> bool {
        self.failed_at
            .is_some_and(|failed| now < failed + RETRY_AFTER_FAILURE)
    }

    fn wants(&self, refresh: Refresh, now: Instant, ttl: Duration) -> bool {
        if self.backing_off(now) {
            return false;
        }
        match refresh {
            Refresh::Expired => self.fetched_at.is_none_or(|fetched| now >= fetched + ttl),
            Refresh::UnknownKid => self
                .unknown_kid_refresh_at
                .is_none_or(|last| now >= last + UNKNOWN_KID_REFRESH_INTERVAL),
        }
    }
}

impl RemoteJwks {
    /// A key set given in configuration (checked with [`parse_inline`]).
    pub fn inline(json: &str) -> Result<Self, JwksParseError> {
        let keys = parse_inline(json)?;
        Ok(Self {
            source: Source::Inline,
            cache_ttl: Duration::MAX,
            state: Mutex::new(CacheState {
                keys: Some(Arc::new(keys)),
                ..CacheState::default()
            }),
            refreshing: tokio::sync::Mutex::new(()),
            #[cfg(test)]
            skew: Mutex::new(Duration::ZERO),
        })
    }

    /// A key set fetched from `jwks_uri` when first needed, then cached for
    /// `cache_ttl`.
    /// An `https://` URL is fetched over TLS with `tls` (the Mozilla roots,
    /// or the service's own CA for the other AgentSec services' key sets).
    pub fn remote(
        jwks_uri: &str,
        cache_ttl: Duration,
        tls: &Arc<ClientTls>,
    ) -> Result<Self, JwksSetupError> {
        let uri = url::Url::parse(jwks_uri).map_err(|err| JwksSetupError::NotUrl {
            reason: err.to_string(),
        })?;
        Ok(Self::with_fetcher(
            Fetcher::Http(HttpFetcher::new(uri, tls)?),
            cache_ttl,
        ))
    }

    fn with_fetcher(fetcher: Fetcher, cache_ttl: Duration) -> Self {
        Self {
            source: Source::Remote(fetcher),
            cache_ttl,
            state: Mutex::new(CacheState::default()),
            refreshing: tokio::sync::Mutex::new(()),
            #[cfg(test)]
            skew: Mutex::new(Duration::ZERO),
        }
    }

    #[cfg(not(test))]
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[cfg(test)]
    fn now(&self) -> Instant {
        Instant::now() + *self.skew.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // The state is a few plain values, consistent after every write.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key with this `kid`, refreshing the set first when it is due.
    pub async fn key(&self, kid: &str) -> Result<Jwk, JwksError> {
        let Source::Remote(fetcher) = &self.source else {
            return self
                .state()
                .keys
                .as_ref()
                .and_then(|keys| keys.find(kid).cloned())
                .ok_or_else(|| JwksError::UnknownKid {
                    kid: kid.to_owned(),
                });
        };
        let mut keys = self.state().keys.clone();
        if self.due(Refresh::Expired) {
            keys = self.refresh(fetcher, Refresh::Expired).await;
        }
        let Some(set) = keys else {
            return Err(JwksError::Unavailable);
        };
        if let Some(key) = set.find(kid) {
            return Ok(key.clone());
        }
        // The issuer may have rotated its keys since the last fetch.
        if self.due(Refresh::UnknownKid) {
            if let Some(key) = self
                .refresh(fetcher, Refresh::UnknownKid)
                .await
                .and_then(|set| set.find(kid).cloned())
            {
                return Ok(key);
            }
        }
        Err(JwksError::UnknownKid {
            kid: kid.to_owned(),
        })
    }

    fn due(&self, refresh: Refresh) -> bool {
        self.state().wants(refresh, self.now(), self.cache_ttl)
    }

    /// Fetches the set unless another caller just did; returns the set in
    /// use afterwards.
    async fn refresh(&self, fetcher: &Fetcher, refresh: Refresh) -> Option<Arc<JwkSet>> {
        let _fetching = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // A fetch is under way: use the set we have rather than wait
                // for it, or wait when there is none.
                if let Some(keys) = self.state().keys.clone() {
                    return Some(keys);
                }
                self.refreshing.lock().await
            }
        };
        {
            let mut state = self.state();
            let now = self.now();
            if !state.wants(refresh, now, self.cache_ttl) {
                return state.keys.clone();
            }
            if refresh == Refresh::UnknownKid {
                state.unknown_kid_refresh_at = Some(now);
            }
        }
        let fetched = fetcher.fetch().await;
        let mut state = self.state();
        match fetched {
            Ok(keys) => {
                tracing::debug!(jwks_uri = %fetcher, keys = keys.keys.len(), "key set fetched");
                state.keys = Some(Arc::new(keys));
                state.fetched_at = Some(self.now());
                state.failed_at = None;
            }
            Err(err) => {
                tracing::warn!(
                    jwks_uri = %fetcher,
                    error = %err,
                    has_previous_set = state.keys.is_some(),
                    "key set fetch failed; keeping the last good set"
                );
                state.failed_at = Some(self.now());
            }
        }
        state.keys.clone()
    }
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Source::Inline => f.write_str("RemoteJwks(inline)"),
            Source::Remote(fetcher) => write!(f, "RemoteJwks({fetcher})"),
        }
    }
}

enum Fetcher {
    Http(HttpFetcher),
    #[cfg(test)]
    Scripted(tests::Scripted),
}

impl Fetcher {
    async fn fetch(&self) -> Result<JwkSet, FetchError> {
        match self {
            Self::Http(http) => http.fetch().await,
            #[cfg(test)]
            Self::Scripted(scripted) => scripted.fetch(),
        }
    }
}

impl std::fmt::Display for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(http) => f.write_str(http.uri.as_str()),
            #[cfg(test)]
            Self::Scripted(_) => f.write_str("scripted"),
        }
    }
}

/// One GET of a JWKS document, over http or https.
struct HttpFetcher {
    uri: url::Url,
    host: String,
    port: u16,
    tls: Option<Arc<ClientTls>>,
}

impl HttpFetcher {
    fn new(uri: url::Url, tls: &Arc<ClientTls>) -> Result<Self, JwksSetupError> {
        let tls = match uri.scheme() {
            "https" => Some(tls.clone()),
            "http" => None,
            _ => return Err(JwksSetupError::Scheme),
        };
        let host = match uri.host() {
            Some(url::Host::Domain(domain)) => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(JwksSetupError::NoHost),
        };
        let port = uri.port_or_known_default().ok_or(JwksSetupError::Scheme)?;
        Ok(Self {
            uri,
            host,
            port,
            tls,
        })
    }

    async fn fetch(&self) -> Result<JwkSet, FetchError> {
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| FetchError::Timeout)??;
        Ok(parse_fetched(&body)?)
    }

    async fn get(&self) -> Result<Vec<u8>, FetchError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(FetchError::Connect)?;
        match &self.tls {
            None => self.exchange(hyper_util::rt::TokioIo::new(tcp)).await,
            Some(tls) => {
                // The current config, so that a rotated CA is used.
                let connector = tls.connector();
                let connector = connector.with_alpn(vec![b"http/1.1".to_vec()]);
                let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                    FetchError::ServerName {
                        host: self.host.clone(),
                    }
                })?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(FetchError::Tls)?;
                self.exchange(hyper_util::rt::TokioIo::new(tls)).await
            }
        }
    }

    async fn exchange<T>(&self, io: T) -> Result<Vec<u8>, FetchError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let http = |err: hyper::Error| FetchError::Http(err.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http)?;
        let target = &self.uri[url::Position::BeforePath..url::Position::AfterQuery];
        let authority = &self.uri[url::Position::BeforeHost..url::Position::AfterPort];
        let mut request = hyper::Request::get(target)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "agentsec")
            .body(Empty::<Bytes>::new())
            .map_err(|err| FetchError::Http(err.to_string()))?;
        // A fetch is a hop of the request that needed the key.
        crate::telemetry::inject_current_context(request.headers_mut());
        let answer = async {
            let response = sender.send_request(request).await.map_err(http)?;
            if response.status() != hyper::StatusCode::OK {
                return Err(FetchError::Status {
                    status: response.status().as_u16(),
                });
            }
            let declared = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > MAX_JWKS_BYTES as u64) {
                return Err(FetchError::TooLarge);
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    if err.is::<LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Http(err.to_string())
                    }
                })?;
            Ok(body.to_bytes().to_vec())
        };
        // The connection future drives the exchange; it ends once the server
        // closes, possibly before the body is read out of its buffer.
        tokio::pin!(answer);
        tokio::pin!(connection);
        tokio::select! {
            result = &mut answer => result,
            ended = &mut connection => {
                ended.map_err(http)?;
                answer.await
            }
        }
    }
}

/// rustls with the ring provider and the Mozilla roots, HTTP/1.1 only.
#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::keys::{SigningAlgorithm, SigningKey};

    /// A fetcher that answers from a script and counts its calls.
    #[derive(Clone, Default)]
    pub(super) struct Scripted {
        answers: Arc<Mutex<VecDeque<Result<JwkSet, ()>>>>,
        calls: Arc<AtomicUsize>,
    }

    impl Scripted {
        pub(super) fn fetch(&self) -> Result<JwkSet, FetchError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.answers.lock().unwrap().pop_front() {
                Some(Ok(keys)) => Ok(keys),
                _ => Err(FetchError::Status { status: 503 }),
            }
        }

        fn push(&self, answer: Result<JwkSet, ()>) {
            self.answers.lock().unwrap().push_back(answer);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn key_set(keys: &[&SigningKey]) -> JwkSet {
        let json = serde_json::json!({
            "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>()
        });
        serde_json::from_value(json).unwrap()
    }

    fn scripted(ttl: Duration) -> (RemoteJwks, Scripted) {
        let script = Scripted::default();
        let jwks = RemoteJwks::with_fetcher(Fetcher::Scripted(script.clone()), ttl);
        (jwks, script)
    }

    fn advance(jwks: &RemoteJwks, by: Duration) {
        *jwks.skew.lock().unwrap() += by;
    }

    fn ed25519() -> SigningKey {
        SigningKey::generate(SigningAlgorithm::EdDsa).unwrap()
    }

    #[tokio::test]
    async fn fetches_once_then_serves_from_cache_until_the_ttl() {
        let (first, second) = (ed25519(), ed25519());
        let (jwks, script) = scripted(Duration::from_secs(300));
        script.push(Ok(key_set(&[&first])));
        script.push(Ok(key_set(&[&second])));
        assert!(jwks.key(first.kid()).await.is_ok());
        assert!(jwks.key(first.kid()).await.is_ok());
        assert_eq!(script.calls(), 1);
        advance(&jwks, Duration::from_secs(301));
        // Expired: refetched, and the new set no longer holds the first key.
        assert!(jwks.key(second.kid()).await.is_ok());
        assert_eq!(script.calls(), 2);
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let (old, new) = (ed25519(), ed25519());
        let (jwks, script) = scripted(Duration::from_secs(3600));
        script.push(Ok(key_set(&[&old])));
        script.push(Ok(key_set(&[&old, &new])));
        script.push(Ok(key_set(&[&old, &new])));
        assert!(jwks.key(old.kid()).await.is_ok());
        // Rotation at the issuer: the unknown kid triggers one refetch.
        assert!(jwks.key(new.kid()).await.is_ok());
        assert_eq!(script.calls(), 2);
        // Forged kids: no further fetch within the interval.
        for _ in 0..10 {
            assert_eq!(
                jwks.key("forged").await,
                Err(JwksError::UnknownKid {
                    kid: "forged".into()
                })
            );
        }
        assert_eq!(script.calls(), 2);
        advance(&jwks, UNKNOWN_KID_REFRESH_INTERVAL);
        assert!(jwks.key("forged").await.is_err());
        assert_eq!(script.calls(), 3);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_last_good_set_and_backs_off() {
        let key = ed25519();
        let (jwks, script) = scripted(Duration::from_secs(60));
        script.push(Ok(key_set(&[&key])));
        script.push(Err(()));
        assert!(jwks.key(key.kid()).await.is_ok());
        advance(&jwks, Duration::from_secs(61));
        assert!(jwks.key(key.kid()).await.is_ok(), "stale set still used");
        assert_eq!(script.calls(), 2);
        assert!(jwks.key(key.kid()).await.is_ok());
        assert_eq!(script.calls(), 2, "no retry while backing off");
        script.push(Ok(key_set(&[&key])));
        advance(&jwks, RETRY_AFTER_FAILURE);
        assert!(jwks.key(key.kid()).await.is_ok());
        assert_eq!(script.calls(), 3);
    }

    #[tokio::test]
    async fn without_any_set_lookups_fail_closed() {
        let (jwks, script) = scripted(Duration::from_secs(60));
        assert_eq!(jwks.key("any").await, Err(JwksError::Unavailable));
        assert_eq!(jwks.key("any").await, Err(JwksError::Unavailable));
        assert_eq!(script.calls(), 1, "backing off after the failure");
    }

    #[tokio::test]
    async fn inline_sets_never_fetch() {
        let key = ed25519();
        let json = serde_json::to_string(&key_set(&[&key])).unwrap();
        let jwks = RemoteJwks::inline(&json).unwrap();
        assert!(jwks.key(key.kid()).await.is_ok());
        assert_eq!(
            jwks.key("other").await,
            Err(JwksError::UnknownKid {
                kid: "other".into()
            })
        );
    }

    #[test]
    fn inline_sets_must_be_public_keys_with_kids() {
        assert!(matches!(
            parse_inline("[]"),
            Err(JwksParseError::NotJwks { .. })
        ));
        assert_eq!(parse_inline(r#"{"keys": []}"#), Err(JwksParseError::Empty));
        assert_eq!(
            parse_inline(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}"#),
            Err(JwksParseError::MissingKid { index: 0 })
        );
        assert!(matches!(
            parse_inline(r#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}"#),
            Err(JwksParseError::SecretMember { member: "k", .. })
        ));
        assert!(matches!(
            parse_inline(
                r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "p", "x": "AA", "d": "AA"}]}"#
            ),
            Err(JwksParseError::SecretMember { member: "d", .. })
        ));
    }

    fn jwk(json: serde_json::Value) -> Jwk {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn keys_fit_only_their_algorithm() {
        let ed = ed25519();
        let es = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
        let ed_jwk = jwk(serde_json::to_value(ed.public_jwk()).unwrap());
        let es_jwk = jwk(serde_json::to_value(es.public_jwk()).unwrap());
        assert!(decoding_key(&ed_jwk, Algorithm::EdDSA).is_ok());
        assert!(decoding_key(&es_jwk, Algorithm::ES256).is_ok());
        assert!(matches!(
            decoding_key(&ed_jwk, Algorithm::ES256),
            Err(KeyMismatch::OtherAlgorithm { .. })
        ));
        assert!(matches!(
            decoding_key(&es_jwk, Algorithm::HS256),
            Err(KeyMismatch::OtherAlgorithm { .. })
        ));
        // Without `alg` on the key, its type decides.
        let mut bare = es_jwk.clone();
        bare.common.key_algorithm = None;
        assert!(decoding_key(&bare, Algorithm::ES256).is_ok());
        assert_eq!(
            decoding_key(&bare, Algorithm::ES384).err(),
            Some(KeyMismatch::WrongKeyType)
        );
        assert_eq!(
            decoding_key(&bare, Algorithm::HS256).err(),
            Some(KeyMismatch::WrongKeyType)
        );
        assert_eq!(
            decoding_key(&bare, Algorithm::RS256).err(),
            Some(KeyMismatch::WrongKeyType)
        );
        let oct = jwk(serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"}));
        assert_eq!(
            decoding_key(&oct, Algorithm::HS256).err(),
            Some(KeyMismatch::WrongKeyType)
        );
        let encryption = jwk(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "e", "use": "enc", "x": ed.public_jwk().x
        }));
        assert_eq!(
            decoding_key(&encryption, Algorithm::EdDSA).err(),
            Some(KeyMismatch::NotForSignatures)
        );
        let weak_rsa = jwk(serde_json::json!({
            "kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"
        }));
        assert_eq!(
            decoding_key(&weak_rsa, Algorithm::RS256).err(),
            Some(KeyMismatch::WeakRsaKey)
        );
        let rsa = jwk(serde_json::json!({
            "kty": "RSA", "kid": "r", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB"
        }));
        assert!(decoding_key(&rsa, Algorithm::RS256).is_ok());
        assert!(matches!(
            decoding_key(&rsa, Algorithm::PS256),
            Err(KeyMismatch::OtherAlgorithm { .. })
        ));
    }

    /// A one-shot HTTP server on loopback answering `response` to the first
    /// request.
    async fn serve_once(response: Vec<u8>) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(&response).await;
        });
        addr
    }

    fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(body);
        response
    }

    fn fetcher(uri: String) -> HttpFetcher {
        HttpFetcher::new(
            url::Url::parse(&uri).unwrap(),
            &ClientTls::public_roots().unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn fetches_over_http_with_limits() {
        let key = ed25519();
        let body = serde_json::to_vec(&key_set(&[&key])).unwrap();
        let addr = serve_once(http_response("200 OK", &body)).await;
        let set = fetcher(format!("http://{addr}/jwks"))
            .fetch()
            .await
            .unwrap();
        assert!(set.find(key.kid()).is_some());

        let addr = serve_once(http_response("404 Not Found", b"{}")).await;
        assert!(matches!(
            fetcher(format!("http://{addr}/jwks")).fetch().await,
            Err(FetchError::Status { status: 404 })
        ));

        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        let addr = serve_once(http_response("200 OK", &huge)).await;
        assert!(matches!(
            fetcher(format!("http://{addr}/jwks")).fetch().await,
            Err(FetchError::TooLarge)
        ));

        let addr = serve_once(http_response("200 OK", b"<html>")).await;
        assert!(matches!(
            fetcher(format!("http://{addr}/jwks")).fetch().await,
            Err(FetchError::Parse(_))
        ));

        // https to a server that does not speak TLS fails cleanly.
        let addr = serve_once(http_response("200 OK", &body)).await;
        assert!(matches!(
            fetcher(format!("https://{addr}/jwks")).fetch().await,
            Err(FetchError::Tls(_))
        ));
    }

    #[test]
    fn only_http_and_https_uris() {
        assert!(matches!(
            HttpFetcher::new(
                url::Url::parse("ftp://example.com/jwks").unwrap(),
                &ClientTls::public_roots().unwrap()
            ),
            Err(JwksSetupError::Scheme)
        ));
        assert!(HttpFetcher::new(
            url::Url::parse("https://example.com/jwks").unwrap(),
            &ClientTls::public_roots().unwrap()
        )
        .is_ok());
    }
}
