//! `agentctl policy` as an operator runs it: the built binary, as a
//! process, against one test cluster; policy sets applied from YAML and
//! JSON files, validated, tested with fixture cases, listed, compared,
//! rolled back, and their history, with the exit statuses scripts rely on.

mod support;

use agentsec_integration_tests::TestCluster;
use serde_json::{json, Value};
use support::{field, Agentctl};

/// Version 1, in YAML with the short enum names.
const POLICY_YAML: &str = "\
rules:
  - id: github-read
    effect: allow
    audience: mcp:github
    resource: mcp:github/list_*
    actions: [tools/call]
    condition: |
      agent.trust_tier >= 2
  - id: no-delete
    effect: deny
    resource: mcp:github/delete_*
    actions: [tools/call]
attributes:
  - {source: agent, name: trust_tier, type: int}
";

/// Version 2, in JSON with proto-JSON names: github-read widened, a rule
/// and a role assignment added.
const POLICY_JSON: &str = r#"{
  "rules": [
    {"id": "github-read", "effect": "EFFECT_ALLOW", "audience": "mcp:github",
     "resource": "mcp:github/*", "actions": ["tools/call"],
     "condition": "agent.trust_tier >= 2\n"},
    {"id": "no-delete", "effect": "EFFECT_DENY", "resource": "mcp:github/delete_*",
     "actions": ["tools/call"]},
    {"id": "bots-search", "effect": "EFFECT_ALLOW", "agent": "role:bots",
     "resource": "search:*/query", "actions": ["read"]}
  ],
  "roleAssignments": [{"member": "agent:agt_0000000000000000000000000A", "role": "bots"}],
  "attributes": [{"source": "ATTRIBUTE_SOURCE_AGENT", "name": "trust_tier",
                  "type": "ATTRIBUTE_TYPE_INT"}]
}"#;

