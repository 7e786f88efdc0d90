//! The candidate index: which rules can possibly match a request, found
//! without looking at the others.
//!
//! Three levels, each a hash lookup:
//!
//! 1. **tenant** — a compiled policy set holds one tenant's rules only;
//! 2. **action** — exact action names map to their own resource index;
//!    action globs (`tools/*`, `*`) each have one, probed after a glob test;
//! 3. **resource** — a pattern without `*` is filed under its exact value; a
//!    pattern with `*` under its literal prefix cut after the last `:` or `/`
//!    (`mcp:github/get_*` -> `mcp:github/`, `mcp:*/delete_*` -> `mcp:`,
//!    `*` -> ``). A request probes its exact id and each of its own prefixes
//!    that ends at a `:` or `/` and has the length of some filed prefix.
//!
//! Inside a bucket, rules naming one agent (`agent:<id>`) are kept apart
//! by agent id, so per-agent grants do not slow down other agents.
//!
//! Decision cost = (probes: 1 exact action + matching action globs) x (1 +
//! delimiters in the resource id) hash lookups, plus the candidates found.
//! It does not depend on the number of rules in the set, only on how many
//! rules could apply to this action on this resource.

use std::collections::HashMap;

use super::compile::{CompiledRule, SubjectMatch};
use super::glob::{Glob, IndexKey};

/// Rule positions in the policy set.
type RuleIds = Vec<u32>;

#[derive(Debug, Default)]
struct Bucket {
    by_agent: HashMap<Box<str>, RuleIds>,
    others: RuleIds,
}

impl Bucket {
    fn add(&mut self, rule: &CompiledRule, position: u32) {
        match &rule.agent {
            SubjectMatch::Exact(agent_id) => self
                .by_agent
                .entry(agent_id.as_str().into())
                .or_default()
                .push(position),
            SubjectMatch::Any | SubjectMatch::Role(_) => self.others.push(position),
        }
    }

    fn collect(&self, agent_id: Option<&str>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.others);
        if let Some(own) = agent_id.and_then(|agent| self.by_agent.get(agent)) {
            out.extend_from_slice(own);
        }
    }

    fn len(&self) -> usize {
        self.others.len() + self.by_agent.values().map(Vec::len).sum::<usize>()
    }
}

#[derive(Debug, Default)]
struct ResourceIndex {
    exact: HashMap<Box<str>, Bucket>,
    prefixed: HashMap<Box<str>, Bucket>,
    /// `prefix_lengths[n]`: some prefix of n bytes is filed.
    prefix_lengths: Vec<bool>,
}

impl ResourceIndex {
    fn add(&mut self, rule: &CompiledRule, position: u32) {
        match rule.resource.index_key() {
            IndexKey::Exact(id) => self.exact.entry(id.into()).or_default().add(rule, position),
            IndexKey::Prefix(prefix) => {
                self.prefixed
                    .entry(prefix.into())
                    .or_default()
                    .add(rule, position);
                if self.prefix_lengths.len() <= prefix.len() {
                    self.prefix_lengths.resize(prefix.len() + 1, false);
                }
                self.prefix_lengths[prefix.len()] = true;
            }
        }
    }

    fn collect(&self, resource_id: &str, agent_id: Option<&str>, out: &mut Vec<u32>) {
        if let Some(bucket) = self.exact.get(resource_id) {
            bucket.collect(agent_id, out);
        }
        if self.prefixed.is_empty() {
            return;
        }
        let mut probe = |length: usize| {
            if self.prefix_lengths.get(length).copied().unwrap_or(false) {
                if let Some(bucket) = self.prefixed.get(&resource_id[..length]) {
                    bucket.collect(agent_id, out);
                }
            }
        };
        probe(0);
        for (at, byte) in resource_id.bytes().enumerate() {
            if at + 1 >= self.prefix_lengths.len() {
                break;
            }
            // ASCII delimiters: `at + 1` is a char boundary.
            if byte == b':' || byte == b'/' {
                probe(at + 1);
            }
        }
    }

    fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.exact.values().chain(self.prefixed.values())
    }
}

/// One tenant's rules, by action and resource.
#[derive(Debug, Default)]
pub struct RuleIndex {
    by_action: HashMap<Box<str>, ResourceIndex>,
    action_globs: Vec<(Glob, ResourceIndex)>,
}

/// Shape of an index, for the bench and for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub exact_actions: usize,
    pub action_globs: usize,
    pub buckets: usize,
    pub largest_bucket: usize,
}

impl RuleIndex {
    pub fn build(rules: &[CompiledRule]) -> Self {
        let mut index = Self::default();
        let mut glob_slots: HashMap<String, usize> = HashMap::new();
        for (position, rule) in rules.iter().enumerate() {
            let position = u32::try_from(position).unwrap_or(u32::MAX);
            for action in &rule.actions {
                let resources = if action.is_literal() {
                    index.by_action.entry(action.as_str().into()).or_default()
                } else {
                    let slot = *glob_slots
                        .entry(action.as_str().to_owned())
                        .or_insert_with(|| {
                            index
                                .action_globs
                                .push((action.clone(), ResourceIndex::default()));
                            index.action_globs.len() - 1
                        });
                    &mut index.action_globs[slot].1
                };
                resources.add(rule, position);
            }
        }
        index
    }

