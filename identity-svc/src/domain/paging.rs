//! Cursor paging of the registry's listings.

pub use agentsec_common::page::Page;

use crate::error::IdentityError;

/// A page a caller asked for, read against the scope of the listing it
/// pages through (its filters): a cursor made under another scope is
/// refused.
pub trait PageRequest {
    fn page(self, scope: String) -> Result<Page, IdentityError>;
}
