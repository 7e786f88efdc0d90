//! Certificates for TLS tests, made per test with rcgen (no fixtures that
//! expire, no openssl), written as PEM files the services read, and a
//! client that speaks to a TLS port.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::tls::{ClientAuth, ClientTls, ClientTlsConfig, TlsConfig};
use anyhow::{bail, Context as _};

use crate::cluster::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, TEST_PEPPER};
use crate::{eventually, Service, TestBackend};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::Endpoint;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long a TLS service may take to answer health.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// A certificate authority of the test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// A leaf for 127.0.0.1 and localhost, usable as server and client
    /// certificate: (certificate PEM, key PEM).
    pub fn leaf(&self, name: &str) -> anyhow::Result<(String, String)> {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes `pem` to `dir/name`.
pub fn write(dir: &Path, name: &str, pem: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A service's `[tls]`: a leaf of `ca` named `name` in `dir`, client
/// certificates of `ca` when `auth` asks for them, files polled every
/// second, and `[tls.client]` trusting `ca` and showing the same leaf.
pub fn service_tls(
    dir: &Path,
    ca: &TestCa,
    name: &str,
    auth: ClientAuth,
) -> anyhow::Result<TlsConfig> {
    let (cert, key) = ca.leaf(name)?;
    let cert_file = write(dir, &format!("{name}.crt"), &cert)?;
    let key_file = write(dir, &format!("{name}.key"), &key)?;
    let ca_file = write(dir, "ca.crt", &ca.pem)?;
    Ok(TlsConfig {
        cert_file: Some(cert_file.clone()),
        key_file: Some(key_file.clone()),
        client_ca_file: (auth != ClientAuth::None).then(|| ca_file.clone()),
        client_auth: auth,
        reload_interval_secs: 1,
        client: ClientTlsConfig {
            ca_file: Some(ca_file),
            cert_file: Some(cert_file),
            key_file: Some(key_file),
        },
    })
}

/// A client trusting `ca_file`, showing `identity` (certificate and key
/// files) when given.
pub fn client(
    ca_file: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<Arc<ClientTls>> {
    let (cert_file, key_file) = identity.unzip();
    Ok(ClientTls::start(
        &ClientTlsConfig {
            ca_file,
            cert_file,
            key_file,
        },
        None,
    )?)
}

/// `https://addr`, bounded like the services' own calls.
pub fn endpoint(addr: SocketAddr) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5)))
}

/// `grpc.health.v1` over TLS; the error is the call's status.
pub async fn health(
    client: &Arc<ClientTls>,
    addr: SocketAddr,
) -> anyhow::Result<Result<(), tonic::Status>> {
    let channel = client.connect_lazy(endpoint(addr)?);
    Ok(HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ()))
}

/// The leaf certificate the server at `addr` presents to a new connection.
pub async fn served_leaf(
    client: &ClientTls,
    addr: SocketAddr,
) -> anyhow::Result<CertificateDer<'static>> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = client
        .connector()
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first().cloned())
        .context("the server presented no certificate")
}

/// Runs `serve` on a fresh loopback port until the returned sender says
/// stop; waits until the port answers health over TLS (`client`).
pub async fn serve_until_healthy<F, S>(
    client: &Arc<ClientTls>,
    listener: TcpListener,
    serve: S,
) -> anyhow::Result<(SocketAddr, watch::Sender<bool>)>
where
    S: FnOnce(TcpListener, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> F,
    F: Future<Output = Result<(), agentsec_common::server::StartError>> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let shutdown = Box::pin(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let task = tokio::spawn(serve(listener, shutdown));
    // `false`: the service stopped instead.
    let healthy = eventually(
        &format!("a healthy TLS port at {addr}"),
        READY_DEADLINE,
        || async {
            if health(client, addr).await?.is_ok() {
                return Ok(Some(true));
            }
            Ok(task.is_finished().then_some(false))
        },
    )
    .await?;
    if !healthy {
        bail!("the service stopped during start-up: {:?}", task.await);
    }
    Ok((addr, stop))
}

/// A listener on a free loopback port.
pub async fn loopback() -> anyhow::Result<TcpListener> {
    Ok(TcpListener::bind("127.0.0.1:0").await?)
}

/// identity-svc on `backend` outside a [`crate::TestCluster`]: `issuer`,
/// the test pepper and the bootstrap admin of the cluster constants.
pub fn standalone_identity(backend: &TestBackend, issuer: &str) -> agentsec_identity::Config {
    let mut config = agentsec_identity::Config::for_test(
        backend.database(Service::Identity.name()),
        backend.redis(),
    );
    config.issuer = issuer.to_owned();
    config.credentials.pepper = Some(TEST_PEPPER.to_owned());
    config.bootstrap_admin.client_id = Some(ADMIN_CLIENT_ID.to_owned());
    config.bootstrap_admin.client_secret = Some(ADMIN_CLIENT_SECRET.to_owned());
    config
}
