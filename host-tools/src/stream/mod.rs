//! Wire formats and their endpoints: the Xspress3 frame stream (protocol, sender, receiver).

pub mod protocol;
pub mod receiver;
pub mod sender;

pub use receiver::{ReceiveMode, Receiver, ReceiverConfig, SocketKind, WriteConfig};
pub use sender::{StreamConfig, StreamError, StreamKind, StreamSender};
