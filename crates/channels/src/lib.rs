//! Payment channels behind one trait.
//!
//! Each channel lives in its own module (`wechat`, `wechat_v2`, `alipay`) with its wire types,
//! signing, verification and the mapping of its states onto [`PaymentState`]. Services
//! only talk to [`PaymentChannel`], so adding a channel touches no service logic.

pub mod alipay;
mod channel;
mod error;
#[cfg(test)]
mod fuzz;
mod http;
pub mod keys;
mod metered;
pub mod rsa_sha256;
mod statement;
#[cfg(test)]
mod test_support;
pub mod wechat;
pub mod wechat_v2;

pub use channel::{
    CloseOutcome, ConfirmedPayment, CreatePayment, CreateRefund, CreatedPayment, Notification,
    NotificationReply, NotificationRequest, PaymentChannel, PaymentState, RefundState,
};
pub use error::{ChannelError, CryptoError, NotifyError};
pub use metered::{Metered, notify_label, result_label};
pub use statement::{Statement, StatementPayment, StatementRefund};

/// `len` random ASCII letters and digits: WeChat Pay's nonces, and the channel sandbox's
/// QR codes and made-up payer names, which look like the channels' own.
pub fn random_alphanumeric(len: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
