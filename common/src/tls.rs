//! TLS on the service port and on the calls to other services, with rustls
//! (ring provider) and certificates rotated on disk without a restart.
//!
//! Why not tonic's own TLS (`tls-ring`): its `ServerTlsConfig` and
//! `ClientTlsConfig` take certificates once, so a rotated certificate would
//! need a restart; and tonic depends on tokio-rustls with its default
//! features, which would bring aws-lc-rs into a tree that has only ring.
//! Instead the server does the handshakes itself and hands tonic finished
//! streams (`serve_with_incoming_shutdown`), and clients connect through
//! [`HttpsConnector`] (`Endpoint::connect_with_connector_lazy`).
//!
//! Rotation: the PEM files are read again every `reload_interval_secs`;
//! when their bytes differ, a whole new rustls config is built (certificate
//! chain, key, and the CA bundle: cert-manager rotates `ca.crt` in the same
//! Secret) and swapped in. New connections use it; open ones keep theirs.
//! A set of files that does not build (say the certificate was written and
//! the key not yet) is logged and the old config stays in use.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

use crate::config::ConfigError;

/// A client that connects and then says nothing must not hold a handshake
/// slot for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once; past it the accept loop waits, so a
/// flood of idle connections queues in the kernel instead of in memory.
const MAX_HANDSHAKES: usize = 1024;
/// After a failed accept (EMFILE, ENFILE), so as not to spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// `[tls]`: the service port (all keys unset = plain TCP, as before) and,
/// in `[tls.client]`, the calls to other services' `https://` endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (cert-manager's `tls.crt`). Set =
    /// the port speaks TLS only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the leaf: PKCS#8, PKCS#1 or SEC1 (`tls.key`).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// How often the files (server and client side) are checked for changes.
    pub reload_interval_secs: u64,
    pub client: ClientTlsConfig,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::None,
            reload_interval_secs: 30,
            client: ClientTlsConfig::default(),
        }
    }
}

/// Whether the port asks callers for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    None,
    /// A certificate, when presented, must chain to `client_ca_file`.
    Optional,
    /// Connections without a valid certificate are refused in the handshake.
    Required,
}

/// `[tls.client]`: how this service (or agentctl) checks the services it
/// calls over `https://`, and the certificate it shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM CA certificates the servers must chain to. Unset = the Mozilla
    /// roots (webpki-roots), which no private CA is in: internal calls then
    /// fail closed.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers with `client_auth` set.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Checks the combinations; the files themselves are checked when the
    /// service starts (they may not exist where the config is validated).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(ConfigError::invalid(
                "tls.key_file",
                "tls.cert_file and tls.key_file go together",
            ));
        }
        match (self.client_auth, &self.client_ca_file) {
            (ClientAuth::None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "tls.client_auth",
                    "must be \"optional\" or \"required\" with tls.client_ca_file",
                ))
            }
            (ClientAuth::Optional | ClientAuth::Required, None) => {
                return Err(ConfigError::invalid(
                    "tls.client_ca_file",
                    "is required with tls.client_auth",
                ))
            }
            (ClientAuth::Optional | ClientAuth::Required, Some(_)) if self.cert_file.is_none() => {
                return Err(ConfigError::invalid(
                    "tls.client_auth",
                    "needs tls.cert_file (the port must speak TLS)",
                ))
            }
            _ => {}
        }
        if !(1..=3_600).contains(&self.reload_interval_secs) {
            return Err(ConfigError::invalid(
                "tls.reload_interval_secs",
                "must be between 1 and 3600",
            ));
        }
        if self.client.cert_file.is_some() != self.client.key_file.is_some() {
            return Err(ConfigError::invalid(
                "tls.client.key_file",
                "tls.client.cert_file and tls.client.key_file go together",
            ));
        }
        Ok(())
    }

    fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_secs)
    }
}

/// Why TLS could not be set up; names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("`{key}` ({path}) cannot be read: {reason}")]
    Read {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("`{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("TLS must be set up inside the tokio runtime")]
    NoRuntime,
}

/// ring, passed to every builder explicitly: no process-wide default
/// provider is installed, so nothing depends on which crate installs first.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn invalid(key: &'static str, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        key,
        reason: reason.to_string(),
    }
}

