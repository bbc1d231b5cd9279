//! The release gates: health checks against the API, and KPIs read from Prometheus.
//! Each gate has a pure judging part (unit-tested) and a small I/O part.

pub mod analysis;
pub mod checks;
pub mod egress;
pub mod health;
pub mod prometheus;
