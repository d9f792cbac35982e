//! Errors of the detector components, with EXtra-data's messages where it has one.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Data(#[from] euxfel::Error),
    /// No source matches a detector's name pattern (EXtra-data's `SourceNameError`).
    #[error("This data has no source named '{0}'.\nSee data.all_sources for available sources.")]
    NoSources(String),
    #[error("Multiple detectors found in the data: {names}. Pass detector_name to {class}() to pick one.")]
    MultipleDetectors { names: String, class: &'static str },
    #[error("No detector sources identified in the data")]
    NoDetectorIdentified,
    #[error("Multiple detectors identified: {0}")]
    MultipleIdentified(String),
    #[error("min_modules must be a positive integer, not {0}")]
    MinModules(usize),
    #[error("Raw data was not found: {0}/DET/... sources are from corrected data")]
    RawNotFound(String),
    #[error("Inconsistent frame counts for train {train_id}: {{{}}}", join(.counts))]
    InconsistentFrameCounts { train_id: u64, counts: Vec<u64> },
    #[error("No data found with >= {0} modules present")]
    TooFewModules(usize),
    #[error("Failed to find {0} for some data")]
    MissingInnerIds(String),
    #[error("Inconsistent {0} for different modules")]
    InconsistentInnerIds(String),
    #[error("{source_name} {key}: {train_id_count} entries for train {train_id} where one per train was expected")]
    EntriesPerTrain {
        source_name: String,
        key: String,
        train_id: u64,
        train_id_count: u64,
    },
    #[error("{0}")]
    PulseSelection(&'static str),
    #[error("parallel_gain=True needs the frames in each train to be divisible by 3")]
    ParallelGainFrames,
    #[error("parallel_gain applies to LPD1M and LPDSolo, not {0}")]
    ParallelGainType(&'static str),
    #[error("region of interest: {0}")]
    Roi(String),
    #[error("JUNGFRAU needs n_modules (--n-modules) or at least one module to infer it")]
    JungfrauModules,
    #[error("module number {modno} in a source name is below first_modno {first}")]
    ModuleBelowFirst { modno: usize, first: usize },
    #[error("a module reader thread panicked")]
    ReaderPanicked,
    #[error("Varying number of frames per train: {{{}}}", join(.0))]
    VaryingFramesPerTrain(Vec<u64>),
    #[error("One of parts, trains_per_part, frames_per_part must be specified")]
    SplitArguments,
    #[error("fill value {value} does not fit dtype {dtype}")]
    FillValue { value: String, dtype: String },
    #[error("dtype {0} is not a fixed-size number; multi-module reads need one")]
    UnsupportedDtype(String),
    #[error("cannot convert {from} to {to}: converting reads give float32 or float64")]
    Astype { from: String, to: String },
    #[error("{object}: {what} is too large")]
    TooLarge { object: String, what: &'static str },
    #[error("requires output buffer of {needed} bytes, got {got}")]
    BufferSize { needed: usize, got: usize },
    // stack_detector_data
    #[error("No data")]
    StackNoData,
    #[error("Source '{source_name}' doesn't match pattern '{pattern}'")]
    PatternMismatch {
        source_name: String,
        pattern: String,
    },
    #[error("invalid module pattern {pattern:?}: {msg}")]
    BadPattern { pattern: String, msg: String },
    #[error("Arrays have mismatched dtypes: {{{}}}", .0.join(", "))]
    MismatchedDtypes(Vec<String>),
    #[error("Arrays have mismatched shapes: {{{}}}", .0.join(", "))]
    MismatchedShapes(Vec<String>),
    #[error("Module {module} is out of range for a detector with {modules} modules")]
    ModuleOutOfRange { module: i64, modules: usize },
    #[error(
        "{source_name} {key}: module array has {got} bytes, its shape and dtype need {needed}"
    )]
    ArraySize {
        source_name: String,
        key: String,
        got: usize,
        needed: usize,
    },
    /// `module`: "SOURCE KEY: dtype D, entry shape S"; `first`: "SOURCE has D, S".
    #[error("{module}; module {first}: the modules cannot be stacked")]
    ModulesDiffer { module: String, first: String },
    #[error("{path}: {dataset}: shape {shape:?}, but the entries of this key are {entry:?} in its other files")]
    SpanShape {
        path: PathBuf,
        dataset: String,
        shape: Vec<usize>,
        entry: Vec<usize>,
    },
    #[error("axis {axis} is out of bounds for an array of dimension {ndim}")]
    Axis { axis: isize, ndim: usize },
    // virtual CXI
    #[error("{path}: {object}: {msg}")]
    Hdf5 {
        path: PathBuf,
        object: String,
        msg: String,
    },
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

impl Error {
    pub(crate) fn h5(path: &std::path::Path, object: &str, e: impl std::fmt::Display) -> Error {
        Error::Hdf5 {
            path: path.to_path_buf(),
            object: object.to_string(),
            msg: e.to_string(),
        }
    }
}
