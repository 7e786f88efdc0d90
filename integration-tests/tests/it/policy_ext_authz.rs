//! policy-svc as Envoy's external authorizer (`envoy.service.auth.v3`
//! Authorization/Check on the gRPC port), driven by a tonic client of the
//! wire-compatible envoy protos: allow (OK, `x-agentsec-decision-id`
//! added upstream), deny (403 with a JSON reason), missing or invalid token
//! (401), another audience's token (403), an MCP `tools/call` body whose
//! tool is the resource, and every MCP method of the COAZ-MCP table.

use std::collections::HashMap;

use agentsec_integration_tests::cluster::{extra_token_issuer_key, EXTRA_TOKEN_ISSUER};
use agentsec_integration_tests::{Service, TestCluster};
use agentsec_proto::common::v1::Effect;
use agentsec_proto::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use agentsec_proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use agentsec_proto::envoy::service::auth::v3::check_response::HttpResponse;
use agentsec_proto::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use agentsec_proto::policy::v1::PolicySet;
use anyhow::{bail, Context as _};
use serde_json::json;
use tonic::transport::Channel;

use crate::policy_sets::{policy, put, rule, AGENT};

/// The MCP gateway's host, the audience its tokens are for.
const HOST: &str = "github-mcp.internal";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// An agent token of the test issuer policy-svc trusts, for `audience`.
fn token(audience: &str) -> anyhow::Result<String> {
    let key = extra_token_issuer_key().context("no test issuer key")?;
    let now = unix_now();
    Ok(key.sign(
        "at+jwt",
        &json!({
            "iss": EXTRA_TOKEN_ISSUER, "sub": AGENT, "aud": audience, "tenant": "acme",
            "iat": now, "nbf": now, "exp": now + 300, "jti": format!("ext-authz-{now}"),
        }),
    )?)
}

/// `mcp-users` may call any tool of the github server and read its paths
/// except `delete_*` tools (GET on /repos is read, POST is write).
fn gateway_set() -> PolicySet {
    let mut set = PolicySet::default();
    set.rules.push(rule(
        "github-tools",
        Effect::Allow,
        &format!("agent:{AGENT}"),
        "mcp:github/*",
        "tools/call",
    ));
    set.rules.push(rule(
        "no-delete",
        Effect::Deny,
        "*",
        "mcp:*/delete_*",
        "tools/call",
    ));
    set.rules.push(rule(
        "read-repos",
        Effect::Allow,
        &format!("agent:{AGENT}"),
        "/repos/*",
        "read",
    ));
    set
}

pub(crate) fn http_check(
    method: &str,
    path: &str,
    authorization: Option<String>,
    body: &str,
    extensions: &[(&str, &str)],
) -> CheckRequest {
    let mut headers = HashMap::from([(":authority".to_owned(), format!("{HOST}:443"))]);
    if let Some(value) = authorization {
        headers.insert("authorization".to_owned(), value);
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    host: format!("{HOST}:443"),
                    headers,
                    body: body.to_owned(),
                    ..HttpRequest::default()
                }),
            }),
            context_extensions: extensions
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ..AttributeContext::default()
        }),
    }
}

pub(crate) async fn ask(
    client: &mut AuthorizationClient<Channel>,
    request: CheckRequest,
) -> anyhow::Result<CheckResponse> {
    Ok(client.check(request).await?.into_inner())
}

/// The status code of a denial, its headers and JSON body.
pub(crate) fn denial(
    response: &CheckResponse,
) -> anyhow::Result<(i32, HashMap<String, String>, serde_json::Value)> {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        bail!("not a denial: {response:?}");
    };
    let headers = denied
        .headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .map(|header| (header.key.clone(), header.value.clone()))
        .collect();
    Ok((
        denied.status.as_ref().map_or(0, |status| status.code),
        headers,
        serde_json::from_str(&denied.body).context("the body is not JSON")?,
    ))
}

