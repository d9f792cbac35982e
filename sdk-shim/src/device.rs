//! [`Xspress3`]: the safe detector over the shim, implementing [`acq_core::detector::Detector`].

use std::ffi::CString;

use acq_core::detector::{
    AcqParams, ChannelSetting, Channels, Detector, DetectorInfo, DetectorState, Progress,
    Recording, TriggerMode,
};

use crate::error::{SettingsError, X3sError};
use crate::params::{FrameSettings, OpenParams, SimParams};
use crate::record::SimRecord;
use crate::sys::{self, raw, Device, OpenStrings};

// The range checks of acq-core and of the C shim agree.
const _: () = assert!(acq_core::detector::MAX_EVENT_WIDTH == raw::X3S_MAX_EVENT_WIDTH);

/// Everything `x3s_poll` reports (a superset of [`Progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressDetails {
    pub frames_complete: u64,
    /// Frames the detector reached, ignoring RX lag.
    pub furthest_frame: u64,
    pub overrun_count: u64,
    /// First frame overwritten before release.
    pub first_overrun: Option<u64>,
    pub err_flags: u32,
    pub state: DetectorState,
}

/// An Xspress3 system (or the simulated SDK) through the x3s shim. Closed on drop.
#[derive(Debug)]
pub struct Xspress3 {
    dev: Device,
    info: DetectorInfo,
    simulated: bool,
    mini_plus: bool,
    sim: SimParams,
    /// Channels of each card; channels are numbered across the cards in order.
    card_channels: Vec<u32>,
    windows: Vec<[u32; 4]>,
    good_thres: Vec<u32>,
    calibrated_event_widths: Vec<u32>,
    recording: Recording,
    /// Software ROIs the shim sums from the full spectrum as it reads.
    n_rois: u32,
    acq: Option<AcqParams>,
}

fn cstring(what: &str, s: &Option<String>) -> Result<Option<CString>, X3sError> {
    s.as_ref()
        .map(|v| {
            CString::new(v.as_str()).map_err(|_| {
                X3sError::new(raw::X3S_E_ARG, &format!("{what} `{v}` contains a NUL byte"))
            })
        })
        .transpose()
}

fn state_of(s: u32) -> DetectorState {
    match s {
        raw::X3S_STATE_ARMED => DetectorState::Armed,
        raw::X3S_STATE_RUNNING => DetectorState::Running,
        raw::X3S_STATE_DONE => DetectorState::Done,
        raw::X3S_STATE_FAULT => DetectorState::Fault,
        _ => DetectorState::Idle,
    }
}

fn trigger_code(t: TriggerMode) -> u32 {
    match t {
        TriggerMode::Internal => raw::X3S_TRIG_INTERNAL,
        TriggerMode::Software => raw::X3S_TRIG_SOFTWARE,
        TriggerMode::SoftwareFirst => raw::X3S_TRIG_SOFTWARE_FIRST,
        TriggerMode::External => raw::X3S_TRIG_EXTERNAL,
        TriggerMode::ExternalFirst => raw::X3S_TRIG_EXTERNAL_FIRST,
        TriggerMode::Gate => raw::X3S_TRIG_GATE,
    }
}

