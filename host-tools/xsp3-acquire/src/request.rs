//! One acquisition request: what `xsp3-acquire run` takes on its command line and what the
//! daemon's `configure` takes on the control socket. Every default is stated once, in
//! [`AcqRequest::DEFAULT`]; [`AcqRequest::validate`] checks a request against the detector and
//! [`prepare`] applies it.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use acq_core::detector::{
    AcqParams, Detector, DetectorInfo, GapMode, Recording, RecordingError, SettingError,
    TriggerCountError, TriggerMode,
};
use acq_core::engine::{Acquisition, Clock, EngineError};
use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, ValueEnum};
use sdk_shim::Xspress3;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::sender::{KaraboConfig, StreamFormat};
use crate::session::SessionConfig;
use crate::settings::{
    channel_settings, event_widths_from_json, good_thresholds_from_json, EventWidth, GoodThreshold,
    Window,
};
use crate::StreamKind;
use xspress3::layout::{check_name, confine, file_name, NameError};
use xspress3::roi::{self, Roi, RoiError, RoiSpec};
use xspress3::units::{exposure_ticks, parse_duration, DurationError, ExposureError};
use xspress3::{AcqDescription, OutputConfig};

/// A duration: `1ms`, `250us`, `2s` on the command line; in JSON a number of seconds or such a
/// string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl fmt::Display for Span {
    /// The largest unit that shows the value exactly, so a default prints as it is typed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        match ns {
            0 => write!(f, "0s"),
            _ if ns % 1_000_000_000 == 0 => write!(f, "{}s", ns / 1_000_000_000),
            _ if ns % 1_000_000 == 0 => write!(f, "{}ms", ns / 1_000_000),
            _ if ns % 1_000 == 0 => write!(f, "{}us", ns / 1_000),
            _ => write!(f, "{ns}ns"),
        }
    }
}

