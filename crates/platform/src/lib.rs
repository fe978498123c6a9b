//! Plumbing written once and shared by every Paywire service:
//! configuration, telemetry, HTTP bootstrap, authentication and the database.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod telemetry;

pub use error::PlatformError;
