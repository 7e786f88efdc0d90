//! `agentctl dev` writes a profile that every other subcommand picks up,
//! whatever `--host`: run from the stack's directory, or from anywhere with
//! `AGENTCTL_PROFILE`, agentctl reaches the stack with no flags; a flag or
//! a variable still wins over it.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// A loopback address other than 127.0.0.1, so that a stack a developer
/// runs on the default address does not collide with this one.
const HOST: &str = "127.0.0.3";

fn agentctl(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agentctl"));
    // The test's own environment must not steer agentctl.
    for (name, _) in std::env::vars() {
        if name.starts_with("AGENTSEC_") || name.starts_with("AGENTCTL_") {
            command.env_remove(name);
        }
    }
    command.current_dir(dir).env("RUST_LOG", "off");
    command
}

/// `agentctl dev --host HOST` in `dir`, once its banner is printed; its
/// stdout stays open (it prints again when it stops).
fn start_dev(dir: &Path) -> anyhow::Result<(Child, BufReader<ChildStdout>, Vec<String>)> {
    let mut dev = agentctl(dir)
        .args(["dev", "--host", HOST])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let Some(stdout) = dev.stdout.take() else {
        anyhow::bail!("agentctl dev's stdout is not piped");
    };
    let mut stdout = BufReader::new(stdout);
    let mut banner = Vec::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line)? == 0 {
            let _ = dev.kill();
            anyhow::bail!("agentctl dev ended before its banner: {banner:?}");
        }
        let done = line.starts_with("Ctrl-C stops them.");
        banner.push(line);
        if done {
            return Ok((dev, stdout, banner));
        }
    }
}

fn ok(output: Output) -> anyhow::Result<String> {
    anyhow::ensure!(output.status.success(), "agentctl failed: {output:?}");
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn every_subcommand_follows_the_profile_agentctl_dev_writes() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(|| -> anyhow::Result<()> {
        let stack_dir = tempfile::tempdir()?;
        let elsewhere = tempfile::tempdir()?;
        let (mut dev, _stdout, banner) = start_dev(stack_dir.path())?;
        let profile = stack_dir.path().join(".agentsec/profile.json");
        let outcome = (|| -> anyhow::Result<()> {
            anyhow::ensure!(
                banner.iter().any(|line| line.contains("AGENTCTL_PROFILE=")),
                "the banner says how to point agentctl at the stack: {banner:?}"
            );
            let written: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&profile)?)?;
            assert_eq!(written["identity_url"], format!("http://{HOST}:7401"));

            // In the stack's directory, with no flag and no variable.
            let registered = ok(agentctl(stack_dir.path())
                .args(["agent", "register", "--tenant", "acme", "--owner", "alice"])
                .args([
                    "--name",
                    "profiled-bot",
                    "--audience",
                    "mcp:github",
                    "-o",
                    "json",
                ])
                .output()?)?;
            let agent: serde_json::Value = serde_json::from_str(&registered)?;
            let id = agent["id"].as_str().unwrap_or_default().to_owned();
            assert!(id.starts_with("agt_"), "{registered}");

            // Anywhere, with AGENTCTL_PROFILE: the registry, and the
            // development issuer's keys from the profile's data directory.
            let listed = ok(agentctl(elsewhere.path())
                .env("AGENTCTL_PROFILE", &profile)
                .args(["agent", "list", "--tenant", "acme", "-o", "json"])
                .output()?)?;
            assert!(listed.contains(&id), "{listed}");
            let token = ok(agentctl(elsewhere.path())
                .env("AGENTCTL_PROFILE", &profile)
                .args(["token", "user", "--sub", "alice"])
                .output()?)?;
            assert_eq!(token.trim().split('.').count(), 3, "{token}");

            // Without it, from elsewhere, the defaults (127.0.0.1) are used:
            // nothing listens there for this stack.
            let unreached = agentctl(elsewhere.path())
                .args(["agent", "list", "--tenant", "acme", "--identity"])
                .arg("http://127.0.0.1:1")
                .env("AGENTCTL_PROFILE", &profile)
                .output()?;
            assert!(!unreached.status.success(), "a flag beats the profile");
            let stderr = String::from_utf8_lossy(&unreached.stderr);
            assert!(stderr.contains("127.0.0.1:1"), "{stderr}");

            // A named profile that is missing is an error, not a fallback.
            let missing = agentctl(elsewhere.path())
                .env("AGENTCTL_PROFILE", elsewhere.path().join("none.json"))
                .args(["agent", "list", "--tenant", "acme"])
                .output()?;
            assert!(!missing.status.success());
            assert!(String::from_utf8_lossy(&missing.stderr).contains("none.json"));
            Ok(())
        })();
        let _ = Command::new("kill")
            .args(["-INT", &dev.id().to_string()])
            .status();
        let stopped = dev.wait()?;
        outcome?;
        anyhow::ensure!(stopped.success(), "agentctl dev stopped with {stopped}");
        Ok(())
    })
    .await?
}