impl FromStr for Span {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, DurationError> {
        parse_duration(text).map(Span)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Json {
            Seconds(f64),
            Text(String),
        }
        match Json::deserialize(d)
            .map_err(|_| D::Error::custom("needs seconds or a string like \"1ms\""))?
        {
            Json::Seconds(s) => s
                .is_finite()
                .then_some(s)
                .filter(|s| *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(Span)
                .ok_or_else(|| D::Error::custom(format!("{s} is not a valid number of seconds"))),
            Json::Text(t) => t.parse().map_err(D::Error::custom),
        }
    }
}

/// One acquisition as a user asks for it. The same fields are `run`'s options (`--frames`,
/// `--window`, ...) and `configure`'s JSON fields (`frames`, `windows`, `gap_ns`, ...).
#[derive(Args, Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcqRequest {
    /// Frames to acquire (0: until stopped).
    #[arg(long, default_value_t = AcqRequest::DEFAULT.frames)]
    pub frames: u64,
    /// Exposure per frame, e.g. 1ms, 250us, 2s.
    #[arg(long, default_value_t = AcqRequest::DEFAULT.exposure)]
    #[serde(deserialize_with = "exposure_from_json")]
    pub exposure: Span,
    /// How frames are started.
    #[arg(long, default_value = AcqRequest::DEFAULT.trigger.name(), value_parser = Names::TRIGGER)]
    #[serde(deserialize_with = "trigger_from_json")]
    pub trigger: TriggerMode,
    /// MAX IV's nTriggers: with --frames-per-trigger instead of --frames, one of the two 1
    /// (each trigger starts one frame, or the first starts them all); the trigger source is
    /// --trigger's (software, external, gate, internal), the mode follows from the counts.
    #[arg(long, value_name = "N")]
    pub triggers: Option<u64>,
    /// MAX IV's nFramesPerTrigger (see --triggers).
    #[arg(long, value_name = "N")]
    pub frames_per_trigger: Option<u64>,
    /// Dead time between internally timed frames.
    #[arg(long, default_value = AcqRequest::DEFAULT.gap.name(), value_parser = Names::GAP)]
    #[serde(rename = "gap_ns", deserialize_with = "gap_from_json")]
    pub gap: GapMode,
    /// In-window scaler limits (window 0 or 1, inclusive bins) of channel CH, or of every
    /// channel without CH; repeatable, applied in order.
    #[arg(long = "window", value_name = "[CH:]WIN:LOW:HIGH")]
    pub windows: Vec<Window>,
    /// AllGood threshold (bin) of channel CH, or of every channel; repeatable.
    #[arg(long = "good-threshold", value_name = "[CH:]BIN")]
    #[serde(
        rename = "good_threshold",
        deserialize_with = "good_thresholds_from_json"
    )]
    pub good_thresholds: Vec<GoodThreshold>,
    /// Event width in clock ticks for dead-time correction of channel CH, or of every channel,
    /// instead of the calibrated one (MAX IV's EventWidths); repeatable.
    #[arg(long = "event-width", value_name = "[CH:]TICKS")]
    #[serde(rename = "event_width", deserialize_with = "event_widths_from_json")]
    pub event_widths: Vec<EventWidth>,
    /// Software region of interest NAME: bins LOW..=HIGH of channel CH (every channel without
    /// CH), summed per frame from the full spectrum (before --bins/--rebin, so also outside the
    /// recorded bins); repeatable (one NAME may take a range per channel; at most 32 names).
    /// Written as roi_NAME and roi_NAME_dtc, sent with every frame, in status.
    #[arg(long = "roi", value_name = "NAME:[CH:]LOW:HIGH")]
    pub rois: Vec<RoiSpec>,
    /// Record only detector bins LOW..=HIGH of each spectrum (the SDK reads only those and the
    /// --roi bins; the ring, files and stream hold only them).
    #[arg(long, value_name = "LOW:HIGH")]
    pub bins: Option<BinRange>,
    /// Sum N adjacent recorded bins into one (the bin count must be a multiple of N).
    #[arg(long, value_name = "N", default_value_t = AcqRequest::DEFAULT.rebin)]
    pub rebin: u32,
    /// Debounce of the trigger inputs in clock ticks (0..255): shorter pulses are ignored.
    #[arg(long, value_name = "TICKS", default_value_t = AcqRequest::DEFAULT.debounce)]
    pub debounce: u8,
    /// The frame-zero (F0) trigger input is active low.
    #[arg(long)]
    pub invert_f0: bool,
    /// The veto / gate trigger input is active low.
    #[arg(long)]
    pub invert_veto: bool,
    /// Base file name inside the output directory, also announced to stream receivers
    /// (`run`: xspress3 if not given).
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,
    /// Start a new file every N frames (NAME_00000.h5, NAME_00001.h5, ...).
    #[arg(long, value_name = "N")]
    pub frames_per_file: Option<u64>,
    /// Replace existing files.
    #[arg(long)]
    pub overwrite: bool,
    /// Write with SWMR so readers can follow the file live.
    #[arg(long)]
    pub swmr: bool,
    /// Flush files this often (bounds what a crash can lose).
    #[arg(long, default_value_t = AcqRequest::DEFAULT.flush_interval)]
    #[serde(deserialize_with = "flush_interval_from_json")]
    pub flush_interval: Span,
    /// Bind the data stream here, e.g. tcp://127.0.0.1:9999.
    #[arg(long, value_name = "ENDPOINT")]
    pub stream: Option<String>,
    /// push: lossless with back-pressure; pub: lossy, refused frames counted.
    #[arg(long, value_enum, default_value_t = AcqRequest::DEFAULT.stream_type)]
    #[serde(deserialize_with = "stream_kind_from_json")]
    pub stream_type: StreamKind,
    /// Messages queued per receiver before PUSH waits or PUB refuses.
    #[arg(long, default_value_t = AcqRequest::DEFAULT.stream_hwm)]
    pub stream_hwm: i32,
    /// With --stream-type pub: wait this long for a first subscriber before starting, so a
    /// receiver that is already running gets the header.
    #[arg(long, default_value_t = AcqRequest::DEFAULT.stream_wait)]
    #[serde(deserialize_with = "stream_wait_from_json")]
    pub stream_wait: Span,
    /// native: the frame protocol; karabo: Karabo Bridge 2.2 trains for
    /// `karabo_bridge.Client` (PULL for push, SUB for pub).
    #[arg(long, value_enum, default_value_t = AcqRequest::DEFAULT.stream_format)]
    #[serde(deserialize_with = "stream_format_from_json")]
    pub stream_format: StreamFormat,
    /// With --stream-format karabo: the source name of the trains
    /// (XSPRESS3/DET/XSP3:daqOutput if not given).
    #[arg(long, value_name = "NAME")]
    pub karabo_source: Option<String>,
    /// With --stream-format karabo: frames per train (frame f is in train
    /// first_train + f / N, as xfel-write xspress3 maps them).
    #[arg(long, value_name = "N", default_value_t = AcqRequest::DEFAULT.frames_per_train)]
    pub frames_per_train: u64,
    /// With --stream-format karabo: the train ID of frame 0.
    #[arg(long, value_name = "ID", default_value_t = AcqRequest::DEFAULT.first_train)]
    pub first_train: u64,
}

