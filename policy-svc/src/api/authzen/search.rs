//! AuthZEN 1.0 search: `/access/v1/search/{subject,resource,action}`.
//!
//! Candidates are the entities the tenant's policy set names exactly
//! (`engine::search`); each is decided as the evaluation with that entity
//! would be, and only the allowed ones are returned, sorted, in pages. What
//! a search cannot return is in docs/authzen.md, "Search".

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::mapping::{Action, BadRequest, Entity, Mapped, AGENT_TYPE};
use super::{answer, bad_request, caller, parse, status_response, Authzen};
use crate::decisions::search::Sought;
use crate::domain::engine::search::SubjectKind;

pub const SUBJECT_PATH: &str = "/access/v1/search/subject";
pub const RESOURCE_PATH: &str = "/access/v1/search/resource";
pub const ACTION_PATH: &str = "/access/v1/search/action";
/// Results per page when the request names no `page.limit`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;
/// Stands in for the searched member while the rest of the request is
/// checked: valid as an agent id, a person, a resource id and an action.
const PROBE: &str = "agt_probe";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    subject: Option<SearchEntity>,
    action: Option<Action>,
    resource: Option<SearchEntity>,
    #[serde(default)]
    context: Map<String, Value>,
    #[serde(default)]
    page: PageRequest,
}

/// An entity whose `id` the search may leave out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchEntity {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    properties: Map<String, Value>,
}

impl SearchEntity {
    fn with_id(&self, id: &str) -> Entity {
        Entity {
            kind: self.kind.clone(),
            id: id.to_owned(),
            properties: self.properties.clone(),
        }
    }

