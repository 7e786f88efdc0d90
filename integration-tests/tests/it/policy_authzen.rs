//! policy-svc's OpenID AuthZEN Authorization API 1.0 over HTTP: single and
//! batch evaluations decided like gRPC Check (same policy ids, decision ids
//! and errors), the batch semantics, X-Request-ID echo, the PDP metadata,
//! and bad requests refused with 400 naming the field; with
//! `decisions.callers = "bearer"`, decisions need an identity-svc token for
//! the policy audience (gRPC and AuthZEN).

use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::Effect;
use agentsec_proto::policy::v1::policy_service_client::PolicyServiceClient;
use agentsec_proto::policy::v1::CheckRequest;
use serde_json::{json, Value};
use tonic::Code;

use crate::identity_support::{get_token, test_client};
use crate::policy_sets::{check_request, github_set, policy, put, AGENT, STRANGER};

async fn post(cluster: &TestCluster, path: &str, body: &Value) -> anyhow::Result<HttpResponse> {
    http::request(
        cluster.addr(Service::Policy),
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("X-Request-ID", "req-42"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

fn evaluation(agent: &str, tool: &str) -> Value {
    json!({
        "subject": {"type": "agent", "id": agent, "properties": {"tenant": "acme"}},
        "resource": {"type": "mcp.tool", "id": tool},
        "action": {"name": "tools/call"},
        "context": {"audience": "github-mcp"},
    })
}

#[tokio::test]
async fn policy_authzen_evaluations_decide_like_check() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    put(&mut policy(&cluster).await?, &admin, "acme", github_set()).await?;

    // One evaluation: allowed by `github-tools`, with the request id echoed.
    let allowed = post(
        &cluster,
        "/access/v1/evaluation",
        &evaluation(AGENT, "mcp:github/create_issue"),
    )
    .await?;
    assert_eq!(
        allowed.status,
        200,
        "{}",
        String::from_utf8_lossy(&allowed.body)
    );
    assert_eq!(allowed.header("x-request-id"), Some("req-42"));
    let body = allowed.json()?;
    assert_eq!(body["decision"], true);
    assert_eq!(body["context"]["policy_ids"], json!(["github-tools"]));
    assert!(body["context"]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("dec_")));
    assert_eq!(body["context"]["policy_version"], 1);

    // The explicit deny wins; a stranger is denied by default.
    let denied = post(
        &cluster,
        "/access/v1/evaluation",
        &evaluation(AGENT, "mcp:github/delete_repo"),
    )
    .await?
    .json()?;
    assert_eq!(denied["decision"], false);
    assert_eq!(denied["context"]["policy_ids"], json!(["no-delete"]));
    let stranger = post(
        &cluster,
        "/access/v1/evaluation",
        &evaluation(STRANGER, "mcp:github/create_issue"),
    )
    .await?
    .json()?;
    assert_eq!(stranger["decision"], false);
    assert!(
        stranger["context"]["reason_admin"]["en"]
            .as_str()
            .is_some_and(|r| r.contains("default deny")),
        "{stranger}"
    );

    // A batch: top-level values are defaults each evaluation may override.
    let batch = json!({
        "subject": {"type": "agent", "id": AGENT, "properties": {"tenant": "acme"}},
        "action": {"name": "tools/call"},
        "context": {"audience": "github-mcp"},
        "evaluations": [
            {"resource": {"type": "mcp.tool", "id": "mcp:github/create_issue"}},
            {"resource": {"type": "mcp.tool", "id": "mcp:github/delete_repo"}},
            {"resource": {"type": "mcp.tool", "id": "mcp:github/list_issues"}},
        ],
    });
    let all = post(&cluster, "/access/v1/evaluations", &batch)
        .await?
        .json()?;
    let decisions: Vec<&Value> = all["evaluations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["decision"])
        .collect();
    assert_eq!(decisions, [&json!(true), &json!(false), &json!(true)]);
    let mut first_deny = batch.clone();
    first_deny["options"] = json!({"evaluations_semantic": "deny_on_first_deny"});
    let stopped = post(&cluster, "/access/v1/evaluations", &first_deny)
        .await?
        .json()?;
    assert_eq!(
        stopped["evaluations"].as_array().map(Vec::len),
        Some(2),
        "stops at the first deny"
    );
    let mut first_permit = batch.clone();
    first_permit["options"] = json!({"evaluations_semantic": "permit_on_first_permit"});
    let permitted = post(&cluster, "/access/v1/evaluations", &first_permit)
        .await?
        .json()?;
    assert_eq!(permitted["evaluations"].as_array().map(Vec::len), Some(1));

    // Bad requests: 400 naming what is wrong, no decision.
    let mut no_type = evaluation(AGENT, "mcp:github/create_issue");
    no_type["subject"]["type"] = json!("");
    let mut no_tenant = evaluation(AGENT, "mcp:github/create_issue");
    no_tenant["subject"]["properties"] = json!({});
    let mut no_action = evaluation(AGENT, "mcp:github/create_issue");
    no_action["action"] = json!({"name": ""});
    let mut object_attribute = evaluation(AGENT, "mcp:github/create_issue");
    object_attribute["resource"]["properties"] = json!({"owner": {"nested": true}});
    for (body, names) in [
        (no_type, "subject.type"),
        (no_tenant, "subject.properties.tenant"),
        (no_action, "action.name"),
        (object_attribute, "resource.properties.owner"),
    ] {
        let response = post(&cluster, "/access/v1/evaluation", &body).await?;
        assert_eq!(
            response.status,
            400,
            "{names}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let error = response.json()?["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.contains(names), "{names}: {error}");
    }
    // Well-formed requests naming what nobody knows are decided: DENY.
    let mut unknown_tenant = evaluation(AGENT, "mcp:github/create_issue");
    unknown_tenant["subject"]["properties"]["tenant"] = json!("nobody");
    let unknown_agent = evaluation("bob-the-bot", "mcp:github/create_issue");
    for (body, reason) in [
        (unknown_tenant, "tenant `nobody` has no policy set"),
        (unknown_agent, "no agent has the id `bob-the-bot`"),
    ] {
        let response = post(&cluster, "/access/v1/evaluation", &body).await?;
        assert_eq!(response.status, 200, "{reason}");
        let decided = response.json()?;
        assert_eq!(decided["decision"], false, "{reason}");
        let said = decided["context"]["reason_admin"]["en"]
            .as_str()
            .unwrap_or_default();
        assert!(said.contains(reason), "{reason}: {said}");
    }
    let not_json = http::request(
        cluster.addr(Service::Policy),
        "POST",
        "/access/v1/evaluation",
        &[("Content-Type", "text/plain")],
        b"allow?",
    )
    .await?;
    assert_eq!(not_json.status, 415);
    let too_many = json!({
        "subject": {"type": "agent", "id": AGENT, "properties": {"tenant": "acme"}},
        "action": {"name": "tools/call"},
        "context": {"audience": "github-mcp"},
        "evaluations": vec![json!({"resource": {"type": "t", "id": "x"}}); 1001],
    });
    assert_eq!(
        post(&cluster, "/access/v1/evaluations", &too_many)
            .await?
            .status,
        400
    );

    // PDP metadata.
    let metadata = http::get(
        cluster.addr(Service::Policy),
        "/.well-known/authzen-configuration",
    )
    .await?
    .json()?;
    let base = format!("http://{}", cluster.addr(Service::Policy));
    assert_eq!(metadata["policy_decision_point"], base.as_str());
    assert_eq!(
        metadata["access_evaluation_endpoint"],
        format!("{base}/access/v1/evaluation")
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn policy_decision_callers_need_a_token_when_configured() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    put(&mut policy(&cluster).await?, &admin, "acme", github_set()).await?;
    let guarded = cluster
        .start_policy_replica_with(|config| {
            config.decisions.callers = agentsec_policy::DecisionCallers::Bearer;
        })
        .await?;
    let pep = test_client(
        &cluster,
        &admin,
        "acme",
        "gateway",
        &["agentsec-policy", "elsewhere"],
        &["read"],
    )
    .await?;
    let pep_token = get_token(&cluster, &pep, &[("audience", "agentsec-policy")]).await?;
    let other_token = get_token(&cluster, &pep, &[("audience", "elsewhere")]).await?;
    let mut client =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(guarded).await?);
    let ask = || check_request("acme", AGENT, "mcp:github/create_issue", "tools/call");

    let anonymous = client.check(ask()).await.err().map(|status| status.code());
    assert_eq!(anonymous, Some(Code::Unauthenticated));
    let wrong_audience = client
        .check(with_bearer(ask(), &other_token))
        .await
        .err()
        .map(|status| status.code());
    assert_eq!(wrong_audience, Some(Code::PermissionDenied));
    let decided = client
        .check(with_bearer(ask(), &pep_token))
        .await?
        .into_inner();
    assert_eq!(
        decided.decision.unwrap_or_default().effect,
        Effect::Allow as i32
    );
    // Services with an admin token (exchange-svc's service identity) too.
    let by_admin = client.check(with_bearer(ask(), &admin)).await?.into_inner();
    assert_eq!(
        by_admin.decision.unwrap_or_default().effect,
        Effect::Allow as i32
    );

    // AuthZEN on the same replica: 401 without the token, a decision with it.
    let body = evaluation(AGENT, "mcp:github/create_issue").to_string();
    let bearer = format!("Bearer {pep_token}");
    let refused = http::request(
        guarded,
        "POST",
        "/access/v1/evaluation",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await?;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    // Without a token, a malformed body is refused as unauthenticated too:
    // its fields are not examined.
    for path in ["/access/v1/evaluation", "/access/v1/evaluations"] {
        let malformed = http::request(
            guarded,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            b"{\"subject\": 7}",
        )
        .await?;
        assert_eq!(malformed.status, 401, "{path}");
    }
    let answered = http::request(
        guarded,
        "POST",
        "/access/v1/evaluation",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        body.as_bytes(),
    )
    .await?;
    assert_eq!(answered.json()?["decision"], true);
    cluster.shutdown().await
}

#[tokio::test]
async fn authzen_metadata_names_the_configured_pdp() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let pdp = "https://pdp.example.com";
    let replica = cluster
        .start_policy_replica_with(|config| config.authzen.pdp_url = Some(pdp.to_owned()))
        .await?;
    let response = http::request(
        replica,
        "GET",
        "/.well-known/authzen-configuration",
        &[("Host", "attacker.example")],
        b"",
    )
    .await?;
    assert_eq!(response.status, 200);
    let metadata = response.json()?;
    // The configured identifier, whatever Host the request names.
    assert_eq!(metadata["policy_decision_point"], pdp);
    assert_eq!(
        metadata["access_evaluations_endpoint"],
        format!("{pdp}/access/v1/evaluations")
    );
    // Parameters without values are omitted, not empty.
    assert!(metadata.get("capabilities").is_none(), "{metadata}");
    cluster.shutdown().await
}

#[tokio::test]
async fn conditions_read_properties_as_peps_name_them() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut set = agentsec_proto::policy::v1::PolicySet::default();
    let mut owner_only = crate::policy_sets::rule(
        "owner-only",
        Effect::Allow,
        &format!("agent:{AGENT}"),
        "todo:app/*",
        "can_update_todo",
    );
    owner_only.condition =
        "resource.ownerID == context.userID && resource[\"x-team\"] == 'payments'".to_owned();
    set.rules.push(owner_only);
    put(&mut policy(&cluster).await?, &admin, "acme", set).await?;

    let ask = |owner: &str, team: &str| {
        json!({
            "subject": {"type": "agent", "id": AGENT, "properties": {"tenant": "acme"}},
            "resource": {"type": "todo", "id": "todo:app/7", "properties": {"ownerID": owner, "x-team": team}},
            "action": {"name": "can_update_todo"},
            "context": {"audience": "todo-app", "userID": "alice"},
        })
    };
    for (owner, team, allowed) in [
        ("alice", "payments", true),
        ("bob", "payments", false),
        ("alice", "ledger", false),
    ] {
        let response = post(&cluster, "/access/v1/evaluation", &ask(owner, team)).await?;
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json()?["decision"], allowed, "{owner} {team}");
    }

    // A condition naming a declared key in another case is refused.
    let mut set = agentsec_proto::policy::v1::PolicySet::default();
    set.attributes
        .push(agentsec_proto::policy::v1::AttributeDefinition {
            source: agentsec_proto::policy::v1::AttributeSource::Resource as i32,
            name: "ownerID".to_owned(),
            r#type: agentsec_proto::policy::v1::AttributeType::String as i32,
            ..Default::default()
        });
    let mut typo = crate::policy_sets::rule(
        "typo",
        Effect::Allow,
        &format!("agent:{AGENT}"),
        "todo:app/*",
        "can_update_todo",
    );
    typo.condition = "resource.ownerId == context.userID".to_owned();
    set.rules.push(typo);
    let refused = put(&mut policy(&cluster).await?, &admin, "acme", set)
        .await
        .expect_err("a typo in a declared key is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("`ownerID` is (keys are case-sensitive)"),
        "{}",
        refused.message()
    );
    cluster.shutdown().await
}

