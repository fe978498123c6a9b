//! Payment channels behind one trait.
//!
//! Each channel lives in its own module (`wechat`, later `alipay`) with its wire types,
//! signing, verification and the mapping of its states onto [`PaymentState`]. Services
//! only talk to [`PaymentChannel`], so adding a channel touches no service logic.

mod channel;
mod error;
pub mod keys;
pub mod wechat;

pub use channel::{
    CloseOutcome, ConfirmedPayment, CreatePayment, CreateRefund, CreatedPayment, Notification,
    NotificationReply, NotificationRequest, PaymentChannel, PaymentState, RefundState,
};
pub use error::{ChannelError, CryptoError, NotifyError};