/// The decision id an allow adds to the upstream request.
fn allowed_decision_id(response: &CheckResponse) -> anyhow::Result<String> {
    anyhow::ensure!(
        response.status.as_ref().map(|status| status.code) == Some(0),
        "not OK: {response:?}"
    );
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        bail!("no ok_response: {response:?}");
    };
    ok.headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .find(|header| header.key == "x-agentsec-decision-id")
        .map(|header| header.value.clone())
        .context("no x-agentsec-decision-id")
}

pub(crate) fn mcp_call(tool: &str) -> String {
    json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": {"title": "x"}},
    })
    .to_string()
}

#[tokio::test]
async fn envoy_ext_authz_allows_denies_and_authenticates_on_policy() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    put(&mut policy(&cluster).await?, &admin, "acme", gateway_set()).await?;
    let mut envoy = AuthorizationClient::new(cluster.channel(Service::Policy).await?);
    let bearer = Some(format!("Bearer {}", token(HOST)?));
    let github = [("agentsec_mcp_server", "github")];

    // An MCP tools/call: the tool is the resource.
    let allowed = ask(
        &mut envoy,
        http_check(
            "POST",
            "/mcp",
            bearer.clone(),
            &mcp_call("create_issue"),
            &github,
        ),
    )
    .await?;
    let decision_id = allowed_decision_id(&allowed)?;
    assert!(decision_id.starts_with("dec_"), "{decision_id}");

    let denied = ask(
        &mut envoy,
        http_check(
            "POST",
            "/mcp",
            bearer.clone(),
            &mcp_call("delete_repo"),
            &github,
        ),
    )
    .await?;
    // An MCP refusal is the JSON-RPC error of the COAZ-MCP binding, to the
    // request's id, with the decision in its data.
    let (code, headers, body) = denial(&denied)?;
    assert_eq!(code, 403);
    assert_eq!(denied.status.as_ref().map(|status| status.code), Some(7));
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32001);
    let data = &body["error"]["data"];
    assert_eq!(data["decision"], "deny");
    assert_eq!(data["policy_ids"], json!(["no-delete"]));
    assert!(
        data["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("no-delete")),
        "{body}"
    );
    assert_eq!(body["error"]["message"], data["reason"]);
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        headers.get("x-agentsec-decision-id"),
        data["decision_id"].as_str().map(str::to_owned).as_ref()
    );

    // A tool of another server than the policy allows: default deny.
    let other = ask(
        &mut envoy,
        http_check(
            "POST",
            "/mcp",
            bearer.clone(),
            &mcp_call("create_issue"),
            &[("agentsec_mcp_server", "jira")],
        ),
    )
    .await?;
    assert_eq!(denial(&other)?.0, 403);

    // A plain HTTP request: action from the method, resource the path.
    let read = ask(
        &mut envoy,
        http_check("GET", "/repos/acme?page=2", bearer.clone(), "", &[]),
    )
    .await?;
    allowed_decision_id(&read)?;
    let write = ask(
        &mut envoy,
        http_check("POST", "/repos/acme", bearer.clone(), "{}", &[]),
    )
    .await?;
    assert_eq!(denial(&write)?.0, 403);

    // Missing, malformed or tampered tokens: 401, the token never echoed.
    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz".to_owned()),
        Some("Bearer not-a-jwt".to_owned()),
        bearer.clone().map(|value| format!("{value}x")),
    ] {
        let response = ask(
            &mut envoy,
            http_check("GET", "/repos/acme", authorization, "", &[]),
        )
        .await?;
        let (code, headers, body) = denial(&response)?;
        assert_eq!(code, 401, "{body}");
        assert_eq!(response.status.as_ref().map(|status| status.code), Some(16));
        assert_eq!(
            headers.get("www-authenticate").map(String::as_str),
            Some("Bearer")
        );
        assert_eq!(body["error"], "unauthenticated");
        assert!(
            !body.to_string().contains("eyJ"),
            "the token was echoed: {body}"
        );
    }

    // A valid token for another system, replayed here: denied.
    let replayed = Some(format!("Bearer {}", token("jira-mcp.internal")?));
    let response = ask(
        &mut envoy,
        http_check("GET", "/repos/acme", replayed, "", &[]),
    )
    .await?;
    let (code, _, body) = denial(&response)?;
    assert_eq!(code, 403);
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("audience")),
        "{body}"
    );

    // A route naming its audience: the host no longer matters.
    let routed = ask(
        &mut envoy,
        http_check(
            "GET",
            "/repos/acme",
            Some(format!("Bearer {}", token("github")?)),
            "",
            &[("agentsec_audience", "github")],
        ),
    )
    .await?;
    allowed_decision_id(&routed)?;

    cluster.shutdown().await
}

