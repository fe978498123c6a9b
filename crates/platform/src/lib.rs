//! Plumbing written once and shared by every Paywire service:
//! configuration, telemetry, metrics, HTTP bootstrap, authentication, the database, and the
//! production-mode checks.

pub mod answer;
pub mod api_error;
pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod http;
pub mod metrics;
pub mod production;
pub mod telemetry;

pub use error::PlatformError;

#[doc(hidden)]
pub use actix_web as __actix_web;
#[doc(hidden)]
pub use anyhow as __anyhow;
#[doc(hidden)]
pub use diesel as __diesel;
#[doc(hidden)]
pub use diesel_migrations::EmbeddedMigrations as __EmbeddedMigrations;
