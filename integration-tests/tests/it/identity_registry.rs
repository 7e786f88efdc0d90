//! identity-svc's registry over gRPC: registration with validation, reads,
//! filtered and paged listing, updates, the suspend/reactivate/revoke
//! lifecycle, and admin authorization (global and tenant-scoped).

use std::collections::HashMap;

use agentsec_common::keys;
use agentsec_integration_tests::cluster::ADMIN_AUDIENCE;
use agentsec_integration_tests::{with_bearer, Service, TestCluster};
use agentsec_proto::common::v1::PageRequest;
use agentsec_proto::identity::v1::{
    Agent, AgentStatus, Ceiling, CreateClientSecretRequest, GetAgentRequest, ListAgentsRequest,
    ReactivateAgentRequest, RegisterAgentRequest, RevokeAgentRequest, SuspendAgentRequest,
    UpdateAgentRequest,
};
use anyhow::bail;
use tonic::{Code, Status};

use crate::identity_support::*;

/// Every agent id matching `request`, following next_page_token.
async fn list_ids(
    client: &mut Identity,
    token: &str,
    request: ListAgentsRequest,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let mut page_request = request.clone();
        page_request.page = Some(PageRequest {
            page_size: request.page.as_ref().map_or(0, |p| p.page_size),
            page_token,
        });
        let response = client
            .list_agents(with_bearer(page_request, token))
            .await?
            .into_inner();
        ids.extend(response.agents.into_iter().map(|agent| agent.id));
        page_token = response.page.unwrap_or_default().next_page_token;
        if page_token.is_empty() {
            return Ok(ids);
        }
    }
    bail!("ListAgents never reached its last page")
}

fn ids(agents: &[&Agent]) -> Vec<String> {
    agents.iter().map(|agent| agent.id.clone()).collect()
}

fn without_times(agent: &Agent) -> Agent {
    Agent {
        create_time: None,
        update_time: None,
        ..agent.clone()
    }
}

fn millis(time: &Option<prost_types::Timestamp>) -> i64 {
    time.as_ref()
        .map_or(0, |t| t.seconds * 1_000 + i64::from(t.nanos) / 1_000_000)
}

