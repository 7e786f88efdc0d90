//! Chapter 4: the MCP gateway asks policy-svc as Envoy ext_authz does, and
//! what its answers say.

use super::*;

impl Story<'_> {
    pub(super) async fn envoy_check(
        &mut self,
        token: &str,
        audience: &str,
        server: &str,
        tool: &str,
    ) -> anyhow::Result<CheckResponse> {
        // Envoy's own credential, as its gRPC initial metadata: policy-svc
        // answers only callers with a token of identity-svc for its
        // decisions.caller_audience, unless it is configured with
        // `decisions.callers = "any"`.
        let request = self
            .calls
            .bearer(mcp_check(token, audience, server, tool), &self.caller)?;
        Ok(self
            .calls
            .envoy
            .check(request)
            .await
            .map_err(failed)
            .context("policy-svc ext_authz Check")?
            .into_inner())
    }

    /// policy-svc's audit event of decision `decision_id`, once it is
    /// stored.
    pub(super) async fn decision_event(
        &mut self,
        admin: &str,
        decision_id: &str,
    ) -> anyhow::Result<Option<Event>> {
        let filter = EventFilter {
            decision_id: decision_id.to_owned(),
            kinds: vec!["decision".to_owned()],
            ..EventFilter::default()
        };
        let found = self
            .events_until(admin, filter, |events| !events.is_empty())
            .await?;
        Ok(found.into_iter().find_map(|stored| stored.event))
    }

    pub(super) async fn gateway(&mut self, admin: &str, github: &str) -> anyhow::Result<()> {
        let policy_audience = self.setting.policy_audience.clone();
        let gateway = self
            .secret_agent(admin, GATEWAY, &policy_audience, &[])
            .await?;
        self.caller = gateway.token;
        let step = Step::new("register the MCP gateway, policy-svc's caller")
            .asked(format!(
                "as the admin: identity-svc RegisterAgent {GATEWAY} (tenant {}, ceiling: \
                 audience {policy_audience}, no scopes), CreateClientSecret;\n\
                 {GATEWAY}: IssueToken client_credentials, audience {policy_audience}",
                self.setting.tenant
            ))
            .answered(format!(
                "{}, with a token for {policy_audience}",
                self.named(&gateway.id)
            ))
            .why(format!(
                "the gateway is a workload with an identity of its own: policy-svc answers \
                 decision callers that show a token for its caller audience \
                 ({policy_audience}), so a stranger cannot probe the policy; the token grants \
                 nothing else"
            ))
            .ok(true);
        self.require(step)?;

        let asked = |tool: &str, audience: &str, server: &str| {
            format!(
                "an Envoy in front of the MCP servers: policy-svc \
                 envoy.service.auth.v3.Authorization/Check, with its own token\n\
                 ({GATEWAY}'s) as gRPC metadata; POST https://{GATEWAY_HOST}/mcp, JSON-RPC \
                 tools/call {tool},\n\
                 Authorization: Bearer <the {MCP_GITHUB} token of chapter 3>,\n\
                 route context extensions agentsec_audience={audience}, agentsec_mcp_server={server}"
            )
        };

        let allowed = self
            .envoy_check(github, MCP_GITHUB, "github", "list_issues")
            .await?;
        let step = Step::new("tools/call list_issues on mcp:github is allowed").asked(asked(
            "list_issues",
            MCP_GITHUB,
            "github",
        ));
        let step = match allowed_decision(&allowed) {
            Some(decision_id) => {
                let event = self.decision_event(admin, &decision_id).await?;
                let (reason, policy_ids) = event.map_or_else(
                    || ("(no audit event found)".to_owned(), Vec::new()),
                    |event| (event.reason, event.policy_ids),
                );
                step.answered(format!(
                    "OK: allowed, x-agentsec-decision-id {decision_id} added upstream;\n\
                     policy-svc's decision: {reason} (policy_ids {policy_ids:?})"
                ))
                .why(format!(
                    "the token is for {MCP_GITHUB}, triage-bot acts for alice, the tool is \
                     resource mcp:github/list_issues, and github-tools allows tools/call on \
                     mcp:github/* for agents with trust_tier >= 2 (triage-bot's is 2, from the \
                     registry)"
                ))
                .ok(policy_ids == ["github-tools"])
                .fact("decision_id", &decision_id)
                .fact("policy_ids", policy_ids.join(","))
            }
            None => step.answered(format!("refused: {}", denial_text(&allowed))),
        };
        self.transcript.step(step);

        let denied = self
            .envoy_check(github, MCP_GITHUB, "github", "delete_repo")
            .await?;
        let (code, body) = denial(&denied);
        let policy_ids = strings_of(&body["policy_ids"]);
        let step = Step::new("tools/call delete_repo on mcp:github is denied")
            .asked(asked("delete_repo", MCP_GITHUB, "github"))
            .answered(format!(
                "{code} {}: {} (policy_ids {policy_ids:?}, decision {})",
                http_reason(code),
                text(&body["reason"]),
                text(&body["decision_id"])
            ))
            .why(
                "no-repo-deletion denies tools/call on mcp:*/delete_*; an explicit deny beats \
                 any allow (github-tools matches too), so the call never reaches the server",
            )
            .ok(code == 403 && policy_ids == ["no-repo-deletion"])
            .fact("status", code.to_string())
            .fact("reason", text(&body["reason"]))
            .fact("policy_ids", policy_ids.join(","));
        self.transcript.step(step);

        let elsewhere = self
            .envoy_check(github, MCP_JIRA, "jira", "list_issues")
            .await?;
        let (code, body) = denial(&elsewhere);
        let step = Step::new("the same token at mcp:jira is denied (wrong audience)")
            .asked(asked("list_issues", MCP_JIRA, "jira"))
            .answered(format!(
                "{code} {}: {}",
                http_reason(code),
                text(&body["reason"])
            ))
            .why(format!(
                "the token's aud is {MCP_GITHUB}: a delegated token is good only at the target \
                 it was exchanged for, so a leaked token cannot be replayed at another server"
            ))
            .ok(code == 403 && text(&body["reason"]).contains("audience"))
            .fact("status", code.to_string())
            .fact("reason", text(&body["reason"]));
        self.transcript.step(step);
        Ok(())
    }
}