impl AcqRequest {
    /// Every default of a request, for the command line and the control socket alike.
    pub const DEFAULT: AcqRequest = AcqRequest {
        frames: 1000,
        exposure: Span(Duration::from_millis(1)),
        trigger: TriggerMode::Internal,
        triggers: None,
        frames_per_trigger: None,
        gap: GapMode::Ns25,
        windows: Vec::new(),
        good_thresholds: Vec::new(),
        event_widths: Vec::new(),
        rois: Vec::new(),
        bins: None,
        rebin: 1,
        debounce: 0,
        invert_f0: false,
        invert_veto: false,
        file: None,
        frames_per_file: None,
        overwrite: false,
        swmr: false,
        flush_interval: Span(Duration::from_secs(1)),
        stream: None,
        stream_type: StreamKind::Push,
        stream_hwm: 1000,
        stream_wait: Span(Duration::from_secs(1)),
        stream_format: StreamFormat::Native,
        karabo_source: None,
        frames_per_train: 1,
        first_train: 1,
    };

    /// The Karabo Bridge source name when none is given (the instrument source of
    /// `xfel-write xspress3`'s default device).
    pub const DEFAULT_KARABO_SOURCE: &'static str = "XSPRESS3/DET/XSP3:daqOutput";

    /// The shortest exposure accepted. The SDK documents no minimum frame time, but below a
    /// microsecond frames complete faster than any read-out takes them (MAX IV measured
    /// 40-70 us per read call) and the frame generator's 25 ns-1 us gap is a large part of
    /// each frame: such a setting is a typo (`1ns` for `1us`), not an experiment.
    pub const MIN_EXPOSURE: Duration = Duration::from_micros(1);

    /// Checks every value against the detector; the parameters the engine is configured with.
    pub fn validate(&self, info: &DetectorInfo) -> Result<AcqParams, RequestError> {
        if self.exposure.0 < Self::MIN_EXPOSURE {
            return Err(RequestError::ExposureTooShort(self.exposure));
        }
        for setting in self.channel_settings() {
            setting.check(info)?;
        }
        self.rois(info)?;
        if self.frames_per_file == Some(0) {
            return Err(RequestError::FramesPerFile);
        }
        if let Some(name) = &self.file {
            check_name(name).map_err(|source| RequestError::File {
                name: name.clone(),
                source,
            })?;
        }
        if self.stream_hwm < 0 {
            return Err(RequestError::StreamHwm(self.stream_hwm));
        }
        if self.frames_per_train == 0 {
            return Err(RequestError::FramesPerTrain);
        }
        if self.first_train == 0 {
            return Err(RequestError::FirstTrain);
        }
        if self.karabo_source.as_deref() == Some("") {
            return Err(RequestError::KaraboSource);
        }
        let (trigger, n_frames) = self.trigger_plan()?;
        Ok(AcqParams {
            n_frames,
            exposure_ticks: exposure_ticks(self.exposure.0, info.clock_hz)?,
            gap: self.gap,
            trigger,
            debounce_ticks: self.debounce,
            invert_f0: self.invert_f0,
            invert_veto: self.invert_veto,
        })
    }

