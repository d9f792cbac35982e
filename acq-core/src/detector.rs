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

    /// What starts frames in this mode.
    pub const fn source(self) -> TriggerSource {
        match self {
            TriggerMode::Internal => TriggerSource::Internal,
            TriggerMode::Software | TriggerMode::SoftwareFirst => TriggerSource::Software,
            TriggerMode::External | TriggerMode::ExternalFirst => TriggerSource::External,
            TriggerMode::Gate => TriggerSource::Gate,
        }
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
    /// Debounce of the trigger inputs in clock ticks: pulses shorter than this are ignored
    /// (reflections on long cables).
    pub debounce_ticks: u8,
    /// The frame-zero (F0, TTL in 0) input is active low.
    pub invert_f0: bool,
    /// The veto / gate (TTL in 1) input is active low: counting while it is low.
    pub invert_veto: bool,
}

/// What starts frames, without how many frames each start makes: the `TriggerMode` attribute
/// of MAX IV's Tango device (`SOFTWARE`, `EXTERNAL_MULTI`, `EXTERNAL_MULTI_GATE`) plus the
/// free-running internal generator. [`TriggerSource::plan`] turns it and MAX IV's `nTriggers`
/// and `nFramesPerTrigger` into a [`TriggerMode`] and a frame count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerSource {
    /// The internal time-frame generator, started by arm.
    Internal,
    /// Software triggers.
    Software,
    /// TTL edges on the trigger input.
    External,
    /// The TTL veto input gates counting; each gate is one frame.
    Gate,
}

/// The trigger mode and frame count of `nTriggers x nFramesPerTrigger`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriggerPlan {
    pub trigger: TriggerMode,
    /// 0: unbounded.
    pub n_frames: u64,
}

/// `nTriggers x nFramesPerTrigger` that the hardware cannot do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerCountError {
    /// The time-frame generator starts either one frame per trigger or all frames on the first
    /// trigger; it cannot start several frames on each of several triggers.
    NeitherIsOne {
        n_triggers: u64,
        frames_per_trigger: u64,
    },
    /// Internally timed frames take no trigger.
    InternalTriggers(u64),
    /// Each gate is exactly one frame.
    GateFrames(u64),
}

impl core::fmt::Display for TriggerCountError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TriggerCountError::NeitherIsOne {
                n_triggers,
                frames_per_trigger,
            } => write!(
                f,
                "n_triggers {n_triggers} x frames_per_trigger {frames_per_trigger}: one of the \
                 two must be 1 (one frame per trigger, or every frame on the first trigger)"
            ),
            TriggerCountError::InternalTriggers(n) => write!(
                f,
                "n_triggers {n}: internally timed frames take no trigger, so n_triggers must be 1"
            ),
            TriggerCountError::GateFrames(n) => write!(
                f,
                "frames_per_trigger {n}: each gate is one frame, so frames_per_trigger must be 1"
            ),
        }
    }
}

impl core::error::Error for TriggerCountError {}

impl TriggerSource {
    /// Every source.
    pub const ALL: [TriggerSource; 4] = [
        TriggerSource::Internal,
        TriggerSource::Software,
        TriggerSource::External,
        TriggerSource::Gate,
    ];

    /// The command-line / JSON name of the source.
    pub const fn name(self) -> &'static str {
        match self {
            TriggerSource::Internal => "internal",
            TriggerSource::Software => "software",
            TriggerSource::External => "external",
            TriggerSource::Gate => "gate",
        }
    }

    /// Parses a name as produced by [`TriggerSource::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// MAX IV's `nTriggers x nFramesPerTrigger`: one of the two is 1. One trigger starts all
    /// frames back to back (`*First` modes; also when both are 1, as MAX IV does), or each
    /// trigger starts one frame. 0 for the other factor means unbounded. Internal frames take
    /// `n_triggers` 1; gates are one frame each (`frames_per_trigger` 1).
    pub const fn plan(
        self,
        n_triggers: u64,
        frames_per_trigger: u64,
    ) -> Result<TriggerPlan, TriggerCountError> {
        let (first, each) = match self {
            TriggerSource::Internal => {
                if n_triggers != 1 {
                    return Err(TriggerCountError::InternalTriggers(n_triggers));
                }
                (TriggerMode::Internal, TriggerMode::Internal)
            }
            TriggerSource::Gate => {
                if frames_per_trigger != 1 {
                    return Err(TriggerCountError::GateFrames(frames_per_trigger));
                }
                (TriggerMode::Gate, TriggerMode::Gate)
            }
            TriggerSource::Software => (TriggerMode::SoftwareFirst, TriggerMode::Software),
            TriggerSource::External => (TriggerMode::ExternalFirst, TriggerMode::External),
        };
        if n_triggers == 1 {
            Ok(TriggerPlan {
                trigger: first,
                n_frames: frames_per_trigger,
            })
        } else if frames_per_trigger == 1 {
            Ok(TriggerPlan {
                trigger: each,
                n_frames: n_triggers,
            })
        } else {
            Err(TriggerCountError::NeitherIsOne {
                n_triggers,
                frames_per_trigger,
            })
        }
    }
}

