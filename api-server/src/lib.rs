//! ListaCompra API server: shopping lists, items, sharing and AI suggestions.
//!
//! Layout (hexagonal, small):
//! - [`domain`]: pure types and rules (validation, roles, offline suggestions), no I/O;
//! - [`ports`]: the traits the core needs from the outside (AI provider, cache);
//! - adapters: [`store`] (PostgreSQL via sqlx), [`ai`] (Perplexity, offline provider, Redis
//!   cache, RabbitMQ consumer), [`outbox`] (relay to RabbitMQ), [`http`] (warp edge);
//! - operations: [`config`], [`telemetry`], [`metrics`], [`migrate`], [`fault`], [`app`].

pub mod ai;
pub mod amqp;
pub mod app;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod fault;
pub mod health;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod ports;
pub mod seed;
pub mod store;
pub mod telemetry;

pub use error::{Error, Result};
