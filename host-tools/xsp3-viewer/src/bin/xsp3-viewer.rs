//! xsp3-viewer: the live spectrum page for any running xsp3-acquire, from its monitor socket.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

const EXIT_USAGE: u8 = 2;
const EXIT_START: u8 = 3;

#[derive(Parser)]
#[command(
    version,
    about = "Live Xspress3 spectra in the browser, from an xsp3-acquire monitor socket",
    long_about = "Live Xspress3 spectra in the browser, from an xsp3-acquire monitor socket.\n\n\
Serves a page (spectra per channel, window limits, count rates, state and loss counters) on \
--http and asks --monitor for the latest frame; the monitor is a lossy consumer, so watching \
never slows the acquisition. With --control it also shows the counters of an xsp3-acquire serve.\n\n\
Exit codes: 0 stopped by SIGINT/SIGTERM; 2 bad arguments; 3 could not start (HTTP address)."
)]
struct Cli {
    /// The acquisition's monitor socket (its --monitor), e.g. tcp://detector-host:9998.
    #[arg(long, value_name = "ENDPOINT")]
    monitor: String,
    /// The control socket of an `xsp3-acquire serve` (its --control), for state and counters.
    #[arg(long, value_name = "ENDPOINT")]
    control: Option<String>,
    /// Serve the page here; use 0.0.0.0:PORT to let other machines connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: String,
    /// In-window limits WIN:LOW:HIGH to draw (window 0 or 1, inclusive bins), for all channels.
    #[arg(long, value_name = "WIN:LOW:HIGH")]
    window: Vec<String>,
    /// Monitor requests per second (the page updates at most this often).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
}

fn parse_window(text: &str) -> Result<[u32; 3], String> {
    let parts: Vec<&str> = text.split(':').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match numbers.as_deref() {
        Some(&[win, low, high]) if win <= 1 && low <= high => Ok([win, low, high]),
        _ => Err(format!(
            "--window {text}: give WIN:LOW:HIGH with WIN 0 or 1 and LOW <= HIGH"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let windows: Result<Vec<_>, _> = cli.window.iter().map(|w| parse_window(w)).collect();
    let windows = match windows {
        Ok(w) => w,
        Err(e) => {
            eprintln!("xsp3-viewer: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if !(cli.rate.is_finite() && (0.1..=1000.0).contains(&cli.rate)) {
        eprintln!(
            "xsp3-viewer: --rate {}: give 0.1 to 1000 per second",
            cli.rate
        );
        return ExitCode::from(EXIT_USAGE);
    }
    let mut source = xsp3_viewer::Source::monitor(cli.monitor)
        .with_windows(windows)
        .with_poll_interval(Duration::from_secs_f64(1.0 / cli.rate));
    if let Some(control) = cli.control {
        source = source.with_control(control);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("xsp3-viewer: cannot handle signal {signal}: {e}");
            return ExitCode::from(EXIT_START);
        }
    }
    let viewer = match xsp3_viewer::serve(&cli.http, source) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("xsp3-viewer: {e}");
            return ExitCode::from(EXIT_START);
        }
    };
    // The test suite and scripts read the real address (port 0 picks a free one) from this line.
    println!("xsp3-viewer: serving http://{}/", viewer.local_addr());
    while !stop.load(Ordering::Relaxed) && viewer.is_running() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !viewer.is_running() {
        eprintln!("xsp3-viewer: a viewer thread ended unexpectedly");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