/// What is recorded of each spectrum: `n_bins` detector bins from `first_bin`, summed in groups
/// of `rebin` adjacent bins (`--bins LOW:HIGH`, `--rebin N`). The ring, the files and the stream
/// hold `n_bins / rebin` bins per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recording {
    pub first_bin: u32,
    pub n_bins: u32,
    pub rebin: u32,
}

/// A recording the detector cannot make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordingError {
    pub recording: Recording,
    pub detector_bins: u32,
}

impl core::fmt::Display for RecordingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = self.recording;
        write!(
            f,
            "bins {}:{} rebin {}: the bins must lie in 0..={} and their count be a multiple of \
             the rebin factor (>= 1)",
            r.first_bin,
            (r.first_bin + r.n_bins).saturating_sub(1),
            r.rebin,
            self.detector_bins.saturating_sub(1)
        )
    }
}

impl core::error::Error for RecordingError {}

impl Recording {
    /// The whole spectrum of a detector with `n_bins` bins.
    pub const fn full(n_bins: u32) -> Self {
        Recording {
            first_bin: 0,
            n_bins,
            rebin: 1,
        }
    }

    /// Bins per channel that are recorded.
    pub const fn recorded_bins(&self) -> u32 {
        self.n_bins / self.rebin
    }

    /// The first detector bin of recorded bin `i`.
    pub const fn detector_bin(&self, i: u32) -> u32 {
        self.first_bin + i * self.rebin
    }

    /// Checks the recording against a detector of `detector_bins` bins.
    pub const fn check(&self, detector_bins: u32) -> Result<(), RecordingError> {
        let ok = self.rebin >= 1
            && self.n_bins >= self.rebin
            && self.n_bins % self.rebin == 0
            && self.first_bin < detector_bins
            && self.n_bins <= detector_bins - self.first_bin;
        if ok {
            Ok(())
        } else {
            Err(RecordingError {
                recording: *self,
                detector_bins,
            })
        }
    }
}

/// Largest event width accepted, in clock ticks (12.5 us at 80 MHz; calibrated widths are 4 to
/// 12 ticks).
pub const MAX_EVENT_WIDTH: u32 = 1000;

/// The channels a per-channel setting applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    All,
    One(u32),
}

impl Channels {
    /// Whether channel `chan` is among these.
    pub const fn contains(self, chan: u32) -> bool {
        match self {
            Channels::All => true,
            Channels::One(c) => c == chan,
        }
    }
}

/// A per-channel detector setting, as MAX IV's device (`Window1_ChN`, `EventWidths`), EPICS
/// and Odin set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelSetting {
    /// In-window scaler `window` (0 or 1) counts events in bins `low..=high`.
    Window {
        channels: Channels,
        window: u32,
        low: u32,
        high: u32,
    },
    /// AllGood counts events in bins `>= bin`.
    GoodThreshold { channels: Channels, bin: u32 },
    /// Event width in clock ticks for dead-time correction, overriding the calibrated value.
    EventWidth { channels: Channels, ticks: u32 },
}

/// A per-channel setting the detector cannot take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettingError {
    NoSuchChannel {
        setting: ChannelSetting,
        n_channels: u32,
    },
    NoSuchWindow(ChannelSetting),
    /// A bin beyond the spectrum, or a window whose low bin is above its high bin.
    Bins {
        setting: ChannelSetting,
        n_bins: u32,
    },
    EventWidth(ChannelSetting),
}

impl ChannelSetting {
    /// The option / JSON name of the setting.
    pub const fn name(&self) -> &'static str {
        match self {
            ChannelSetting::Window { .. } => "window",
            ChannelSetting::GoodThreshold { .. } => "good_threshold",
            ChannelSetting::EventWidth { .. } => "event_width",
        }
    }

    pub const fn channels(&self) -> Channels {
        match *self {
            ChannelSetting::Window { channels, .. }
            | ChannelSetting::GoodThreshold { channels, .. }
            | ChannelSetting::EventWidth { channels, .. } => channels,
        }
    }

    /// Checks the setting against the detector's channels and bins.
    pub fn check(&self, info: &DetectorInfo) -> Result<(), SettingError> {
        if let Channels::One(c) = self.channels() {
            if c >= info.n_channels {
                return Err(SettingError::NoSuchChannel {
                    setting: *self,
                    n_channels: info.n_channels,
                });
            }
        }
        let bins = || SettingError::Bins {
            setting: *self,
            n_bins: info.n_bins,
        };
        match *self {
            ChannelSetting::Window {
                window, low, high, ..
            } => {
                if window > 1 {
                    return Err(SettingError::NoSuchWindow(*self));
                }
                if low > high || high >= info.n_bins {
                    return Err(bins());
                }
            }
            ChannelSetting::GoodThreshold { bin, .. } => {
                if bin >= info.n_bins {
                    return Err(bins());
                }
            }
            ChannelSetting::EventWidth { ticks, .. } => {
                if ticks > MAX_EVENT_WIDTH {
                    return Err(SettingError::EventWidth(*self));
                }
            }
        }
        Ok(())
    }
}

