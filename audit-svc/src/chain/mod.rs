//! The chain writer and what feeds it (events prepared at the boundary are
//! appended by one writer task per process with group commit), and what
//! reads the chain back: verification and the scans behind query, tail
//! and export.

pub mod prepare;
pub mod scan;
pub mod verification;
pub mod writer;
