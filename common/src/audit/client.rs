//! placeholder: the audit client
