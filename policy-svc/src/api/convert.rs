//! Conversions between the protobuf messages and policy-svc's own types.

use agentsec_proto::policy::v1 as pb;

use crate::domain::policy_set::StoredVersion;
use crate::events::timestamp;

impl From<&StoredVersion> for pb::PolicySetVersion {
    fn from(stored: &StoredVersion) -> Self {
        pb::PolicySetVersion {
            tenant: stored.tenant.clone(),
            version: stored.version,
            create_time: Some(timestamp(stored.create_time)),
            author: stored.author.clone(),
            description: stored.description.clone(),
            rolled_back_from: stored.rolled_back_from,
            rule_count: stored.rule_count,
            role_assignment_count: stored.role_assignment_count,
            content_sha256: stored.content_sha256.clone(),
        }
    }
}
