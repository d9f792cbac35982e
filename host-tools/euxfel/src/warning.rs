//! Warnings: conditions EXtra-data reports without failing. The library returns them
//! to its caller (it never prints); the command-line tools print them on stderr.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::Error;

/// Something the caller should know about, that did not stop the operation.
///
/// `Display` gives the text the command-line tools print on stderr.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Warning {
    /// A file of a run or path list could not be opened and was left out.
    #[error("Skipping file {}\n  (error was: {error})", file_name(.path))]
    SkippedFile { path: PathBuf, error: Arc<Error> },
    /// A train ID slice on a selection without trains.
    #[error("warning: using train ID slice on data with no trains selected")]
    SliceOfNoTrains,
    /// The stop of a train ID slice is before the first train.
    #[error("warning: Train ID {train_id} is before this run (starts at {first})")]
    TrainBeforeRun { train_id: u64, first: u64 },
    /// The start of a train ID slice is after the last train.
    #[error("warning: Train ID {train_id} is after this run (ends at {last})")]
    TrainAfterRun { train_id: u64, last: u64 },
    /// None of the train IDs of a list is in the selection.
    #[error("warning: Given train IDs not found among {n_trains} trains in collection")]
    TrainIdsNotFound { n_trains: usize },
    /// A detector module whose trains have different numbers of frames.
    #[error("warning: Varying number of frames per train: {counts:?}")]
    VaryingFramesPerTrain {
        source_name: String,
        counts: BTreeSet<u64>,
    },
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
