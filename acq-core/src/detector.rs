//! The contract between the acquisition engine and a detector backend (the SDK shim, or the
//! in-memory test detector).
//!
//! Frame numbers are the SDK's 64-bit extended frame numbers, counted from 0 at arm. Reads copy
//! frames `[first, first + n)` of all channels into caller-owned memory in the SDK layouts:
//! MCA `[frame][chan][bin]` and scalers `[frame][chan][scaler]`, all u32.

use heapless::Vec;

use crate::geometry::MAX_CHANNELS;

/// Static facts about an opened detector.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorInfo {
    pub n_channels: u32,
    pub n_bins: u32,
    pub n_scalers: u32,
    /// Scaler clock in Hz (80 MHz on Xspress3; measured on Mini and Xspress4).
    pub clock_hz: f64,
    /// Depth of the SDK's own circular frame buffer: a frame not released within this many
    /// frames of the newest one is overwritten.
    pub buffer_frames: u64,
    /// `XspressGeneration` (0 = Xspress3, 2 = Mini, 3 = Xspress4).
    pub generation: i32,
    pub revision: i32,
    /// Per-channel event width in clock ticks (for dead-time correction).
    pub event_widths: Vec<u32, { MAX_CHANNELS as usize }>,
}

/// How frames are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerMode {
    /// Internal time-frame generator: frames back to back from arm.
    Internal,
    /// One frame per software trigger.
    Software,
    /// The first frame on a software trigger, the rest back to back.
    SoftwareFirst,
    /// One frame per external TTL edge.
    External,
    /// The first frame on a TTL edge, the rest back to back.
    ExternalFirst,
    /// Counting gated by the TTL veto input; each gate is one frame.
    Gate,
}

impl TriggerMode {
    /// Every trigger mode.
    pub const ALL: [TriggerMode; 6] = [
        TriggerMode::Internal,
        TriggerMode::Software,
        TriggerMode::SoftwareFirst,
        TriggerMode::External,
        TriggerMode::ExternalFirst,
        TriggerMode::Gate,
    ];

    /// The command-line / JSON name of the mode.
    pub const fn name(self) -> &'static str {
        match self {
            TriggerMode::Internal => "internal",
            TriggerMode::Software => "software",
            TriggerMode::SoftwareFirst => "software_first",
            TriggerMode::External => "external",
            TriggerMode::ExternalFirst => "external_first",
            TriggerMode::Gate => "gate",
        }
    }

    /// Parses a name as produced by [`TriggerMode::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether frames in this mode need [`Detector::soft_trigger`].
    pub const fn is_software(self) -> bool {
        matches!(self, TriggerMode::Software | TriggerMode::SoftwareFirst)
    }
}

/// Dead time the time-frame generator leaves between frames (ITFG gap modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapMode {
    Ns25 = 0,
    Ns200 = 1,
    Ns500 = 2,
    Us1 = 3,
}

impl GapMode {
    /// Every gap mode, shortest first.
    pub const ALL: [GapMode; 4] = [GapMode::Ns25, GapMode::Ns200, GapMode::Ns500, GapMode::Us1];

    /// The mode whose gap is `nanos` nanoseconds.
    pub fn from_nanos(nanos: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.nanos() == nanos)
    }

    /// The command-line name of the mode: the gap with its unit (`25ns`, `1us`).
    pub const fn name(self) -> &'static str {
        match self {
            GapMode::Ns25 => "25ns",
            GapMode::Ns200 => "200ns",
            GapMode::Ns500 => "500ns",
            GapMode::Us1 => "1us",
        }
    }

    /// Parses a name as produced by [`GapMode::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }

    /// The gap in nanoseconds.
    pub const fn nanos(self) -> u32 {
        match self {
            GapMode::Ns25 => 25,
            GapMode::Ns200 => 200,
            GapMode::Ns500 => 500,
            GapMode::Us1 => 1000,
        }
    }
}

/// One acquisition's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AcqParams {
    /// Frames to acquire; 0 means unbounded (run until stopped).
    pub n_frames: u64,
    /// Exposure per frame in clock ticks.
    pub exposure_ticks: u32,
    pub gap: GapMode,
    pub trigger: TriggerMode,
    /// TTL debounce in clock ticks.
    pub debounce_ticks: u8,
}

/// What the detector is doing, as seen by [`Detector::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorState {
    Idle,
    Armed,
    Running,
    /// The detector will produce no more frames (all done, or stopped).
    Done,
    Fault,
}

/// Result of one [`Detector::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Frames `[0, frames_complete)` have been completed by the SDK.
    pub frames_complete: u64,
    /// SDK error flags (`Xsp3ErrFlag` bits); 0 when healthy.
    pub err_flags: u32,
    /// Frames the SDK overwrote before they were released (circular-buffer overruns).
    pub overrun_count: u64,
    pub state: DetectorState,
}

/// `Xsp3ErrFlag_CircBuffOverRun`: a frame slot was reused before it was released.
pub const ERR_FLAG_CIRC_OVERRUN: u32 = 0x1_0000;
/// `Xsp3ErrFlag_CircBuffOverRunScalars`.
pub const ERR_FLAG_CIRC_OVERRUN_SCALERS: u32 = 0x100_0000;

/// What an error from a backend means to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The requested frames were overwritten in the SDK buffer: count them lost and go on.
    Overrun,
    /// Anything else: the acquisition faults.
    Fatal,
}

/// Errors a backend reports: a numeric code, the code's name and a message.
pub trait DetectorError: core::fmt::Debug {
    /// The backend's numeric code (XSP3 codes 0..-20, shim codes from -100).
    fn code(&self) -> i32;
    /// The code's name, e.g. `XSP3_RANGE_CHECK`.
    fn name(&self) -> &str;
    /// Human-readable text captured at failure time.
    fn message(&self) -> &str;
    fn class(&self) -> ErrorClass;
}

/// A detector backend, driven by the acquisition engine from one thread.
pub trait Detector {
    type Error: DetectorError;

    fn info(&self) -> &DetectorInfo;
    /// Validates and stores the next acquisition's parameters. Nothing starts.
    fn configure(&mut self, params: &AcqParams) -> Result<(), Self::Error>;
    /// Starts the acquisition (or arms it for software / hardware triggers). Progress restarts at 0.
    fn arm(&mut self) -> Result<(), Self::Error>;
    /// One software-triggered frame.
    fn soft_trigger(&mut self) -> Result<(), Self::Error>;
    /// Non-blocking progress check.
    fn poll(&mut self) -> Result<Progress, Self::Error>;
    /// Copies the MCA of frames `[first, first + n)` into `dst` (`n * n_channels * n_bins` words).
    fn read_mca(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), Self::Error>;
    /// Copies the scalers of frames `[first, first + n)` into `dst` (`n * n_channels * 9` words).
    fn read_scalers(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), Self::Error>;
    /// Gives frames `[first, first + n)` back to the SDK's circular buffer.
    fn release(&mut self, first: u64, n: u32) -> Result<(), Self::Error>;
    /// Stops the acquisition. Completed frames stay readable. Idempotent.
    fn stop(&mut self) -> Result<(), Self::Error>;
}
