//! The channel sandbox's integration tests, one binary with a module per suite; `support`
//! holds the running sandbox, the merchant-side signing and the notification receiver.

mod alipay;
mod faults;
mod production;
mod statements;
mod support;
mod wechat;
mod wechat_refund;
mod wechat_v2;
