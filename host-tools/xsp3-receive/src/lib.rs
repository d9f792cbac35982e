//! Receives the Xspress3 frame stream of [`xspress3::protocol`] and writes each series into the
//! acquisition file layout with the same [`xspress3::AcqFileWriter`] `xsp3-acquire` uses
//! (docs/protocol.md, section "xsp3-receive").
//!
//! The receiving thread reads the socket with a short receive timeout (so a stop request, the
//! idle timeout and the periodic flush are noticed without spinning) and copies each image
//! straight from the ZMQ message into a contiguous batch of `chunk_frames` frames; a writer
//! thread per series writes full batches, cut to end on chunk boundaries, so each is one HDF5
//! direct chunk write. The few batch buffers are allocated once per series and cycle between the
//! two threads; when all wait to be written, receiving waits too and PULL's back-pressure
//! reaches the sender.
//!
//! Nothing from the network can make the receiver panic or write outside its root:
//!
//! - the file name comes from `--file` or else the header and is checked with
//!   [`xspress3::layout::confine`], the rule `xsp3-acquire serve` uses too (no absolute paths,
//!   no `..`, no symbolic link on the way), and every file is created under the root;
//! - a malformed message (bad JSON, wrong part count, wrong payload size, unknown encoding, an
//!   image whose shape differs from its header's) is counted, reported and skipped, and the
//!   receiver keeps running: a long-running receiver must survive a broken or hostile peer;
//! - every frame that does not reach the file is counted by cause (upstream SDK losses reported in
//!   `series_end`, frames a PUB sender refused, gaps in `msg_number`, discarded images, a series
//!   that ended without `series_end`) and recorded in the file's drop record.
//!
//! Modules, one concern each: `config` (what to connect to and do), `receiver` (socket and
//! receive loop), `series` (gap and loss accounting of one series, its drop record), `sink`
//! (writer thread and batch buffers), `report` (events and summaries).

mod config;
mod receiver;
mod report;
mod series;
mod sink;

pub use config::{ReceiveMode, ReceiverConfig, SocketKind, WriteConfig};
pub use receiver::{ReceiveError, Receiver};
pub use report::{
    Event, FileSummary, Outcome, RateReport, SeriesSummary, StopReason, Summary, MAX_SERIES_LISTED,
};
