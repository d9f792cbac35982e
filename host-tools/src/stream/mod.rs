//! Wire formats and their endpoints: the Xspress3 frame stream (protocol, sender, receiver).

pub mod protocol;
pub mod sender;

pub use sender::{StreamConfig, StreamError, StreamKind, StreamSender};