/// `acme`'s GitHub set, plus rules for persons: alice may read todos on her
/// own; an `mcp-users` agent may list issues for alice.
fn persons_set() -> agentsec_proto::policy::v1::PolicySet {
    let mut set = github_set();
    let mut reads =
        crate::policy_sets::rule("alice-reads", Effect::Allow, "*", "todo:app/*", "can_read");
    reads.person = "person:alice".to_owned();
    let mut lists = crate::policy_sets::rule(
        "agents-list-for-alice",
        Effect::Allow,
        "role:mcp-users",
        "list_issues",
        "tools/call",
    );
    lists.person = "person:alice".to_owned();
    set.rules.extend([reads, lists]);
    set
}

fn check_for(person: &str, agent: &str, action: &str, resource: &str) -> CheckRequest {
    let mut request = check_request("acme", agent, resource, action);
    request.audience.clear();
    if let Some(principal) = request.principal.as_mut() {
        principal.person_subject = person.to_owned();
    }
    request
}

#[tokio::test]
async fn authzen_decides_spec_minimal_person_and_agent_for_person_requests() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    put(&mut policy(&cluster).await?, &admin, "acme", persons_set()).await?;
    let pdp = cluster
        .start_policy_replica_with(|config| config.authzen.default_tenant = Some("acme".into()))
        .await?;
    let ask = |body: Value| async move {
        let response = http::request(
            pdp,
            "POST",
            "/access/v1/evaluation",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await?;
        anyhow::ensure!(
            response.status == 200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()
    };

    // Spec-minimal: a user, an action, a resource; no tenant, no context.
    let minimal = |user: &str| {
        json!({
            "subject": {"type": "user", "id": user},
            "action": {"name": "can_read"},
            "resource": {"type": "todo", "id": "todo:app/1"},
        })
    };
    let alice = ask(minimal("alice")).await?;
    assert_eq!(alice["decision"], true, "{alice}");
    assert_eq!(alice["context"]["policy_ids"], json!(["alice-reads"]));
    let bob = ask(minimal("bob")).await?;
    assert_eq!(bob["decision"], false);
    assert!(
        bob["context"]["reason_admin"]["en"]
            .as_str()
            .is_some_and(|reason| reason.contains("default deny")),
        "{bob}"
    );

    // The COAZ-MCP shape: the person is the subject, the agent in context.
    let coaz = |agent: Option<&str>| {
        let mut body = json!({
            "subject": {"type": "identity", "id": "alice"},
            "action": {"name": "tools/call"},
            "resource": {"type": "mcp.tool", "id": "list_issues"},
        });
        if let Some(agent) = agent {
            body["context"] = json!({"agent": agent, "actor_chain": [agent]});
        }
        body
    };
    let mut grpc =
        PolicyServiceClient::new(agentsec_integration_tests::cluster::channel(pdp).await?);
    for (agent, allowed) in [(Some(AGENT), true), (Some(STRANGER), false), (None, false)] {
        let answered = ask(coaz(agent)).await?;
        assert_eq!(answered["decision"], allowed, "{agent:?}: {answered}");
        // The same decision as the equivalent CheckRequest.
        let checked = grpc
            .check(check_for(
                "alice",
                agent.unwrap_or(""),
                "tools/call",
                "list_issues",
            ))
            .await?
            .into_inner()
            .decision
            .unwrap_or_default();
        assert_eq!(checked.effect == Effect::Allow as i32, allowed, "{agent:?}");
        assert_eq!(answered["context"]["policy_ids"], json!(checked.policy_ids));
    }

    // gRPC Check: a person without an agent, and neither.
    let alone = grpc
        .check(check_for("alice", "", "can_read", "todo:app/1"))
        .await?
        .into_inner()
        .decision
        .unwrap_or_default();
    assert_eq!(alone.policy_ids, ["alice-reads"]);
    let nobody = grpc
        .check(check_for("", "", "can_read", "todo:app/1"))
        .await
        .expect_err("a principal needs an agent or a person");
    assert_eq!(nobody.code(), Code::InvalidArgument);
    assert!(
        nobody.message().contains("principal.agent_id"),
        "{}",
        nobody.message()
    );

    // A batch: an entry that cannot be evaluated is `false` with its error,
    // the others are decided.
    let batch = json!({
        "subject": {"type": "user", "id": "alice"},
        "evaluations": [
            {"action": {"name": "can_read"}, "resource": {"type": "todo", "id": "todo:app/1"}},
            {"action": {"name": "can_read"}, "resource": {"type": "todo", "id": ""}},
            {"action": {"name": "tools/call"}, "resource": {"type": "mcp.tool", "id": "list_issues"},
             "context": {"agent": "not-an-agent"}},
            {"action": {"name": "tools/call"}, "resource": {"type": "mcp.tool", "id": "list_issues"},
             "context": {"agent": AGENT}},
        ],
    });
    let response = http::request(
        pdp,
        "POST",
        "/access/v1/evaluations",
        &[("Content-Type", "application/json")],
        batch.to_string().as_bytes(),
    )
    .await?;
    assert_eq!(response.status, 200);
    let answered = response.json()?;
    let decisions: Vec<&Value> = answered["evaluations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| &entry["decision"])
        .collect();
    assert_eq!(
        decisions,
        [&json!(true), &json!(false), &json!(false), &json!(true)]
    );
    let error = &answered["evaluations"][1]["context"]["error"];
    assert_eq!(error["status"], 400, "{answered}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("evaluations[1].resource.id")),
        "{error}"
    );
    assert!(
        answered["evaluations"][2]["context"]["reason_admin"]["en"]
            .as_str()
            .is_some_and(|reason| reason.contains("no agent has the id `not-an-agent`")),
        "{answered}"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn authzen_searches_return_only_what_an_evaluation_allows_in_pages() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut set = persons_set();
    for (index, (person, todo)) in [
        ("alice", "todo:app/1"),
        ("alice", "todo:app/2"),
        ("alice", "todo:app/3"),
        ("bob", "todo:bob/9"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut reads = crate::policy_sets::rule(
            &format!("reads-{index}"),
            Effect::Allow,
            "*",
            todo,
            "can_read",
        );
        reads.person = format!("person:{person}");
        set.rules.push(reads);
    }
    put(&mut policy(&cluster).await?, &admin, "acme", set).await?;
    let pdp = cluster
        .start_policy_replica_with(|config| config.authzen.default_tenant = Some("acme".into()))
        .await?;
    let post_to = |path: &'static str, body: Value| async move {
        http::request(
            pdp,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await
    };
    let found = |path: &'static str, body: Value| async move {
        let response = post_to(path, body).await?;
        anyhow::ensure!(
            response.status == 200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()
    };

    // Resources alice may read, two per page; bob's todo is a candidate
    // the decision refuses, and the glob rule names no resource.
    let resources = |page: Value| {
        json!({
            "subject": {"type": "user", "id": "alice"},
            "action": {"name": "can_read"},
            "resource": {"type": "todo"},
            "page": page,
        })
    };
    let first = found("/access/v1/search/resource", resources(json!({"limit": 2}))).await?;
    assert_eq!(
        first["results"],
        json!([{"type": "todo", "id": "todo:app/1"}, {"type": "todo", "id": "todo:app/2"}])
    );
    assert_eq!(first["page"]["total"], 3);
    let token = first["page"]["next_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!token.is_empty(), "{first}");
    // The next page as the 1.0 text's example asks for it: the token alone.
    let second = found(
        "/access/v1/search/resource",
        resources(json!({"token": token})),
    )
    .await?;
    assert_eq!(
        second["results"],
        json!([{"type": "todo", "id": "todo:app/3"}])
    );
    assert_eq!(second["page"]["next_token"], "");
    // The token belongs to that search: with another limit it is refused.
    let changed = post_to(
        "/access/v1/search/resource",
        resources(json!({"limit": 3, "token": token})),
    )
    .await?;
    assert_eq!(changed.status, 400);
    assert!(String::from_utf8_lossy(&changed.body).contains("page.token"));

    // Actions: what an MCP gateway needs to filter tools/list.
    let actions = |subject: Value, context: Value, tool: &str| json!({"subject": subject, "resource": {"type": "mcp.tool", "id": tool}, "context": context});
    let alice = json!({"type": "identity", "id": "alice"});
    let listed = found(
        "/access/v1/search/action",
        actions(alice.clone(), json!({"agent": AGENT}), "list_issues"),
    )
    .await?;
    assert_eq!(listed["results"], json!([{"name": "tools/call"}]));
    let stranger = found(
        "/access/v1/search/action",
        actions(alice.clone(), json!({"agent": STRANGER}), "list_issues"),
    )
    .await?;
    assert_eq!(stranger["results"], json!([]));
    let agent = json!({"type": "agent", "id": AGENT});
    let denied = found(
        "/access/v1/search/action",
        actions(
            agent.clone(),
            json!({"audience": "github-mcp"}),
            "mcp:github/delete_repo",
        ),
    )
    .await?;
    assert_eq!(denied["results"], json!([]), "the explicit deny wins");

    // Subjects: persons and agents the policy names that are allowed.
    let people = found(
        "/access/v1/search/subject",
        json!({"subject": {"type": "user"}, "action": {"name": "can_read"},
               "resource": {"type": "todo", "id": "todo:app/1"}}),
    )
    .await?;
    assert_eq!(people["results"], json!([{"type": "user", "id": "alice"}]));
    let agents = found(
        "/access/v1/search/subject",
        json!({"subject": {"type": "agent"}, "action": {"name": "tools/call"},
               "resource": {"type": "mcp.tool", "id": "mcp:github/create_issue"}}),
    )
    .await?;
    assert_eq!(agents["results"], json!([{"type": "agent", "id": AGENT}]));

    // Every result, asked as an evaluation, is allowed.
    for (subject, action, resource) in [
        (
            json!({"type": "user", "id": "alice"}),
            "can_read",
            "todo:app/3",
        ),
        (
            json!({"type": "agent", "id": AGENT}),
            "tools/call",
            "mcp:github/create_issue",
        ),
    ] {
        let decided = found(
            "/access/v1/evaluation",
            json!({"subject": subject, "action": {"name": action},
                   "resource": {"type": "any", "id": resource}}),
        )
        .await?;
        assert_eq!(decided["decision"], true, "{resource}: {decided}");
    }

    // A search without what it needs is a 400 naming it.
    let missing = post_to(
        "/access/v1/search/action",
        json!({"subject": {"type": "user"}, "resource": {"type": "todo", "id": "todo:app/1"}}),
    )
    .await?;
    assert_eq!(missing.status, 400);
    assert!(String::from_utf8_lossy(&missing.body).contains("subject.id"));

    // The metadata names the three endpoints.
    let metadata = http::get(pdp, "/.well-known/authzen-configuration")
        .await?
        .json()?;
    for (key, path) in [
        ("search_subject_endpoint", "/access/v1/search/subject"),
        ("search_resource_endpoint", "/access/v1/search/resource"),
        ("search_action_endpoint", "/access/v1/search/action"),
    ] {
        assert_eq!(metadata[key], format!("http://{pdp}{path}"), "{key}");
    }
    cluster.shutdown().await
}
