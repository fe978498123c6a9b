//! Per-instance configuration files (`PAYWIRE_CONFIG`): short TTLs and fast sweepers so a
//! run settles in minutes, distinct snowflake worker ids per instance, shared databases
//! and vhost.

/// Where everything of one run lives.
#[derive(Debug, Clone)]
pub struct Topology {
    pub amqp_url: String,
    pub order_db: String,
    pub payment_db: String,
    pub learning_db: String,
    pub sandbox_port: Ports,
    pub learning_ports: [Ports; 2],
    pub order_ports: [Ports; 2],
    pub gateway_ports: [Ports; 2],
    pub seed: u64,
}

/// One instance's two listeners.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// User API, callbacks, the channels' APIs.
    pub public: u16,
    /// `/internal/*`, `/health/*`, `/metrics`, the sandbox's admin API.
    pub internal: u16,
}

impl Ports {
    /// Two free ports (released before the service binds them).
    pub fn free() -> anyhow::Result<Self> {
        Ok(Self {
            public: crate::procs::free_port()?,
            internal: crate::procs::free_port()?,
        })
    }
}

/// A payment attempt can be paid this long.
pub const ATTEMPT_TTL_SECS: u64 = 20;
/// An order stays open this long (must exceed the attempt TTL).
pub const ORDER_TTL_SECS: u64 = 30;

fn http(ports: Ports) -> String {
    format!(
        "[http]\nhost = \"127.0.0.1\"\nport = {}\ninternal_port = {}\nworkers = 2\n\n",
        ports.public, ports.internal
    )
}

fn common(db: &str, amqp: &str, worker_id: u16) -> String {
    format!(
        "[database]\nurl = \"{db}\"\nmax_connections = 8\nmigrate = true\n\n\
         [amqp]\nurl = \"{amqp}\"\nprefetch = 20\n\n\
         [ids]\nworker_id = {worker_id}\n\n\
         [telemetry]\nfilter = \"info\"\njson = false\n\n"
    )
}

/// Snowflake worker id: service digit × 10 + instance, so no two instances share one.
pub fn worker_id(service: &str, index: usize) -> u16 {
    let base = match service {
        "learning-center" => 10,
        "order" => 20,
        "payment-gateway" => 30,
        _ => 90,
    };
    base + index as u16 + 1
}

pub fn sandbox(t: &Topology) -> String {
    format!(
        "{}[telemetry]\nfilter = \"info\"\njson = false\n\n\
         [notify]\ntimeout_ms = 3000\ntime_compression = 30.0\n\n\
         [faults]\nseed = {}\nreorder_hold_ms = 2000\n\n\
         [wechat_v2]\ntls_port = 0\n",
        http(t.sandbox_port),
        t.seed
    )
}

pub fn learning(t: &Topology, index: usize) -> String {
    format!(
        "{}{}",
        http(t.learning_ports[index]),
        common(
            &t.learning_db,
            &t.amqp_url,
            worker_id("learning-center", index)
        )
    )
}

pub fn order(t: &Topology, index: usize) -> String {
    format!(
        "{}{}[upstream]\nlearning_center_url = \"http://127.0.0.1:{}\"\n\
         payment_gateway_url = \"http://127.0.0.1:{}\"\n\n\
         [timeout]\norder_ttl_secs = {ORDER_TTL_SECS}\npayment_attempt_ttl_secs = {ATTEMPT_TTL_SECS}\n\
         retry_delays_secs = [1, 2, 5, 10, 20, 30]\n",
        http(t.order_ports[index]),
        common(&t.order_db, &t.amqp_url, worker_id("order", index)),
        t.learning_ports[index].internal,
        t.gateway_ports[index].internal,
    )
}

/// Every callback of the run comes from the one sandbox address, faster than a real
/// channel's: the per-address callback limit is off here (it has its own tests).
pub fn gateway(t: &Topology, index: usize) -> String {
    let port = t.gateway_ports[index].public;
    let sandbox = format!("http://127.0.0.1:{}", t.sandbox_port.public);
    format!(
        "{}{}[payment]\nattempt_ttl_secs = {ATTEMPT_TTL_SECS}\nreuse_margin_secs = 5\n\n\
         [sweeper]\nenabled = true\npoll_interval_ms = 500\nbatch_size = 20\n\
         first_check_secs = 3\nmax_backoff_secs = 5\nafter_expiry_secs = 2\nrefund_retry_secs = 1\n\n\
         [wechat]\napi_base = \"{sandbox}\"\nnotify_url = \"http://127.0.0.1:{port}/api/callback/wechat\"\n\
         timeout_ms = 5000\n\n\
         [alipay]\ngateway_url = \"{sandbox}/gateway.do\"\n\
         notify_url = \"http://127.0.0.1:{port}/api/callback/alipay\"\ntimeout_ms = 5000\n\n\
         [wechat_v2]\nenabled = false\n\n\
         [rate_limit.callback]\nrequests = 0\n",
        http(t.gateway_ports[index]),
        common(
            &t.payment_db,
            &t.amqp_url,
            worker_id("payment-gateway", index)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ids_differ_per_instance_and_service() {
        let mut ids: Vec<u16> = ["learning-center", "order", "payment-gateway"]
            .iter()
            .flat_map(|s| [worker_id(s, 0), worker_id(s, 1)])
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 6);
        assert!(ids.iter().all(|id| *id < 1024));
    }
}
