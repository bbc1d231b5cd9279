//! ListaCompra API server: shopping lists, items, sharing and AI suggestions.
//!
//! Layout (hexagonal, small):
//! - [`domain`]: data, validation, authorization rules (owner/member), events and the offline
//!   suggestion rule; pure, no I/O;
//! - [`ports`]: the traits the use cases need (store with unit of work and outbox, password
//!   hasher, token issuer, AI provider, cache);
//! - [`usecases`]: register, login, lists, sharing, items, suggestions and the AI worker's
//!   job, written against the domain and the ports only;
//! - adapters: [`store`] (PostgreSQL via sqlx), [`cache`] (Redis), [`outbox`] and [`amqp`]
//!   (the relay to RabbitMQ via lapin), [`ai`] (Perplexity and offline providers, the
//!   RabbitMQ consumer), [`auth`] (argon2, JWT), [`objects`] (S3: presigned uploads and
//!   downloads of attachments, and the janitor that deletes their objects);
//! - the HTTP edge: [`http`] (warp), which calls the use cases only;
//! - protection: [`ratelimit`] (per address, account and user);
//! - operations: [`config`], [`metrics`], [`health`], [`migrate`], [`fault`],
//!   [`seed`], [`smoke`] (the smoke test a release runs as a Job), and [`app`], the wiring.

pub mod ai;
pub mod amqp;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod fault;
pub mod health;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod objects;
pub mod outbox;
pub mod ports;
pub mod ratelimit;
pub mod seed;
pub mod smoke;
pub mod store;
pub mod usecases;

pub use error::{Error, Result};
