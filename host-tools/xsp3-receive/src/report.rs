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
    /// The sender's `series_end.error`, and the first frame a detector failure cost
    /// (`series_end.error_frame`).
    pub sender_error: Option<String>,
    pub sender_error_frame: Option<u64>,
    /// Frames the sender acquired but could not deliver (`series_end.frames_unsent`).
    pub sender_frames_unsent: u64,
    /// With acknowledged PUSH: frames the sender sent that no receiver acknowledged
    /// (`series_end.frames_unacked`).
    pub frames_unacked: u64,
    /// Acknowledged PUSH: this receiver acknowledged what it wrote and may share the stream
    /// with others, so `msg_number` gaps are other receivers' messages, not losses.
    pub acknowledged: bool,
    /// Acknowledged PUSH: the receiver joined the series at this message number (started
    /// mid-series).
    pub joined_at_msg: Option<u64>,
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
            || self.sender_error.is_some()
            || self.sender_frames_unsent > 0
            || self.frames_unacked > 0
    }
}

/// How a receiver's run ended, from the point of view of the data (the exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every series complete.
    Complete,
    /// Something failed but no frame was lost (e.g. a malformed message outside any series, or
    /// no series at all with `once`).
    Failed,
    /// A frame was lost or discarded somewhere, a series could not be written, or one was cut
    /// short (not by a signal).
    DataLost,
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
    /// See [`Outcome`].
    pub fn outcome(&self) -> Outcome {
        if self.series_failed > 0 || self.orphan_images > 0 || self.ended_mid_series {
            Outcome::DataLost
        } else if !self.errors.is_empty() || self.malformed_messages > 0 {
            Outcome::Failed
        } else {
            Outcome::Complete
        }
    }

    /// Anything but [`Outcome::Complete`].
    pub fn failed(&self) -> bool {
        self.outcome() != Outcome::Complete
    }
}