    /// The positions of the rules that may match, ascending, each once.
    /// `agent_id` is None for a person deciding without an agent.
    pub fn candidates(
        &self,
        action: &str,
        resource_id: &str,
        agent_id: Option<&str>,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        if let Some(resources) = self.by_action.get(action) {
            resources.collect(resource_id, agent_id, out);
        }
        for (glob, resources) in &self.action_globs {
            if glob.matches(action) {
                resources.collect(resource_id, agent_id, out);
            }
        }
        // A rule with two actions matching this one is found twice.
        out.sort_unstable();
        out.dedup();
    }

    pub fn stats(&self) -> IndexStats {
        let all = || {
            self.by_action
                .values()
                .chain(self.action_globs.iter().map(|(_, resources)| resources))
                .flat_map(ResourceIndex::buckets)
        };
        IndexStats {
            exact_actions: self.by_action.len(),
            action_globs: self.action_globs.len(),
            buckets: all().count(),
            largest_bucket: all().map(Bucket::len).max().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::engine::compile::compile;
    use crate::domain::engine::compile::tests::{allow, deny};
    use agentsec_proto::policy::v1 as pb;

    fn candidates(
        rules: Vec<pb::PolicyRule>,
        action: &str,
        resource: &str,
        agent: &str,
    ) -> Vec<String> {
        let set = compile(
            "acme",
            1,
            &pb::PolicySet {
                rules,
                ..Default::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        set.index()
            .candidates(action, resource, Some(agent), &mut out);
        out.iter()
            .map(|i| set.rules()[*i as usize].id.clone())
            .collect()
    }

    #[test]
    fn selects_by_action_and_resource_prefix_only() {
        let rules = vec![
            allow("github-read", "*", "mcp:github/*", &["tools/call"]),
            allow(
                "github-exact",
                "*",
                "mcp:github/create_issue",
                &["tools/call"],
            ),
            deny("delete-anywhere", "*", "mcp:*/delete_*", &["tools/call"]),
            allow("gitlab", "*", "mcp:gitlab/*", &["tools/call"]),
            allow("github-write", "*", "mcp:github/*", &["write"]),
            allow("any-tools", "*", "mcp:github/get_*", &["tools/*"]),
            allow("other-exact", "*", "mcp:github/other", &["tools/call"]),
        ];
        assert_eq!(
            candidates(
                rules.clone(),
                "tools/call",
                "mcp:github/create_issue",
                "agt_a"
            ),
            vec![
                "github-read",
                "github-exact",
                "delete-anywhere",
                "any-tools"
            ]
        );
        assert_eq!(
            candidates(rules.clone(), "write", "mcp:github/x", "agt_a"),
            vec!["github-write"]
        );
        assert!(candidates(rules, "read", "mcp:github/x", "agt_a").is_empty());
    }

    #[test]
    fn per_agent_rules_are_only_candidates_for_their_agent() {
        let rules = vec![
            allow("a", "agent:agt_a", "doc:1", &["read"]),
            allow("b", "agent:agt_b", "doc:1", &["read"]),
            allow("role", "role:readers", "doc:1*", &["read"]),
        ];
        assert_eq!(
            candidates(rules.clone(), "read", "doc:1", "agt_a"),
            vec!["a", "role"]
        );
        assert_eq!(candidates(rules, "read", "doc:1", "agt_c"), vec!["role"]);
    }

    #[test]
    fn a_rule_matching_twice_is_one_candidate() {
        let rules = vec![allow("twice", "*", "doc:1", &["read", "re*", "*"])];
        assert_eq!(candidates(rules, "read", "doc:1", "agt_a"), vec!["twice"]);
    }

    #[test]
    fn prefixes_shorter_and_longer_than_the_id_are_handled() {
        let mut everything = deny("all", "*", "*", &["read"]);
        everything.description = String::new();
        let rules = vec![
            everything,
            allow("deep", "*", "a:b/c/d/*", &["read"]),
            allow("no-delimiter", "*", "doc*", &["read"]),
        ];
        // `doc*` has no delimiter before its star: it is filed at the root,
        // so it is a candidate everywhere (and its glob decides).
        assert_eq!(
            candidates(rules.clone(), "read", "a:b/c/d/e", "agt_a"),
            vec!["all", "deep", "no-delimiter"]
        );
        assert_eq!(
            candidates(rules.clone(), "read", "a:", "agt_a"),
            vec!["all", "no-delimiter"]
        );
        assert_eq!(
            candidates(rules, "read", "document", "agt_a"),
            vec!["all", "no-delimiter"]
        );
    }
}
