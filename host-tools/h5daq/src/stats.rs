//! What happened to rows besides being written: drops by reason, and a source's bad input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::job::lock;
use crate::log::{self, Level};

/// Longest message kept as a job's last error or last bad input (longer ones are cut).
pub const MAX_MESSAGE_CHARS: usize = 300;

/// Cuts `msg` to [`MAX_MESSAGE_CHARS`] characters, saying how long it was.
pub(crate) fn bounded_message(msg: &str) -> String {
    if msg.len() <= MAX_MESSAGE_CHARS {
        return msg.to_string();
    }
    let cut: String = msg.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{cut}... ({} bytes in all)", msg.len())
}

/// Why rows a source produced did not reach a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The job's buffer was full (writes failing or too slow) and the source cannot be held back.
    BufferFull,
    /// Writing failed and the rows could not be kept for a later write (the final write at stop).
    WriteFailed,
    /// The rows were in a file that was deleted or moved while the daemon ran.
    FileLost,
    /// Read from the source but not taken into the buffer before stop.
    UnreadAtStop,
    /// Dropped at the source's message queue (a ZeroMQ message that found h5daq's queue full).
    SourceQueue,
    /// Dropped before h5daq received it (by the sender's or the socket's queue limit), seen as a
    /// gap in the messages' sequence numbers.
    SequenceGap,
}

impl DropReason {
    /// Every reason, in status order.
    pub const ALL: [DropReason; 6] = [
        DropReason::BufferFull,
        DropReason::WriteFailed,
        DropReason::FileLost,
        DropReason::UnreadAtStop,
        DropReason::SourceQueue,
        DropReason::SequenceGap,
    ];
    /// snake_case name (status, log and file attributes: `dropped_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::WriteFailed => "write_failed",
            DropReason::FileLost => "file_lost",
            DropReason::UnreadAtStop => "unread_at_stop",
            DropReason::SourceQueue => "source_queue",
            DropReason::SequenceGap => "sequence_gap",
        }
    }
}

/// Dropped rows per [`DropReason`].
#[derive(Debug, Default)]
pub(crate) struct DropCounters([AtomicU64; 6]);

impl DropCounters {
    pub(crate) fn add(&self, reason: DropReason, n: u64) {
        self.0[reason as usize].fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> Dropped {
        let g = |r: DropReason| self.0[r as usize].load(Ordering::Relaxed);
        Dropped {
            buffer_full: g(DropReason::BufferFull),
            write_failed: g(DropReason::WriteFailed),
            file_lost: g(DropReason::FileLost),
            unread_at_stop: g(DropReason::UnreadAtStop),
            source_queue: g(DropReason::SourceQueue),
            sequence_gap: g(DropReason::SequenceGap),
        }
    }
}

/// Dropped rows of a job by reason.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Dropped {
    pub buffer_full: u64,
    pub write_failed: u64,
    pub file_lost: u64,
    pub unread_at_stop: u64,
    pub source_queue: u64,
    pub sequence_gap: u64,
}

impl Dropped {
    pub(crate) fn add(&mut self, reason: DropReason, n: u64) {
        let slot = match reason {
            DropReason::BufferFull => &mut self.buffer_full,
            DropReason::WriteFailed => &mut self.write_failed,
            DropReason::FileLost => &mut self.file_lost,
            DropReason::UnreadAtStop => &mut self.unread_at_stop,
            DropReason::SourceQueue => &mut self.source_queue,
            DropReason::SequenceGap => &mut self.sequence_gap,
        };
        *slot += n;
    }
    /// All dropped rows.
    pub fn total(&self) -> u64 {
        self.buffer_full
            + self.write_failed
            + self.file_lost
            + self.unread_at_stop
            + self.source_queue
            + self.sequence_gap
    }
    /// `(reason, count)` for each reason.
    pub fn by_reason(&self) -> [(DropReason, u64); 6] {
        [
            (DropReason::BufferFull, self.buffer_full),
            (DropReason::WriteFailed, self.write_failed),
            (DropReason::FileLost, self.file_lost),
            (DropReason::UnreadAtStop, self.unread_at_stop),
            (DropReason::SourceQueue, self.source_queue),
            (DropReason::SequenceGap, self.sequence_gap),
        ]
    }
}

/// What a source reports besides rows: input it could not use (bad lines, messages that are not
/// rows) and rows it dropped. Counted, and logged at most once a second per job, so bad input
/// never pauses a job. Create one, capture a clone in the getter and attach it with
/// [`DaqJob::with_source_stats`].
#[derive(Debug, Clone, Default)]
pub struct SourceStats(Arc<SourceStatsInner>);

#[derive(Debug, Default)]
struct SourceStatsInner {
    bad_input: AtomicU64,
    drops: DropCounters,
    log: Mutex<BadInputLog>,
}

#[derive(Debug, Default)]
struct BadInputLog {
    last: Option<String>,
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl SourceStats {
    /// Counts one piece of bad input of job `group`; logs it, or a summary, at most once a second.
    pub fn bad_input(&self, group: &str, what: &dyn std::fmt::Display) {
        self.0.bad_input.fetch_add(1, Ordering::Relaxed);
        let msg = bounded_message(&what.to_string());
        let mut l = lock(&self.0.log);
        l.unlogged += 1;
        let due = l
            .last_logged
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            let n = std::mem::take(&mut l.unlogged);
            l.last_logged = Some(std::time::Instant::now());
            if n == 1 {
                log::emit(Level::Warn, format_args!("job {group}: bad input: {msg}"));
            } else {
                log::emit(
                    Level::Warn,
                    format_args!("job {group}: {n} bad inputs since the last report (last: {msg})"),
                );
            }
        }
        l.last = Some(msg);
    }
    /// Counts `n` rows the source dropped for `reason`.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.0.drops.add(reason, n);
    }
    pub(crate) fn drops(&self) -> Dropped {
        self.0.drops.snapshot()
    }
    pub(crate) fn bad_inputs(&self) -> u64 {
        self.0.bad_input.load(Ordering::Relaxed)
    }
    pub(crate) fn last_bad_input(&self) -> Option<String> {
        lock(&self.0.log).last.clone()
    }
}
