//! Cursor paging (common.proto `PageRequest`/`PageResponse`) for the list
//! subcommands: pages are fetched until the last one or `--limit` items.

use agentsec_proto::common::v1::{PageRequest, PageResponse};

/// The most a service returns per page.
const MAX_PAGE_SIZE: usize = 1_000;

#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// The most items to list (pages are fetched until then).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Where a listing is: how many items it has and the next page's cursor.
#[derive(Debug)]
pub struct Pager {
    limit: usize,
    seen: usize,
    /// None once the last page has come.
    next_token: Option<String>,
}

impl Pager {
    pub fn new(args: &LimitArgs) -> Self {
        Self {
            limit: args.limit,
            seen: 0,
            next_token: Some(String::new()),
        }
    }

    /// The next page to ask for, or None when the listing is complete.
    pub fn next_page(&self) -> Option<PageRequest> {
        let token = self.next_token.as_ref()?;
        let wanted = self.limit.saturating_sub(self.seen).min(MAX_PAGE_SIZE);
        (wanted > 0).then(|| PageRequest {
            page_size: i32::try_from(wanted).unwrap_or(i32::MAX),
            page_token: token.clone(),
        })
    }

    /// Takes the `items` of a page; the first `--limit` of all are kept.
    pub fn take<T>(&mut self, all: &mut Vec<T>, items: Vec<T>, page: Option<PageResponse>) {
        self.seen += items.len();
        all.extend(items);
        all.truncate(self.limit);
        self.next_token = page
            .map(|page| page.next_page_token)
            .filter(|token| !token.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_asked_for_until_the_last_or_the_limit() {
        let mut pager = Pager::new(&LimitArgs { limit: 3 });
        let mut all = Vec::new();
        let first = pager.next_page().unwrap();
        assert_eq!((first.page_size, first.page_token.as_str()), (3, ""));
        pager.take(
            &mut all,
            vec![1, 2],
            Some(PageResponse {
                next_page_token: "next".to_owned(),
            }),
        );
        let second = pager.next_page().unwrap();
        assert_eq!((second.page_size, second.page_token.as_str()), (1, "next"));
        pager.take(
            &mut all,
            vec![3],
            Some(PageResponse {
                next_page_token: "more".to_owned(),
            }),
        );
        assert!(pager.next_page().is_none(), "the limit is reached");
        assert_eq!(all, [1, 2, 3]);

        let mut pager = Pager::new(&LimitArgs { limit: 10 });
        pager.take(&mut all, vec![4], None);
        assert!(pager.next_page().is_none(), "that was the last page");
    }
}
