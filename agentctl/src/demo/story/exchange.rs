//! Chapter 3: the tenant's policy set, and triage-bot's first RFC 8693
//! exchange of alice's token and its own for an mcp:github token.

use super::*;

impl Story<'_> {
    pub(super) async fn policy(&mut self, admin: &str) -> anyhow::Result<()> {
        let set = policy_set(&self.setting.exchange_issuer);
        let described: Vec<String> = set.rules.iter().map(describe_rule).collect();
        let request = self.calls.bearer(
            PutPolicySetRequest {
                tenant: self.setting.tenant.clone(),
                policy_set: Some(set),
                expected_version: None,
                description: "agentctl demo".to_owned(),
            },
            admin,
        )?;
        let put = self.calls.policy.put_policy_set(request).await;
        let step = Step::new("the payments tenant's policy set").asked(format!(
            "as the admin: policy-svc PutPolicySet for tenant {}\n\
             (agent attribute trust_tier declared as int):\n{}",
            self.setting.tenant,
            described.join("\n")
        ));
        let (response, step) = self.needed(step, put)?;
        let version = response.into_inner().version.unwrap_or_default();
        let step = step
            .answered(format!(
                "version {} of tenant {}, {} rules, sha256 {}",
                version.version, version.tenant, version.rule_count, version.content_sha256
            ))
            .why(
                "exchange-svc asks policy-svc whether token:exchange is allowed, for the \
                 audience and for each scope; the same set decides the MCP tool calls of \
                 chapter 4",
            )
            .ok(version.version >= 1 && version.rule_count == 5);
        self.require(step)
    }

    pub(super) async fn exchange(
        &mut self,
        subject: &str,
        subject_type: &str,
        actor: &str,
        audience: &str,
        scope: &str,
    ) -> Result<ExchangeResponse, tonic::Status> {
        self.exchanges += 1;
        let request = self.calls.plain(ExchangeRequest {
            subject_token: subject.to_owned(),
            subject_token_type: subject_type.to_owned(),
            actor_token: actor.to_owned(),
            actor_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            audience: vec![audience.to_owned()],
            scope: scope.to_owned(),
            ..ExchangeRequest::default()
        });
        self.calls
            .exchange
            .exchange(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// The agents of a delegated token's `act`, outermost first.
    pub(super) fn actors(claims: &Value) -> Vec<String> {
        let mut actors = Vec::new();
        let mut act = &claims["act"];
        while let Some(sub) = act.get("sub").and_then(Value::as_str) {
            actors.push(sub.to_owned());
            act = &act["act"];
        }
        actors
    }

    /// A delegated token's claims, as the transcript shows them.
    pub(super) fn describe_delegated(&self, claims: &Value) -> String {
        let mut parts = vec![format!("sub {}", text(&claims["sub"]))];
        let mut path = String::from("act");
        for actor in Self::actors(claims) {
            parts.push(format!("{path}.sub {}", self.named(&actor)));
            path.push_str(".act");
        }
        parts.push(format!("aud {}", text(&claims["aud"])));
        parts.push(format!("scope {:?}", text(&claims["scope"])));
        parts.join(", ")
    }

    /// Facts of a delegated token for the transcript: `sub`, `act.sub`,
    /// `act.act.sub` (as agent names), `aud`, `scope`.
    pub(super) fn delegated_facts(&self, step: Step, claims: &Value) -> Step {
        let mut step = step
            .fact("sub", text(&claims["sub"]))
            .fact("aud", text(&claims["aud"]))
            .fact("scope", text(&claims["scope"]));
        let mut path = String::from("act");
        for actor in Self::actors(claims) {
            step = step.fact(&format!("{path}.sub"), self.name_of(&actor));
            path.push_str(".act");
        }
        step
    }

    pub(super) async fn first_exchange(
        &mut self,
        alice: &Person,
        triage: &Actor,
        grant: &Grant,
    ) -> anyhow::Result<String> {
        let exchanged = self
            .exchange(&alice.token, JWT_TYPE, &triage.token, MCP_GITHUB, "")
            .await;
        let step = Step::new("triage-bot exchanges for an mcp:github token").asked(format!(
            "{TRIAGE}: exchange-svc Exchange (RFC 8693), subject_token = alice's token,\n\
             actor_token = {TRIAGE}'s own token (scopes {}), audience {MCP_GITHUB}, no scope \
             (all that may be delegated)",
            TRIAGE_SCOPES.join(" ")
        ));
        let (response, step) = self.needed(step, exchanged)?;
        let claims = claims(&response.access_token)?;
        let issued_at = claims["iat"].as_i64().unwrap_or_default();
        let expires_at = claims["exp"].as_i64().unwrap_or_default();
        let grant_ends = grant
            .expire_time
            .as_ref()
            .map_or(i64::MAX, |time| time.seconds);
        let mut bounds = vec![
            ("alice's token", alice.expires_at),
            ("triage-bot's token", triage.expires_at),
            ("the grant", grant_ends),
        ];
        if let Some(max) = self.setting.exchange_max_lifetime_secs {
            bounds.push(("exchange-svc's maximum", issued_at + max));
        }
        let earliest = bounds
            .iter()
            .min_by_key(|(_, at)| *at)
            .map_or(("", 0), |(what, at)| (*what, *at));
        let mut bounds_text: Vec<String> = bounds
            .iter()
            .map(|(what, at)| format!("{what} {} s", at - issued_at))
            .collect();
        // A running stack's maximum is its own configuration: a lifetime
        // below every known bound is that maximum.
        let (earliest, lifetime_ok) = if self.setting.exchange_max_lifetime_secs.is_some() {
            (earliest.0, expires_at == earliest.1)
        } else if expires_at < earliest.1 {
            bounds_text.push("exchange-svc's maximum (its configuration)".to_owned());
            ("exchange-svc's maximum", true)
        } else {
            bounds_text.push("exchange-svc's maximum (its configuration)".to_owned());
            (earliest.0, expires_at == earliest.1)
        };
        let actors = Self::actors(&claims);
        let step = step
            .answered(format!(
                "{}, expires in {} s, grant_id {}",
                self.describe_delegated(&claims),
                response.expires_in,
                text(&claims["grant_id"])
            ))
            .why(format!(
                "sub stays the person and act names the agent acting for her (RFC 8693 §4.1);\n\
                 scope = triage-bot's token ∩ alice's grant ∩ what policy allows: repo:admin is \
                 dropped;\n\
                 lifetime = the earliest of {}: {}",
                bounds_text.join(", "),
                earliest
            ))
            .ok(text(&claims["sub"]) == ALICE
                && actors == [triage.id.clone()]
                && response.scope == GRANTED_SCOPES.join(" ")
                && lifetime_ok
                && response.expires_in < ONE_HOUR)
            .fact("expires_in", response.expires_in.to_string());
        let step = self.delegated_facts(step, &claims);
        self.require(step)?;
        Ok(response.access_token)
    }
}

/// The tenant's policy set: alice's agents may exchange for mcp:github and
/// hand work on through exchange-svc, with `issues:` scopes; tier-2 agents
/// may call the GitHub MCP server's tools; no agent deletes a repository.
pub(super) fn policy_set(exchange_issuer: &str) -> PolicySet {
    let rule =
        |id: &str, effect: Effect, person: &str, resource: String, action: &str| PolicyRule {
            id: id.to_owned(),
            effect: effect as i32,
            agent: "*".to_owned(),
            person: person.to_owned(),
            resource,
            actions: vec![action.to_owned()],
            ..PolicyRule::default()
        };
    let person = format!("person:{ALICE}");
    let mut tools = rule(
        "github-tools",
        Effect::Allow,
        "*",
        "mcp:github/*".to_owned(),
        "tools/call",
    );
    tools.audience = MCP_GITHUB.to_owned();
    tools.condition = "agent.trust_tier >= 2".to_owned();
    PolicySet {
        rules: vec![
            rule(
                "exchange-github",
                Effect::Allow,
                &person,
                format!("audience:{MCP_GITHUB}"),
                "token:exchange",
            ),
            rule(
                "exchange-hand-off",
                Effect::Allow,
                &person,
                format!("audience:{exchange_issuer}"),
                "token:exchange",
            ),
            rule(
                "issue-scopes",
                Effect::Allow,
                &person,
                "scope:issues:*".to_owned(),
                "token:exchange",
            ),
            tools,
            rule(
                "no-repo-deletion",
                Effect::Deny,
                "*",
                "mcp:*/delete_*".to_owned(),
                "tools/call",
            ),
        ],
        role_assignments: Vec::new(),
        attributes: vec![AttributeDefinition {
            source: AttributeSource::Agent as i32,
            name: "trust_tier".to_owned(),
            r#type: AttributeType::Int as i32,
            description: "how far the payments team trusts an agent".to_owned(),
        }],
    }
}

pub(super) fn describe_rule(rule: &PolicyRule) -> String {
    let effect = if rule.effect == Effect::Deny as i32 {
        "deny "
    } else {
        "allow"
    };
    let mut text = format!(
        "  {:<18} {effect} {} on {}",
        rule.id,
        rule.actions.join(","),
        rule.resource
    );
    if !rule.person.is_empty() && rule.person != "*" {
        text.push_str(&format!(" for {}", rule.person));
    }
    if !rule.audience.is_empty() {
        text.push_str(&format!(" at {}", rule.audience));
    }
    if !rule.condition.is_empty() {
        text.push_str(&format!(" if {}", rule.condition));
    }
    text
}
