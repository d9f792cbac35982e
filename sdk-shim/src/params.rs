//! Parameters of `x3s_open`, including the simulated SDK's, settable by name from a command line
//! (`key=value`) or a config file (`key = value` lines, `#` comments).

use crate::sys::{self, raw};

/// What the simulator puts in the spectra.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimContent {
    /// Fluorescence peaks on a background, Poisson-like noise (docs/sdk-sim.md).
    Spectrum,
    /// `(frame + 3 * chan + bin) mod 256`: cheap, for benchmarks.
    Pattern,
}

/// The simulated SDK's parameters (ignored when built against the real SDK). Defaults are the C
/// library's, listed in docs/sdk-sim.md.
#[derive(Clone, Debug, PartialEq)]
pub struct SimParams {
    pub seed: u64,
    /// Channels of the simulated box, 1..=256.
    pub n_channels: u32,
    pub content: SimContent,
    /// Timed frames complete as fast as free buffer slots allow (benchmarks).
    pub full_speed: bool,
    /// Xspress3 Mini semantics: an overrun stops the run with an error.
    pub mini: bool,
    /// With `mini`: a second-generation Mini (Mk2, `xsp3_is_xsp3m_plus`), which accepts only the
    /// midplane clock.
    pub mini_plus: bool,
    /// Test knob: each run's first frame number (the frame addressing near 2^32 without running
    /// 2^32 frames). 0 by default.
    pub frame_base: u64,
    /// Rate of TTL triggers / gates in the external and gate modes; 0: none arrive.
    pub ext_trigger_hz: f64,
    pub background: u32,
    pub amplitude_percent: u32,
    pub pileup_ppm: u32,
    pub reset_rate_hz: u32,
    pub reset_ticks: u32,
    pub event_width: u32,
    /// Fault: `xsp3_config` fails with `XSP3_ERR_DEV_NOT_FOUND`.
    pub fail_open: bool,
    /// Fault: the SDK reports `error_code` when it reaches this frame.
    pub error_at_frame: Option<u64>,
    pub error_code: i32,
    /// Fault: the progress counter stops at this frame.
    pub stall_at_frame: Option<u64>,
    /// Fault: the RX completes at most this many frames per second (0: off).
    pub slow_rx_hz: f64,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams::from_raw(&sys::sim_defaults())
    }
}

