//! Chapter 2: alice grants triage-bot delegation.

use super::*;

impl Story<'_> {
    pub(super) async fn grant(&mut self, alice: &Person, triage: &Actor) -> anyhow::Result<Grant> {
        let audiences = vec![MCP_GITHUB.to_owned(), self.setting.exchange_issuer.clone()];
        let request = self.calls.bearer(
            CreateGrantRequest {
                grant: Some(Grant {
                    agent_id: triage.id.clone(),
                    audiences: audiences.clone(),
                    scopes: strings(GRANTED_SCOPES),
                    expire_time: Some(prost_types::Timestamp {
                        seconds: unix_now() + ONE_HOUR,
                        nanos: 0,
                    }),
                    max_chain_depth: GRANT_DEPTH,
                    purpose: "triage the payments team's GitHub issues".to_owned(),
                    ..Grant::default()
                }),
            },
            &alice.token,
        )?;
        let created = self.calls.exchange.create_grant(request).await;
        let step = Step::new("alice grants triage-bot delegation").asked(format!(
            "{ALICE}, with her own token (development person-token issuer {}, sub {ALICE}, \
             tenant {}, 1 h):\n\
             exchange-svc CreateGrant: agent {}, audiences {}, scopes {},\n\
             expires in 1 h, max_chain_depth {GRANT_DEPTH}",
            dev_users::DEV_USER_ISSUER,
            self.setting.tenant,
            self.named(&triage.id),
            audiences.join(" "),
            GRANTED_SCOPES.join(" ")
        ));
        let (response, step) = self.needed(step, created)?;
        let grant = response.into_inner().grant.unwrap_or_default();
        let step = step
            .answered(format!(
                "grant {}, {}, person {} ({}), tenant {}, max_chain_depth {}",
                grant.id,
                grant.status().as_str_name(),
                grant.person_subject,
                grant.person_issuer,
                grant.tenant,
                grant.max_chain_depth
            ))
            .why(format!(
                "a grant is the person's own consent: only her token can create it, never an \
                 admin's; {MCP_GITHUB} is where triage-bot works, and exchange-svc itself is the \
                 audience of tokens handed on to a next agent (chapter 5)"
            ))
            .ok(grant.status() == GrantStatus::Active
                && grant.person_subject == ALICE
                && grant.tenant == self.setting.tenant
                && grant.max_chain_depth == GRANT_DEPTH)
            .fact("grant_id", &grant.id);
        self.require(step)?;
        Ok(grant)
    }
}