impl Xspress3 {
    /// Opens the system (or the simulator, with `params.sim`).
    pub fn open(params: &OpenParams) -> Result<Self, X3sError> {
        let linked = sys::abi_version();
        if linked >> 16 != sys::ABI_VERSION >> 16 {
            return Err(X3sError::new(
                raw::X3S_E_BACKEND,
                &format!(
                    "the linked x3s library has ABI {:#x}, these bindings need {:#x}",
                    linked,
                    sys::ABI_VERSION
                ),
            ));
        }
        let strings = OpenStrings {
            base_ip: cstring("base_ip", &params.base_ip)?,
            settings_dir: cstring("settings_dir", &params.settings_dir)?,
        };
        let raw_params = raw::x3s_open_params {
            n_cards: params.n_cards,
            n_channels: params.n_channels,
            num_tf: params.num_tf,
            base_ip: core::ptr::null(),
            settings_dir: core::ptr::null(),
            debug: params.debug,
            progress_timeout_ms: params.progress_timeout_ms,
            sim: params.sim.to_raw(),
        };
        let mut dev = Device::open(&raw_params, &strings).map_err(|code| {
            let (c, msg) = sys::last_open_error();
            X3sError::from_parts(if c != 0 { c } else { code }, msg)
        })?;
        let (rc, ri) = dev.info();
        if rc < 0 {
            let (c, msg) = dev.last_error();
            return Err(X3sError::from_parts(c, msg));
        }
        let mut event_widths = heapless::Vec::new();
        for &w in ri.event_widths.iter().take(ri.n_channels as usize) {
            // n_channels <= X3S_MAX_CHANNELS == MAX_CHANNELS, so this never overflows.
            let _ = event_widths.push(w);
        }
        // The settings the SDK holds after open (restored from the settings directory).
        let n = ri.n_channels as usize;
        let mut windows = Vec::with_capacity(n);
        let mut good_thres = Vec::with_capacity(n);
        let mut calibrated_event_widths = Vec::with_capacity(n);
        for chan in 0..ri.n_channels {
            let (rc, cs) = dev.chan_settings(chan);
            if rc < 0 {
                let (c, msg) = dev.last_error();
                return Err(X3sError::from_parts(c, msg));
            }
            windows.push([
                cs.window_low[0],
                cs.window_high[0],
                cs.window_low[1],
                cs.window_high[1],
            ]);
            good_thres.push(cs.good_threshold);
            calibrated_event_widths.push(cs.event_width_calibrated);
        }
        let n_cards = (ri.n_cards as usize).min(ri.card_channels.len());
        Ok(Xspress3 {
            dev,
            info: DetectorInfo {
                n_channels: ri.n_channels,
                n_bins: ri.n_bins,
                n_scalers: ri.n_scalers,
                clock_hz: ri.clock_hz,
                buffer_frames: ri.ring_frames,
                generation: ri.generation,
                revision: ri.revision,
                event_widths,
            },
            simulated: ri.simulated != 0,
            mini_plus: ri.mini_plus != 0,
            sim: params.sim.clone(),
            card_channels: ri.card_channels[..n_cards].to_vec(),
            windows,
            good_thres,
            calibrated_event_widths,
            recording: Recording::full(ri.n_bins),
            n_rois: 0,
            acq: None,
        })
    }

    /// Turns a shim return code into a result, with the message the shim captured.
    fn check(&self, rc: i32) -> Result<i32, X3sError> {
        if rc >= 0 {
            Ok(rc)
        } else {
            let (_, msg) = self.dev.last_error();
            Err(X3sError::from_parts(rc, msg))
        }
    }

    /// Whether the simulated SDK is behind the shim.
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// Whether the system is a second-generation Xspress3 Mini (Mk2, `xsp3_is_xsp3m_plus`),
    /// which the shim clocks and syncs from the midplane.
    pub fn is_mini_plus(&self) -> bool {
        self.mini_plus
    }

    /// The simulator parameters this device was opened with.
    pub fn sim_params(&self) -> &SimParams {
        &self.sim
    }

    /// Window `win` (0 or 1) of `chan` (`None`: all channels), inclusive bin limits.
    pub fn set_window(
        &mut self,
        chan: Option<u32>,
        win: u32,
        low: u32,
        high: u32,
    ) -> Result<(), X3sError> {
        let c = chan.map_or(-1, |c| i32::try_from(c).unwrap_or(i32::MAX));
        let rc = self.dev.set_window(c, win, low, high);
        self.check(rc)?;
        for (i, w) in self.windows.iter_mut().enumerate() {
            if chan.is_none_or(|c| c as usize == i) {
                w[2 * win as usize] = low;
                w[2 * win as usize + 1] = high;
            }
        }
        Ok(())
    }

    /// AllGood counts events in bins `>= thr` of `chan` (`None`: all channels).
    pub fn set_good_threshold(&mut self, chan: Option<u32>, thr: u32) -> Result<(), X3sError> {
        let c = chan.map_or(-1, |c| i32::try_from(c).unwrap_or(i32::MAX));
        let rc = self.dev.set_good_threshold(c, thr);
        self.check(rc)?;
        for (i, g) in self.good_thres.iter_mut().enumerate() {
            if chan.is_none_or(|c| c as usize == i) {
                *g = thr;
            }
        }
        Ok(())
    }

