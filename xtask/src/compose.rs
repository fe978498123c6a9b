//! `deploy/compose.yaml`: where its containers listen on the host's network.

use crate::layout::Service;

/// `deploy/compose.yaml` runs every service on its default port plus this, so the
/// containers never meet `cargo xtask up` (8080–8090) on the host's network.
pub const COMPOSE_PORT_OFFSET: u16 = 20000;
/// The compose stack's own PostgreSQL and RabbitMQ (the machine's hold 5432 and 5672).
pub const COMPOSE_PG_PORT: u16 = 28432;
pub const COMPOSE_AMQP_PORT: u16 = 28672;
pub const COMPOSE_AMQP_DIST_PORT: u16 = 28673;
pub const COMPOSE_EPMD_PORT: u16 = 28369;

/// `service`'s port in `deploy/compose.yaml`.
pub fn port(service: &Service) -> u16 {
    service.port + COMPOSE_PORT_OFFSET
}

pub fn url(service: &Service) -> String {
    format!("http://127.0.0.1:{}", port(service))
}
