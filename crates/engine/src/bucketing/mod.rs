//! Steps that keep customers apart on the `partition_key`, run bucket by bucket.
//!
//! `operators` proves from one plan whether it keeps customers apart; `analysis` goes
//! through a pipeline's steps with it (for `segflow plan` and for runs); `count` says how
//! many buckets a run makes; `split` writes a source's rows into buckets; `execute` runs
//! the bucketed steps bucket after bucket and puts their results and reports together.

mod analysis;
mod count;
mod execute;
mod operators;
mod split;

pub(crate) use analysis::analyse;
pub use analysis::{Bucketing, Runs, StepBucketing, Whole};
pub use count::bucket_count;
pub use execute::run_steps_in_buckets;
pub use operators::{Refusal, can_key_buckets};