async fn get_agent(client: &mut Identity, token: &str, id: &str) -> Result<Agent, Status> {
    client
        .get_agent(with_bearer(
            GetAgentRequest {
                agent_id: id.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn suspend(
    client: &mut Identity,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<Agent, Status> {
    client
        .suspend_agent(with_bearer(
            SuspendAgentRequest {
                agent_id: id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn reactivate(
    client: &mut Identity,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<Agent, Status> {
    client
        .reactivate_agent(with_bearer(
            ReactivateAgentRequest {
                agent_id: id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn revoke(
    client: &mut Identity,
    token: &str,
    id: &str,
    reason: &str,
) -> Result<Agent, Status> {
    client
        .revoke_agent(with_bearer(
            RevokeAgentRequest {
                agent_id: id.to_owned(),
                reason: reason.to_owned(),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

async fn update(
    client: &mut Identity,
    token: &str,
    id: &str,
    agent: Agent,
    paths: &[&str],
) -> Result<Agent, Status> {
    client
        .update_agent(with_bearer(
            UpdateAgentRequest {
                agent_id: id.to_owned(),
                agent: Some(agent),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            },
            token,
        ))
        .await
        .map(|response| response.into_inner().agent.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Registration and reads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn register_assigns_an_agent_id_and_active_status_and_get_returns_it() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;

    let mut input = new_agent("acme", "triage-bot", &[AUDIENCE, "jira"], SCOPES);
    input.attributes.insert("environment".into(), "prod".into());
    // Output-only fields are ignored.
    let mut sent = input.clone();
    sent.id = "agt_chosen_by_the_caller".into();
    sent.status = AgentStatus::Revoked as i32;
    sent.status_reason = "made up".into();
    sent.create_time = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let agent = register(&cluster, &admin, sent).await?;

    assert_prefixed_ulid(&agent.id, "agt_");
    assert_eq!(agent.status, AgentStatus::Active as i32);
    assert_eq!(agent.status_reason, "");
    assert_eq!(
        without_times(&Agent {
            id: String::new(),
            status: 0,
            ..agent.clone()
        }),
        input,
        "every input field is stored as given"
    );
    let created = millis(&agent.create_time);
    assert!(
        (created / 1_000 - now()).abs() < 60,
        "create_time is now: {:?}",
        agent.create_time
    );
    assert!(millis(&agent.update_time) >= created);

    let fetched = get_agent(&mut client, &admin, &agent.id).await?;
    assert_eq!(without_times(&fetched), without_times(&agent));
    assert!((millis(&fetched.create_time) - created).abs() <= 1);

    let second = register(
        &cluster,
        &admin,
        new_agent("acme", "second-bot", &[AUDIENCE], SCOPES),
    )
    .await?;
    assert_ne!(second.id, agent.id);

    assert_code(
        get_agent(&mut client, &admin, UNKNOWN_AGENT).await,
        Code::NotFound,
        "GetAgent of an unknown id",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn names_are_unique_within_a_tenant_only() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    register(
        &cluster,
        &admin,
        new_agent("acme", "builder", &[AUDIENCE], SCOPES),
    )
    .await?;
    let duplicate = identity(&cluster)
        .await?
        .register_agent(with_bearer(
            RegisterAgentRequest {
                agent: Some(new_agent("acme", "builder", &["other"], &["x"])),
            },
            &admin,
        ))
        .await;
    assert_code(duplicate, Code::AlreadyExists, "same name, same tenant")?;
    let elsewhere = register(
        &cluster,
        &admin,
        new_agent("globex", "builder", &[AUDIENCE], SCOPES),
    )
    .await?;
    assert_eq!(elsewhere.tenant, "globex");
    cluster.shutdown().await
}

#[tokio::test]
async fn invalid_registrations_are_refused_naming_the_field() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let valid = || new_agent("acme", "valid", &[AUDIENCE], SCOPES);
    let with = |change: &dyn Fn(&mut Agent)| {
        let mut agent = valid();
        change(&mut agent);
        agent
    };
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, &str, Agent)> = vec![
        (
            "empty tenant",
            "agent.tenant",
            with(&|a| a.tenant = String::new()),
        ),
        (
            "upper-case tenant",
            "agent.tenant",
            with(&|a| a.tenant = "Acme".into()),
        ),
        (
            "tenant starting with -",
            "agent.tenant",
            with(&|a| a.tenant = "-acme".into()),
        ),
        (
            "tenant starting with _",
            "agent.tenant",
            with(&|a| a.tenant = "_acme".into()),
        ),
        (
            "tenant with a space",
            "agent.tenant",
            with(&|a| a.tenant = "ac me".into()),
        ),
        (
            "65-char tenant",
            "agent.tenant",
            with(&|a| a.tenant = "a".repeat(65)),
        ),
        (
            "empty name",
            "agent.name",
            with(&|a| a.name = String::new()),
        ),
        ("257-char name", "agent.name", with(&|a| a.name = long(257))),
        (
            "empty owner",
            "agent.owner",
            with(&|a| a.owner = String::new()),
        ),
        (
            "257-char owner",
            "agent.owner",
            with(&|a| a.owner = long(257)),
        ),
        (
            "2049-char description",
            "agent.description",
            with(&|a| a.description = long(2_049)),
        ),
        (
            "257-char model",
            "agent.model",
            with(&|a| a.model = long(257)),
        ),
        (
            "257-char provider",
            "agent.provider",
            with(&|a| a.provider = long(257)),
        ),
        (
            "upper-case attribute key",
            "agent.attributes",
            with(&|a| {
                a.attributes.insert("Tier".into(), "1".into());
            }),
        ),
        (
            "attribute key starting with a digit",
            "agent.attributes",
            with(&|a| {
                a.attributes.insert("1tier".into(), "1".into());
            }),
        ),
        (
            "65-char attribute key",
            "agent.attributes",
            with(&|a| {
                a.attributes
                    .insert(format!("a{}", "b".repeat(64)), "1".into());
            }),
        ),
        (
            "257-char attribute value",
            "agent.attributes",
            with(&|a| {
                a.attributes.insert("tier".into(), long(257));
            }),
        ),
        (
            "65 attributes",
            "agent.attributes",
            with(&|a| {
                a.attributes = (0..65).map(|n| (format!("k{n}"), "v".to_owned())).collect();
            }),
        ),
        ("no ceiling", "agent.ceiling", with(&|a| a.ceiling = None)),
        (
            "empty audience",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![String::new()],
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "257-char audience",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![long(257)],
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "duplicate audience",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into(), AUDIENCE.into()],
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "65 audiences",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: (0..65).map(|n| format!("aud-{n}")).collect(),
                    scopes: vec!["s".into()],
                });
            }),
        ),
        (
            "scope with a space",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec!["repo read".into()],
                });
            }),
        ),
        (
            "scope with a quote",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec!["repo\"read".into()],
                });
            }),
        ),
        (
            "empty scope",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec![String::new()],
                });
            }),
        ),
        (
            "129-char scope",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec![long(129)],
                });
            }),
        ),
        (
            "duplicate scope",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: vec!["repo:read".into(), "repo:read".into()],
                });
            }),
        ),
        (
            "129 scopes",
            "agent.ceiling",
            with(&|a| {
                a.ceiling = Some(Ceiling {
                    audiences: vec![AUDIENCE.into()],
                    scopes: (0..129).map(|n| format!("scope:{n}")).collect(),
                });
            }),
        ),
    ];
    for (what, field, agent) in cases {
        let status = assert_code(
            client
                .register_agent(with_bearer(
                    RegisterAgentRequest { agent: Some(agent) },
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
            what,
        )?;
        assert!(
            status.message().contains(field),
            "{what}: the message should name `{field}`: {}",
            status.message()
        );
    }
    let status = assert_code(
        client
            .register_agent(with_bearer(RegisterAgentRequest { agent: None }, &admin))
            .await,
        Code::InvalidArgument,
        "no agent at all",
    )?;
    assert!(status.message().contains("agent"), "{}", status.message());

    // Nothing was stored.
    assert!(
        list_ids(
            &mut client,
            &admin,
            ListAgentsRequest {
                tenant: "acme".into(),
                ..ListAgentsRequest::default()
            }
        )
        .await?
        .is_empty(),
        "refused registrations store nothing"
    );

    // Every limit is inclusive.
    let maximal = Agent {
        tenant: format!("a{}", "-".repeat(63)),
        owner: long(256),
        name: long(256),
        description: long(2_048),
        model: long(256),
        provider: long(256),
        attributes: (0..64)
            .map(|n| (format!("k{n}{}", "x".repeat(60)), long(256)))
            .collect(),
        ceiling: Some(Ceiling {
            audiences: (0..64)
                .map(|n| format!("{n:03}{}", "a".repeat(253)))
                .collect(),
            scopes: (0..128)
                .map(|n| format!("{n:03}{}", "s".repeat(125)))
                .collect(),
        }),
        ..Agent::default()
    };
    let stored = register(&cluster, &admin, maximal.clone()).await?;
    assert_eq!(stored.attributes, maximal.attributes);
    assert_eq!(stored.ceiling, maximal.ceiling);
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_agents_applies_every_filter_together() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let make = |tenant: &str, name: &str, owner: &str, project: &str, env: &str| {
        let mut agent = new_agent(tenant, name, &[AUDIENCE], SCOPES);
        agent.owner = owner.to_owned();
        agent.attributes = HashMap::from([
            ("project".to_owned(), project.to_owned()),
            ("environment".to_owned(), env.to_owned()),
        ]);
        agent
    };
    let a1 = register(
        &cluster,
        &admin,
        make("acme", "a1", "alice", "apollo", "prod"),
    )
    .await?;
    let a2 = register(&cluster, &admin, make("acme", "a2", "bob", "apollo", "dev")).await?;
    let a3 = register(
        &cluster,
        &admin,
        make("acme", "a3", "alice", "zeus", "prod"),
    )
    .await?;
    let o1 = register(
        &cluster,
        &admin,
        make("other", "o1", "alice", "apollo", "prod"),
    )
    .await?;
    let before_suspension = prost_types::Timestamp::from(std::time::SystemTime::now());
    suspend(&mut client, &admin, &a3.id, "investigating").await?;
    let later = prost_types::Timestamp {
        seconds: before_suspension.seconds + 3600,
        nanos: 0,
    };

    let attrs = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let cases: Vec<(&str, ListAgentsRequest, Vec<String>)> = vec![
        (
            "tenant",
            ListAgentsRequest {
                tenant: "acme".into(),
                ..Default::default()
            },
            ids(&[&a1, &a2, &a3]),
        ),
        (
            "owner",
            ListAgentsRequest {
                owner: "alice".into(),
                ..Default::default()
            },
            ids(&[&a1, &a3, &o1]),
        ),
        (
            "tenant and owner",
            ListAgentsRequest {
                tenant: "acme".into(),
                owner: "alice".into(),
                ..Default::default()
            },
            ids(&[&a1, &a3]),
        ),
        (
            "status suspended",
            ListAgentsRequest {
                status: AgentStatus::Suspended as i32,
                ..Default::default()
            },
            ids(&[&a3]),
        ),
        (
            "tenant and status active",
            ListAgentsRequest {
                tenant: "acme".into(),
                status: AgentStatus::Active as i32,
                ..Default::default()
            },
            ids(&[&a1, &a2]),
        ),
        (
            "one attribute",
            ListAgentsRequest {
                attributes: attrs(&[("project", "apollo")]),
                ..Default::default()
            },
            ids(&[&a1, &a2, &o1]),
        ),
        (
            "two attributes (both must match)",
            ListAgentsRequest {
                attributes: attrs(&[("project", "apollo"), ("environment", "prod")]),
                ..Default::default()
            },
            ids(&[&a1, &o1]),
        ),
        (
            "tenant, owner, status and attributes",
            ListAgentsRequest {
                tenant: "acme".into(),
                owner: "alice".into(),
                status: AgentStatus::Active as i32,
                attributes: attrs(&[("project", "apollo"), ("environment", "prod")]),
                ..Default::default()
            },
            ids(&[&a1]),
        ),
        (
            "attribute value nobody has",
            ListAgentsRequest {
                attributes: attrs(&[("environment", "staging")]),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            "unknown tenant",
            ListAgentsRequest {
                tenant: "nobody".into(),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            "updated since the suspension",
            ListAgentsRequest {
                updated_since: Some(before_suspension),
                ..Default::default()
            },
            ids(&[&a3]),
        ),
        (
            "tenant and updated since the suspension",
            ListAgentsRequest {
                tenant: "other".into(),
                updated_since: Some(before_suspension),
                ..Default::default()
            },
            Vec::new(),
        ),
        (
            "updated since an hour from now",
            ListAgentsRequest {
                updated_since: Some(later),
                ..Default::default()
            },
            Vec::new(),
        ),
    ];
    for (what, request, mut expected) in cases {
        expected.sort();
        assert_eq!(
            list_ids(&mut client, &admin, request).await?,
            expected,
            "filter: {what}"
        );
    }
    let not_a_time = ListAgentsRequest {
        updated_since: Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        }),
        ..Default::default()
    };
    let status = client
        .list_agents(with_bearer(not_a_time, &admin))
        .await
        .expect_err("an invalid updated_since is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("updated_since"),
        "{}",
        status.message()
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn list_agents_pages_in_creation_order_with_a_cursor() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let mut registered = Vec::new();
    for n in 0..7 {
        let agent = register(
            &cluster,
            &admin,
            new_agent("paging", &format!("agent-{n}"), &[AUDIENCE], SCOPES),
        )
        .await?;
        registered.push(agent.id);
    }
    let mut sorted = registered.clone();
    sorted.sort();
    assert_eq!(sorted, registered, "ids sort in creation order");

    let request = |page_size: i32, page_token: String| ListAgentsRequest {
        tenant: "paging".into(),
        page: Some(PageRequest {
            page_size,
            page_token,
        }),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    let mut first_token = String::new();
    loop {
        let response = client
            .list_agents(with_bearer(request(3, page_token), &admin))
            .await?
            .into_inner();
        pages += 1;
        assert!(response.agents.len() <= 3, "page_size is a maximum");
        seen.extend(response.agents.iter().map(|agent| agent.id.clone()));
        page_token = response.page.unwrap_or_default().next_page_token;
        if pages == 1 {
            first_token = page_token.clone();
        }
        if page_token.is_empty() || pages > 10 {
            break;
        }
    }
    assert_eq!(
        seen, registered,
        "pages join up to every agent once, in order"
    );
    assert!(pages >= 3, "7 agents in pages of at most 3");
    assert!(!first_token.is_empty());

    let everything = client
        .list_agents(with_bearer(request(0, String::new()), &admin))
        .await?
        .into_inner();
    assert_eq!(
        everything
            .agents
            .iter()
            .map(|agent| agent.id.clone())
            .collect::<Vec<_>>(),
        registered,
        "the default page size (50) holds all 7"
    );
    assert_eq!(everything.page.unwrap_or_default().next_page_token, "");

    assert_code(
        client
            .list_agents(with_bearer(request(-1, String::new()), &admin))
            .await,
        Code::InvalidArgument,
        "negative page_size",
    )?;
    assert_code(
        client
            .list_agents(with_bearer(request(3, "forged".into()), &admin))
            .await,
        Code::InvalidArgument,
        "forged page token",
    )?;
    let mut other_filter = request(3, first_token);
    other_filter.owner = "bob".into();
    assert_code(
        client.list_agents(with_bearer(other_filter, &admin)).await,
        Code::InvalidArgument,
        "page token reused with another filter",
    )?;
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Updates and lifecycle
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_agent_replaces_exactly_the_masked_fields() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let original = register(
        &cluster,
        &admin,
        new_agent("acme", "updatable", &[AUDIENCE], SCOPES),
    )
    .await?;
    let neighbour = register(
        &cluster,
        &admin,
        new_agent("acme", "neighbour", &[AUDIENCE], SCOPES),
    )
    .await?;

    // Fields outside the mask are ignored, even invalid ones.
    let change = Agent {
        tenant: "Not A Tenant".into(),
        name: "renamed-but-not-masked".into(),
        owner: String::new(),
        description: "new description".into(),
        attributes: HashMap::from([("environment".to_owned(), "staging".to_owned())]),
        ceiling: Some(Ceiling {
            audiences: vec!["jira".into()],
            scopes: vec!["issues:read".into()],
        }),
        status: AgentStatus::Revoked as i32,
        ..Agent::default()
    };
    let updated = update(
        &mut client,
        &admin,
        &original.id,
        change.clone(),
        &["description", "attributes", "ceiling"],
    )
    .await?;
    let expected = Agent {
        description: change.description.clone(),
        attributes: change.attributes.clone(),
        ceiling: change.ceiling.clone(),
        ..original.clone()
    };
    assert_eq!(without_times(&updated), without_times(&expected));
    assert!(
        (millis(&updated.create_time) - millis(&original.create_time)).abs() <= 1,
        "create_time does not change"
    );
    assert!(millis(&updated.update_time) >= millis(&original.update_time));
    let fetched = get_agent(&mut client, &admin, &original.id).await?;
    assert_eq!(without_times(&fetched), without_times(&expected));

    let renamed = update(
        &mut client,
        &admin,
        &original.id,
        Agent {
            owner: "bob".into(),
            name: "renamed".into(),
            model: "gpt-x".into(),
            provider: "elsewhere".into(),
            ..Agent::default()
        },
        &["owner", "name", "model", "provider"],
    )
    .await?;
    assert_eq!(
        (
            renamed.owner.as_str(),
            renamed.name.as_str(),
            renamed.model.as_str(),
            renamed.provider.as_str(),
            renamed.description.as_str()
        ),
        ("bob", "renamed", "gpt-x", "elsewhere", "new description")
    );

    assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent {
                name: neighbour.name.clone(),
                ..Agent::default()
            },
            &["name"],
        )
        .await,
        Code::AlreadyExists,
        "renaming to a name taken in the tenant",
    )?;
    for path in ["tenant", "status", "id", "create_time", "nonsense"] {
        let status = assert_code(
            update(&mut client, &admin, &original.id, original.clone(), &[path]).await,
            Code::InvalidArgument,
            &format!("update_mask path `{path}`"),
        )?;
        assert!(
            status.message().contains("update_mask"),
            "path {path}: {}",
            status.message()
        );
    }
    assert_code(
        update(&mut client, &admin, &original.id, original.clone(), &[]).await,
        Code::InvalidArgument,
        "empty update_mask",
    )?;
    let status = assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent {
                attributes: HashMap::from([("Bad Key".to_owned(), "v".to_owned())]),
                ..Agent::default()
            },
            &["attributes"],
        )
        .await,
        Code::InvalidArgument,
        "invalid attribute key in an update",
    )?;
    assert!(
        status.message().contains("agent.attributes"),
        "{}",
        status.message()
    );
    let status = assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent::default(),
            &["name"],
        )
        .await,
        Code::InvalidArgument,
        "empty name in an update",
    )?;
    assert!(
        status.message().contains("agent.name"),
        "{}",
        status.message()
    );
    assert_code(
        update(
            &mut client,
            &admin,
            UNKNOWN_AGENT,
            original.clone(),
            &["description"],
        )
        .await,
        Code::NotFound,
        "update of an unknown agent",
    )?;

    revoke(&mut client, &admin, &original.id, "retired").await?;
    assert_code(
        update(
            &mut client,
            &admin,
            &original.id,
            Agent {
                description: "too late".into(),
                ..Agent::default()
            },
            &["description"],
        )
        .await,
        Code::FailedPrecondition,
        "update of a revoked agent",
    )?;
    cluster.shutdown().await
}

