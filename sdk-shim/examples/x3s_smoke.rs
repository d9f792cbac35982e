//! Opens the system (the simulated SDK by default, the real one when built with
//! XSPRESS3_SDK_DIR), prints its facts, acquires a few internally timed frames and prints their
//! totals. Arguments are `key=value` open parameters (see `OpenParams::set`), plus
//! `config=<file>` for a file of them and `frames=<n>` / `exposure_ticks=<t>` for the run.
//!
//! `cargo run -p sdk-shim --example x3s_smoke -- num_tf=1024 channels=8 frames=20`

use std::process::ExitCode;

use acq_core::detector::{AcqParams, Detector, GapMode, TriggerMode};
use sdk_shim::{OpenParams, Xspress3};

fn run() -> Result<(), String> {
    let mut params = OpenParams::default();
    let mut frames = 10u64;
    let mut exposure_ticks = 80_000u32; // 1 ms
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("config", path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {path}: {e}"))?;
                params
                    .apply_config(&text)
                    .map_err(|e| format!("{path}: {e}"))?;
            }
            Some(("frames", v)) => {
                frames = v
                    .parse()
                    .map_err(|_| format!("frames: `{v}` is not a count"))?
            }
            Some(("exposure_ticks", v)) => {
                exposure_ticks = v
                    .parse()
                    .map_err(|_| format!("exposure_ticks: `{v}` is not a tick count"))?
            }
            _ => params.set_arg(&arg).map_err(|e| e.to_string())?,
        }
    }
    let mut det = Xspress3::open(&params).map_err(|e| format!("open: {e}"))?;
    let info = det.info().clone();
    println!(
        "{} system: {} channels x {} bins, {} scalers, clock {} Hz, buffer {} frames, generation {}, revision {:#x}, event widths {:?}",
        if det.is_simulated() { "simulated" } else { "real" },
        info.n_channels, info.n_bins, info.n_scalers, info.clock_hz, info.buffer_frames,
        info.generation, info.revision, &info.event_widths[..]
    );
    det.configure(&AcqParams {
        n_frames: frames,
        exposure_ticks,
        gap: GapMode::Ns25,
        trigger: TriggerMode::Internal,
        debounce_ticks: 0,
        invert_f0: false,
        invert_veto: false,
    })
    .map_err(|e| format!("configure: {e}"))?;
    det.arm().map_err(|e| format!("arm: {e}"))?;
    let nch = info.n_channels as usize;
    let mut mca = vec![0u32; nch * info.n_bins as usize];
    let mut sc = vec![0u32; nch * 9];
    let mut next = 0u64;
    while next < frames {
        let p = det.poll().map_err(|e| format!("poll: {e}"))?;
        if p.frames_complete <= next {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        det.read_mca(next, 1, &mut mca)
            .map_err(|e| format!("read_mca: {e}"))?;
        det.read_scalers(next, 1, &mut sc)
            .map_err(|e| format!("read_scalers: {e}"))?;
        det.release(next, 1).map_err(|e| format!("release: {e}"))?;
        let totals: Vec<u64> = mca
            .chunks(info.n_bins as usize)
            .map(|c| c.iter().map(|&v| u64::from(v)).sum())
            .collect();
        let all_good: Vec<u32> = sc.chunks(9).map(|s| s[4]).collect();
        println!("frame {next}: counts per channel {totals:?}, AllGood {all_good:?}");
        next += 1;
    }
    det.close().map_err(|e| format!("close: {e}"))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("x3s_smoke: {e}");
            ExitCode::FAILURE
        }
    }
}
