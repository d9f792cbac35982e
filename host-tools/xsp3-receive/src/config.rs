//! What a receiver connects to and what it does with each series.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// The socket type a receiver connects with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    /// Lossless with the sender's PUSH: back-pressure reaches the sender.
    Pull,
    /// With the sender's PUB, subscribed to everything; messages beyond the receive high-water
    /// mark are dropped by ZMQ and show up as `msg_number` gaps.
    Sub,
}

/// What a receiver does with each series.
#[derive(Clone, Debug)]
pub enum ReceiveMode {
    /// Write files under `root`.
    Write(WriteConfig),
    /// Write nothing; only count (the binary's `--print`).
    Print,
}

/// Where and how a writing receiver writes.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    /// Every file is created inside this directory.
    pub root: PathBuf,
    /// Base name used instead of the header's `filename` for every series.
    pub file: Option<String>,
    pub frames_per_file: Option<u64>,
    /// Replace existing files. The header's `overwritable` alone never replaces a file.
    pub overwrite: bool,
    pub swmr: bool,
    /// Flush files this often; a partly filled batch older than this is written too.
    pub flush_interval: Duration,
}

#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    pub endpoint: String,
    pub kind: SocketKind,
    pub mode: ReceiveMode,
    /// Messages ZMQ queues before PULL applies back-pressure (or SUB drops).
    pub high_water_mark: i32,
    /// Stop after the first series has ended.
    pub once: bool,
    /// Stop when no message arrived for this long.
    pub timeout: Option<Duration>,
    /// Written into files as the `receiver` attribute, e.g. "xsp3-receive 0.1.0".
    pub software: String,
    /// PULL: acknowledge written frames on the sender's back channel (docs/protocol.md,
    /// "Acknowledged PUSH"), so the sender knows what this receiver has taken and a receiver
    /// may share the stream with others or join a series mid-way.
    pub acknowledge: bool,
}
