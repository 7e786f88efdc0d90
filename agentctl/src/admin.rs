//! How agentctl authenticates as an admin: a client-credentials token from
//! identity-svc for the bootstrap admin (or an agent with admin scope),
//! whose secret is read from a file (`agentctl dev` writes one).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentsec_common::tls::{ClientTls, ClientTlsConfig};

use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, GrantType, IssueTokenRequest,
};
use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the services are; every subcommand that calls one takes all four.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceUrls {
    /// identity-svc base URL.
    #[arg(
        long,
        env = "AGENTCTL_IDENTITY_URL",
        default_value = "http://127.0.0.1:7401",
        global = true
    )]
    pub identity: String,
    /// policy-svc base URL.
    #[arg(
        long,
        env = "AGENTCTL_POLICY_URL",
        default_value = "http://127.0.0.1:7402",
        global = true
    )]
    pub policy: String,
    /// exchange-svc base URL.
    #[arg(
        long,
        env = "AGENTCTL_EXCHANGE_URL",
        default_value = "http://127.0.0.1:7403",
        global = true
    )]
    pub exchange: String,
    /// audit-svc base URL.
    #[arg(
        long,
        env = "AGENTCTL_AUDIT_URL",
        default_value = "http://127.0.0.1:7404",
        global = true
    )]
    pub audit: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// Admin client id (the bootstrap admin, or an agent with admin scope).
    #[arg(long, env = "AGENTCTL_ADMIN_CLIENT_ID", default_value = crate::stack::DEV_ADMIN_CLIENT_ID, global = true)]
    pub admin_client_id: String,
    /// File holding the admin client secret (`agentctl dev` writes one).
    #[arg(
        long,
        env = "AGENTCTL_ADMIN_SECRET_FILE",
        default_value = ".agentsec/admin-secret",
        global = true
    )]
    pub admin_secret_file: PathBuf,
    /// The audience of admin tokens.
    #[arg(long, default_value = "agentsec", global = true)]
    pub admin_audience: String,
}

/// How agentctl checks `https://` services, and the certificate it shows
/// the ones that ask for one (mTLS).
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM CA certificates the services' certificates must chain to
    /// (default: the Mozilla roots).
    #[arg(long, env = "AGENTCTL_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for services that require one.
    #[arg(
        long,
        env = "AGENTCTL_CLIENT_CERT_FILE",
        global = true,
        requires = "client_key_file"
    )]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(
        long,
        env = "AGENTCTL_CLIENT_KEY_FILE",
        global = true,
        requires = "client_cert_file"
    )]
    pub client_key_file: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS client; the files are read once.
    pub fn client(&self) -> anyhow::Result<Arc<ClientTls>> {
        Ok(ClientTls::start(
            &ClientTlsConfig {
                ca_file: self.ca_file.clone(),
                cert_file: self.client_cert_file.clone(),
                key_file: self.client_key_file.clone(),
            },
            None,
        )?)
    }
}

/// A gRPC channel to `url` (over TLS with `tls` for `https://`), named
/// `what` in errors.
pub async fn connect(url: &str, what: &str, tls: &Arc<ClientTls>) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{what} URL `{url}` is not valid"))?
        .connect_timeout(CONNECT_TIMEOUT);
    // Anything but https goes in cleartext: only say http when meant.
    if !matches!(endpoint.uri().scheme_str(), Some("http" | "https")) {
        anyhow::bail!("{what} URL `{url}` must be http:// or https://");
    }
    tls.connect(endpoint)
        .await
        .with_context(|| format!("connecting to {what} at {url}"))
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .context("the token is not valid metadata")?,
    );
    Ok(request)
}

/// A client-credentials token request of `client_id` for `audience` (all
/// the scopes the client may hold).
pub fn client_credentials(client_id: &str, secret: &str, audience: &str) -> IssueTokenRequest {
    IssueTokenRequest {
        grant_type: GrantType::ClientCredentials as i32,
        client_id: client_id.to_owned(),
        client_authentication: Some(ClientAuthentication::ClientSecret(secret.to_owned())),
        audience: audience.to_owned(),
        ..Default::default()
    }
}

/// A failed call, as agentctl reports it: the status, its message, and
/// what to do next where the code says it.
pub fn failed(status: tonic::Status) -> anyhow::Error {
    let said = status_text(&status);
    match next_step(status.code()) {
        Some(hint) => anyhow::anyhow!("{said}\n  {hint}"),
        None => anyhow::anyhow!("{said}"),
    }
}

/// A status as agentctl shows it: `Code: message`.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// An admin's token from identity-svc for `request` (client credentials);
/// a refusal says where the credentials came from.
pub async fn admin_token(
    client: &mut IdentityServiceClient<Channel>,
    request: impl tonic::IntoRequest<IssueTokenRequest>,
) -> anyhow::Result<String> {
    let response = client.issue_token(request).await.map_err(|status| {
        anyhow::anyhow!(
            "admin token refused: {}\n  check --admin-client-id and \
             --admin-secret-file (AGENTCTL_ADMIN_CLIENT_ID, AGENTCTL_ADMIN_SECRET_FILE); \
             `agentctl dev` writes its admin's secret to .agentsec/admin-secret",
            status.message()
        )
    })?;
    Ok(response.into_inner().access_token)
}

