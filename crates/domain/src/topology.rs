//! Broker names, declared once so publishers and consumers cannot drift apart.

/// Durable fanout exchange carrying every pay result (seed 001's `paynotify_exchange_fanout`).
pub const PAY_RESULT_EXCHANGE: &str = "paywire.pay-result";

/// The order service's own durable queue bound to [`PAY_RESULT_EXCHANGE`].
pub const ORDER_PAY_RESULT_QUEUE: &str = "order.pay-result";

/// The learning center's own durable queue bound to [`PAY_RESULT_EXCHANGE`].
pub const LEARNING_PAY_RESULT_QUEUE: &str = "learning-center.pay-result";

/// Every queue that subscribes to pay results, so tooling can declare and inspect them.
pub const PAY_RESULT_SUBSCRIBERS: &[&str] = &[ORDER_PAY_RESULT_QUEUE, LEARNING_PAY_RESULT_QUEUE];