    /// The trigger mode and frame count: `trigger` and `frames`, or with `triggers` /
    /// `frames_per_trigger` MAX IV's plan for `trigger`'s source (`frames`, if also given, must
    /// be their product).
    pub fn trigger_plan(&self) -> Result<(TriggerMode, u64), RequestError> {
        if self.triggers.is_none() && self.frames_per_trigger.is_none() {
            return Ok((self.trigger, self.frames));
        }
        let (n_triggers, per_trigger) = (
            self.triggers.unwrap_or(1),
            self.frames_per_trigger.unwrap_or(1),
        );
        let plan = self.trigger.source().plan(n_triggers, per_trigger)?;
        if self.frames != Self::DEFAULT.frames && self.frames != plan.n_frames {
            return Err(RequestError::FramesAndTriggers {
                frames: self.frames,
                n_triggers,
                per_trigger,
            });
        }
        Ok((plan.trigger, plan.n_frames))
    }

    /// What is recorded of each spectrum on a detector like `info`'s.
    pub fn recording(&self, info: &DetectorInfo) -> Result<Recording, RecordingError> {
        let (first_bin, n_bins) = match self.bins {
            Some(BinRange { low, high }) => (low, (high + 1).saturating_sub(low)),
            None => (0, info.n_bins),
        };
        let recording = Recording {
            first_bin,
            n_bins,
            rebin: self.rebin,
        };
        recording.check(info.n_bins).map(|()| recording)
    }

    /// The ROIs for a detector like `info`'s (anywhere in its bins, whatever is recorded).
    pub fn rois(&self, info: &DetectorInfo) -> Result<Vec<Roi>, RequestError> {
        Ok(roi::build(&self.rois, info.n_channels, info.n_bins)?)
    }

    /// The per-channel settings, in the order they are applied.
    pub fn channel_settings(&self) -> Vec<acq_core::detector::ChannelSetting> {
        channel_settings(&self.windows, &self.good_thresholds, &self.event_widths)
    }
}

impl Default for AcqRequest {
    fn default() -> Self {
        AcqRequest::DEFAULT
    }
}

/// A request the detector cannot carry out; each names the option and the value.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Exposure(#[from] ExposureError),
    #[error("exposure {0} is shorter than the shortest frame accepted, 1us")]
    ExposureTooShort(Span),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Roi(#[from] RoiError),
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error(transparent)]
    Triggers(#[from] TriggerCountError),
    #[error(
        "frames {frames} differs from triggers {n_triggers} x frames_per_trigger {per_trigger}: \
         give frames, or the two counts"
    )]
    FramesAndTriggers {
        frames: u64,
        n_triggers: u64,
        per_trigger: u64,
    },
    #[error("frames_per_file must be at least 1")]
    FramesPerFile,
    #[error("file `{name}`: {source}")]
    File {
        name: String,
        #[source]
        source: NameError,
    },
    #[error("stream_hwm {0} is negative")]
    StreamHwm(i32),
    #[error("frames_per_train must be at least 1")]
    FramesPerTrain,
    #[error("first_train must be at least 1 (train ID 0 marks padding in EuXFEL indexes)")]
    FirstTrain,
    #[error("karabo_source must not be empty")]
    KaraboSource,
    /// The detector refused a setting the checks above let through.
    #[error("{setting}: {name} ({code}): {message}")]
    Detector {
        setting: &'static str,
        name: String,
        code: i32,
        message: String,
    },
    #[error("configure: {0}")]
    Engine(EngineError),
}

