//! The ListaCompra release operator.
//!
//! [`decide`] is the pure state machine; [`controller`] observes the cluster, runs the
//! gates, calls `decide` and carries out its decision. Builders of the child objects live in
//! [`workload`], the gates in [`gates`]; a restore of a release's database runs in [`restore`].

pub mod applied;
pub mod backups;
pub mod cache;
pub mod check;
pub mod cleanup;
pub mod conditions;
pub mod controller;
pub mod decide;
pub mod error;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod gates;
pub mod jobs;
pub mod leader;
pub mod naming;
pub mod packed;
pub mod references;
pub mod restore;
pub mod rollout;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod workload;
