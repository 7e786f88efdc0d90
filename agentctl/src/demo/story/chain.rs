//! Chapter 5: triage-bot hands work on to summarizer-bot (nested `act`),
//! and a hop beyond the grant's depth is refused.

use super::*;

impl Story<'_> {
    /// Registers an agent with a client secret and gets its token for
    /// `audience`.
    pub(super) async fn secret_agent(
        &mut self,
        admin: &str,
        name: &str,
        audience: &str,
        scopes: &[&str],
    ) -> anyhow::Result<Actor> {
        let agent = self.register(admin, name, &[], audience, scopes).await?;
        let request = self.calls.bearer(
            CreateClientSecretRequest {
                agent_id: agent.id.clone(),
                ..CreateClientSecretRequest::default()
            },
            admin,
        )?;
        let secret = self
            .calls
            .identity
            .create_client_secret(request)
            .await
            .map_err(failed)
            .with_context(|| format!("creating {name}'s client secret"))?
            .into_inner();
        let request = self.calls.plain(client_credentials(
            &secret.client_id,
            &secret.client_secret,
            audience,
        ));
        let token = self
            .calls
            .identity
            .issue_token(request)
            .await
            .map_err(failed)
            .with_context(|| format!("{name}'s token"))?
            .into_inner()
            .access_token;
        Ok(Actor {
            id: agent.id,
            expires_at: claims(&token)?["exp"].as_i64().unwrap_or_default(),
            token,
        })
    }

    pub(super) async fn chain(
        &mut self,
        admin: &str,
        alice: &Person,
        triage: &Actor,
    ) -> anyhow::Result<String> {
        let exchange = self.setting.exchange_issuer.clone();
        let summarizer = self
            .secret_agent(admin, SUMMARIZER, &exchange, &[READ_SCOPE])
            .await?;
        let reporter = self
            .secret_agent(admin, REPORTER, &exchange, &[READ_SCOPE])
            .await?;
        let step = Step::new("register summarizer-bot and reporter-bot")
            .asked(format!(
                "as the admin: identity-svc RegisterAgent {SUMMARIZER} and {REPORTER} (tenant \
                 {}, owner {ALICE}, scope {READ_SCOPE}), CreateClientSecret for each;\n\
                 each: IssueToken client_credentials, audience {}",
                self.setting.tenant,
                self.setting.exchange_issuer
            ))
            .answered(format!(
                "{}, {}, each with its own token for exchange-svc",
                self.named(&summarizer.id),
                self.named(&reporter.id)
            ))
            .why("these agents authenticate with client secrets; either way, each agent acts with a token of its own")
            .ok(true);
        self.require(step)?;

        let handed = self
            .exchange(&alice.token, JWT_TYPE, &triage.token, &exchange, READ_SCOPE)
            .await;
        let step =
            Step::new("triage-bot hands work on: a token for exchange-svc itself").asked(format!(
                "{TRIAGE}: exchange-svc Exchange, subject_token = alice's token, actor_token = \
                 its own,\naudience {exchange} (exchange-svc), scope {READ_SCOPE}"
            ));
        let handed = self.delegated(
            step,
            handed,
            |claims, actors| text(&claims["aud"]) == exchange && actors == [triage.id.clone()],
            "a token for exchange-svc is one the next agent can present as its subject token; \
            triage-bot passes on only what the summary needs (issues:read)",
        )?;

        let nested = self
            .exchange(
                &handed,
                ACCESS_TOKEN_TYPE,
                &summarizer.token,
                MCP_GITHUB,
                "",
            )
            .await;
        let step = Step::new("summarizer-bot exchanges it: nested act").asked(format!(
            "{SUMMARIZER}: exchange-svc Exchange, subject_token = triage-bot's hand-off token,\n\
             actor_token = {SUMMARIZER}'s own, audience {MCP_GITHUB}"
        ));
        let nested = self.delegated(
            step,
            nested,
            |claims, actors| {
                text(&claims["sub"]) == ALICE
                    && actors == [summarizer.id.clone(), triage.id.clone()]
                    && text(&claims["scope"]) == READ_SCOPE
            },
            "each hop nests the earlier actors (RFC 8693 §4.1): summarizer-bot acts, for \
            triage-bot, for alice; a chain of 2 agents is within the grant's max_chain_depth (2)",
        )?;

        let onward = self
            .exchange(&handed, ACCESS_TOKEN_TYPE, &summarizer.token, &exchange, "")
            .await;
        let step =
            Step::new("summarizer-bot hands on too: a token for exchange-svc").asked(format!(
                "{SUMMARIZER}: exchange-svc Exchange, subject_token = triage-bot's hand-off \
                 token,\nactor_token = {SUMMARIZER}'s own, audience {exchange}"
            ));
        let onward = self.delegated(
            step,
            onward,
            |_, actors| actors == [summarizer.id.clone(), triage.id.clone()],
            "still 2 agents in the chain; whoever presents this token next would be the third",
        )?;

        let third = self
            .exchange(&onward, ACCESS_TOKEN_TYPE, &reporter.token, MCP_GITHUB, "")
            .await;
        let step = Step::new("a third hop, beyond the grant's depth, is refused").asked(format!(
            "{REPORTER}: exchange-svc Exchange, subject_token = summarizer-bot's hand-off \
             token,\nactor_token = {REPORTER}'s own, audience {MCP_GITHUB}"
        ));
        let step = match third {
            Ok(response) => {
                let claims = claims(&response.access_token)?;
                step.answered(format!("issued: {}", self.describe_delegated(&claims)))
            }
            Err(status) => step
                .answered(status_text(&status))
                .ok(status.code() == tonic::Code::PermissionDenied
                    && status.message().starts_with("invalid_grant:"))
                .fact("error", oauth_error(&status)),
        };
        let step = step.why(format!(
            "reporter-bot would be the third agent in the chain; alice's grant allows \
             {GRANT_DEPTH}, so nothing is issued"
        ));
        self.transcript.step(step);
        Ok(nested)
    }

    /// Records an exchange that should issue a token satisfying `expected`
    /// (given its claims and its actors); returns the token.
    pub(super) fn delegated(
        &mut self,
        step: Step,
        exchanged: Result<ExchangeResponse, tonic::Status>,
        expected: impl Fn(&Value, &[String]) -> bool,
        why: &str,
    ) -> anyhow::Result<String> {
        let (response, step) = self.needed(step, exchanged)?;
        let claims = claims(&response.access_token)?;
        let actors = Self::actors(&claims);
        let step = step
            .answered(format!(
                "{}, expires in {} s",
                self.describe_delegated(&claims),
                response.expires_in
            ))
            .why(why)
            .ok(expected(&claims, &actors));
        let step = self.delegated_facts(step, &claims);
        self.require(step)?;
        Ok(response.access_token)
    }
}
