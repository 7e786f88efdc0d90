//! Cursor paging (common.proto `PageRequest`): the cursor is the last id of
//! the previous page, bound to the filter it was made with.

use crate::error::ApiError;
use agentsec_proto::common::v1::PageRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

const DEFAULT_SIZE: u64 = 50;
const MAX_SIZE: u64 = 1000;
const MAX_TOKEN: usize = 1024;

/// A validated page request.
pub struct Page {
    pub size: u64,
    pub after: Option<String>,
    filter: String,
}

fn fingerprint(filter: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(filter.as_bytes())[..9])
}

impl Page {
    /// `filter` describes the call's filter and order; a cursor made under
    /// another filter is refused.
    pub fn parse(page: Option<&PageRequest>, filter: String) -> Result<Self, ApiError> {
        let default = PageRequest::default();
        let page = page.unwrap_or(&default);
        if page.page_size < 0 {
            return Err(ApiError::invalid("page.page_size", "must not be negative"));
        }
        let size = match page.page_size as u64 {
            0 => DEFAULT_SIZE,
            size => size.min(MAX_SIZE),
        };
        let after = if page.page_token.is_empty() {
            None
        } else {
            let invalid =
                || ApiError::invalid("page.page_token", "is not a cursor of this listing");
            if page.page_token.len() > MAX_TOKEN {
                return Err(invalid());
            }
            let decoded = URL_SAFE_NO_PAD
                .decode(&page.page_token)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(invalid)?;
            let (bound, after) = decoded.split_once('|').ok_or_else(invalid)?;
            if bound != fingerprint(&filter) {
                return Err(invalid());
            }
            Some(after.to_owned())
        };
        Ok(Self {
            size,
            after,
            filter,
        })
    }

    /// The cursor after `last`, or empty when `full` is false (last page).
    pub fn next_token(&self, last: Option<&str>, more: bool) -> String {
        match (last, more) {
            (Some(last), true) => {
                URL_SAFE_NO_PAD.encode(format!("{}|{last}", fingerprint(&self.filter)))
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_only_works_with_its_filter() {
        let first = Page::parse(None, "tenant=a".into()).unwrap();
        assert_eq!(first.size, DEFAULT_SIZE);
        let token = first.next_token(Some("agt_1"), true);
        let request = PageRequest {
            page_size: 5000,
            page_token: token.clone(),
        };
        let second = Page::parse(Some(&request), "tenant=a".into()).unwrap();
        assert_eq!(second.after.as_deref(), Some("agt_1"));
        assert_eq!(second.size, MAX_SIZE);
        assert!(Page::parse(Some(&request), "tenant=b".into()).is_err());
        assert_eq!(first.next_token(Some("agt_1"), false), "");
    }
}
