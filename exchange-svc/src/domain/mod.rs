//! exchange-svc's rules, free of transport and database types: delegation
//! grants and who may see them, the claims of a delegated token, and the
//! rules of one exchange hop.

pub mod caller;
pub mod claims;
pub mod grant;
pub mod hop;