/// An Envoy ext_authz request for an MCP `tools/call` of `tool` through the
/// gateway, on a route for `audience` and MCP server `server`.
pub(super) fn mcp_check(token: &str, audience: &str, server: &str, tool: &str) -> CheckRequest {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {"repo": "payments/ledger"}},
    })
    .to_string();
    let headers = HashMap::from([
        (":authority".to_owned(), GATEWAY_HOST.to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
        ("content-type".to_owned(), "application/json".to_owned()),
    ]);
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                time: None,
                http: Some(HttpRequest {
                    method: "POST".to_owned(),
                    path: "/mcp".to_owned(),
                    host: GATEWAY_HOST.to_owned(),
                    headers,
                    body,
                    ..HttpRequest::default()
                }),
            }),
            context_extensions: HashMap::from([
                ("agentsec_audience".to_owned(), audience.to_owned()),
                ("agentsec_mcp_server".to_owned(), server.to_owned()),
            ]),
            ..AttributeContext::default()
        }),
    }
}

/// The decision id of an allow, `None` for any refusal.
pub(super) fn allowed_decision(response: &CheckResponse) -> Option<String> {
    if response.status.as_ref().map(|status| status.code) != Some(0) {
        return None;
    }
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        return None;
    };
    ok.headers
        .iter()
        .filter_map(|option| option.header.as_ref())
        .find(|header| header.key == "x-agentsec-decision-id")
        .map(|header| header.value.clone())
}

/// The HTTP status and JSON body of a refusal (0 and null for an allow).
pub(super) fn denial(response: &CheckResponse) -> (i32, Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        return (0, Value::Null);
    };
    (
        denied.status.as_ref().map_or(0, |status| status.code),
        decision_of(serde_json::from_str(&denied.body).unwrap_or(Value::Null)),
    )
}

/// The decision in a denial body: the body itself, or for an MCP message
/// the JSON-RPC error's `data` (its message as the reason when it has
/// none).
pub(super) fn decision_of(body: Value) -> Value {
    match body.get("error") {
        Some(error) if error.is_object() => error
            .get("data")
            .cloned()
            .unwrap_or_else(|| json!({ "reason": error["message"] })),
        _ => body,
    }
}

pub(super) fn denial_text(response: &CheckResponse) -> String {
    let (code, body) = denial(response);
    format!("{code} {}", text(&body["reason"]))
}

pub(super) fn http_reason(code: i32) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        503 => "Service Unavailable",
        0 => "(allowed)",
        _ => "",
    }
}
