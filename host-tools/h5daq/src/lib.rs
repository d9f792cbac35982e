//! H5DAQ-style DAQ writer: scheduled jobs sample values and a daemon appends them to HDF5.
//!
//! A [`DaqJob`] owns a group of datasets and a getter; the [`DaqDaemon`] runs every job's read
//! schedule (periodic, constant or triggered; jobs sharing a thread id never run concurrently)
//! and, every write period, drains the jobs' buffers into `/<group>/<dataset>` and
//! `/<group>/time` of the current file `DAQ_{from}_{to}.h5`. Files roll over on calendar
//! boundaries and by size, chain through `previous_file_id` / `file_id` / `following_file_id`,
//! carry `run_start`, `run_end`, `file_start` and `file_end`, and are renamed to the real end
//! time at stop. See `docs/daq.md` for the layout, the config file and the crash-safety story.
//!
//! ```no_run
//! use h5daq::{DaqDaemon, DaemonConfig, DaqJob, DatasetSpec, Dtype, Reading, ReadMode};
//! use std::time::Duration;
//! let job = DaqJob::new("env", vec![DatasetSpec::scalar("temperature", Dtype::F64)], || {
//!     Ok(Reading::Row(vec![21.5.into()]))
//! })?
//! .with_mode(ReadMode::Periodic(Duration::from_millis(100)))?;
//! let cfg = DaemonConfig { directory: "daq-out".into(), write_period: Duration::from_secs(1), ..Default::default() };
//! let mut daemon = DaqDaemon::new(cfg, vec![job])?;
//! daemon.start()?;
//! std::thread::sleep(Duration::from_secs(3));
//! let report = daemon.stop()?;
//! println!("{:?}", report.files);
//! # Ok::<(), h5daq::DaqError>(())
//! ```

pub mod column;
pub mod config;
pub mod control;
mod daemon;
mod error;
pub mod hdf;
mod job;
pub mod log;
mod names;
mod recover;
mod setting;
pub mod sources;
mod stats;
mod sys;
pub mod time;
mod writer;

pub use column::{Column, ConvertError, Dtype, Entry, Scalar};
pub use daemon::{DaemonConfig, DaemonStatus, DaqDaemon, StopReport, RESERVED_ATTRS};
pub use error::{DaqError, ParseError};
pub use job::{
    AttrValue, DaqJob, DatasetSpec, Drained, DropReason, Dropped, ErrorHandler, ErrorReport,
    Getter, GetterError, JobHandle, JobStatus, ReadMode, Reading, SourceStats, Trigger,
    DEFAULT_CHUNK_LENGTH, DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MAX_BUFFER_ROWS,
};
pub use names::{file_name, parse_file_name, FileNames};
pub use recover::{recover, Recovered};
pub use setting::SettingError;
pub use time::{Clock, ManualClock, Rollover, SystemClock, Unit};
pub use writer::{WriteMode, WriteReport};

// The Rust examples in docs/daq.md compile: rustdoc runs them as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/daq.md")]
struct DocsDaq;