/// A set policy-svc refuses: an ALLOW on every resource without
/// `@match-all`, and `=` for `==` on the second line of a condition.
const INVALID_YAML: &str = "\
rules:
  - id: wide-open
    effect: allow
    resource: '*'
    actions: ['*']
  - id: tier-read
    effect: allow
    resource: repo:x/*
    actions: [read]
    condition: |
      agent.trust_tier >= 2 &&
        agent.project = 'x'
";

/// Cases for version 1: both hold.
const PASSING_CASES: &str = "\
cases:
  - name: trusted bot lists issues
    request:
      principal: {agent_id: agt_0000000000000000000000000A, agent_attributes: {trust_tier: 2}}
      audience: mcp:github
      action: tools/call
      resource: {type: mcp.tool, id: mcp:github/list_issues}
    expected_effect: allow
    expected_policy_ids: [github-read]
  - name: nobody deletes repositories
    request:
      principal: {agent_id: agt_0000000000000000000000000A, agent_attributes: {trust_tier: 2}}
      audience: mcp:github
      action: tools/call
      resource: {type: mcp.tool, id: mcp:github/delete_repo}
    expected_effect: EFFECT_DENY
";

/// Cases in JSON with proto-JSON names: the first holds, the second
/// expects what version 1 denies.
const FAILING_CASES: &str = r#"{"cases": [
  {"name": "untrusted bot is denied",
   "request": {"principal": {"agentId": "agt_0000000000000000000000000A",
                             "agentAttributes": {"trust_tier": {"intValue": "1"}}},
               "audience": "mcp:github", "action": "tools/call",
               "resource": {"type": "mcp.tool", "id": "mcp:github/list_issues"}},
   "expectedEffect": "EFFECT_DENY"},
  {"name": "delete is allowed",
   "request": {"principal": {"agentId": "agt_0000000000000000000000000A",
                             "agentAttributes": {"trust_tier": 2}},
               "audience": "mcp:github", "action": "tools/call",
               "resource": {"type": "mcp.tool", "id": "mcp:github/delete_repo"}},
   "expectedEffect": "allow"}
]}"#;

/// The rule ids of a `list -o json` answer.
fn rule_ids(listed: &Value) -> Vec<&str> {
    listed["policy_set"]["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .filter_map(|rule| rule["id"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_sets_are_applied_validated_tested_compared_and_rolled_back() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let agentctl = Agentctl::new(&cluster)?;
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };
    let policy_yaml = write("policy.yaml", POLICY_YAML)?;
    let policy_json = write("policy.json", POLICY_JSON)?;
    let invalid_yaml = write("invalid.yaml", INVALID_YAML)?;
    let passing_cases = write("passing.yaml", PASSING_CASES)?;
    let failing_cases = write("failing.json", FAILING_CASES)?;
    let tenant = "--tenant=acme";

    // A tenant without a set: history says so, and how to start one.
    let none = agentctl.run(&["policy", "history", tenant]).await?.ok()?;
    assert!(none.contains("no policy set versions"), "{none}");
    assert!(none.contains("agentctl policy apply"), "{none}");

    // apply from YAML: version 1, as a table.
    let applied = agentctl
        .run(&["policy", "apply", tenant, "--file", &policy_yaml])
        .await?
        .ok()?;
    assert_eq!(field(&applied, "VERSION")?, "1", "{applied}");
    assert_eq!(field(&applied, "RULES")?, "2", "{applied}");
    assert_eq!(field(&applied, "DESCRIPTION")?, "agentctl policy apply");

    // `put` is apply: version 2 from JSON with proto-JSON names.
    let put = agentctl
        .run(&[
            "policy",
            "put",
            tenant,
            "--file",
            &policy_json,
            "--expected-version=1",
            "--description=widen github-read",
            "-o",
            "json",
        ])
        .await?
        .json()?;
    assert_eq!(put["version"], 2, "{put:#}");
    assert_eq!(put["rule_count"], 3, "{put:#}");
    assert_eq!(put["role_assignment_count"], 1, "{put:#}");

    // A stale --expected-version is refused, with where to look.
    let stderr = agentctl
        .run(&[
            "policy",
            "apply",
            tenant,
            "--file",
            &policy_yaml,
            "--expected-version=1",
        ])
        .await?
        .failed()?;
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");
    assert!(
        stderr.contains("agentctl policy history --tenant acme"),
        "{stderr}"
    );

    // history after two applies: newest first, who and why, as JSON.
    let history = agentctl
        .run(&["policy", "history", tenant, "-o", "json"])
        .await?
        .json()?;
    let versions = history.as_array().cloned().unwrap_or_default();
    assert_eq!(versions.len(), 2, "{history:#}");
    assert_eq!(versions[0]["version"], 2);
    assert_eq!(versions[0]["description"], "widen github-read");
    assert_eq!(versions[1]["version"], 1);
    assert!(
        versions[0]["author"]
            .as_str()
            .is_some_and(|author| !author.is_empty()),
        "{history:#}"
    );
    assert_eq!(
        versions[0]["content_sha256"].as_str().map(str::len),
        Some(64)
    );
    let table = agentctl.run(&["policy", "history", tenant]).await?.ok()?;
    let header = table.lines().next().unwrap_or_default();
    for column in ["VERSION", "CREATED", "AUTHOR", "SHA256", "DESCRIPTION"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("widen github-read"), "{table}");

    // diff between versions: rules by id, the changed field named; exit 1.
    let diff = agentctl
        .run(&["policy", "diff", tenant, "--from=1", "--to=2"])
        .await?
        .exited(1)?
        .stdout;
    assert!(
        diff.starts_with("acme version 1 -> version 2: 3 changes"),
        "{diff}"
    );
    let line = |id: &str| -> String {
        diff.lines()
            .find(|line| line.contains(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("bots-search").starts_with("added"), "{diff}");
    assert!(
        line("github-read").contains("resource: mcp:github/list_* -> mcp:github/*"),
        "{diff}"
    );
    assert!(
        line("agent:agt_0000000000000000000000000A").contains("role assignment"),
        "{diff}"
    );
    assert!(!diff.contains("no-delete"), "{diff}");
    // The same version on both sides: exit 0.
    let same = agentctl
        .run(&["policy", "diff", tenant, "--from=2"])
        .await?
        .exited(0)?
        .stdout;
    assert!(same.contains("the same"), "{same}");

    // diff file vs stored: the current version is policy.json's content;
    // policy.yaml would remove the new rule and role assignment.
    agentctl
        .run(&["policy", "diff", tenant, "--file", &policy_json])
        .await?
        .exited(0)?;
    let file_diff = agentctl
        .run(&[
            "policy",
            "diff",
            tenant,
            "--file",
            &policy_yaml,
            "-o",
            "json",
        ])
        .await?
        .exited(1)?;
    let file_diff: Value = serde_json::from_str(&file_diff.stdout)?;
    assert_eq!(file_diff["different"], true, "{file_diff:#}");
    assert_eq!(file_diff["from"], json!({"version": 2}));
    assert_eq!(file_diff["to"]["file"], policy_yaml.as_str());
    let changes: Vec<(String, String)> = file_diff["rule_changes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|change| {
            (
                change["policy_id"].as_str().unwrap_or_default().to_owned(),
                change["change"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("bots-search".to_owned(), "CHANGE_TYPE_REMOVED".to_owned()),
            ("github-read".to_owned(), "CHANGE_TYPE_MODIFIED".to_owned()),
        ],
        "{file_diff:#}"
    );
    assert_eq!(
        file_diff["role_assignments_removed"][0]["role"], "bots",
        "{file_diff:#}"
    );
    // An unknown version is trouble: exit 2, with what exists.
    let trouble = agentctl
        .run(&["policy", "diff", tenant, "--from=99"])
        .await?
        .exited(2)?;
    assert!(trouble.stderr.contains("NotFound"), "{trouble:#?}");
    assert!(
        trouble
            .stderr
            .contains("agentctl policy history --tenant acme"),
        "{trouble:#?}"
    );

    // validate: every finding with its rule, field and place; exit 1.
    let invalid = agentctl
        .run(&["policy", "validate", tenant, "--file", &invalid_yaml])
        .await?
        .exited(1)?;
    let wide_open = invalid
        .stdout
        .lines()
        .find(|line| line.starts_with("wide-open"))
        .unwrap_or_default();
    assert!(
        wide_open.contains("policy_set.rules[0].resource"),
        "{invalid:#?}"
    );
    let tier_read = invalid
        .stdout
        .lines()
        .find(|line| line.starts_with("tier-read"))
        .unwrap_or_default();
    assert!(
        tier_read.contains("policy_set.rules[1].condition"),
        "{invalid:#?}"
    );
    assert!(
        tier_read.contains(" 2:"),
        "the line within the condition: {invalid:#?}"
    );
    assert!(
        invalid
            .stderr
            .contains("invalid.yaml is not valid: 2 findings"),
        "{invalid:#?}"
    );
    let findings = agentctl
        .run(&[
            "policy",
            "validate",
            tenant,
            "--file",
            &invalid_yaml,
            "-o",
            "json",
        ])
        .await?
        .exited(1)?;
    let findings: Value = serde_json::from_str(&findings.stdout)?;
    assert_eq!(findings["valid"], false, "{findings:#}");
    assert_eq!(findings["errors"][0]["policy_id"], "wide-open");
    // A valid set, from stdin, told to be JSON by its first character.
    let valid = agentctl
        .run_with_stdin(&["policy", "validate", tenant, "--file", "-"], POLICY_JSON)
        .await?
        .ok()?;
    assert_eq!(valid, "stdin: valid (3 rules, 1 role assignment)\n");
    // A file of the wrong shape is refused before any call, with its place.
    let misspelt = write("misspelt.yaml", "rules:\n  - id: a\n    effect: permit\n")?;
    let stderr = agentctl
        .run(&["policy", "apply", tenant, "--file", &misspelt])
        .await?
        .failed()?;
    assert!(stderr.contains("rules[0].effect"), "{stderr}");
    assert!(stderr.contains("`permit` is not an effect"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");

    // test: a candidate file against passing cases, exit 0 ...
    let passed = agentctl
        .run(&[
            "policy",
            "test",
            tenant,
            "--file",
            &policy_yaml,
            "--cases",
            &passing_cases,
        ])
        .await?
        .ok()?;
    let header = passed.lines().next().unwrap_or_default();
    for column in ["CASE", "EXPECTED", "GOT", "PASS"] {
        assert!(header.contains(column), "{passed}");
    }
    assert!(passed.contains("allow (github-read)"), "{passed}");
    assert!(!passed.contains("FAIL"), "{passed}");
    // ... and a failing case: the table says which, exit 1.
    let failed = agentctl
        .run(&[
            "policy",
            "test",
            tenant,
            "--file",
            &policy_yaml,
            "--cases",
            &failing_cases,
        ])
        .await?
        .exited(1)?;
    let untrusted = failed
        .stdout
        .lines()
        .find(|line| line.starts_with("untrusted bot is denied"))
        .unwrap_or_default();
    assert!(untrusted.contains("pass"), "{failed:#?}");
    let delete = failed
        .stdout
        .lines()
        .find(|line| line.starts_with("delete is allowed"))
        .unwrap_or_default();
    assert!(delete.contains("FAIL"), "{failed:#?}");
    assert!(delete.contains("deny (no-delete)"), "{failed:#?}");
    assert!(failed.stderr.contains("1 of 2 cases failed"), "{failed:#?}");
    // Against the stored current version, as JSON.
    let tested = agentctl
        .run(&[
            "policy",
            "test",
            tenant,
            "--cases",
            &passing_cases,
            "-o",
            "json",
        ])
        .await?
        .json()?;
    assert_eq!(tested["passed_count"], 2, "{tested:#}");
    assert_eq!(tested["results"][0]["actual"]["policy_version"], 2);

    // rollback to 1: version 3 with version 1's content.
    let rolled = agentctl
        .run(&["policy", "rollback", tenant, "--to=1", "-o", "json"])
        .await?
        .json()?;
    assert_eq!(rolled["version"], 3, "{rolled:#}");
    assert_eq!(rolled["rolled_back_from"], 1, "{rolled:#}");
    let history = agentctl
        .run(&["policy", "history", tenant, "-o", "json"])
        .await?
        .json()?;
    assert_eq!(history[0]["version"], 3, "{history:#}");
    assert_eq!(history[0]["content_sha256"], history[2]["content_sha256"]);
    let table = agentctl
        .run(&["policy", "history", tenant, "--limit=1"])
        .await?
        .ok()?;
    assert!(table.contains("(content of 1)"), "{table}");
    agentctl
        .run(&["policy", "diff", tenant, "--from=1", "--to=3"])
        .await?
        .exited(0)?;

    // list: the current set (version 1's rules again), as a table and as
    // JSON in the file format, which applies back unchanged.
    let listed = agentctl.run(&["policy", "list", tenant]).await?.ok()?;
    assert!(listed.starts_with("acme version 3 ("), "{listed}");
    let github_read = listed
        .lines()
        .find(|line| line.starts_with("github-read"))
        .unwrap_or_default();
    assert!(github_read.contains("allow"), "{listed}");
    assert!(github_read.contains("mcp:github/list_*"), "{listed}");
    assert!(github_read.contains("agent.trust_tier >= 2"), "{listed}");
    let listed = agentctl
        .run(&["policy", "list", tenant, "--version=2", "-o", "json"])
        .await?
        .json()?;
    assert_eq!(listed["version"]["version"], 2);
    assert_eq!(
        rule_ids(&listed),
        ["github-read", "no-delete", "bots-search"]
    );
    let reapplied = write(
        "listed.json",
        &serde_json::to_string(&listed["policy_set"])?,
    )?;
    agentctl
        .run(&["policy", "diff", tenant, "--from=2", "--file", &reapplied])
        .await?
        .exited(0)?;

    cluster.shutdown().await
}