    fn id(&self, field: &str) -> Result<&str, BadRequest> {
        self.id
            .as_deref()
            .ok_or_else(|| BadRequest::field(field, "is required"))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageRequest {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    /// Implementation-specific; none are defined, so any is ignored (but
    /// must stay the same across pages, like every other member).
    #[serde(default)]
    #[allow(dead_code)]
    properties: Option<Map<String, Value>>,
}

/// The member searched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Searched {
    Subject,
    Resource,
    Action,
}

pub async fn subjects(state: State<Authzen>, headers: HeaderMap, body: Bytes) -> Response {
    search(state, headers, body, Searched::Subject).await
}

pub async fn resources(state: State<Authzen>, headers: HeaderMap, body: Bytes) -> Response {
    search(state, headers, body, Searched::Resource).await
}

pub async fn actions(state: State<Authzen>, headers: HeaderMap, body: Bytes) -> Response {
    search(state, headers, body, Searched::Action).await
}

async fn search(
    State(api): State<Authzen>,
    headers: HeaderMap,
    body: Bytes,
    searched: Searched,
) -> Response {
    // The caller first: an unauthenticated caller learns nothing of the body.
    if let Err(err) = api.auth.decision_caller(&caller(&headers)).await {
        return answer(&headers, status_response(err.into()));
    }
    let response = match parse::<SearchRequest>(&headers, &body)
        .and_then(|request| answer_search(&api, &request, searched, &body))
    {
        Ok(found) => Json(found).into_response(),
        Err(err) => bad_request(err),
    };
    answer(&headers, response)
}

fn answer_search(
    api: &Authzen,
    request: &SearchRequest,
    searched: Searched,
    body: &[u8],
) -> Result<Value, BadRequest> {
    let subject = request
        .subject
        .as_ref()
        .ok_or_else(|| BadRequest::field("subject", "is required"))?;
    let resource = request
        .resource
        .as_ref()
        .ok_or_else(|| BadRequest::field("resource", "is required"))?;
    let action = match (searched, &request.action) {
        (Searched::Action, _) => None,
        (_, Some(action)) => Some(action),
        (_, None) => return Err(BadRequest::field("action", "is required")),
    };
    let asked_limit = match request.page.limit {
        None => None,
        Some(limit) if (1..=MAX_LIMIT as u64).contains(&limit) => Some(limit as usize),
        Some(_) => {
            return Err(BadRequest::field(
                "page.limit",
                format!("must be 1-{MAX_LIMIT}"),
            ))
        }
    };
    let fingerprint = fingerprint(body)?;
    // A later page keeps the first page's limit: the 1.0 text's own example
    // sends it with `page.token` alone.
    let (offset, limit) = match &request.page.token {
        None => (0, asked_limit.unwrap_or(DEFAULT_LIMIT)),
        Some(token) => continued(token, &fingerprint, asked_limit)?,
    };

    // One evaluation with the searched member left open.
    let evaluation = |id: &str| -> Result<Mapped, BadRequest> {
        let subject_id = match searched {
            Searched::Subject => id,
            _ => subject.id("subject.id")?,
        };
        let resource_id = match searched {
            Searched::Resource => id,
            _ => resource.id("resource.id")?,
        };
        let probe_action;
        let action = match action {
            Some(action) => action,
            None => {
                probe_action = Action {
                    name: id.to_owned(),
                    properties: Map::new(),
                };
                &probe_action
            }
        };
        api.rules.check_request(
            &subject.with_id(subject_id),
            action,
            &resource.with_id(resource_id),
            &request.context,
        )
    };
    // The request as a whole must be well formed, whatever the candidates.
    let probe = match evaluation(PROBE)? {
        Mapped::Decide(probe) => probe,
        // A tenant or an agent nobody can have: nothing is allowed.
        Mapped::Unknown(..) => {
            return Ok(page(
                searched,
                subject,
                resource,
                &[],
                0,
                limit,
                &fingerprint,
            ))
        }
    };
    let tenant = probe
        .principal
        .as_ref()
        .map_or("", |principal| principal.tenant.as_str());
    let sought = match searched {
        Searched::Subject => Sought::Subjects(if subject.kind == AGENT_TYPE {
            SubjectKind::Agent
        } else {
            SubjectKind::Person
        }),
        Searched::Resource => Sought::Resources {
            action: action.map_or("", |action| action.name.as_str()),
        },
        Searched::Action => Sought::Actions {
            resource_id: resource.id("resource.id")?,
        },
    };
    let candidates = api.decisions.search_candidates(tenant, sought);
    let mut requests = Vec::with_capacity(candidates.len());
    let mut decidable = Vec::with_capacity(candidates.len());
    for candidate in &candidates {
        if let Ok(Mapped::Decide(request)) = evaluation(candidate) {
            requests.push(request);
            decidable.push(candidate.as_str());
        }
    }
    let found: Vec<&str> = decidable
        .into_iter()
        .zip(api.decisions.allows(&requests))
        .filter_map(|(candidate, allowed)| allowed.then_some(candidate))
        .collect();
    Ok(page(
        searched,
        subject,
        resource,
        &found,
        offset,
        limit,
        &fingerprint,
    ))
}

/// The response: the page of `found` from `offset`, and the token of the
/// next one (empty at the end).
fn page(
    searched: Searched,
    subject: &SearchEntity,
    resource: &SearchEntity,
    found: &[&str],
    offset: usize,
    limit: usize,
    fingerprint: &str,
) -> Value {
    let shown = found.iter().skip(offset).take(limit);
    let results: Vec<Value> = shown
        .map(|id| match searched {
            Searched::Subject => json!({"type": subject.kind, "id": id}),
            Searched::Resource => json!({"type": resource.kind, "id": id}),
            Searched::Action => json!({"name": id}),
        })
        .collect();
    let next = offset + results.len();
    let next_token = if next < found.len() {
        URL_SAFE_NO_PAD.encode(format!("{next}.{limit}.{fingerprint}"))
    } else {
        String::new()
    };
    json!({
        "page": {"next_token": next_token, "count": results.len(), "total": found.len()},
        "results": results,
    })
}

/// What identifies a search across its pages: every member but `page`
/// (AuthZEN 1.0: the rest must not change between pages; the limit travels
/// in the token).
fn fingerprint(body: &[u8]) -> Result<String, BadRequest> {
    let mut request: Value = serde_json::from_slice(body)
        .map_err(|err| BadRequest(format!("the body is not a valid request: {err}")))?;
    if let Some(members) = request.as_object_mut() {
        members.remove("page");
    }
    // serde_json's maps are sorted: equal requests serialize equally.
    let digest = Sha256::digest(request.to_string().as_bytes());
    Ok(digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The offset and limit a `page.token` continues with; refused when it is
/// not a token of this very search, or `asked` names another limit.
fn continued(
    token: &str,
    fingerprint: &str,
    asked: Option<usize>,
) -> Result<(usize, usize), BadRequest> {
    let refused = || {
        BadRequest::field(
            "page.token",
            "is not a next_token of this search (every member but the token must stay the same)",
        )
    };
    let decoded = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
    let text = String::from_utf8(decoded).map_err(|_| refused())?;
    let mut parts = text.splitn(3, '.');
    let (Some(offset), Some(limit), Some(of)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(refused());
    };
    let offset: usize = offset.parse().map_err(|_| refused())?;
    let limit: usize = limit.parse().map_err(|_| refused())?;
    if of != fingerprint || asked.is_some_and(|asked| asked != limit) {
        return Err(refused());
    }
    Ok((offset, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_continues_only_the_search_it_came_from() {
        let body = br#"{"subject": {"type": "user", "id": "alice"}, "page": {"limit": 2}}"#;
        let print = fingerprint(body).unwrap();
        let subject = SearchEntity {
            kind: "user".into(),
            id: None,
            properties: Map::new(),
        };
        let first = page(
            Searched::Subject,
            &subject,
            &subject,
            &["a", "b", "c"],
            0,
            2,
            &print,
        );
        assert_eq!(first["page"]["count"], 2);
        assert_eq!(first["page"]["total"], 3);
        let token = first["page"]["next_token"].as_str().unwrap().to_owned();
        assert_eq!(continued(&token, &print, Some(2)).unwrap(), (2, 2));
        // As the 1.0 text's example asks for the next page: the token alone
        // (no limit) continues with the first page's limit.
        let again = format!(
            r#"{{"subject": {{"type": "user", "id": "alice"}}, "page": {{"token": "{token}"}}}}"#
        );
        assert_eq!(fingerprint(again.as_bytes()).unwrap(), print);
        assert_eq!(continued(&token, &print, None).unwrap(), (2, 2));
        // Another limit, another search, or a token made up: refused.
        assert!(continued(&token, &print, Some(3)).is_err());
        let other =
            fingerprint(br#"{"subject": {"type": "user", "id": "bob"}, "page": {"limit": 2}}"#)
                .unwrap();
        assert!(continued(&token, &other, None).is_err());
        assert!(continued("bm90LWEtdG9rZW4", &print, None).is_err());
        let last = page(
            Searched::Subject,
            &subject,
            &subject,
            &["a", "b", "c"],
            2,
            2,
            &print,
        );
        assert_eq!(last["page"]["next_token"], "");
        assert_eq!(last["results"], json!([{"type": "user", "id": "c"}]));
    }
}