/// A failed call with a next step of the caller's own, for codes whose
/// general hint would not fit (policy versions are not agents or grants).
pub fn failed_then(status: tonic::Status, next_step: &str) -> anyhow::Error {
    anyhow::anyhow!("{}\n  {next_step}", status_text(&status))
}

/// What to try after a call failed with `code`; none where the message
/// already names what is wrong (invalid arguments).
fn next_step(code: tonic::Code) -> Option<&'static str> {
    use tonic::Code;
    Some(match code {
        Code::Unauthenticated => {
            "the credentials were refused: check --admin-client-id and --admin-secret-file \
             (AGENTCTL_ADMIN_CLIENT_ID, AGENTCTL_ADMIN_SECRET_FILE), or get a new person token"
        }
        Code::PermissionDenied => {
            "the caller may not do this: use an admin of the right tenant, or the person the \
             grant belongs to"
        }
        Code::NotFound => {
            "check the id: `agentctl agent list` and `agentctl grant list` show what exists"
        }
        Code::AlreadyExists => "it exists already: use another name, or update it",
        Code::Aborted => "it changed meanwhile: read it again and retry",
        Code::Unavailable | Code::DeadlineExceeded => {
            "the service or its database cannot answer now: is it running? \
             (`agentctl health <url>`)"
        }
        _ => return None,
    })
}

impl AdminArgs {
    /// An admin token from identity-svc.
    pub async fn token(
        &self,
        client: &mut IdentityServiceClient<Channel>,
    ) -> anyhow::Result<String> {
        let secret = std::fs::read_to_string(&self.admin_secret_file).with_context(|| {
            format!(
                "reading the admin secret from {}",
                self.admin_secret_file.display()
            )
        })?;
        admin_token(
            client,
            client_credentials(&self.admin_client_id, secret.trim(), &self.admin_audience),
        )
        .await
    }

    /// Connects to identity-svc at `identity` and gets an admin token.
    pub async fn connect_and_token(
        &self,
        identity: &str,
        tls: &Arc<ClientTls>,
    ) -> anyhow::Result<(IdentityServiceClient<Channel>, String)> {
        let mut client = IdentityServiceClient::new(connect(identity, "identity-svc", tls).await?);
        let token = self.token(&mut client).await?;
        Ok((client, token))
    }
}

#[cfg(test)]
mod tests {
    use agentsec_common::tls::ClientAuth;
    use agentsec_integration_tests::cluster::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};
    use agentsec_integration_tests::tls::{
        loopback, serve_until_healthy, service_tls, standalone_identity, TestCa,
    };
    use agentsec_integration_tests::{Service, TestBackend};

    use super::*;

    #[tokio::test]
    async fn agentctl_reaches_an_https_identity_svc_with_its_ca_and_certificate() {
        let backend = TestBackend::from_env().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("agentsec test CA").unwrap();
        let listener = loopback().await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let mut config = standalone_identity(&backend, &url);
        config.tls = service_tls(dir.path(), &ca, "identity-svc", ClientAuth::Required).unwrap();
        let tls = TlsArgs {
            ca_file: config.tls.client.ca_file.clone(),
            client_cert_file: config.tls.client.cert_file.clone(),
            client_key_file: config.tls.client.key_file.clone(),
        };
        let (_, stop) = serve_until_healthy(
            &tls.client().unwrap(),
            listener,
            move |listener, shutdown| agentsec_identity::serve(config, listener, shutdown),
        )
        .await
        .unwrap();
        let secret_file = dir.path().join("admin-secret");
        std::fs::write(&secret_file, ADMIN_CLIENT_SECRET).unwrap();
        let admin = AdminArgs {
            admin_client_id: ADMIN_CLIENT_ID.to_owned(),
            admin_secret_file: secret_file,
            admin_audience: "agentsec".to_owned(),
        };

        let (_, token) = admin
            .connect_and_token(&url, &tls.client().unwrap())
            .await
            .unwrap();
        assert_eq!(token.split('.').count(), 3);
        // Without the CA, or without a certificate, agentctl is refused.
        let untrusting = TlsArgs {
            ca_file: None,
            ..tls.clone()
        };
        assert!(admin
            .connect_and_token(&url, &untrusting.client().unwrap())
            .await
            .is_err());
        let anonymous = TlsArgs {
            client_cert_file: None,
            client_key_file: None,
            ..tls.clone()
        };
        assert!(admin
            .connect_and_token(&url, &anonymous.client().unwrap())
            .await
            .is_err());

        // A scheme other than http or https is refused, not sent in
        // cleartext.
        let err = connect(
            "grpcs://127.0.0.1:1",
            "identity-svc",
            &tls.client().unwrap(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("must be http:// or https://"),
            "{err}"
        );

        stop.send(true).unwrap();
        backend.clean_up(&[Service::Identity.name()]).await.unwrap();
    }
}