/// What the process, not the request, decides about an acquisition's sinks.
#[derive(Clone, Debug)]
pub struct Site {
    /// Where files are created; `None`: the request's `file` is only announced to receivers.
    pub out_dir: Option<PathBuf>,
    /// Bind the live monitor here.
    pub monitor: Option<String>,
    /// Ring capacity in frames.
    pub ring_frames: usize,
    /// Print a status line this often.
    pub status_every: Option<Duration>,
}

/// Validates `request`, applies it to the detector and configures `engine`: what a session needs
/// to run it.
pub fn prepare<K: Clock>(
    engine: &mut Acquisition<Xspress3, K>,
    request: &AcqRequest,
    site: &Site,
) -> Result<(AcqDescription, SessionConfig), RequestError> {
    let params = request.validate(engine.detector().info())?;
    let rois = request.rois(engine.detector().info())?;
    let recording = request.recording(engine.detector().info())?;
    let refused = |setting| {
        move |e: sdk_shim::X3sError| RequestError::Detector {
            setting,
            name: e.name().to_string(),
            code: e.code(),
            message: e.message().to_string(),
        }
    };
    let dev = engine.detector_mut();
    dev.set_recording(recording).map_err(refused("bins"))?;
    let ranges: Vec<_> = rois.iter().map(|r| r.ranges.clone()).collect();
    dev.set_rois(&ranges).map_err(refused("roi"))?;
    for setting in request.channel_settings() {
        dev.apply(&setting).map_err(|e| match e {
            sdk_shim::SettingsError::Invalid(e) => RequestError::Setting(e),
            sdk_shim::SettingsError::Refused { setting, error } => refused(setting.name())(*error),
        })?;
    }
    let desc = crate::describe(dev, params, rois).map_err(|e| RequestError::Detector {
        setting: "geometry",
        name: "geometry".into(),
        code: 0,
        message: e.to_string(),
    })?;
    engine
        .configure(&params)
        .map_err(|e| match engine.fault() {
            Some(f) => RequestError::Detector {
                setting: "configure",
                name: f.name.to_string(),
                code: f.code,
                message: f.message.to_string(),
            },
            None => RequestError::Engine(e),
        })?;
    let name = request.file.clone().unwrap_or_default();
    if let (Some(dir), false) = (&site.out_dir, name.is_empty()) {
        // The first part; the writer checks every part again when it starts.
        let first = file_name(&name, request.frames_per_file.map(|_| 0));
        confine(dir, &first).map_err(|source| RequestError::File {
            name: name.clone(),
            source,
        })?;
    }
    let output = site
        .out_dir
        .as_ref()
        .filter(|_| !name.is_empty())
        .map(|dir| OutputConfig {
            dir: dir.clone(),
            name: name.clone(),
            frames_per_file: request.frames_per_file,
            overwrite: request.overwrite,
            swmr: request.swmr,
            flush_interval: request.flush_interval.0,
        });
    let session = SessionConfig {
        series_name: name,
        series_overwritable: request.overwrite,
        output,
        stream: request.stream.as_ref().map(|endpoint| crate::StreamConfig {
            endpoint: endpoint.clone(),
            kind: request.stream_type,
            high_water_mark: request.stream_hwm,
            subscriber_wait: request.stream_wait.0,
            karabo: (request.stream_format == StreamFormat::Karabo).then(|| KaraboConfig {
                source: request
                    .karabo_source
                    .clone()
                    .unwrap_or_else(|| AcqRequest::DEFAULT_KARABO_SOURCE.into()),
                frames_per_train: request.frames_per_train,
                first_train: request.first_train,
            }),
        }),
        monitor: site.monitor.clone(),
        ring_frames: site.ring_frames,
        status_every: site.status_every,
    };
    Ok((desc, session))
}

/// A detector bin range `LOW:HIGH` (inclusive) on the command line, `[low, high]` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "[u32; 2]")]
pub struct BinRange {
    pub low: u32,
    pub high: u32,
}

impl From<[u32; 2]> for BinRange {
    fn from([low, high]: [u32; 2]) -> Self {
        BinRange { low, high }
    }
}