#[tokio::test]
async fn suspend_reactivate_and_revoke_follow_the_lifecycle() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let agent = register(
        &cluster,
        &admin,
        new_agent("acme", "lifecycle", &[AUDIENCE], SCOPES),
    )
    .await?;
    let id = agent.id.as_str();

    for (what, result) in [
        ("suspend", suspend(&mut client, &admin, id, "").await),
        ("reactivate", reactivate(&mut client, &admin, id, "").await),
        ("revoke", revoke(&mut client, &admin, id, "").await),
    ] {
        let status = assert_code(
            result,
            Code::InvalidArgument,
            &format!("{what} without a reason"),
        )?;
        assert!(status.message().contains("reason"), "{}", status.message());
    }
    assert_code(
        suspend(&mut client, &admin, id, &"x".repeat(1_025)).await,
        Code::InvalidArgument,
        "a 1,025-char reason",
    )?;
    assert_eq!(
        get_agent(&mut client, &admin, id).await?.status,
        AgentStatus::Active as i32,
        "refused calls change nothing"
    );

    let suspended = suspend(&mut client, &admin, id, "key leaked").await?;
    assert_eq!(suspended.status, AgentStatus::Suspended as i32);
    assert_eq!(suspended.status_reason, "key leaked");
    assert!(millis(&suspended.update_time) >= millis(&agent.update_time));
    let again = suspend(&mut client, &admin, id, "still leaked").await?;
    assert_eq!(again.status, AgentStatus::Suspended as i32, "idempotent");

    let active = reactivate(&mut client, &admin, id, "key rotated").await?;
    assert_eq!(
        (active.status, active.status_reason.as_str()),
        (AgentStatus::Active as i32, "key rotated")
    );
    let still_active = reactivate(&mut client, &admin, id, "again").await?;
    assert_eq!(
        still_active.status,
        AgentStatus::Active as i32,
        "idempotent"
    );

    let revoked = revoke(&mut client, &admin, id, "decommissioned").await?;
    assert_eq!(
        (revoked.status, revoked.status_reason.as_str()),
        (AgentStatus::Revoked as i32, "decommissioned")
    );
    let revoked_again = revoke(&mut client, &admin, id, "really").await?;
    assert_eq!(
        revoked_again.status,
        AgentStatus::Revoked as i32,
        "idempotent"
    );
    assert_code(
        reactivate(&mut client, &admin, id, "undo").await,
        Code::FailedPrecondition,
        "reactivating a revoked agent",
    )?;
    assert_code(
        suspend(&mut client, &admin, id, "pause").await,
        Code::FailedPrecondition,
        "suspending a revoked agent",
    )?;
    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: id.to_owned(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
        "a client secret for a revoked agent",
    )?;
    assert_eq!(
        get_agent(&mut client, &admin, id).await?.status,
        AgentStatus::Revoked as i32
    );
    assert_code(
        suspend(&mut client, &admin, UNKNOWN_AGENT, "who").await,
        Code::NotFound,
        "suspending an unknown agent",
    )?;
    cluster.shutdown().await
}

