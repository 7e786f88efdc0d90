//! agentctl's API subcommands as a person runs them: the built binary, as a
//! process, against one test cluster (all four services in this test
//! process, on ephemeral ports); each subcommand's table, its JSON and its
//! error for a bad input.

mod support;

use std::process::Command;

use agentsec_integration_tests::cluster::{
    test_user_issuer_key, TEST_USER_AUDIENCE, TEST_USER_ISSUER,
};
use agentsec_integration_tests::{Service, TestCluster};
use anyhow::Context as _;
use serde_json::{json, Value};
use support::{field, Agentctl};

/// A person token for `sub` (tenant acme) from the cluster's user issuer.
fn person_token(sub: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let key = test_user_issuer_key().context("no test user-issuer key")?;
    Ok(key.sign(
        "JWT",
        &json!({
            "iss": TEST_USER_ISSUER, "sub": sub, "aud": TEST_USER_AUDIENCE,
            "tenant": "acme", "iat": now, "nbf": now, "exp": now + 600,
        }),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_credentials_and_grants_are_managed_from_the_command_line() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let agentctl = Agentctl::new(&cluster)?;

    // register: a table by default, with the new agent's id.
    let table = agentctl
        .run(&[
            "agent",
            "register",
            "--tenant=acme",
            "--owner=alice",
            "--name=cli-bot",
            "--model=claude-sonnet-4",
            "--provider=anthropic",
            "--audience=https://api.test",
            "--scope=issues:read",
            "--attribute=trust_tier=2",
        ])
        .await?
        .ok()?;
    let agent_id = field(&table, "ID")?.to_owned();
    assert!(agent_id.starts_with("agt_"), "{table}");
    assert_eq!(field(&table, "STATUS")?, "active", "{table}");
    assert_eq!(field(&table, "MODEL")?, "claude-sonnet-4 (anthropic)");
    assert_eq!(field(&table, "ATTRIBUTES")?, "trust_tier=2");
    assert_eq!(field(&table, "CEILING")?, "https://api.test: issues:read");

    // get, as JSON with the proto field names.
    let agent = agentctl
        .run(&["agent", "get", "--agent-id", &agent_id, "--output", "json"])
        .await?
        .json()?;
    assert_eq!(agent["id"], agent_id.as_str());
    assert_eq!(agent["status"], "AGENT_STATUS_ACTIVE");
    assert_eq!(agent["ceiling"]["scopes"], json!(["issues:read"]));
    assert!(agent["create_time"]
        .as_str()
        .unwrap_or_default()
        .ends_with('Z'));

    // An unknown agent: a clear message, a failure, nothing on stdout.
    let unknown = "agt_00000000000000000000000000";
    let stderr = agentctl
        .run(&["agent", "get", "--agent-id", unknown])
        .await?
        .failed()?;
    assert!(stderr.contains("NotFound"), "{stderr}");
    assert!(stderr.contains(unknown), "{stderr}");
    assert!(stderr.contains("`agentctl agent list`"), "{stderr}");

    // A wrong admin secret: refused, with where the credentials come from.
    let dir = tempfile::tempdir()?;
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-admin-secret-0123456789abcdef")?;
    let wrong = format!("--admin-secret-file={}", wrong.display());
    let stderr = agentctl
        .run(&["agent", "list", "--tenant=acme", &wrong])
        .await?
        .failed()?;
    assert!(stderr.contains("admin token refused"), "{stderr}");
    assert!(stderr.contains("AGENTCTL_ADMIN_SECRET_FILE"), "{stderr}");
    assert!(!stderr.contains("not-the-admin-secret"), "{stderr}");

    // update: only what is given changes; the ceiling keeps its audiences.
    let updated = agentctl
        .run(&[
            "agent",
            "update",
            "--agent-id",
            &agent_id,
            "--scope=issues:read",
            "--scope=issues:write",
            "--attribute=project=payments",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    assert_eq!(
        updated["ceiling"],
        json!({"audiences": ["https://api.test"], "scopes": ["issues:read", "issues:write"]})
    );
    assert_eq!(
        updated["attributes"],
        json!({"trust_tier": "2", "project": "payments"})
    );
    assert_eq!(updated["name"], "cli-bot");
    let stderr = agentctl
        .run(&["agent", "update", "--agent-id", &agent_id])
        .await?
        .failed()?;
    assert!(stderr.contains("nothing to update"), "{stderr}");

    // list: a table with a row per agent, filters applied.
    agentctl
        .run(&[
            "agent",
            "register",
            "--tenant=acme",
            "--owner=bob",
            "--name=other-bot",
        ])
        .await?
        .ok()?;
    let table = agentctl
        .run(&["agent", "list", "--tenant=acme", "--owner=alice"])
        .await?
        .ok()?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("ID "), "{table}");
    assert!(lines[1].starts_with(&agent_id), "{table}");
    assert!(lines[1].contains("active"), "{table}");
    let listed = agentctl
        .run(&["agent", "list", "--tenant=acme", "-o", "json"])
        .await?
        .json()?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed:#}");
    let table = agentctl
        .run(&["agent", "list", "--tenant=acme", "--status=suspended"])
        .await?
        .ok()?;
    assert_eq!(table, "no agents\n");

    // Credentials: a secret (shown once), a public key, a federated one.
    let secret = agentctl
        .run(&[
            "agent",
            "credential",
            "add-secret",
            "--agent-id",
            &agent_id,
            "-o",
            "json",
        ])
        .await?
        .json()?;
    assert_eq!(secret["client_id"], agent_id.as_str());
    assert!(secret["client_secret"].as_str().unwrap_or_default().len() >= 40);
    let secret_id = secret["credential"]["id"].as_str().unwrap_or_default();
    assert!(secret_id.starts_with("cred_"), "{secret:#}");
    // The old spelling still works.
    let table = agentctl
        .run(&["agent", "secret", "--agent-id", &agent_id])
        .await?
        .ok()?;
    assert_eq!(field(&table, "CLIENT ID")?, agent_id);
    assert_eq!(field(&table, "EXPIRES")?, "never");

    let dir = tempfile::tempdir()?;
    let jwk_file = dir.path().join("key.jwk");
    let key = agentsec_common::keys::SigningKey::generate(
        agentsec_common::keys::SigningAlgorithm::EdDsa,
    )?;
    let mut public = serde_json::to_value(key.public_jwk())?;
    public["kid"] = json!("cli-key");
    std::fs::write(&jwk_file, public.to_string())?;
    let jwk_path = jwk_file.display().to_string();
    let table = agentctl
        .run(&[
            "agent",
            "credential",
            "add-key",
            "--agent-id",
            &agent_id,
            "--jwk-file",
            &jwk_path,
            "--description",
            "laptop key",
            "--expires-in",
            "3600",
        ])
        .await?
        .ok()?;
    assert_eq!(field(&table, "TYPE")?, "public_key", "{table}");
    assert!(
        field(&table, "DETAILS")?.starts_with("kid cli-key"),
        "{table}"
    );
    assert_ne!(field(&table, "EXPIRES")?, "-", "{table}");

    // identity-svc trusts no federated issuer in tests: the refusal is
    // the service's, named.
    let stderr = agentctl
        .run(&[
            "agent",
            "credential",
            "add-federated",
            "--agent-id",
            &agent_id,
            "--issuer",
            "https://ci.example",
            "--subject",
            "repo:x",
            "--audience",
            "agentsec",
        ])
        .await?
        .failed()?;
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");

    let table = agentctl
        .run(&["agent", "credential", "list", "--agent-id", &agent_id])
        .await?
        .ok()?;
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(table.contains("client_secret"), "{table}");
    assert!(table.contains("laptop key"), "{table}");
    let keys = agentctl
        .run(&[
            "agent",
            "credential",
            "list",
            "--agent-id",
            &agent_id,
            "--type",
            "public-key",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    assert_eq!(keys[0]["public_key"]["jwk"]["kid"], "cli-key", "{keys:#}");
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "{keys:#}");

    let said = agentctl
        .run(&[
            "agent",
            "credential",
            "delete",
            "--agent-id",
            &agent_id,
            "--credential-id",
            secret_id,
        ])
        .await?
        .ok()?;
    assert_eq!(
        said,
        format!("deleted credential {secret_id} of agent {agent_id}\n")
    );
    let stderr = agentctl
        .run(&[
            "agent",
            "credential",
            "delete",
            "--agent-id",
            &agent_id,
            "--credential-id",
            secret_id,
        ])
        .await?
        .failed()?;
    assert!(stderr.contains("NotFound"), "{stderr}");

    // Grants, as alice with her token.
    let alice = person_token("alice")?;
    let person = format!("--person-token={alice}");
    let grant = agentctl
        .run(&[
            "grant",
            "create",
            &person,
            "--agent-id",
            &agent_id,
            "--audience",
            "https://api.test",
            "--scope",
            "issues:read",
            "--purpose",
            "triage",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    let grant_id = grant["id"].as_str().unwrap_or_default().to_owned();
    assert!(grant_id.starts_with("grt_"), "{grant:#}");
    assert_eq!(grant["person_subject"], "alice");
    assert_eq!(grant["status"], "GRANT_STATUS_ACTIVE");
    let table = agentctl.run(&["grant", "list", &person]).await?.ok()?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[1].starts_with(&grant_id), "{table}");
    assert!(lines[1].contains("active"), "{table}");

    let table = agentctl
        .run(&[
            "grant",
            "revoke",
            &person,
            "--grant-id",
            &grant_id,
            "--reason",
            "done",
        ])
        .await?
        .ok()?;
    assert_eq!(field(&table, "STATUS")?, "revoked", "{table}");
    assert_eq!(field(&table, "REVOKE REASON")?, "done", "{table}");
    let table = agentctl.run(&["grant", "list", &person]).await?.ok()?;
    assert_eq!(table, "no active grants\n");
    let all = agentctl
        .run(&["grant", "list", &person, "--all", "-o", "json"])
        .await?
        .json()?;
    assert_eq!(all[0]["status"], "GRANT_STATUS_REVOKED", "{all:#}");
    // Without a person token the error says how to get one.
    let stderr = agentctl.run(&["grant", "list"]).await?.failed()?;
    assert!(stderr.contains("agentctl token user"), "{stderr}");

    // The agent's lifecycle: suspend, reactivate, revoke (final).
    for (command, status) in [
        ("suspend", "suspended"),
        ("reactivate", "active"),
        ("revoke", "revoked"),
    ] {
        let table = agentctl
            .run(&[
                "agent",
                command,
                "--agent-id",
                &agent_id,
                "--reason",
                "cli test",
            ])
            .await?
            .ok()?;
        assert_eq!(field(&table, "STATUS")?, status, "{command}: {table}");
        assert_eq!(field(&table, "STATUS REASON")?, "cli test");
    }
    let stderr = agentctl
        .run(&[
            "agent",
            "reactivate",
            "--agent-id",
            &agent_id,
            "--reason",
            "again",
        ])
        .await?
        .failed()?;
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");

    cluster.shutdown().await
}

/// The policy set the decision tests ask about: list_* allowed for trusted
/// agents on mcp:github, delete_repo denied.
const POLICY: &str = r#"{"rules": [
  {"id": "github-tools", "effect": "allow", "agent": "*", "audience": "mcp:github",
   "resource": "mcp:github/list_*", "actions": ["tools/call"],
   "condition": "agent.trust_tier in [\"1\", \"2\"]"},
  {"id": "no-delete", "effect": "deny", "agent": "*", "resource": "mcp:github/delete_*",
   "actions": ["tools/call"]}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_asked_and_explained_from_flags_a_file_or_a_token() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let agentctl = Agentctl::new(&cluster)?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, POLICY)?;
    let policy = policy.display().to_string();
    agentctl
        .run(&["policy", "put", "--tenant=acme", "--file", &policy])
        .await?
        .ok()?;
    let agent = agentctl
        .run(&[
            "agent",
            "register",
            "--tenant=acme",
            "--owner=alice",
            "--name=checked-bot",
            "--audience=mcp:github",
            "--attribute=trust_tier=2",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    let agent_id = agent["id"].as_str().unwrap_or_default().to_owned();
    let agent_flag = format!("--agent={agent_id}");
    let question = |tool: &str| {
        vec![
            "--tenant=acme".to_owned(),
            agent_flag.clone(),
            "--audience=mcp:github".to_owned(),
            "--action=tools/call".to_owned(),
            "--resource-type=mcp.tool".to_owned(),
            format!("--resource=mcp:github/{tool}"),
            // Quoted: a string, as registry attributes are.
            "--agent-attribute=trust_tier=\"2\"".to_owned(),
        ]
    };
    let args = |head: &[&str], tail: &[String]| -> Vec<String> {
        head.iter()
            .map(|arg| (*arg).to_owned())
            .chain(tail.iter().cloned())
            .collect()
    };

    // From flags: allowed by github-tools, with a decision id.
    let table = agentctl
        .run(&args(&["check"], &question("list_issues")))
        .await?
        .ok()?;
    assert_eq!(field(&table, "DECISION")?, "allow", "{table}");
    assert_eq!(field(&table, "POLICIES")?, "github-tools", "{table}");
    assert!(field(&table, "DECISION ID")?.starts_with("dec_"), "{table}");
    let denied = agentctl
        .run(&args(&["check", "-o", "json"], &question("delete_repo")))
        .await?
        .json()?;
    assert_eq!(denied["effect"], "EFFECT_DENY", "{denied:#}");
    assert_eq!(denied["policy_ids"], json!(["no-delete"]), "{denied:#}");

    // Unquoted, 2 is an int, which the condition does not take.
    let mut int_tier = question("list_issues");
    int_tier.pop();
    int_tier.push("--agent-attribute=trust_tier=2".to_owned());
    let denied = agentctl
        .run(&args(&["check", "-o", "json"], &int_tier))
        .await?
        .json()?;
    assert_eq!(denied["effect"], "EFFECT_DENY", "{denied:#}");

    // From a file, with proto-JSON names.
    let file = dir.path().join("question.json");
    std::fs::write(
        &file,
        json!({
            "principal": {"tenant": "acme", "agentId": agent_id,
                          "agentAttributes": {"trust_tier": "3"}},
            "audience": "mcp:github", "action": "tools/call",
            "resource": {"type": "mcp.tool", "id": "mcp:github/list_issues"}
        })
        .to_string(),
    )?;
    let file = file.display().to_string();
    let decided = agentctl
        .run(&["check", "--file", &file, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(decided["effect"], "EFFECT_DENY", "tier 3 > 2: {decided:#}");
    let stderr = agentctl
        .run(&["check", "--file", &file, "--tenant=acme"])
        .await?
        .failed()?;
    assert!(stderr.contains("not both"), "{stderr}");
    let stderr = agentctl
        .run(&["check", "--tenant=acme", &agent_flag])
        .await?
        .failed()?;
    assert!(stderr.contains("--audience is missing"), "{stderr}");

    // explain: the decision and each candidate rule's evaluation.
    let table = agentctl
        .run(&args(&["explain"], &question("list_issues")))
        .await?
        .ok()?;
    assert_eq!(field(&table, "DECISION")?, "allow", "{table}");
    assert!(table.contains("rules considered:"), "{table}");
    let row = table
        .lines()
        .find(|line| line.starts_with("github-tools"))
        .with_context(|| format!("no github-tools row: {table}"))?;
    assert!(row.contains("allow") && row.contains("true"), "{row}");
    let explained = agentctl
        .run(&["explain", "--file", &file, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(explained["total_rules"], 2, "{explained:#}");
    let evaluation = &explained["evaluations"][0];
    assert_eq!(evaluation["policy_id"], "github-tools", "{explained:#}");
    assert_eq!(evaluation["condition_result"], "CONDITION_RESULT_FALSE");
    assert_eq!(evaluation["matched"], false);

    // check --token: the principal is the token's.
    let secret = agentctl
        .run(&[
            "agent",
            "credential",
            "add-secret",
            "--agent-id",
            &agent_id,
            "-o",
            "json",
        ])
        .await?
        .json()?;
    let token = cluster
        .client_token(
            &agent_id,
            secret["client_secret"].as_str().unwrap_or_default(),
            "mcp:github",
            "",
        )
        .await?;
    let token_flag = format!("--token={token}");
    let by_token = |tool: &str| {
        vec![
            "check".to_owned(),
            token_flag.clone(),
            "--audience=mcp:github".to_owned(),
            "--action=tools/call".to_owned(),
            "--resource-type=mcp.tool".to_owned(),
            format!("--resource=mcp:github/{tool}"),
        ]
    };
    let table = agentctl.run(&by_token("list_issues")).await?.ok()?;
    assert_eq!(field(&table, "DECISION")?, "allow", "{table}");
    assert_eq!(field(&table, "AGENT")?, agent_id, "{table}");
    assert_eq!(field(&table, "TENANT")?, "acme", "{table}");
    assert_eq!(
        field(&table, "AGENT ATTRIBUTES")?,
        "trust_tier=2",
        "{table}"
    );
    let mut json_args = by_token("delete_repo");
    json_args.push("-o=json".to_owned());
    let denied = agentctl.run(&json_args).await?.json()?;
    assert_eq!(denied["effect"], "EFFECT_DENY", "{denied:#}");
    assert_eq!(denied["principal"]["agent_id"], agent_id.as_str());
    let mut with_principal = by_token("list_issues");
    with_principal.push("--tenant=acme".to_owned());
    let stderr = agentctl.run(&with_principal).await?.failed()?;
    assert!(stderr.contains("--tenant comes from the token"), "{stderr}");
    // A token that is not one: the service's refusal, without the token.
    let mut forged = by_token("list_issues");
    forged[1] = "--token=not.a.token".to_owned();
    let stderr = agentctl.run(&forged).await?.failed()?;
    assert!(stderr.contains("Unauthenticated"), "{stderr}");
    assert!(!stderr.contains("not.a.token"), "{stderr}");

    cluster.shutdown().await
}

/// Exchanges allowed for any audience and scope in tenant acme.
const EXCHANGE_POLICY: &str = r#"{"rules": [
  {"id": "exchange", "effect": "allow", "agent": "*", "resource": "audience:*",
   "actions": ["token:exchange"], "description": "@match-all"},
  {"id": "scopes", "effect": "allow", "agent": "*", "resource": "scope:repo:*",
   "actions": ["token:exchange"]}
]}"#;

/// A development person-token issuer key in `dir`, as `agentctl dev`
/// writes it.
fn dev_issuer_key(dir: &std::path::Path) -> anyhow::Result<()> {
    use base64::Engine as _;
    let key = agentsec_common::keys::SigningKey::generate(
        agentsec_common::keys::SigningAlgorithm::EdDsa,
    )?;
    let body = base64::engine::general_purpose::STANDARD.encode(key.pkcs8_der());
    // PEM: base64 in lines of 64 characters.
    let lines = body
        .as_bytes()
        .chunks(64)
        .map(std::str::from_utf8)
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::write(
        dir.join("dev-user-issuer.pem"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        ),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_obtained_exchanged_decoded_and_introspected() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let agentctl = Agentctl::new(&cluster)?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, EXCHANGE_POLICY)?;
    agentctl
        .run(&[
            "policy",
            "put",
            "--tenant=acme",
            "--file",
            &policy.display().to_string(),
        ])
        .await?
        .ok()?;
    let identity = cluster.issuer(Service::Identity);
    let exchange = cluster.issuer(Service::Exchange);
    let agent = agentctl
        .run(&[
            "agent",
            "register",
            "--tenant=acme",
            "--owner=alice",
            "--name=token-bot",
            &format!("--audience={exchange}"),
            "--audience=https://api.test",
            "--scope=repo:read",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    let agent_id = agent["id"].as_str().unwrap_or_default().to_owned();
    let secret = agentctl
        .run(&[
            "agent",
            "credential",
            "add-secret",
            "--agent-id",
            &agent_id,
            "-o",
            "json",
        ])
        .await?
        .json()?;
    let secret_file = dir.path().join("bot.secret");
    std::fs::write(
        &secret_file,
        secret["client_secret"].as_str().unwrap_or_default(),
    )?;
    let secret_file = secret_file.display().to_string();

    // client-credentials: the token alone, or its facts.
    let actor = agentctl
        .run(&[
            "token",
            "client-credentials",
            "--client-id",
            &agent_id,
            "--client-secret-file",
            &secret_file,
            "--audience",
            &exchange,
            "--token-only",
        ])
        .await?
        .ok()?
        .trim()
        .to_owned();
    assert_eq!(actor.split('.').count(), 3, "{actor}");
    let table = agentctl
        .run(&[
            "token",
            "client-credentials",
            "--client-id",
            &agent_id,
            "--client-secret-file",
            &secret_file,
            "--audience",
            &exchange,
        ])
        .await?
        .ok()?;
    assert_eq!(field(&table, "SCOPE")?, "repo:read", "{table}");
    assert_eq!(field(&table, "TOKEN TYPE")?, "Bearer", "{table}");
    let stderr = agentctl
        .run(&[
            "token",
            "client-credentials",
            "--client-id",
            &agent_id,
            "--client-secret-file",
            &secret_file,
            "--audience",
            "https://nowhere.test",
        ])
        .await?
        .failed()?;
    assert!(
        stderr.contains("invalid_target") || stderr.contains("audience"),
        "{stderr}"
    );

    // decode: verified against identity-svc's JWKS.
    let table = agentctl
        .run(&["token", "decode", "--token", &actor])
        .await?
        .ok()?;
    assert_eq!(
        field(&table, "SIGNATURE")?,
        format!("verified with {identity}/.well-known/jwks.json"),
        "{table}"
    );
    assert_eq!(field(&table, "VALIDITY")?, "valid", "{table}");
    assert_eq!(field(&table, "SUBJECT")?, agent_id, "{table}");
    assert!(!table.contains("Delegation"), "{table}");
    // A token whose signature does not match is refused, named as such.
    let (signed, _) = actor.rsplit_once('.').context("a JWT")?;
    let forged = format!("{signed}.AAAA");
    let stderr = agentctl
        .run(&["token", "decode", "--token", &forged])
        .await?
        .failed()?;
    assert!(
        stderr.contains("the token has an invalid signature"),
        "{stderr}"
    );
    assert!(!stderr.contains(signed), "{stderr}");
    let stderr = agentctl
        .run(&["token", "decode", "--token", "garbage"])
        .await?
        .failed()?;
    assert!(stderr.contains("not a well-formed JWT"), "{stderr}");

    // exchange alice's token and the agent's for a delegated one.
    let alice = person_token("alice")?;
    agentctl
        .run(&[
            "grant",
            "create",
            &format!("--person-token={alice}"),
            "--agent-id",
            &agent_id,
            "--audience=https://api.test",
            "--scope=repo:read",
            "--purpose=tokens",
        ])
        .await?
        .ok()?;
    let exchanged = agentctl
        .run(&[
            "token",
            "exchange",
            "--subject-token",
            &alice,
            "--actor-token",
            &actor,
            "--audience",
            "https://api.test",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    assert_eq!(exchanged["scope"], "repo:read", "{exchanged:#}");
    assert_eq!(
        exchanged["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let delegated = exchanged["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let decoded = agentctl
        .run(&["token", "decode", "--token", &delegated, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(decoded["claims"]["sub"], "alice", "{decoded:#}");
    assert_eq!(decoded["act_chain"], json!([agent_id]), "{decoded:#}");
    assert_eq!(
        decoded["verified_with"],
        format!("{exchange}/.well-known/jwks.json")
    );
    let table = agentctl
        .run(&["token", "decode", "--token", &delegated])
        .await?
        .ok()?;
    assert!(
        table.ends_with(&format!(
            "Delegation (act):\nalice  (sub)\n└─ {agent_id}  (acting)\n"
        )),
        "{table}"
    );

    // introspect at the issuing service, found from `iss`.
    let table = agentctl
        .run(&["token", "introspect", "--token", &delegated])
        .await?
        .ok()?;
    assert_eq!(field(&table, "ACTIVE")?, "true", "{table}");
    assert_eq!(field(&table, "ACT")?, agent_id, "{table}");
    assert!(field(&table, "GRANT")?.starts_with("grt_"), "{table}");
    let introspected = agentctl
        .run(&["token", "introspect", "--token", &actor, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(introspected["active"], true, "{introspected:#}");
    assert_eq!(introspected["sub"], agent_id.as_str());
    let inactive = agentctl
        .run(&["token", "introspect", "--token", &forged, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(inactive, json!({"active": false}));

    // The development issuer: its metadata, its tokens, and decode with
    // its key from the data directory.
    dev_issuer_key(dir.path())?;
    let data_dir = format!("--data-dir={}", dir.path().display());
    let issuer = agentctl
        .run(&["token", "dev-issuer", &data_dir, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(issuer["issuer"], "http://localhost/agentsec-dev-users");
    assert_eq!(issuer["audience"], "agentsec-dev");
    assert_eq!(issuer["jwks"]["keys"][0]["kty"], "OKP", "{issuer:#}");
    let person = agentctl
        .run(&["token", "user", &data_dir, "--sub", "bob"])
        .await?
        .ok()?;
    let table = agentctl
        .run(&["token", "decode", &data_dir, "--token", person.trim()])
        .await?
        .ok()?;
    assert!(
        field(&table, "SIGNATURE")?.starts_with("verified with the development issuer's key"),
        "{table}"
    );
    assert_eq!(field(&table, "SUBJECT")?, "bob", "{table}");
    // Without verification the claims are shown, marked.
    let table = agentctl
        .run(&["token", "decode", "--no-verify", "--token", &alice])
        .await?
        .ok()?;
    assert_eq!(field(&table, "SIGNATURE")?, "NOT VERIFIED (--no-verify)");
    assert_eq!(field(&table, "SUBJECT")?, "alice");

    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_is_queried_verified_tailed_and_exported() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let agentctl = Agentctl::new(&cluster)?;
    let agent = agentctl
        .run(&[
            "agent",
            "register",
            "--tenant=acme",
            "--owner=alice",
            "--name=audited-bot",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    let agent_id = agent["id"].as_str().unwrap_or_default().to_owned();
    agentctl
        .run(&[
            "agent",
            "suspend",
            "--agent-id",
            &agent_id,
            "--reason",
            "audit test",
        ])
        .await?
        .ok()?;

    // Events reach audit-svc off the request path: wait for both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let events = loop {
        let events = agentctl
            .run(&[
                "audit",
                "query",
                "--agent",
                &agent_id,
                "--oldest-first",
                "-o",
                "json",
            ])
            .await?
            .json()?;
        if events.as_array().map_or(0, Vec::len) >= 2 {
            break events;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the agent's events never reached audit-svc: {events:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(events[0]["kind"], "agent.registered", "{events:#}");
    assert_eq!(events[1]["kind"], "agent.suspended", "{events:#}");
    assert_eq!(events[1]["outcome"], "OUTCOME_ALLOW", "{events:#}");
    assert_eq!(events[0]["hash"].as_str().map(str::len), Some(64));
    let table = agentctl
        .run(&[
            "audit",
            "query",
            "--agent",
            &agent_id,
            "--kind",
            "agent.suspended",
            "--since",
            "1h",
        ])
        .await?
        .ok()?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("SEQ "), "{table}");
    assert!(lines[1].contains("agent.suspended"), "{table}");
    assert!(lines[1].contains("allow"), "{table}");
    let table = agentctl
        .run(&[
            "audit",
            "query",
            "--agent",
            &agent_id,
            "--until",
            "2000-01-01T00:00:00Z",
        ])
        .await?
        .ok()?;
    assert_eq!(table, "no events match\n");
    let stderr = agentctl
        .run(&["audit", "query", "--since", "yesterday"])
        .await?
        .failed()?;
    assert!(stderr.contains("--since `yesterday`"), "{stderr}");

    // verify: the whole chain, intact.
    let verdict = agentctl
        .run(&["audit", "verify", "-o", "json"])
        .await?
        .json()?;
    assert_eq!(verdict["ok"], true, "{verdict:#}");
    let head = verdict["end_sequence"].as_u64().unwrap_or_default();
    assert!(head >= 2, "{verdict:#}");
    assert_eq!(verdict["events_verified"], head, "{verdict:#}");
    let ran = agentctl.run(&["audit", "verify"]).await?;
    assert!(
        !ran.stderr.contains("verifying"),
        "no terminal, no progress: {ran:#?}"
    );
    let table = ran.ok()?;
    assert_eq!(field(&table, "CHAIN")?, "intact", "{table}");
    // On a terminal: a progress line, cleared before the result.
    let shown = agentctl.run_on_terminal(&["audit", "verify"]).await?.ok()?;
    let progress = "\rverifying the audit chain: 1-";
    assert!(shown.contains(progress), "{shown:?}");
    let cleared = shown.find("\r\x1b[K").unwrap_or(0);
    assert!(
        cleared > shown.find(progress).unwrap_or(usize::MAX) && shown[cleared..].contains("intact"),
        "{shown:?}"
    );

    // export: JSON lines with the chain fields, up to the head.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("trail.jsonl");
    let to = format!("--to={head}");
    let ran = agentctl
        .run(&[
            "audit",
            "export",
            "--file",
            &file.display().to_string(),
            &to,
        ])
        .await?;
    assert!(
        ran.stderr.contains(&format!("exported {head} events")),
        "{ran:#?}"
    );
    ran.ok()?;
    let exported = std::fs::read_to_string(&file)?;
    let lines: Vec<Value> = exported
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len() as u64, head);
    assert_eq!(lines[0]["sequence"], 1);
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    let stdout = agentctl
        .run(&["audit", "export", "--agent", &agent_id])
        .await?
        .ok()?;
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    // tail: the matching events from a sequence on, then live ones, one
    // line each.
    let from = format!("--from={}", head + 1);
    let tail_args = [
        "audit", "tail", "--agent", &agent_id, &from, "--count", "1", "-o", "json",
    ];
    let reactivate_args = [
        "agent",
        "reactivate",
        "--agent-id",
        &agent_id,
        "--reason",
        "tail test",
    ];
    let tail = agentctl.run(&tail_args);
    let reactivate = agentctl.run(&reactivate_args);
    let (tailed, reactivated) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::join!(tail, reactivate)
    })
    .await
    .context("audit tail never printed the reactivation")?;
    reactivated?.ok()?;
    let tailed = tailed?.ok()?;
    let event: Value = serde_json::from_str(tailed.trim())?;
    assert_eq!(event["kind"], "agent.reactivated", "{tailed}");
    assert!(
        event["sequence"].as_u64().unwrap_or_default() > head,
        "{tailed}"
    );
    let table = agentctl
        .run(&[
            "audit",
            "tail",
            "--agent",
            &agent_id,
            "--from=1",
            "--count=2",
        ])
        .await?
        .ok()?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("SEQ "), "{table}");
    assert!(lines[1].contains("agent.registered"), "{table}");
    assert!(lines[2].contains("agent.suspended"), "{table}");

    cluster.shutdown().await
}

#[test]
fn completion_scripts_cover_the_subcommands() -> anyhow::Result<()> {
    let script = |shell: &str| -> anyhow::Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_agentctl"))
            .args(["completions", shell])
            .output()?)
    };
    for (shell, marker) in [
        ("bash", "complete -F _agentctl"),
        ("zsh", "#compdef agentctl"),
        ("fish", "complete -c agentctl"),
    ] {
        let output = script(shell)?;
        assert!(output.status.success(), "{shell}: {output:?}");
        let text = String::from_utf8(output.stdout)?;
        assert!(text.contains(marker), "{shell}: no `{marker}`");
        for word in [
            "credential",
            "add-federated",
            "explain",
            "introspect",
            "export",
        ] {
            assert!(text.contains(word), "{shell}: no `{word}`");
        }
    }
    let output = script("tcsh")?;
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("possible values: bash"), "{stderr}");
    Ok(())
}
