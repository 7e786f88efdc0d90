//! Chapter 6: alice revokes the grant; the next exchange and check fail.

use super::*;

impl Story<'_> {
    pub(super) async fn revocation(
        &mut self,
        alice: &Person,
        triage: &Actor,
        grant: &Grant,
        github: &str,
        nested: &str,
    ) -> anyhow::Result<()> {
        let request = self.calls.bearer(
            RevokeGrantRequest {
                grant_id: grant.id.clone(),
                reason: "triage is done".to_owned(),
            },
            &alice.token,
        )?;
        let revoked = self.calls.exchange.revoke_grant(request).await;
        let revoked_at = Instant::now();
        let step = Step::new("alice revokes the grant").asked(format!(
            "{ALICE}, with her own token: exchange-svc RevokeGrant {}, reason \"triage is done\"",
            grant.id
        ));
        let (response, step) = self.needed(step, revoked)?;
        let revoked = response.into_inner().grant.unwrap_or_default();
        let step = step
            .answered(format!(
                "grant {} {}, revoked by {}",
                revoked.id,
                revoked.status().as_str_name(),
                revoked.revoked_by
            ))
            .why("from the moment RevokeGrant returns, no exchange uses the grant and every token issued under it, including later hops, is inactive")
            .ok(revoked.status() == GrantStatus::Revoked);
        self.require(step)?;

        let again = self
            .exchange(&alice.token, JWT_TYPE, &triage.token, MCP_GITHUB, "")
            .await;
        let step = Step::new("the next exchange is refused").asked(format!(
            "{TRIAGE}: exchange-svc Exchange, subject_token = alice's token, actor_token = its \
             own, audience {MCP_GITHUB} (as in chapter 3)"
        ));
        let step = match again {
            Ok(_) => step.answered("issued a token"),
            Err(status) => step
                .answered(status_text(&status))
                .ok(status.code() == tonic::Code::PermissionDenied
                    && status.message().starts_with("invalid_grant:"))
                .fact("error", oauth_error(&status)),
        };
        self.transcript.step(step.why(
            "alice has no active grant to triage-bot any more; a person's token alone lets no \
             agent act for her",
        ));

        for (title, token, whose) in [
            (
                "the next ext_authz check is refused",
                github,
                "triage-bot's mcp:github token of chapter 3",
            ),
            (
                "summarizer-bot's nested token is refused too",
                nested,
                "summarizer-bot's nested mcp:github token of chapter 5",
            ),
        ] {
            let (response, waited) = self.refused_after_revocation(token, revoked_at).await?;
            let (code, body) = denial(&response);
            let step = Step::new(title)
                .asked(format!(
                    "an Envoy: policy-svc Authorization/Check, tools/call list_issues at \
                     {MCP_GITHUB},\nAuthorization: Bearer <{whose}>"
                ))
                .answered(format!(
                    "{code} {}: {} ({} ms after RevokeGrant returned)",
                    http_reason(code),
                    text(&body["reason"]),
                    waited.as_millis()
                ))
                .why(
                    "exchange-svc announced the revocation (GRANT_REVOKED) and policy-svc's \
                     revocation view refuses every token whose grant_id names the grant, with \
                     no call to exchange-svc per request",
                )
                .ok(code == 401)
                .fact("status", code.to_string())
                .fact("reason", text(&body["reason"]));
            self.transcript.step(step);
        }
        Ok(())
    }

    /// Asks ext_authz about `token` until it is refused, for at most
    /// [`REVOCATION_DEADLINE`] after `since`; the last answer and when it
    /// came.
    pub(super) async fn refused_after_revocation(
        &mut self,
        token: &str,
        since: Instant,
    ) -> anyhow::Result<(CheckResponse, Duration)> {
        loop {
            let response = self
                .envoy_check(token, MCP_GITHUB, "github", "list_issues")
                .await?;
            let waited = since.elapsed();
            if allowed_decision(&response).is_none() || waited > REVOCATION_DEADLINE {
                return Ok((response, waited));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