    /// The event width (clock ticks) dead-time correction uses for `chan` (`None`: all
    /// channels), overriding the calibrated one as MAX IV's `EventWidths` property does. A
    /// parameter of the correction: the detector's trigger settings stay as calibrated.
    pub fn set_event_width(&mut self, chan: Option<u32>, ticks: u32) -> Result<(), X3sError> {
        let c = chan.map_or(-1, |c| i32::try_from(c).unwrap_or(i32::MAX));
        let rc = self.dev.set_event_width(c, ticks);
        self.check(rc)?;
        for (i, w) in self.info.event_widths.iter_mut().enumerate() {
            if chan.is_none_or(|c| c as usize == i) {
                *w = ticks;
            }
        }
        Ok(())
    }

    /// Checks `setting` against the detector, then applies it.
    pub fn apply(&mut self, setting: &ChannelSetting) -> Result<(), SettingsError> {
        setting.check(&self.info)?;
        let chan = match setting.channels() {
            Channels::All => None,
            Channels::One(c) => Some(c),
        };
        match *setting {
            ChannelSetting::Window {
                window, low, high, ..
            } => self.set_window(chan, window, low, high),
            ChannelSetting::GoodThreshold { bin, .. } => self.set_good_threshold(chan, bin),
            ChannelSetting::EventWidth { ticks, .. } => self.set_event_width(chan, ticks),
        }
        .map_err(|error| SettingsError::Refused {
            setting: *setting,
            error: Box::new(error),
        })
    }

    /// Records `recording.n_bins` bins from `recording.first_bin` of each spectrum, summed by
    /// `recording.rebin`: what `read_mca` returns from now on (the SDK reads only that range).
    pub fn set_recording(&mut self, recording: Recording) -> Result<(), X3sError> {
        let rc = self
            .dev
            .set_recording(recording.first_bin, recording.n_bins, recording.rebin);
        self.check(rc)?;
        self.recording = recording;
        Ok(())
    }

    /// Software ROIs that `read_mca_rois` sums per frame and channel from the full spectrum,
    /// before the recording reduces it: per ROI, per channel detector bins `[low, high]` or
    /// `None` (that channel's sum is 0). At most `acq_core::geometry::MAX_ROIS`; none removes
    /// them. The shim then reads the bins the recording and the ROIs span together.
    pub fn set_rois(&mut self, rois: &[Vec<Option<[u32; 2]>>]) -> Result<(), X3sError> {
        let n_channels = self.info.n_channels as usize;
        if let Some(bad) = rois.iter().position(|r| r.len() != n_channels) {
            return Err(X3sError::new(
                raw::X3S_E_ARG,
                &format!(
                    "set_rois: ROI {bad} has {} channel ranges, the detector {n_channels} channels",
                    rois[bad].len()
                ),
            ));
        }
        // A channel without a range is the empty pair low > high.
        let ranges: Vec<u32> = rois
            .iter()
            .flatten()
            .flat_map(|range| range.unwrap_or([1, 0]))
            .collect();
        let n_rois = u32::try_from(rois.len()).unwrap_or(u32::MAX);
        let rc = self.dev.set_rois(n_rois, &ranges);
        self.check(rc)?;
        self.n_rois = n_rois;
        Ok(())
    }

    /// Channels of each card (card 0 first); channels are numbered across the cards, so card
    /// `k`'s first channel is the sum of the counts before it. Card 0 is the clock and timing
    /// master.
    pub fn card_channels(&self) -> &[u32] {
        &self.card_channels
    }

    /// Per channel event width from the SDK's calibration, whatever overrides it.
    pub fn calibrated_event_widths(&self) -> &[u32] {
        &self.calibrated_event_widths
    }

    /// What the simulated SDK was given; `X3S_E_BACKEND` over the real SDK.
    pub fn sim_record(&mut self) -> Result<SimRecord, X3sError> {
        let (rc, r) = self.dev.sim_record();
        self.check(rc)?;
        Ok(SimRecord::from_raw(&r))
    }

    /// Per channel `[low0, high0, low1, high1]`: as the SDK held them at open, then as set.
    pub fn windows(&self) -> &[[u32; 4]] {
        &self.windows
    }

