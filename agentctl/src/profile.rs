//! The profile: where a stack's services are and how to reach them as an
//! admin, written by `agentctl dev` (`<data dir>/profile.json`) and read by
//! every other subcommand, so that they follow the stack whatever `--host`
//! or data directory it runs with.
//!
//! A profile value stands where the variable it names is unset: flags beat
//! variables, variables beat the profile, the profile beats the defaults.
//! It is found at `--profile` / `AGENTCTL_PROFILE`, else at
//! `.agentsec/profile.json` under the working directory, if there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The profile's name in a data directory.
pub const FILE_NAME: &str = "profile.json";
/// Where a profile is looked for when none is named.
const DEFAULT_PATH: &str = ".agentsec/profile.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub identity_url: String,
    pub policy_url: String,
    pub exchange_url: String,
    pub audit_url: String,
    pub admin_client_id: String,
    pub admin_secret_file: PathBuf,
    /// Where the development issuers' keys are (`token user`,
    /// `token dev-issuer`).
    pub data_dir: PathBuf,
}

impl Profile {
    /// The profile of a stack serving at `endpoints` (identity, policy,
    /// exchange, audit) with its data in `data_dir`.
    pub fn of_stack(
        endpoints: [SocketAddr; 4],
        admin_client_id: &str,
        admin_secret_file: &Path,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let [identity, policy, exchange, audit] = endpoints.map(reachable_url);
        Ok(Self {
            identity_url: identity,
            policy_url: policy,
            exchange_url: exchange,
            audit_url: audit,
            admin_client_id: admin_client_id.to_owned(),
            admin_secret_file: std::path::absolute(admin_secret_file)
                .context("the admin secret file's path")?,
            data_dir: std::path::absolute(data_dir).context("the data directory's path")?,
        })
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the profile {}", path.display()))
    }

    /// The variables the profile stands in for, with its values.
    fn variables(&self) -> [(&'static str, String); 7] {
        [
            ("AGENTCTL_IDENTITY_URL", self.identity_url.clone()),
            ("AGENTCTL_POLICY_URL", self.policy_url.clone()),
            ("AGENTCTL_EXCHANGE_URL", self.exchange_url.clone()),
            ("AGENTCTL_AUDIT_URL", self.audit_url.clone()),
            ("AGENTCTL_ADMIN_CLIENT_ID", self.admin_client_id.clone()),
            (
                "AGENTCTL_ADMIN_SECRET_FILE",
                self.admin_secret_file.display().to_string(),
            ),
            ("AGENTCTL_DATA_DIR", self.data_dir.display().to_string()),
        ]
    }
}

/// A URL a client on this machine reaches `addr` at: a wildcard address
/// (`--host 0.0.0.0`) is reached on loopback.
fn reachable_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The profile at `named` (`--profile`, `AGENTCTL_PROFILE`; an error when
/// missing), else the one in `.agentsec/` if any.
fn find(named: Option<&Path>) -> anyhow::Result<Option<Profile>> {
    let path = match named {
        Some(path) => path,
        None if Path::new(DEFAULT_PATH).is_file() => Path::new(DEFAULT_PATH),
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the profile {} (--profile, AGENTCTL_PROFILE)",
            path.display()
        )
    })?;
    let profile = serde_json::from_str(&text).with_context(|| {
        format!(
            "the profile {} is not an agentctl profile (agentctl dev writes one)",
            path.display()
        )
    })?;
    Ok(Some(profile))
}

/// Makes the profile's values those of the variables that are unset, so
/// that parsing the arguments again takes flags, then variables, then the
/// profile. Runs before any thread is started (it sets the process
/// environment).
pub fn apply(named: Option<&Path>) -> anyhow::Result<()> {
    let Some(profile) = find(named)? else {
        return Ok(());
    };
    for (name, value) in profile.variables() {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_host_is_reached_on_loopback() {
        assert_eq!(
            reachable_url("0.0.0.0:7401".parse().unwrap()),
            "http://127.0.0.1:7401"
        );
        assert_eq!(
            reachable_url("[::]:7402".parse().unwrap()),
            "http://[::1]:7402"
        );
        assert_eq!(
            reachable_url("10.1.2.3:7403".parse().unwrap()),
            "http://10.1.2.3:7403"
        );
    }

    #[test]
    fn a_named_profile_must_exist_and_be_one() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.json");
        let err = format!("{:#}", find(Some(&missing)).unwrap_err());
        assert!(err.contains("none.json"), "{err}");
        let other = dir.path().join("other.json");
        std::fs::write(&other, r#"{"identity_url": "http://x", "colour": "red"}"#).unwrap();
        let err = format!("{:#}", find(Some(&other)).unwrap_err());
        assert!(err.contains("not an agentctl profile"), "{err}");
    }
}