/// The command-line syntax: `[CH:]WIN:LOW:HIGH`, `[CH:]BIN`, `[CH:]TICKS`.
impl core::fmt::Display for ChannelSetting {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ", self.name())?;
        if let Channels::One(c) = self.channels() {
            write!(f, "{c}:")?;
        }
        match *self {
            ChannelSetting::Window {
                window, low, high, ..
            } => write!(f, "{window}:{low}:{high}"),
            ChannelSetting::GoodThreshold { bin, .. } => write!(f, "{bin}"),
            ChannelSetting::EventWidth { ticks, .. } => write!(f, "{ticks}"),
        }
    }
}

impl core::fmt::Display for SettingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SettingError::NoSuchChannel {
                setting,
                n_channels,
            } => write!(
                f,
                "{setting}: no such channel (the detector has channels 0..={})",
                n_channels.saturating_sub(1)
            ),
            SettingError::NoSuchWindow(setting) => {
                write!(f, "{setting}: no such window (windows are 0 and 1)")
            }
            SettingError::Bins { setting, n_bins } => write!(
                f,
                "{setting}: bins must lie in 0..={} (and a window's low bin <= its high bin)",
                n_bins.saturating_sub(1)
            ),
            SettingError::EventWidth(setting) => write!(
                f,
                "{setting}: event width beyond {MAX_EVENT_WIDTH} clock ticks"
            ),
        }
    }
}