    /// Per channel AllGood threshold: as the SDK held it at open, then as set.
    pub fn good_thresholds(&self) -> &[u32] {
        &self.good_thres
    }

    /// This device's settings as the simulator's content formula needs them.
    pub fn frame_settings(&self) -> FrameSettings<'_> {
        FrameSettings {
            n_channels: self.info.n_channels,
            exposure_ticks: self.acq.map_or(0, |a| a.exposure_ticks),
            windows: Some(&self.windows),
            good_thres: Some(&self.good_thres),
        }
    }

    /// The acquisition last configured.
    pub fn acq_params(&self) -> Option<&AcqParams> {
        self.acq.as_ref()
    }

    /// Everything the last progress check reported.
    pub fn poll_details(&mut self) -> Result<ProgressDetails, X3sError> {
        let (rc, p) = self.dev.poll();
        self.check(rc)?;
        Ok(ProgressDetails {
            frames_complete: p.frames_complete,
            furthest_frame: p.furthest_frame,
            overrun_count: p.overrun_count,
            first_overrun: u64::try_from(p.first_overrun).ok(),
            err_flags: p.err_flags,
            state: state_of(p.state),
        })
    }

    /// Code and text of the device's last error (`XSP3_OK` and "no error" if none).
    pub fn last_error(&self) -> X3sError {
        let (code, msg) = self.dev.last_error();
        X3sError::from_parts(code, msg)
    }

    /// Stops and closes, reporting a failure that `Drop` would have to swallow.
    pub fn close(mut self) -> Result<(), X3sError> {
        let rc = self.dev.stop();
        self.check(rc)?;
        let rc = self.dev.close();
        if rc < 0 {
            return Err(X3sError::new(
                rc,
                "x3s_close: the SDK failed to close the system",
            ));
        }
        Ok(())
    }
}

impl Detector for Xspress3 {
    type Error = X3sError;

    fn info(&self) -> &DetectorInfo {
        &self.info
    }

    fn recording(&self) -> Recording {
        self.recording
    }

    fn configure(&mut self, params: &AcqParams) -> Result<(), X3sError> {
        let a = raw::x3s_acq_params {
            n_frames: params.n_frames,
            exposure_ticks: params.exposure_ticks,
            gap_mode: params.gap as u32,
            trigger: trigger_code(params.trigger),
            debounce_ticks: u32::from(params.debounce_ticks),
            invert_f0: params.invert_f0.into(),
            invert_veto: params.invert_veto.into(),
        };
        let rc = self.dev.configure(&a);
        self.check(rc)?;
        self.acq = Some(*params);
        Ok(())
    }

    fn arm(&mut self) -> Result<(), X3sError> {
        let rc = self.dev.arm();
        self.check(rc).map(|_| ())
    }

    fn soft_trigger(&mut self) -> Result<(), X3sError> {
        let rc = self.dev.soft_trigger();
        self.check(rc).map(|_| ())
    }

    fn poll(&mut self) -> Result<Progress, X3sError> {
        let d = self.poll_details()?;
        Ok(Progress {
            frames_complete: d.frames_complete,
            err_flags: d.err_flags,
            overrun_count: d.overrun_count,
            state: d.state,
        })
    }

    fn read_mca(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), X3sError> {
        let rc = self.dev.read_mca(first, n, dst);
        self.check(rc).map(|_| ())
    }

    fn n_rois(&self) -> u32 {
        self.n_rois
    }

    fn read_mca_rois(
        &mut self,
        first: u64,
        n: u32,
        mca: &mut [u32],
        rois: &mut [u64],
    ) -> Result<(), X3sError> {
        let rc = self.dev.read_mca_rois(first, n, mca, rois);
        self.check(rc).map(|_| ())
    }

    fn read_scalers(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), X3sError> {
        let rc = self.dev.read_scalers(first, n, dst);
        self.check(rc).map(|_| ())
    }

    fn release(&mut self, first: u64, n: u32) -> Result<(), X3sError> {
        let rc = self.dev.release(first, n);
        self.check(rc).map(|_| ())
    }

    fn stop(&mut self) -> Result<(), X3sError> {
        let rc = self.dev.stop();
        self.check(rc).map(|_| ())
    }
}
