//! # headwater-sim
//!
//! Headwater under madsim: the real server crate (its tokio code on madsim's simulated
//! runtime) on a simulated node with a faulty disk ([`disk::SimDisk`]), simulated clients that
//! speak the Kafka protocol ([`client`]), faults drawn from a seed ([`scenario`]), and checkers
//! over the recorded history ([`checker`]). Build with `RUSTFLAGS="--cfg madsim"` into
//! `target/sim` (`make sim`); see docs/simulation.md.

pub mod checker;
pub mod history;

#[cfg(madsim)]
pub mod client;
#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod scenario;
#[cfg(madsim)]
pub mod txn;
