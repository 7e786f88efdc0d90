//! Errors of the decision engine: a request the engine refuses
//! (`InvalidArgument`, naming the field path as the caller wrote it) and the
//! findings of policy-set validation (policy id, field, line, column).

use agentsec_proto::policy::v1 as pb;

use crate::error::PolicyError;

/// How many validation findings a report lists (ValidatePolicySetResponse);
/// further findings are only counted.
pub const MAX_LISTED_ISSUES: usize = 1000;

/// A decision request the engine cannot decide: the caller's fault, never a
/// decision. Evaluation errors are not here: they are a DENY decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("invalid `{field}`: {reason}")]
    InvalidArgument { field: String, reason: String },
}

impl RequestError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field path the error names.
    pub fn field(&self) -> &str {
        match self {
            Self::InvalidArgument { field, .. } => field,
        }
    }
}

/// One finding of policy-set validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    /// The rule concerned; empty for set-level findings (role cycles,
    /// duplicate assignments, attribute declarations).
    pub policy_id: String,
    /// Field path, e.g. `policy_set.rules[3].condition`.
    pub field: String,
    /// 1-based line within the field's text; 0 when not applicable.
    pub line: u32,
    /// 1-based column within that line; 0 when not applicable.
    pub column: u32,
    pub message: String,
}

impl ValidationIssue {
    pub fn new(policy_id: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            policy_id: policy_id.to_owned(),
            field: field.into(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = line;
        self.column = column;
        self
    }

    pub fn to_proto(&self) -> pb::ValidationError {
        pb::ValidationError {
            policy_id: self.policy_id.clone(),
            field: self.field.clone(),
            line: self.line,
            column: self.column,
            message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.field)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.policy_id.is_empty() {
            write!(f, " (policy `{}`)", self.policy_id)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every finding of a validation, in the order of the policy set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    pub issues: Vec<ValidationIssue>,
}

impl ValidationReport {
    pub fn is_valid(&self) -> bool {
        self.issues.is_empty()
    }

    pub fn push(&mut self, issue: ValidationIssue) {
        self.issues.push(issue);
    }

    /// The ValidatePolicySet answer: at most [`MAX_LISTED_ISSUES`] listed,
    /// all counted.
    pub fn to_proto(&self) -> pb::ValidatePolicySetResponse {
        pb::ValidatePolicySetResponse {
            valid: self.is_valid(),
            errors: self
                .issues
                .iter()
                .take(MAX_LISTED_ISSUES)
                .map(ValidationIssue::to_proto)
                .collect(),
            error_count: u32::try_from(self.issues.len()).unwrap_or(u32::MAX),
        }
    }

    /// The PutPolicySet refusal: INVALID_ARGUMENT listing the first findings.
    pub fn refusal(&self, first: usize) -> PolicyError {
        let mut listed: Vec<String> = self
            .issues
            .iter()
            .take(first)
            .map(|i| i.to_string())
            .collect();
        if self.issues.len() > first {
            listed.push(format!("and {} more", self.issues.len() - first));
        }
        let field = self
            .issues
            .first()
            .map(|issue| issue.field.clone())
            .unwrap_or_else(|| "policy_set".to_owned());
        PolicyError::invalid(field, listed.join("; "))
    }
}

/// A value shortened and stripped of control characters, for messages about
/// non-secret input.
pub fn printable(value: &str) -> String {
    let mut out: String = value.chars().filter(|c| !c.is_control()).take(64).collect();
    if value.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_at_most_the_limit_and_counts_all() {
        let mut report = ValidationReport::default();
        for i in 0..(MAX_LISTED_ISSUES + 5) {
            report.push(ValidationIssue::new(
                "r",
                format!("policy_set.rules[{i}]"),
                "bad",
            ));
        }
        let proto = report.to_proto();
        assert!(!proto.valid);
        assert_eq!(proto.errors.len(), MAX_LISTED_ISSUES);
        assert_eq!(proto.error_count as usize, MAX_LISTED_ISSUES + 5);
        let message = report.refusal(3).to_string();
        assert!(message.contains("policy_set.rules[0]"), "{message}");
        assert!(message.contains("and 1002 more"), "{message}");
    }

    #[test]
    fn issue_display_names_field_position_and_policy() {
        let issue = ValidationIssue::new(
            "no-delete",
            "policy_set.rules[2].condition",
            "unknown function `hours`",
        )
        .at(2, 7);
        assert_eq!(
            issue.to_string(),
            "policy_set.rules[2].condition:2:7 (policy `no-delete`): unknown function `hours`"
        );
    }
}