impl core::error::Error for SettingError {}

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
    /// What [`Detector::read_mca`] returns of each spectrum (the frame geometry is
    /// `n_channels x recording().recorded_bins()`); the whole spectrum unless the backend reduces
    /// it.
    fn recording(&self) -> Recording {
        Recording::full(self.info().n_bins)
    }
    /// Validates and stores the next acquisition's parameters. Nothing starts.
    fn configure(&mut self, params: &AcqParams) -> Result<(), Self::Error>;
    /// Starts the acquisition (or arms it for software / hardware triggers). Progress restarts at 0.
    fn arm(&mut self) -> Result<(), Self::Error>;
    /// One software-triggered frame.
    fn soft_trigger(&mut self) -> Result<(), Self::Error>;
    /// Non-blocking progress check.
    fn poll(&mut self) -> Result<Progress, Self::Error>;
    /// Copies the MCA of frames `[first, first + n)` into `dst` (`n * n_channels *
    /// recording().recorded_bins()` words).
    fn read_mca(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), Self::Error>;
    /// Software ROIs the backend sums per frame and channel from the full spectrum while it
    /// reads the MCA ([`Detector::read_mca_rois`]); 0 unless the backend was given some.
    fn n_rois(&self) -> u32 {
        0
    }
    /// Like [`Detector::read_mca`], and in the same pass the sums of the backend's
    /// [`n_rois`](Detector::n_rois) ROIs over each frame's full spectrum (before the recording
    /// reduces it) into `rois` (`n * n_rois * n_channels` words, `[frame][roi][chan]`). A backend
    /// without ROIs only reads the MCA (`rois` is then empty).
    fn read_mca_rois(
        &mut self,
        first: u64,
        n: u32,
        mca: &mut [u32],
        rois: &mut [u64],
    ) -> Result<(), Self::Error> {
        debug_assert!(
            rois.is_empty(),
            "a backend with ROIs overrides read_mca_rois"
        );
        self.read_mca(first, n, mca)
    }
    /// Copies the scalers of frames `[first, first + n)` into `dst` (`n * n_channels * 9` words).
    fn read_scalers(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), Self::Error>;
    /// Gives frames `[first, first + n)` back to the SDK's circular buffer.
    fn release(&mut self, first: u64, n: u32) -> Result<(), Self::Error>;
    /// Stops the acquisition. Completed frames stay readable. Idempotent.
    fn stop(&mut self) -> Result<(), Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n_channels: u32, n_bins: u32) -> DetectorInfo {
        DetectorInfo {
            n_channels,
            n_bins,
            n_scalers: 9,
            clock_hz: 80e6,
            buffer_frames: 16,
            generation: 0,
            revision: 0,
            event_widths: Vec::new(),
        }
    }

    #[test]
    fn trigger_counts_follow_max_iv() {
        use TriggerMode as M;
        use TriggerSource as S;
        let plan = |s: S, t, f| s.plan(t, f).map(|p| (p.trigger, p.n_frames));
        assert_eq!(plan(S::Software, 1, 10), Ok((M::SoftwareFirst, 10)));
        assert_eq!(plan(S::Software, 10, 1), Ok((M::Software, 10)));
        assert_eq!(plan(S::Software, 1, 1), Ok((M::SoftwareFirst, 1)));
        assert_eq!(plan(S::External, 1, 5), Ok((M::ExternalFirst, 5)));
        assert_eq!(plan(S::External, 7, 1), Ok((M::External, 7)));
        assert_eq!(plan(S::External, 0, 1), Ok((M::External, 0)));
        assert_eq!(plan(S::Internal, 1, 100), Ok((M::Internal, 100)));
        assert_eq!(plan(S::Gate, 12, 1), Ok((M::Gate, 12)));
        assert_eq!(
            plan(S::Software, 3, 4),
            Err(TriggerCountError::NeitherIsOne {
                n_triggers: 3,
                frames_per_trigger: 4
            })
        );
        assert_eq!(
            plan(S::Internal, 2, 1),
            Err(TriggerCountError::InternalTriggers(2))
        );
        assert_eq!(plan(S::Gate, 1, 2), Err(TriggerCountError::GateFrames(2)));
        for s in TriggerSource::ALL {
            assert_eq!(TriggerSource::from_name(s.name()), Some(s));
            let p = s.plan(1, 1).unwrap();
            assert_eq!(p.trigger.source(), s);
        }
    }

    #[test]
    fn settings_are_checked_against_channels_and_bins() {
        let i = info(4, 4096);
        let win = |channels, window, low, high| ChannelSetting::Window {
            channels,
            window,
            low,
            high,
        };
        assert_eq!(win(Channels::All, 1, 0, 4095).check(&i), Ok(()));
        assert_eq!(win(Channels::One(3), 0, 10, 10).check(&i), Ok(()));
        let s = win(Channels::One(4), 0, 1, 2);
        assert_eq!(
            s.check(&i),
            Err(SettingError::NoSuchChannel {
                setting: s,
                n_channels: 4
            })
        );
        let s = win(Channels::All, 2, 1, 2);
        assert_eq!(s.check(&i), Err(SettingError::NoSuchWindow(s)));
        for s in [
            win(Channels::All, 0, 5, 4),
            win(Channels::One(1), 1, 0, 4096),
        ] {
            assert_eq!(
                s.check(&i),
                Err(SettingError::Bins {
                    setting: s,
                    n_bins: 4096
                })
            );
        }
        let thr = ChannelSetting::GoodThreshold {
            channels: Channels::One(2),
            bin: 4096,
        };
        assert_eq!(
            thr.check(&i),
            Err(SettingError::Bins {
                setting: thr,
                n_bins: 4096
            })
        );
        let ew = ChannelSetting::EventWidth {
            channels: Channels::All,
            ticks: MAX_EVENT_WIDTH + 1,
        };
        assert_eq!(ew.check(&i), Err(SettingError::EventWidth(ew)));
        let ok = ChannelSetting::EventWidth {
            channels: Channels::One(0),
            ticks: 9,
        };
        assert_eq!(ok.check(&i), Ok(()));
    }

    #[test]
    fn setting_errors_name_the_option_and_the_value() {
        let i = info(4, 4096);
        let s = ChannelSetting::Window {
            channels: Channels::One(7),
            window: 0,
            low: 100,
            high: 200,
        };
        let text = std::format!("{}", s.check(&i).unwrap_err());
        assert_eq!(
            text,
            "window 7:0:100:200: no such channel (the detector has channels 0..=3)"
        );
        let s = ChannelSetting::GoodThreshold {
            channels: Channels::All,
            bin: 5000,
        };
        let text = std::format!("{}", s.check(&i).unwrap_err());
        assert!(text.starts_with("good_threshold 5000: "), "{text}");
        let s = ChannelSetting::EventWidth {
            channels: Channels::One(1),
            ticks: 2000,
        };
        let text = std::format!("{}", s.check(&i).unwrap_err());
        assert!(text.starts_with("event_width 1:2000: "), "{text}");
        assert!(Channels::All.contains(9) && Channels::One(2).contains(2));
        assert!(!Channels::One(2).contains(1));
    }
}