fn certs(key: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(key, err))?;
    if chain.is_empty() {
        return Err(invalid(key, "holds no PEM CERTIFICATE"));
    }
    Ok(chain)
}

fn private_key(key: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|err| invalid(key, err))
}

fn roots(key: &'static str, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(key, pem)? {
        roots.add(cert).map_err(|err| invalid(key, err))?;
    }
    Ok(roots)
}

/// The server side of the port. The same ALPN list serves gRPC (h2) and the
/// HTTP endpoints (h2 or http/1.1: JWKS fetchers, browsers, curl).
fn server_config(
    provider: &Arc<CryptoProvider>,
    auth: ClientAuth,
    files: &[Vec<u8>],
) -> Result<ServerConfig, TlsError> {
    let (cert, key, ca) = match files {
        [cert, key] => (cert, key, None),
        [cert, key, ca] => (cert, key, Some(ca)),
        _ => return Err(invalid("tls", "unexpected set of files")),
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid("tls", err))?;
    let builder = match (auth, ca) {
        (ClientAuth::Optional | ClientAuth::Required, Some(ca)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots("tls.client_ca_file", ca)?),
                provider.clone(),
            );
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|err| invalid("tls.client_ca_file", err))?,
            )
        }
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        // `validate` refuses this; never serve without the check asked for.
        (ClientAuth::Optional | ClientAuth::Required, None) => {
            return Err(invalid(
                "tls.client_ca_file",
                "is required with tls.client_auth",
            ))
        }
    };
    // with_single_cert checks that the key belongs to the leaf: a cert and
    // key caught mid-rotation fail here, not in every handshake.
    let mut config = builder
        .with_single_cert(
            certs("tls.cert_file", cert)?,
            private_key("tls.key_file", key)?,
        )
        .map_err(|err| invalid("tls.key_file", err))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The client side, ALPN h2 (gRPC). Other protocols on the same config:
