//! How agentctl authenticates as an admin: a client-credentials token from
//! identity-svc for the bootstrap admin (or an agent with admin scope),
//! whose secret is read from a file (`agentctl dev` writes one).

use std::path::PathBuf;

use agentsec_proto::identity::v1::identity_service_client::IdentityServiceClient;
use agentsec_proto::identity::v1::{
    issue_token_request::ClientAuthentication, GrantType, IssueTokenRequest,
};
use anyhow::Context as _;
use tonic::transport::Channel;

#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// identity-svc base URL.
    #[arg(
        long,
        env = "AGENTSEC_IDENTITY_URL",
        default_value = "http://127.0.0.1:7401",
        global = true
    )]
    pub identity: String,
    /// Admin client id (the bootstrap admin, or an agent with admin scope).
    #[arg(long, env = "AGENTSEC_ADMIN_CLIENT_ID", default_value = crate::dev::DEV_ADMIN_CLIENT_ID, global = true)]
    pub admin_client_id: String,
    /// File holding the admin client secret (`agentctl dev` writes one).
    #[arg(
        long,
        env = "AGENTSEC_ADMIN_SECRET_FILE",
        default_value = ".agentsec/admin-secret",
        global = true
    )]
    pub admin_secret_file: PathBuf,
    /// The audience of admin tokens.
    #[arg(long, default_value = "agentsec", global = true)]
    pub admin_audience: String,
}

/// A gRPC channel to `url`, named `what` in errors.
pub async fn connect(url: &str, what: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())
        .with_context(|| format!("{what} URL `{url}` is not valid"))?
        .connect()
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

/// A failed call, as agentctl reports it.
pub fn failed(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
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
        let response = client
            .issue_token(IssueTokenRequest {
                grant_type: GrantType::ClientCredentials as i32,
                client_id: self.admin_client_id.clone(),
                client_authentication: Some(ClientAuthentication::ClientSecret(
                    secret.trim().to_owned(),
                )),
                audience: self.admin_audience.clone(),
                ..Default::default()
            })
            .await
            .map_err(|status| anyhow::anyhow!("admin token refused: {}", status.message()))?;
        Ok(response.into_inner().access_token)
    }

    /// Connects to identity-svc and gets an admin token.
    pub async fn connect_and_token(
        &self,
    ) -> anyhow::Result<(IdentityServiceClient<Channel>, String)> {
        let mut client = IdentityServiceClient::new(connect(&self.identity, "identity-svc").await?);
        let token = self.token(&mut client).await?;
        Ok((client, token))
    }
}