/// A JSON-RPC message to the MCP server.
fn rpc(id: Option<i64>, method: &str, params: serde_json::Value) -> serde_json::Value {
    let mut message = json!({ "jsonrpc": "2.0", "method": method, "params": params });
    if let Some(id) = id {
        message["id"] = json!(id);
    }
    message
}

/// The ok_response's headers to set and to remove.
fn allowed_headers(
    response: &CheckResponse,
) -> anyhow::Result<(HashMap<String, String>, Vec<String>)> {
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        bail!("not allowed: {response:?}");
    };
    let set = ok
        .headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .map(|header| (header.key.clone(), header.value.clone()))
        .collect();
    Ok((set, ok.headers_to_remove.clone()))
}

#[tokio::test]
async fn mcp_methods_are_decided_after_the_coaz_mcp_table() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = cluster.admin_token().await?;
    let mut set = gateway_set();
    let agent = format!("agent:{AGENT}");
    for (id, resource, action) in [
        ("list-tools", "mcp:github", "tools/list"),
        ("read-repo-files", "mcp:github/repo://*", "resources/read"),
        ("triage-prompt", "mcp:github/triage", "prompts/get"),
    ] {
        set.rules
            .push(rule(id, Effect::Allow, &agent, resource, action));
    }
    put(&mut policy(&cluster).await?, &admin, "acme", set).await?;
    let mut envoy = AuthorizationClient::new(cluster.channel(Service::Policy).await?);
    let bearer = Some(format!("Bearer {}", token(HOST)?));
    let github = [("agentsec_mcp_server", "github")];
    let post = |body: serde_json::Value, authorization: Option<String>| {
        http_check("POST", "/mcp", authorization, &body.to_string(), &github)
    };

    // Each method is its action, on the resource the table names.
    for (message, allowed) in [
        (rpc(Some(1), "tools/list", json!({})), true),
        (
            rpc(
                Some(2),
                "initialize",
                json!({"protocolVersion": "2025-11-25"}),
            ),
            false,
        ),
        (
            rpc(
                Some(3),
                "resources/read",
                json!({"uri": "repo://acme/README.md"}),
            ),
            true,
        ),
        (
            rpc(
                Some(4),
                "resources/read",
                json!({"uri": "file:///etc/passwd"}),
            ),
            false,
        ),
        (
            rpc(
                Some(5),
                "resources/subscribe",
                json!({"uri": "repo://acme/README.md"}),
            ),
            false,
        ),
        (rpc(Some(6), "prompts/get", json!({"name": "triage"})), true),
        (
            rpc(Some(7), "prompts/get", json!({"name": "release"})),
            false,
        ),
        (
            rpc(
                Some(8),
                "completion/complete",
                json!({"ref": {"type": "ref/prompt", "name": "triage"}}),
            ),
            false,
        ),
        (rpc(Some(9), "tasks/get", json!({"taskId": "t1"})), false),
    ] {
        let response = ask(&mut envoy, post(message.clone(), bearer.clone())).await?;
        if allowed {
            allowed_decision_id(&response).with_context(|| message.to_string())?;
        } else {
            let (code, headers, body) = denial(&response)?;
            assert_eq!(code, 403, "{message}");
            assert_eq!(body["id"], message["id"], "{body}");
            assert_eq!(body["error"]["code"], -32001, "{body}");
            assert!(headers.contains_key("x-agentsec-decision-id"), "{body}");
        }
    }

    // ping and notifications need a valid token but no decision: no
    // decision id goes upstream, and a client's own is removed.
    for message in [
        rpc(Some(10), "ping", json!({})),
        rpc(None, "notifications/initialized", json!({})),
    ] {
        let response = ask(&mut envoy, post(message, bearer.clone())).await?;
        let (set, removed) = allowed_headers(&response)?;
        assert!(!set.contains_key("x-agentsec-decision-id"));
        assert_eq!(removed, ["x-agentsec-decision-id"]);
    }
    let ping = rpc(Some(11), "ping", json!({}));
    let tampered = bearer.clone().map(|value| format!("{value}x"));
    assert_eq!(
        denial(&ask(&mut envoy, post(ping.clone(), tampered)).await?)?.0,
        401
    );
    let elsewhere = Some(format!("Bearer {}", token("jira-mcp.internal")?));
    let (code, _, body) = denial(&ask(&mut envoy, post(ping, elsewhere)).await?)?;
    assert_eq!(code, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("audience")),
        "{body}"
    );

    // Unknown methods fail closed; unmappable ones are mapping errors; on
    // an MCP route a body must be JSON-RPC.
    for (body, code) in [
        (rpc(Some(12), "tools/delete", json!({})), -32001),
        (rpc(Some(13), "sampling/createMessage", json!({})), -32001),
        (
            rpc(Some(14), "tools/call", json!({"arguments": {}})),
            -32602,
        ),
        (json!({"title": "not json-rpc"}), -32600),
    ] {
        let (status, _, answer) =
            denial(&ask(&mut envoy, post(body.clone(), bearer.clone())).await?)?;
        assert_eq!(status, 403, "{body}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }

    // A batch is decided message by message and forwarded only whole.
    let mixed = json!([
        rpc(Some(21), "tools/call", json!({"name": "create_issue"})),
        rpc(None, "notifications/progress", json!({})),
        rpc(Some(22), "tools/call", json!({"name": "delete_repo"})),
    ]);
    let response = ask(&mut envoy, post(mixed, bearer.clone())).await?;
    let (code, headers, body) = denial(&response)?;
    assert_eq!(code, 403);
    let errors = body.as_array().context("a batch's answer is an array")?;
    assert_eq!(errors.len(), 2, "no answer to the notification: {body}");
    assert_eq!(errors[0]["id"], 21);
    assert_eq!(errors[0]["error"]["code"], -32001);
    assert!(errors[0]["error"].get("data").is_none());
    assert_eq!(errors[1]["id"], 22);
    assert_eq!(
        errors[1]["error"]["data"]["policy_ids"],
        json!(["no-delete"])
    );
    let ids = headers
        .get("x-agentsec-decision-id")
        .context("no decision ids")?;
    assert_eq!(ids.split(", ").count(), 2, "{ids}");

    let fine = json!([
        rpc(Some(31), "tools/list", json!({})),
        rpc(Some(32), "ping", json!({})),
        rpc(None, "notifications/cancelled", json!({"requestId": 1})),
    ]);
    let response = ask(&mut envoy, post(fine, bearer.clone())).await?;
    assert!(allowed_decision_id(&response)?.starts_with("dec_"));

    let oversized = serde_json::Value::Array(
        (0..101)
            .map(|id| rpc(Some(id), "tools/list", json!({})))
            .collect(),
    );
    let (code, _, body) = denial(&ask(&mut envoy, post(oversized, bearer)).await?)?;
    assert_eq!(code, 403);
    assert_eq!(body["error"]["code"], -32600, "{body}");
    cluster.shutdown().await
}
