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
pub mod rate_limit;
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

/// Declares a database service's settings and implements
/// [`ServiceSettings`](crate::app::ServiceSettings) for them (what the bootstrap,
/// [`app::main`](crate::app::main), runs): the sections every database service has —
/// `http` on `port`, `database` named `database` on the local server, `amqp`, `auth`,
/// `telemetry`, `ids` — then the service's own sections, each from its `Default`. In
/// production mode the shared sections refuse development secrets and the broker's guest
/// account, then the service's own `checks` method (if named) looks at the rest. `admits`
/// names the callers of its `/internal/*` routes (their credentials are checked) and
/// `presents` says whether it calls other services with its own credential.
///
/// ```ignore
/// paywire_platform::database_service_settings! {
///     pub struct Settings for SERVICE_NAME, port 8082, database "paywire_order",
///         migrations [MIGRATIONS], admits [caller::OPERATOR], presents true, checks own_findings {
///         pub upstream: UpstreamSettings,
///     }
/// }
/// ```
#[macro_export]
macro_rules! database_service_settings {
    (
        $(#[$meta:meta])*
        pub struct $settings:ident for $name:expr, port $port:literal, database $database:literal,
            migrations [$($migrations:expr),+ $(,)?], admits [$($admits:expr),* $(,)?],
            presents $presents:literal $(, checks $checks:ident)? {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(default)]
        pub struct $settings {
            pub http: $crate::config::HttpSettings,
            pub database: $crate::config::DatabaseSettings,
            pub amqp: $crate::config::AmqpSettings,
            pub auth: $crate::config::AuthSettings,
            pub telemetry: $crate::config::TelemetrySettings,
            pub ids: $crate::config::IdSettings,
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl Default for $settings {
            fn default() -> Self {
                Self {
                    http: $crate::config::HttpSettings::on_port($port),
                    database: $crate::config::DatabaseSettings::local($database),
                    amqp: Default::default(),
                    auth: Default::default(),
                    telemetry: Default::default(),
                    ids: Default::default(),
                    $($field: Default::default(),)*
                }
            }
        }

        impl $crate::production::ProductionChecks for $settings {
            fn production_findings(&self, findings: &mut $crate::production::Findings) {
                findings.auth(&self.auth, $presents, &[$($admits),*]);
                // Every node of a cluster list; an empty list is checked as the empty URL.
                let nodes = $crate::config::broker_nodes(&self.amqp.url);
                for node in if nodes.is_empty() { vec![""] } else { nodes } {
                    findings.amqp_url("amqp.url", node);
                }
                findings.worker_id(&self.ids);
                $(self.$checks(findings);)?
            }
        }

        $crate::service_settings!($settings, $name, database: [$($migrations),+]);
    };
}

/// `Debug` for a type some of whose fields cannot or must not be printed (pools, keys,
/// clients, closures): the named fields, then `..`. Written once for every such type, so
/// none prints more than it names.
///
/// `paywire_platform::debug_fields!(AppState { ids, channels });`
#[macro_export]
macro_rules! debug_fields {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Unit tests' raw HTTP: a `GET` answered whole (status line, headers, body), so the
/// tests see exactly what a client would.
#[cfg(test)]
mod test_http {
    pub(crate) async fn get(port: u16, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }
}

#[cfg(test)]
mod tests {
    struct Keyed {
        name: &'static str,
        port: u16,
        secret: &'static str,
    }
    crate::debug_fields!(Keyed { name, port });

    #[test]
    fn debug_fields_prints_only_the_named_fields() {
        let keyed = Keyed {
            name: "a",
            port: 1,
            secret: "hidden",
        };
        let printed = format!("{keyed:?}");
        assert_eq!(printed, r#"Keyed { name: "a", port: 1, .. }"#);
        assert!(!printed.contains(keyed.secret));
    }
}
