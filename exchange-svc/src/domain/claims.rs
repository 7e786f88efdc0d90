//! The claims of a delegated token: `sub` = the person, `act` = the agent
//! acting now with earlier actors nested inside (RFC 8693 §4.1), one
//! `aud`, `azp` = the acting agent, and the grant it was issued under.

use serde::{Deserialize, Serialize};

/// One agent of a chain: its id and the issuer that vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub agent_id: String,
    pub issuer: String,
}

/// RFC 8693 §4.1 `act`: `sub` is an agent id, `iss` the issuer that vouched
/// for it (identity-svc), `act` the actor before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub sub: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Act>>,
}

impl Act {
    /// The chain, outermost (the agent acting now) first.
    pub fn actors(&self) -> Vec<Actor> {
        let mut actors = Vec::new();
        let mut next = Some(self);
        while let Some(act) = next {
            actors.push(Actor {
                agent_id: act.sub.clone(),
                issuer: act.iss.clone(),
            });
            next = act.act.as_deref();
        }
        actors
    }

    /// The nested claim of a chain given outermost first; `None` when empty.
    pub fn from_actors(actors: &[Actor]) -> Option<Self> {
        actors.iter().rev().fold(None, |inner, actor| {
            Some(Self {
                sub: actor.agent_id.clone(),
                iss: actor.issuer.clone(),
                act: inner.map(Box::new),
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedClaims {
    pub iss: String,
    /// The person.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub scope: String,
    /// The agent acting now.
    pub azp: String,
    pub tenant: String,
    /// Absent only in impersonation tokens (single agent, named by `azp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// The grant behind the first hop; empty when `may_act` authorized it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grant_id: String,
}

impl DelegatedClaims {
    /// Every agent the token depends on, outermost first (`azp` alone for
    /// an impersonation token).
    pub fn actors(&self) -> Vec<Actor> {
        match &self.act {
            Some(act) => act.actors(),
            None => vec![Actor {
                agent_id: self.azp.clone(),
                issuer: String::new(),
            }],
        }
    }

    /// The chain `act` names, outermost first (empty for an impersonation
    /// token).
    pub fn act_chain(&self) -> Vec<Actor> {
        self.act.as_ref().map(Act::actors).unwrap_or_default()
    }

    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .split(' ')
            .filter(|scope| !scope.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(id: &str) -> Actor {
        Actor {
            agent_id: id.to_owned(),
            issuer: "http://id.test".to_owned(),
        }
    }

    #[test]
    fn act_nests_earlier_actors_inside() {
        let chain = [actor("agt_b"), actor("agt_a")];
        let act = Act::from_actors(&chain).unwrap();
        assert_eq!(
            serde_json::to_value(&act).unwrap(),
            serde_json::json!({"sub": "agt_b", "iss": "http://id.test",
                               "act": {"sub": "agt_a", "iss": "http://id.test"}})
        );
        assert_eq!(act.actors(), chain);
        assert!(Act::from_actors(&[]).is_none());
    }
}