/// `connector().with_alpn(...)`.
fn client_config(
    provider: &Arc<CryptoProvider>,
    has_ca: bool,
    files: &[Vec<u8>],
) -> Result<ClientConfig, TlsError> {
    let (ca, identity) = match (has_ca, files) {
        (true, [ca]) => (Some(ca), None),
        (true, [ca, cert, key]) => (Some(ca), Some((cert, key))),
        (false, []) => (None, None),
        (false, [cert, key]) => (None, Some((cert, key))),
        _ => return Err(invalid("tls.client", "unexpected set of files")),
    };
    let roots = match ca {
        Some(ca) => roots("tls.client.ca_file", ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid("tls.client", err))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certs("tls.client.cert_file", cert)?,
                private_key("tls.client.key_file", key)?,
            )
            .map_err(|err| invalid("tls.client.key_file", err))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

type Build<T> = Box<dyn Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + Sync>;

/// A rustls config built from files and rebuilt when their bytes change.
/// Contents rather than mtimes: Kubernetes swaps a Secret volume through a
/// symlink, and a copy may keep the mtime.
struct Reloading<T> {
    files: Vec<(&'static str, PathBuf)>,
    build: Build<T>,
    current: RwLock<Arc<T>>,
    /// The bytes last built from, successfully or not: a bad set is
    /// reported once, not at every poll.
    seen: tokio::sync::Mutex<Vec<Vec<u8>>>,
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// Builds the first config (an error stops the start) and, when there
    /// are files and `interval`, polls them on a task that ends with the
    /// last `Arc` of this value.
    fn start(
        files: Vec<(&'static str, PathBuf)>,
        build: Build<T>,
        interval: Option<Duration>,
    ) -> Result<Arc<Self>, TlsError> {
        let contents = files
            .iter()
            .map(|(key, path)| {
                std::fs::read(path).map_err(|err| TlsError::Read {
                    key,
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let first = build(&contents)?;
        let this = Arc::new(Self {
            files,
            build,
            current: RwLock::new(Arc::new(first)),
            seen: tokio::sync::Mutex::new(contents),
        });
        if let (Some(interval), false) = (interval, this.files.is_empty()) {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| TlsError::NoRuntime)?;
            runtime.spawn(poll(Arc::downgrade(&this), interval));
        }
        Ok(this)
    }

    fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files; when they changed, builds and swaps in a new config.
    /// `Ok(true)` = swapped.
    async fn reload(&self) -> Result<bool, TlsError> {
        // Held while reading, so that overlapping reloads cannot swap an
        // older set back in.
        let mut seen = self.seen.lock().await;
        let mut contents = Vec::with_capacity(self.files.len());
        for (key, path) in &self.files {
            contents.push(tokio::fs::read(path).await.map_err(|err| TlsError::Read {
                key,
                path: path.display().to_string(),
                reason: err.to_string(),
            })?);
        }
        if *seen == contents {
            return Ok(false);
        }
        let built = (self.build)(&contents);
        *seen = contents;
        let fresh = built?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(true)
    }
}

async fn poll<T: Send + Sync + 'static>(this: Weak<Reloading<T>>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(this) = this.upgrade() else {
            return;
        };
        match this.reload().await {
            Ok(true) => tracing::info!(files = ?this.files, "TLS certificates reloaded"),
            Ok(false) => {}
            // The old config stays; a later write of the files retries.
            Err(err) => tracing::warn!(error = %err, "TLS files changed but cannot be used"),
        }
    }
}

/// A service's TLS: its port's (none without `tls.cert_file`) and its
/// calls' to other services.
pub struct ServiceTls {
    pub server: Option<Arc<ServerTls>>,
    pub client: Arc<ClientTls>,
}

impl ServiceTls {
    /// Reads the files of `[tls]` and starts polling them; call inside the
    /// runtime. An error names the key and the file.
    pub fn start(config: &TlsConfig) -> Result<Self, TlsError> {
        Ok(Self {
            server: ServerTls::start(config)?,
            client: ClientTls::from_service_config(config)?,
        })
    }
}

/// The TLS side of a service port.
pub struct ServerTls {
    config: Arc<Reloading<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.config.files)
            .finish()
    }
}

impl ServerTls {
    /// `None` without `tls.cert_file`: the port stays plain TCP. Call inside
    /// the runtime (the reload task is spawned here).
    pub fn start(config: &TlsConfig) -> Result<Option<Arc<Self>>, TlsError> {
        let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
            if config.client_auth != ClientAuth::None {
                // `validate` refuses this; never fall back to plain TCP.
                return Err(invalid(
                    "tls.client_auth",
                    "needs tls.cert_file and tls.key_file",
                ));
            }
            return Ok(None);
        };
        let mut files = vec![
            ("tls.cert_file", cert.clone()),
            ("tls.key_file", key.clone()),
        ];
        if config.client_auth != ClientAuth::None {
            let ca = config
                .client_ca_file
                .clone()
                .ok_or_else(|| invalid("tls.client_ca_file", "is required with tls.client_auth"))?;
            files.push(("tls.client_ca_file", ca));
        }
        let (provider, auth) = (provider(), config.client_auth);
        let config = Reloading::start(
            files,
            Box::new(move |files| server_config(&provider, auth, files)),
            Some(config.reload_interval()),
        )?;
        Ok(Some(Arc::new(Self { config })))
    }

    /// Checks the files now instead of at the next poll (tests; SIGHUP).
    pub async fn reload(&self) -> Result<bool, TlsError> {
        self.config.reload().await
    }

    /// Accepts on `listener` and yields connections whose handshake is
    /// done, for `serve_with_incoming_shutdown`. Each handshake runs on its
    /// own task with a deadline, so a slow or silent client never holds up
    /// the others. Failed handshakes are logged here (debug: scanners and
    /// probes cause them), never yielded: tonic would only log them.
    /// When tonic drops the stream (shutdown), the accept task ends and the
    /// listening socket closes at once, as with tonic's `TcpIncoming`.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> ReceiverStream<Result<TlsConn, Infallible>> {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let permit = tokio::select! {
                    () = tx.closed() => return,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                };
                let (tcp, peer) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            tracing::warn!(error = %err, "accept failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    },
                };
                // Without TCP_NODELAY small responses wait on delayed ACKs.
                let _ = tcp.set_nodelay(true);
                let info = tcp.connect_info();
                let acceptor = TlsAcceptor::from(self.config.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            // Err = the server stopped accepting: drop it.
                            let _ = tx.send(Ok(TlsConn { stream, info })).await;
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// A server connection after its handshake. Its connect info is tonic's
/// `TcpConnectInfo`, so `Request::remote_addr()` keeps working: tonic looks
/// for that type (or for its own TLS type, only with its TLS features). The
/// client's certificate is therefore not visible to handlers; mTLS here
/// decides who may connect, bearer tokens still decide what they may do.
pub struct TlsConn {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: TcpConnectInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// TLS for the calls a service (or agentctl) makes to `https://` endpoints.
pub struct ClientTls {
    config: Arc<Reloading<ClientConfig>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.config.files)
            .finish()
    }
}