// ---------------------------------------------------------------------------
// Authorization
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registry_calls_need_an_admin_token() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let existing = register(
        &cluster,
        &admin,
        new_agent("acme", "existing", &[AUDIENCE], SCOPES),
    )
    .await?;
    let register_request = || RegisterAgentRequest {
        agent: Some(new_agent("acme", "intruder", &[AUDIENCE], SCOPES)),
    };
    let get_request = || GetAgentRequest {
        agent_id: existing.id.clone(),
    };

    // No authorization metadata at all.
    assert_code(
        client.register_agent(register_request()).await,
        Code::Unauthenticated,
        "RegisterAgent without a token",
    )?;
    assert_code(
        client.get_agent(get_request()).await,
        Code::Unauthenticated,
        "GetAgent without a token",
    )?;
    assert_code(
        client.list_agents(ListAgentsRequest::default()).await,
        Code::Unauthenticated,
        "ListAgents without a token",
    )?;
    assert_code(
        client
            .suspend_agent(SuspendAgentRequest {
                agent_id: existing.id.clone(),
                reason: "r".into(),
            })
            .await,
        Code::Unauthenticated,
        "SuspendAgent without a token",
    )?;
    assert_code(
        client
            .create_client_secret(CreateClientSecretRequest {
                agent_id: existing.id.clone(),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "CreateClientSecret without a token",
    )?;

    // A bearer that is not a token of ours, and a forged admin token.
    assert_code(
        client
            .get_agent(with_bearer(get_request(), "not-a-token"))
            .await,
        Code::Unauthenticated,
        "garbage bearer",
    )?;
    let forger = keys::SigningKey::generate(keys::SigningAlgorithm::EdDsa)?;
    let forged = forger.sign(
        "at+jwt",
        &serde_json::json!({
            "iss": cluster.issuer(Service::Identity),
            "sub": "agt_forged",
            "aud": ADMIN_AUDIENCE,
            "exp": now() + 300,
            "iat": now(),
            "nbf": now(),
            "jti": random_id()?,
            "scope": ADMIN_SCOPE,
        }),
    )?;
    assert_code(
        client.get_agent(with_bearer(get_request(), &forged)).await,
        Code::Unauthenticated,
        "admin token signed by a foreign key",
    )?;

    // A real agent token without `agentsec:admin`.
    let reader = test_client(
        &cluster,
        &admin,
        "acme",
        "reader",
        &[ADMIN_AUDIENCE],
        &["agents:read"],
    )
    .await?;
    let token = agentsec_token(&cluster, &reader, "agents:read").await?;
    assert_code(
        client
            .register_agent(with_bearer(register_request(), &token))
            .await,
        Code::PermissionDenied,
        "RegisterAgent with a non-admin token",
    )?;
    assert_code(
        client.get_agent(with_bearer(get_request(), &token)).await,
        Code::PermissionDenied,
        "GetAgent with a non-admin token",
    )?;
    assert_code(
        client
            .list_agents(with_bearer(ListAgentsRequest::default(), &token))
            .await,
        Code::PermissionDenied,
        "ListAgents with a non-admin token",
    )?;
    assert_code(
        suspend(&mut client, &token, &existing.id, "r").await,
        Code::PermissionDenied,
        "SuspendAgent with a non-admin token",
    )?;
    assert_eq!(
        list_ids(
            &mut client,
            &admin,
            ListAgentsRequest {
                tenant: "acme".into(),
                ..Default::default()
            }
        )
        .await?,
        {
            let mut expected = vec![existing.id.clone(), reader.id.clone()];
            expected.sort();
            expected
        },
        "nothing was registered by the refused calls"
    );
    cluster.shutdown().await
}

#[tokio::test]
async fn tenant_scoped_admin_sees_and_changes_only_its_tenant() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut client = identity(&cluster).await?;
    let acme_admin = test_client(
        &cluster,
        &admin,
        "acme",
        "acme-admin",
        &[ADMIN_AUDIENCE],
        &[ADMIN_SCOPE],
    )
    .await?;
    let foreign = register(
        &cluster,
        &admin,
        new_agent("other", "foreign", &[AUDIENCE], SCOPES),
    )
    .await?;
    let token = agentsec_token(&cluster, &acme_admin, ADMIN_SCOPE).await?;
    let claims = unverified_claims(&token)?;
    assert_eq!(claims["tenant"], "acme", "{claims}");

    let mine = identity(&cluster)
        .await?
        .register_agent(with_bearer(
            RegisterAgentRequest {
                agent: Some(new_agent("acme", "made-by-acme", &[AUDIENCE], SCOPES)),
            },
            &token,
        ))
        .await?
        .into_inner()
        .agent
        .unwrap_or_default();
    assert_eq!(mine.tenant, "acme");
    assert_eq!(get_agent(&mut client, &token, &mine.id).await?.id, mine.id);

    assert_code(
        client
            .register_agent(with_bearer(
                RegisterAgentRequest {
                    agent: Some(new_agent("other", "smuggled", &[AUDIENCE], SCOPES)),
                },
                &token,
            ))
            .await,
        Code::PermissionDenied,
        "tenant admin registering in another tenant",
    )?;
    assert_code(
        get_agent(&mut client, &token, &foreign.id).await,
        Code::NotFound,
        "tenant admin reading another tenant's agent",
    )?;
    assert_code(
        suspend(&mut client, &token, &foreign.id, "mine now").await,
        Code::NotFound,
        "tenant admin suspending another tenant's agent",
    )?;
    assert_code(
        client
            .create_client_secret(with_bearer(
                CreateClientSecretRequest {
                    agent_id: foreign.id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::NotFound,
        "tenant admin creating a secret for another tenant's agent",
    )?;
    let mut expected = vec![acme_admin.id.clone(), mine.id.clone()];
    expected.sort();
    assert_eq!(
        list_ids(&mut client, &token, ListAgentsRequest::default()).await?,
        expected,
        "an unfiltered list is this tenant's agents only"
    );
    assert_eq!(
        list_ids(
            &mut client,
            &token,
            ListAgentsRequest {
                tenant: "acme".into(),
                ..Default::default()
            }
        )
        .await?,
        expected
    );
    assert_code(
        client
            .list_agents(with_bearer(
                ListAgentsRequest {
                    tenant: "other".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::PermissionDenied,
        "tenant admin listing another tenant",
    )?;
    assert_eq!(
        get_agent(&mut client, &admin, &foreign.id).await?.status,
        AgentStatus::Active as i32,
        "the foreign agent was not touched"
    );
    cluster.shutdown().await
}
