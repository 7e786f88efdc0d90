//! The chain writer and what feeds it: events prepared at the boundary are
//! appended by one writer task per process with group commit.

pub mod prepare;
pub mod verification;
pub mod writer;
