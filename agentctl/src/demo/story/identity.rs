//! Chapter 1: triage-bot is registered with a federated credential and
//! gets its token by workload identity federation; alice's person token.

use super::*;

impl Story<'_> {
    pub(super) async fn federated_triage_bot(&mut self, admin: &str) -> anyhow::Result<Actor> {
        let agent = self
            .register(
                admin,
                TRIAGE,
                &[("trust_tier", "2")],
                &self.setting.exchange_issuer.clone(),
                TRIAGE_SCOPES,
            )
            .await?;
        let registered = Step::new("register triage-bot")
            .asked(format!(
                "as the admin ({}): identity-svc RegisterAgent\n\
                 tenant {}, owner {ALICE}, name {TRIAGE}, attribute trust_tier=2,\n\
                 ceiling: audience {} (exchange-svc), scopes {}",
                self.setting.admin.client_id,
                self.setting.tenant,
                self.setting.exchange_issuer,
                TRIAGE_SCOPES.join(" ")
            ))
            .answered(format!(
                "agent {}, {}, attributes {:?}",
                agent.id,
                agent.status().as_str_name(),
                agent.attributes
            ))
            .why(
                "every agent has an identity of its own in the registry, with an accountable \
                 owner; its ceiling bounds every token it can ever hold, and its attributes \
                 (trust_tier) reach policy decisions",
            )
            .ok(agent.id.starts_with("agt_")
                && agent.status() == AgentStatus::Active
                && agent.attributes.get("trust_tier").map(String::as_str) == Some("2"))
            .fact("agent_id", &agent.id);
        self.require(registered)?;

        let request = self.calls.bearer(
            AddFederatedCredentialRequest {
                agent_id: agent.id.clone(),
                federated: Some(FederatedCredentialInfo {
                    issuer: WORKLOAD_ISSUER.to_owned(),
                    subject_match: Some(SubjectMatch::Subject(self.setting.workload_subject())),
                    audience: WORKLOAD_AUDIENCE.to_owned(),
                }),
                description: "triage-bot's Kubernetes workload".to_owned(),
                expire_time: None,
            },
            admin,
        )?;
        let credential = self
            .calls
            .identity
            .add_federated_credential(request)
            .await
            .map_err(failed)
            .context("adding triage-bot's federated credential")?
            .into_inner()
            .credential
            .unwrap_or_default();
        let federated = Step::new("trust triage-bot's workload identity")
            .asked(format!(
                "identity-svc AddFederatedCredential for {TRIAGE}:\n\
                 issuer {WORKLOAD_ISSUER}, subject {}, audience {WORKLOAD_AUDIENCE}",
                self.setting.workload_subject()
            ))
            .answered(format!("credential {}", credential.id))
            .why(format!(
                "identity-svc trusts the workload issuer {WORKLOAD_ISSUER} (its trusted_issuers \
                 entry holds the public key the demo generated); the credential says which of \
                 its workloads is {TRIAGE}, so {TRIAGE} keeps no secret at all"
            ))
            .ok(!credential.id.is_empty())
            .fact("credential_id", &credential.id);
        self.require(federated)?;

        let request = self.calls.plain(IssueTokenRequest {
            grant_type: GrantType::JwtBearer as i32,
            assertion: self
                .setting
                .workload_issuer
                .token(&self.setting.workload_subject(), unix_now())?,
            audience: self.setting.exchange_issuer.clone(),
            ..IssueTokenRequest::default()
        });
        let issued = self.calls.identity.issue_token(request).await;
        let step =
            Step::new("triage-bot's token by the jwt-bearer grant (RFC 7523)").asked(format!(
                "{TRIAGE}'s workload presents a JWT signed by the workload issuer\n\
             (iss {WORKLOAD_ISSUER}, sub {}, aud {WORKLOAD_AUDIENCE}, valid 2 min):\n\
             identity-svc IssueToken grant_type=jwt-bearer, audience {} (to act at exchange-svc)",
                self.setting.workload_subject(),
                self.setting.exchange_issuer
            ));
        let (response, step) = self.needed(step, issued)?;
        let response = response.into_inner();
        let claims = claims(&response.access_token)?;
        let sub = text(&claims["sub"]);
        let step = step
            .answered(format!(
                "access token: sub {}, aud {}, scope {:?}, expires in {} s",
                self.named(&sub),
                text(&claims["aud"]),
                response.scope,
                response.expires_in
            ))
            .why(format!(
                "the JWT's issuer, subject and audience match {TRIAGE}'s federated credential and \
                 its signature verifies with the trusted key: identity-svc issues {TRIAGE}'s own \
                 token, with its whole ceiling (no scope was asked for)"
            ))
            .ok(sub == agent.id && response.scope == TRIAGE_SCOPES.join(" "))
            .fact("sub", &sub)
            .fact("scope", &response.scope);
        self.require(step)?;
        Ok(Actor {
            id: agent.id,
            token: response.access_token,
            expires_at: claims["exp"].as_i64().unwrap_or_default(),
        })
    }

    pub(super) fn alice(&self) -> anyhow::Result<Person> {
        let token = dev_users::person_token(
            &self.setting.person_issuer,
            &PersonClaims {
                sub: ALICE,
                tenant: &self.setting.tenant,
                scopes: &[],
                may_act: None,
                lifetime_secs: ONE_HOUR,
            },
        )?;
        let expires_at = claims(&token)?["exp"].as_i64().unwrap_or_default();
        Ok(Person { token, expires_at })
    }
}