impl FromStr for BinRange {
    type Err = BinRangeError;

    fn from_str(text: &str) -> Result<Self, BinRangeError> {
        let bad = || BinRangeError(text.to_string());
        let (low, high) = text.split_once(':').ok_or_else(bad)?;
        Ok(BinRange {
            low: low.trim().parse().map_err(|_| bad())?,
            high: high.trim().parse().map_err(|_| bad())?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("--bins `{0}`: expected LOW:HIGH, e.g. 500:1523")]
pub struct BinRangeError(String);

/// Command-line values of the modes named in acq-core's tables (`software-first` is accepted
/// for `software_first`).
#[derive(Clone, Copy)]
struct Names<T: 'static> {
    option: &'static str,
    all: &'static [T],
    name: fn(T) -> &'static str,
}

impl Names<TriggerMode> {
    const TRIGGER: Self = Names {
        option: "--trigger",
        all: &TriggerMode::ALL,
        name: TriggerMode::name,
    };
}

impl Names<GapMode> {
    const GAP: Self = Names {
        option: "--gap",
        all: &GapMode::ALL,
        name: GapMode::name,
    };
}

impl<T: Copy + Send + Sync + 'static> Names<T> {
    fn find(&self, text: &str) -> Option<T> {
        let text = text.replace('-', "_");
        self.all.iter().copied().find(|&v| (self.name)(v) == text)
    }

    fn list(&self) -> String {
        let names: Vec<&str> = self.all.iter().map(|&v| (self.name)(v)).collect();
        names.join(", ")
    }
}

impl<T: Copy + Send + Sync + 'static> TypedValueParser for Names<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        self.find(&text).ok_or_else(|| {
            clap::Error::raw(
                ErrorKind::InvalidValue,
                format!("{} {text}: use {}\n", self.option, self.list()),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            self.all.iter().map(|&v| PossibleValue::new((self.name)(v))),
        ))
    }
}

/// A span whose error names its field (serde's own errors do not).
fn named_span<'de, D: Deserializer<'de>>(field: &str, d: D) -> Result<Span, D::Error> {
    Span::deserialize(d).map_err(|e| D::Error::custom(format!("{field} {e}")))
}

fn exposure_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    named_span("exposure", d)
}

fn flush_interval_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    named_span("flush_interval", d)
}

fn stream_wait_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
    named_span("stream_wait", d)
}

fn trigger_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<TriggerMode, D::Error> {
    let name = String::deserialize(d)?;
    TriggerMode::from_name(&name)
        .ok_or_else(|| D::Error::custom(format!("trigger `{name}`: use {}", Names::TRIGGER.list())))
}

fn gap_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<GapMode, D::Error> {
    let nanos = u32::deserialize(d)?;
    GapMode::from_nanos(nanos).ok_or_else(|| {
        let all: Vec<String> = GapMode::ALL.iter().map(|g| g.nanos().to_string()).collect();
        D::Error::custom(format!("gap_ns {nanos}: use {}", all.join(", ")))
    })
}