impl ClientTls {
    /// `reload_interval` None = read the files once (agentctl). With an
    /// interval, call inside the runtime.
    pub fn start(
        config: &ClientTlsConfig,
        reload_interval: Option<Duration>,
    ) -> Result<Arc<Self>, TlsError> {
        let mut files = Vec::new();
        if let Some(ca) = &config.ca_file {
            files.push(("tls.client.ca_file", ca.clone()));
        }
        if let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) {
            files.push(("tls.client.cert_file", cert.clone()));
            files.push(("tls.client.key_file", key.clone()));
        }
        let (provider, has_ca) = (provider(), config.ca_file.is_some());
        let config = Reloading::start(
            files,
            Box::new(move |files| client_config(&provider, has_ca, files)),
            reload_interval,
        )?;
        Ok(Arc::new(Self { config }))
    }

    /// No settings: servers are checked against the Mozilla roots, no
    /// certificate is shown (external issuers' key sets; `http://` only).
    pub fn public_roots() -> Result<Arc<Self>, TlsError> {
        Self::start(&ClientTlsConfig::default(), None)
    }

    /// From a service's `[tls]`, polled like the server side.
    pub fn from_service_config(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        Self::start(&config.client, Some(config.reload_interval()))
    }

    pub async fn reload(&self) -> Result<bool, TlsError> {
        self.config.reload().await
    }

    /// A connector with the current config, ALPN h2. For HTTP/1.1 (JWKS):
    /// `.with_alpn(vec![b"http/1.1".to_vec()])`.
    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.config.current())
    }

    /// A channel to `endpoint`, connected now (agentctl: an unreachable or
    /// untrusted server is reported at once).
    pub async fn connect(
        self: &Arc<Self>,
        endpoint: Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        if endpoint.uri().scheme_str() == Some("https") {
            endpoint
                .connect_with_connector(HttpsConnector { tls: self.clone() })
                .await
        } else {
            endpoint.connect().await
        }
    }

    /// A lazily connected channel to `endpoint`: over TLS for `https://`,
    /// plain TCP for `http://`. Endpoint settings that shape tonic's own
    /// TCP connector (tcp_nodelay, keepalive) do not reach the TLS one,
    /// which sets TCP_NODELAY itself; connect_timeout does, and covers the
    /// handshake.
    pub fn connect_lazy(self: &Arc<Self>, endpoint: Endpoint) -> Channel {
        if endpoint.uri().scheme_str() == Some("https") {
            endpoint.connect_with_connector_lazy(HttpsConnector { tls: self.clone() })
        } else {
            endpoint.tcp_nodelay(true).connect_lazy()
        }
    }
}

/// tonic's connector for `https://` URIs: TCP, then a TLS handshake that
/// checks the URI's host against the server certificate. Each (re)connect
/// takes the current config, so a rotated client certificate or CA bundle
/// is used from the next connection on.
#[derive(Debug, Clone)]
pub struct HttpsConnector {
    tls: Arc<ClientTls>,
}

impl tower::Service<Uri> for HttpsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.tls.connector();
        Box::pin(async move {
            let refuse = |reason: &str| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{uri}: {reason}"))
            };
            if uri.scheme_str() != Some("https") {
                return Err(refuse("only https:// goes through TLS"));
            }
            // `[::1]` in a URI, `::1` as a server name.
            let host = uri
                .host()
                .ok_or_else(|| refuse("no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|_| refuse("the host is not a valid TLS server name"))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = connector.connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
