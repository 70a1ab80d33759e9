//! Producer ids and idempotence. Transactions come later, in their own issue.

pub mod producer;
