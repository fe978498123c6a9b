//! The payment gateway's integration tests, one binary (one link of the service) with a
//! module per suite; `support` holds the harness and the channel peers they share.

mod abuse;
mod compensation;
mod db_outage;
mod gateway;
mod production;
mod reconciliation;
mod refunds;
mod requested_refunds;
mod store;
mod support;
mod wechat_v2;