fn opt_frame(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn raw_frame(v: Option<u64>) -> i64 {
    v.map_or(raw::X3S_SIM_NEVER as i64, |f| {
        i64::try_from(f).unwrap_or(i64::MAX)
    })
}

impl SimParams {
    pub(crate) fn from_raw(r: &raw::x3s_sim_params) -> Self {
        SimParams {
            seed: r.seed,
            n_channels: r.n_channels,
            content: if r.content == raw::X3S_SIM_PATTERN {
                SimContent::Pattern
            } else {
                SimContent::Spectrum
            },
            full_speed: r.full_speed != 0,
            mini: r.mini != 0,
            mini_plus: r.mini_plus != 0,
            frame_base: r.frame_base,
            ext_trigger_hz: r.ext_trigger_hz,
            background: r.background,
            amplitude_percent: r.amplitude_percent,
            pileup_ppm: r.pileup_ppm,
            reset_rate_hz: r.reset_rate_hz,
            reset_ticks: r.reset_ticks,
            event_width: r.event_width,
            fail_open: r.fail_open != 0,
            error_at_frame: opt_frame(r.error_at_frame),
            error_code: r.error_code,
            stall_at_frame: opt_frame(r.stall_at_frame),
            slow_rx_hz: r.slow_rx_hz,
        }
    }

    pub(crate) fn to_raw(&self) -> raw::x3s_sim_params {
        raw::x3s_sim_params {
            seed: self.seed,
            n_channels: self.n_channels,
            content: match self.content {
                SimContent::Spectrum => raw::X3S_SIM_SPECTRUM,
                SimContent::Pattern => raw::X3S_SIM_PATTERN,
            },
            full_speed: self.full_speed.into(),
            mini: self.mini.into(),
            mini_plus: self.mini_plus.into(),
            frame_base: self.frame_base,
            ext_trigger_hz: self.ext_trigger_hz,
            background: self.background,
            amplitude_percent: self.amplitude_percent,
            pileup_ppm: self.pileup_ppm,
            reset_rate_hz: self.reset_rate_hz,
            reset_ticks: self.reset_ticks,
            event_width: self.event_width,
            fail_open: self.fail_open.into(),
            error_at_frame: raw_frame(self.error_at_frame),
            error_code: self.error_code,
            stall_at_frame: raw_frame(self.stall_at_frame),
            slow_rx_hz: self.slow_rx_hz,
        }
    }

    /// The simulator's content of `frame` without a device: `mca` gets `[chan][bin]`
    /// (`n_channels * 4096` words), `scalers` `[chan][scaler]` (`n_channels * 9` words).
    pub fn expected_frame(
        &self,
        settings: &FrameSettings<'_>,
        frame: u64,
        mca: Option<&mut [u32]>,
        scalers: Option<&mut [u32]>,
    ) -> Result<(), crate::X3sError> {
        let rc = sys::sim_expected_frame(&self.to_raw(), settings, frame, mca, scalers);
        if rc < 0 {
            return Err(crate::X3sError::new(
                rc,
                "x3s_sim_expected_frame: invalid parameters or buffers too small",
            ));
        }
        Ok(())
    }
}

/// The device settings that the simulator's frame content depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSettings<'a> {
    pub n_channels: u32,
    /// The Time and TotalTicks scalers.
    pub exposure_ticks: u32,
    /// Per channel `[low0, high0, low1, high1]`; `None`: full range.
    pub windows: Option<&'a [[u32; 4]]>,
    /// Per channel AllGood threshold; `None`: 0.
    pub good_thres: Option<&'a [u32]>,
}

/// Parameters of [`crate::Xspress3::open`].
#[derive(Clone, Debug, PartialEq)]
pub struct OpenParams {
    pub n_cards: i32,
    /// -1: all channels of the system.
    pub n_channels: i32,
    /// Depth of the SDK's circular buffer in frames.
    pub num_tf: i32,
    pub base_ip: Option<String>,
    pub settings_dir: Option<String>,
    pub debug: i32,
    /// 0: off. Otherwise a poll fails with `X3S_E_TIMEOUT` when the detector is ahead of the
    /// completed frames and they have not moved for this long.
    pub progress_timeout_ms: u32,
    pub sim: SimParams,
}

impl Default for OpenParams {
    fn default() -> Self {
        OpenParams {
            n_cards: 1,
            n_channels: -1,
            num_tf: 16384,
            base_ip: None,
            settings_dir: None,
            debug: -1,
            progress_timeout_ms: 0,
            sim: SimParams::default(),
        }
    }
}

/// A parameter that could not be set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter `{0}`")]
    UnknownKey(String),
    #[error("parameter `{key}`: cannot parse `{value}` as {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("line {line}: expected `key = value`, found `{text}`")]
    Syntax { line: usize, text: String },
}

fn parse<T: core::str::FromStr>(
    key: &str,
    value: &str,
    expected: &'static str,
) -> Result<T, ParamError> {
    value.trim().parse().map_err(|_| ParamError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ParamError> {
    match value.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ParamError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected: "a boolean (true/false/1/0)",
        }),
    }
}

fn parse_frame(key: &str, value: &str) -> Result<Option<u64>, ParamError> {
    match value.trim() {
        "none" | "never" | "-1" => Ok(None),
        v => parse(key, v, "a frame number or `none`").map(Some),
    }
}

