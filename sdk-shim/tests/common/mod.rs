//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use acq_core::detector::{AcqParams, Detector, GapMode, Progress, TriggerMode};
use sdk_shim::{OpenParams, X3sError, Xspress3};

pub const N_BINS: usize = 4096;
pub const N_SCALERS: usize = 9;

/// Open parameters of a small simulated box.
pub fn sim_params(n_channels: u32, num_tf: i32) -> OpenParams {
    let mut p = OpenParams {
        num_tf,
        ..OpenParams::default()
    };
    p.sim.n_channels = n_channels;
    p.sim.seed = 42;
    p
}

pub fn acq(trigger: TriggerMode, n_frames: u64, exposure_ticks: u32) -> AcqParams {
    AcqParams {
        n_frames,
        exposure_ticks,
        gap: GapMode::Ns25,
        trigger,
        debounce_ticks: 0,
        invert_f0: false,
        invert_veto: false,
    }
}

/// Polls until `pred` holds, sleeping between polls. Bounded by a poll count, not a duration
/// assertion: the bound only stops a broken run from hanging the suite.
pub fn poll_until(
    det: &mut Xspress3,
    mut pred: impl FnMut(&Progress) -> bool,
) -> Result<Progress, X3sError> {
    for _ in 0..200_000 {
        let p = det.poll()?;
        if pred(&p) {
            return Ok(p);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("the simulated detector did not reach the expected progress");
}

/// Polls until a poll fails, returning its error.
pub fn poll_until_err(det: &mut Xspress3) -> X3sError {
    for _ in 0..200_000 {
        if let Err(e) = det.poll() {
            return e;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("the simulated detector did not fail");
}

/// The simulator's expected MCA and scalers of `frame` for this device's settings.
pub fn expected(det: &Xspress3, frame: u64) -> (Vec<u32>, Vec<u32>) {
    let n = det.info().n_channels;
    let mut mca = vec![0u32; n as usize * N_BINS];
    let mut sc = vec![0u32; n as usize * N_SCALERS];
    det.sim_params()
        .expected_frame(&det.frame_settings(), frame, Some(&mut mca), Some(&mut sc))
        .expect("valid expected-frame arguments");
    (mca, sc)
}
