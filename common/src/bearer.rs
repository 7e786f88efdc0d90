//! The caller's token from gRPC `authorization: Bearer <token>` metadata
//! (common.proto: missing or malformed is UNAUTHENTICATED).

use tonic::metadata::MetadataMap;

use crate::error::ApiError;

pub fn bearer_token(metadata: &MetadataMap) -> Result<&str, ApiError> {
    let unauthenticated = |reason: &str| ApiError::Unauthenticated {
        reason: reason.to_owned(),
    };
    let header = metadata
        .get("authorization")
        .ok_or_else(|| unauthenticated("missing `authorization: Bearer <token>` metadata"))?;
    header
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
        })
        .filter(|token| !token.is_empty())
        .ok_or_else(|| unauthenticated("`authorization` metadata must be `Bearer <token>`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn takes_the_token_of_a_bearer_header_only() {
        assert_eq!(bearer_token(&metadata("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&metadata("bearer  abc ")).unwrap(), "abc");
        assert!(bearer_token(&metadata("Basic abc")).is_err());
        assert!(bearer_token(&metadata("Bearer ")).is_err());
        assert!(bearer_token(&MetadataMap::new()).is_err());
    }
}
