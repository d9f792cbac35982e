//! What the receiver reports: events while it runs, and the account of each series and of the
//! whole run (the binary's output and exit status are made from these).

use std::path::PathBuf;

use serde::Serialize;

use crate::config::SocketKind;

/// Series kept in the summary of a long-running receiver; older ones are only counted.
pub const MAX_SERIES_LISTED: usize = 1000;

/// Progress reported while the receiver runs.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A header opened series `index`; `file` is the base name written, if any.
    SeriesStart {
        index: u64,
        filename: String,
        file: Option<String>,
        n_channels: u32,
        n_bins: u32,
        n_frames: u64,
    },
    /// About once a second while messages arrive.
    Rate(RateReport),
    /// A series ended (by `series_end` or otherwise); its final account.
    SeriesEnd(Box<SeriesSummary>),
    /// A problem worth a line: a refused header, a malformed message, a write error.
    Error { message: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct RateReport {
    /// The open series, if any.
    pub series: Option<u64>,
    /// Frames received in the open series so far.
    pub frames: u64,
    /// Over the last report interval.
    pub frames_per_s: f64,
    pub mb_per_s: f64,
    /// `msg_number` gaps in the open series so far.
    pub msg_gaps: u64,
    /// Malformed messages since the receiver started.
    pub malformed: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub frames: u64,
}

/// One series as the receiver saw it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesSummary {
    /// Counted from 1 since the receiver started.
    pub index: u64,
    /// The header's `filename`.
    pub filename: String,
    /// The base name written under the root (`--file` or the header's), if any.
    pub written_as: Option<String>,
    pub files: Vec<FileSummary>,
    pub frames_requested: u64,
    /// Valid image messages received.
    pub frames_received: u64,
    pub frames_written: u64,
    pub bytes_received: u64,
    /// Gaps in `msg_number`, and the image messages missing in them.
    pub msg_gaps: u64,
    pub msg_missing: u64,
    /// Lost before the stream, as the sender's `series_end` reports (SDK overruns).
    pub frames_lost_upstream: u64,
    /// Refused by the sender's PUB socket at its high-water mark (`series_end.stream_drops`).
    pub sender_stream_drops: u64,
    /// Images received but not used: malformed for this series, out of order, or received after
    /// a write error.
    pub frames_discarded: u64,
    /// Times receiving waited because every batch buffer was waiting to be written: the writer
    /// (disk) was slower than the stream at those moments.
    pub writer_waits: u64,
    /// Frames missing from the file in total (what the file's `frames_lost` says); 0 in print
    /// mode and for series that were not written.
    pub frames_lost: u64,
    pub series_end_received: bool,
    /// Why the series ended other than by `series_end`, if it did.
    pub end_note: Option<String>,
    /// The receiver was stopped (signal) before `series_end`: the series is incomplete on
    /// purpose, which alone does not count as data lost.
    pub interrupted: bool,
    /// The sender's `series_end.error`.
    pub sender_error: Option<String>,
    /// The first errors of the series.
    pub errors: Vec<String>,
    /// Errors counted but not listed.
    pub errors_not_listed: u64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    pub mb_per_s: f64,
}

impl SeriesSummary {
    /// Whether any frame of the series is missing or anything failed.
    pub fn data_lost(&self) -> bool {
        !self.errors.is_empty()
            || (self.end_note.is_some() && !self.interrupted)
            || self.msg_missing > 0
            || self.frames_lost_upstream > 0
            || self.sender_stream_drops > 0
            || self.frames_discarded > 0
    }
}

/// Why the receiver stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `once`: the first series ended.
    #[default]
    Once,
    /// The stop flag was set (SIGINT / SIGTERM).
    Signal,
    /// No message for `timeout`.
    Timeout,
    /// The socket failed.
    SocketError,
}

/// Everything the receiver did, for the final report and the exit code.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub endpoint: String,
    pub socket: Option<SocketKind>,
    pub stopped_by: StopReason,
    pub elapsed_s: f64,
    /// The series, oldest first (the last [`MAX_SERIES_LISTED`]).
    pub series: Vec<SeriesSummary>,
    /// Series that ended, and those of them that lost data (also those no longer listed).
    pub series_ended: u64,
    pub series_failed: u64,
    pub messages: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    /// Messages that could not be decoded or did not fit their series.
    pub malformed_messages: u64,
    /// Images that arrived outside a series (before any header, or after its `series_end`).
    pub orphan_images: u64,
    /// `series_end` messages outside a series (a sender may send a second one on stop).
    pub stray_series_ends: u64,
    /// A series was still open when the timeout or a socket error ended the receiver.
    pub ended_mid_series: bool,
    /// Problems that belong to no series (and the series' own, repeated).
    pub errors: Vec<String>,
}

impl Summary {
    /// Exit status 1: a frame was lost or discarded anywhere, a message was malformed, a file
    /// could not be written, or the receiver stopped in the middle of a series (not by a signal).
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
            || self.malformed_messages > 0
            || self.orphan_images > 0
            || self.ended_mid_series
            || self.series_failed > 0
    }
}