fn stream_format_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<StreamFormat, D::Error> {
    let name = String::deserialize(d)?;
    StreamFormat::from_str(&name, false).map_err(|_| {
        let all: Vec<String> = StreamFormat::value_variants()
            .iter()
            .filter_map(|k| k.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        D::Error::custom(format!("stream_format `{name}`: use {}", all.join(" or ")))
    })
}

fn stream_kind_from_json<'de, D: Deserializer<'de>>(d: D) -> Result<StreamKind, D::Error> {
    let name = String::deserialize(d)?;
    StreamKind::from_str(&name, false).map_err(|_| {
        let all: Vec<String> = StreamKind::value_variants()
            .iter()
            .filter_map(|k| k.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        D::Error::custom(format!("stream_type `{name}`: use {}", all.join(" or ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        request: AcqRequest,
    }

    fn cli(args: &[&str]) -> Result<AcqRequest, clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.request)
    }

    fn json(value: serde_json::Value) -> Result<AcqRequest, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn command_line_and_json_defaults_are_the_same() {
        assert_eq!(cli(&[]).ok(), Some(AcqRequest::DEFAULT));
        assert_eq!(json(serde_json::json!({})).ok(), Some(AcqRequest::DEFAULT));
    }

    #[test]
    fn command_line_and_json_spell_the_same_request() {
        let from_cli = cli(&[
            "--frames=5",
            "--exposure=250us",
            "--trigger=software-first",
            "--gap=1us",
            "--window=0:10:20",
            "--window=1:30:40",
            "--window=3:1:50:60",
            "--good-threshold=7",
            "--good-threshold=2:9",
            "--event-width=1:11",
            "--debounce=80",
            "--invert-veto",
            "--bins=100:355",
            "--rebin=2",
            "--triggers=1",
            "--frames-per-trigger=5",
            "--roi=Fe:3:120:139",
            "--file=scan",
            "--stream=tcp://127.0.0.1:1",
            "--stream-type=pub",
            "--stream-format=karabo",
            "--karabo-source=SPB_XSP3/DET/A:output",
            "--frames-per-train=10",
            "--first-train=7",
        ])
        .map_err(|e| e.to_string());
        let from_json = json(serde_json::json!({
            "frames": 5, "exposure": 250e-6, "trigger": "software_first", "gap_ns": 1000,
            "windows": [[0, 10, 20], [1, 30, 40], [3, 1, 50, 60]],
            "good_threshold": [7, [2, 9]], "event_width": [1, 11], "debounce": 80,
            "invert_veto": true, "bins": [100, 355], "rebin": 2, "triggers": 1, "frames_per_trigger": 5, "rois": ["Fe:3:120:139"],
            "file": "scan",
            "stream": "tcp://127.0.0.1:1", "stream_type": "pub",
            "stream_format": "karabo", "karabo_source": "SPB_XSP3/DET/A:output",
            "frames_per_train": 10, "first_train": 7,
        }))
        .map_err(|e| e.to_string());
        assert_eq!(from_cli, from_json);
        let settings: Vec<String> = from_cli
            .as_ref()
            .map(|r| r.channel_settings().iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(
            settings,
            [
                "window 0:10:20",
                "window 1:30:40",
                "window 3:1:50:60",
                "good_threshold 7",
                "good_threshold 2:9",
                "event_width 1:11"
            ]
        );
        assert_eq!(
            from_cli.as_ref().map(|r| r.trigger_plan().ok()),
            Ok(Some((TriggerMode::SoftwareFirst, 5)))
        );
        assert_eq!(
            from_cli.as_ref().map(|r| (r.bins, r.rebin)),
            Ok((
                Some(BinRange {
                    low: 100,
                    high: 355
                }),
                2
            ))
        );
        assert_eq!(
            from_cli.map(|r| (r.trigger, r.gap, r.debounce, r.invert_f0, r.invert_veto)),
            Ok((TriggerMode::SoftwareFirst, GapMode::Us1, 80, false, true))
        );
        // A bare number is still every channel's threshold, as before.
        assert_eq!(
            json(serde_json::json!({"good_threshold": 7}))
                .map(|r| r.channel_settings().len())
                .ok(),
            Some(1)
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        for (args, needle) in [
            (
                &["--trigger=sometimes"][..],
                "--trigger sometimes: use internal",
            ),
            (&["--gap=7ns"][..], "--gap 7ns: use 25ns, 200ns, 500ns, 1us"),
            (
                &["--window=1:2"][..],
                "--window `1:2`: expected [CH:]WIN:LOW:HIGH",
            ),
            (&["--good-threshold=a"][..], "--good-threshold `a`"),
            (&["--debounce=256"][..], "256"),
            (&["--exposure=fast"][..], "fast"),
        ] {
            let err = cli(args).map(|_| ()).map_err(|e| e.to_string());
            assert!(
                err.as_ref().is_err_and(|e| e.contains(needle)),
                "{args:?}: {err:?}"
            );
        }
        for (value, needle) in [
            (
                serde_json::json!({"trigger": "sometimes"}),
                "trigger `sometimes`",
            ),
            (
                serde_json::json!({"gap_ns": 7}),
                "gap_ns 7: use 25, 200, 500, 1000",
            ),
            (
                serde_json::json!({"stream_type": "x"}),
                "stream_type `x`: use push or pub",
            ),
            (
                serde_json::json!({"stream_format": "hdf"}),
                "stream_format `hdf`: use native or karabo",
            ),
            (serde_json::json!({"exposure": [1]}), "seconds"),
            (serde_json::json!({"exposure": -1}), "exposure -1 is not"),
            (
                serde_json::json!({"stream_wait": "soon"}),
                "stream_wait `soon`",
            ),
            (serde_json::json!({"speed": 1}), "unknown field `speed`"),
            (
                serde_json::json!({"windows": [[1, 2]]}),
                "windows: [1, 2]: each is [WIN, LOW, HIGH] or [CH, WIN, LOW, HIGH]",
            ),
            (
                serde_json::json!({"event_width": "wide"}),
                "event_width: needs N (every channel), [CH, N], or a list of these",
            ),
        ] {
            let err = json(value.clone()).map(|_| ()).map_err(|e| e.to_string());
            assert!(
                err.as_ref().is_err_and(|e| e.contains(needle)),
                "{value}: {err:?}"
            );
        }
    }

    #[test]
    fn validation_names_the_value() {
        let info = DetectorInfo {
            n_channels: 4,
            n_bins: 4096,
            n_scalers: 9,
            clock_hz: 80e6,
            buffer_frames: 16384,
            generation: 0,
            revision: 0,
            event_widths: heapless::Vec::new(),
        };
        let with = |f: fn(&mut AcqRequest)| {
            let mut r = AcqRequest::DEFAULT;
            f(&mut r);
            r.validate(&info).map_err(|e| e.to_string())
        };
        assert_eq!(
            with(|_| {}).map(|p| p.exposure_ticks),
            Ok(80_000),
            "1 ms at 80 MHz"
        );
        for (err, needle) in [
            (
                with(|r| r.windows = vec!["0:10:4096".parse().unwrap()]),
                "window 0:10:4096: bins must lie in 0..=4095",
            ),
            (
                with(|r| r.windows = vec!["2:1:2".parse().unwrap()]),
                "window 2:1:2: no such window",
            ),
            (
                with(|r| r.windows = vec!["4:0:1:2".parse().unwrap()]),
                "window 4:0:1:2: no such channel (the detector has channels 0..=3)",
            ),
            (
                with(|r| r.good_thresholds = vec!["4096".parse().unwrap()]),
                "good_threshold 4096",
            ),
            (
                with(|r| r.event_widths = vec!["1:1001".parse().unwrap()]),
                "event_width 1:1001: event width beyond 1000 clock ticks",
            ),
            (with(|r| r.frames_per_file = Some(0)), "frames_per_file"),
            (with(|r| r.frames_per_train = 0), "frames_per_train"),
            (
                with(|r| r.first_train = 0),
                "first_train must be at least 1",
            ),
            (
                with(|r| r.karabo_source = Some(String::new())),
                "karabo_source",
            ),
            (with(|r| r.file = Some("../x".into())), ".."),
            (
                with(|r| r.exposure = Span(Duration::ZERO)),
                "exposure 0s is shorter",
            ),
            (
                with(|r| r.exposure = Span(Duration::from_nanos(999))),
                "exposure 999ns is shorter",
            ),
        ] {
            assert!(err.as_ref().is_err_and(|e| e.contains(needle)), "{err:?}");
        }
    }

    #[test]
    fn spans_print_as_typed() {
        for text in ["1ms", "250us", "2s", "100ns", "0s"] {
            assert_eq!(
                text.parse::<Span>().map(|s| s.to_string()),
                Ok(text.to_string())
            );
        }
    }
}