impl OpenParams {
    /// Sets one parameter by name. Simulator keys may carry a `sim.` prefix. Keys: `n_cards`,
    /// `n_channels`, `num_tf`, `base_ip`, `settings_dir`, `debug`, `progress_timeout_ms`, and
    /// the simulator's `seed`, `channels` (box size), `content` (`spectrum`|`pattern`),
    /// `full_speed`, `mini`, `mini_plus`, `frame_base`, `ext_trigger_hz`, `background`,
    /// `amplitude_percent`, `pileup_ppm`, `reset_rate_hz`, `reset_ticks`, `event_width`,
    /// `fail_open`, `error_at_frame`, `error_code`, `stall_at_frame`, `slow_rx_hz`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ParamError> {
        let k = key.trim();
        let s = &mut self.sim;
        match k.strip_prefix("sim.").unwrap_or(k) {
            "n_cards" => self.n_cards = parse(k, value, "an integer")?,
            "n_channels" => self.n_channels = parse(k, value, "an integer (-1: all)")?,
            "num_tf" => self.num_tf = parse(k, value, "a frame count")?,
            "base_ip" => self.base_ip = Some(value.trim().to_string()),
            "settings_dir" => self.settings_dir = Some(value.trim().to_string()),
            "debug" => self.debug = parse(k, value, "an integer")?,
            "progress_timeout_ms" => self.progress_timeout_ms = parse(k, value, "milliseconds")?,
            "seed" => s.seed = parse(k, value, "an unsigned 64-bit integer")?,
            "channels" => s.n_channels = parse(k, value, "a channel count")?,
            "content" => {
                s.content = match value.trim() {
                    "spectrum" => SimContent::Spectrum,
                    "pattern" => SimContent::Pattern,
                    _ => {
                        return Err(ParamError::BadValue {
                            key: k.to_string(),
                            value: value.to_string(),
                            expected: "`spectrum` or `pattern`",
                        })
                    }
                }
            }
            "full_speed" => s.full_speed = parse_bool(k, value)?,
            "mini" => s.mini = parse_bool(k, value)?,
            "mini_plus" => s.mini_plus = parse_bool(k, value)?,
            "frame_base" => s.frame_base = parse(k, value, "a frame number")?,
            "ext_trigger_hz" => s.ext_trigger_hz = parse(k, value, "a rate in Hz")?,
            "background" => s.background = parse(k, value, "counts per bin")?,
            "amplitude_percent" => s.amplitude_percent = parse(k, value, "a percentage")?,
            "pileup_ppm" => s.pileup_ppm = parse(k, value, "parts per million")?,
            "reset_rate_hz" => s.reset_rate_hz = parse(k, value, "a rate in Hz")?,
            "reset_ticks" => s.reset_ticks = parse(k, value, "clock ticks")?,
            "event_width" => s.event_width = parse(k, value, "clock ticks")?,
            "fail_open" => s.fail_open = parse_bool(k, value)?,
            "error_at_frame" => s.error_at_frame = parse_frame(k, value)?,
            "error_code" => s.error_code = parse(k, value, "a negative XSP3 code")?,
            "stall_at_frame" => s.stall_at_frame = parse_frame(k, value)?,
            "slow_rx_hz" => s.slow_rx_hz = parse(k, value, "a rate in Hz")?,
            _ => return Err(ParamError::UnknownKey(k.to_string())),
        }
        Ok(())
    }

    /// Sets `key=value` (a command-line argument).
    pub fn set_arg(&mut self, arg: &str) -> Result<(), ParamError> {
        let (k, v) = arg.split_once('=').ok_or_else(|| ParamError::Syntax {
            line: 0,
            text: arg.to_string(),
        })?;
        self.set(k, v)
    }

    /// Applies a config file's text: `key = value` lines; blank lines and `#` comments ignored.
    pub fn apply_config(&mut self, text: &str) -> Result<(), ParamError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or_else(|| ParamError::Syntax {
                line: i + 1,
                text: line.to_string(),
            })?;
            self.set(k, v)?;
        }
        Ok(())
    }
}
