//! The rack-server acquisition process behind `xsp3-acquire`: sessions (engine, ring and sinks),
//! the live monitor, the control daemon and the frame-stream sender.

pub mod monitor;
pub mod sender;
pub mod serve;
pub mod session;

pub use session::{run_session, FileSummary, SessionConfig, SessionControl, Status, Summary};

use acq_core::detector::{AcqParams, Detector};
use acq_core::geometry::{Geometry, GeometryError};
use sdk_shim::Xspress3;

use xspress3::AcqDescription;

/// "simulated SDK" or "libxspress3": what the shim was built against.
pub fn backend_name() -> &'static str {
    if sdk_shim::SIMULATED {
        "simulated SDK"
    } else {
        "libxspress3"
    }
}

/// The software string written into files and stream headers.
pub fn software_name() -> String {
    format!("xsp3-acquire {}", env!("CARGO_PKG_VERSION"))
}

/// What files and stream headers record about an acquisition with `params` on `dev`.
pub fn describe(dev: &Xspress3, params: AcqParams) -> Result<AcqDescription, GeometryError> {
    let info = dev.info();
    Ok(AcqDescription {
        geometry: Geometry::new(info.n_channels, info.n_bins)?,
        params,
        clock_hz: info.clock_hz,
        event_widths: info.event_widths.iter().copied().collect(),
        windows: dev.windows().to_vec(),
        good_thresholds: dev.good_thresholds().to_vec(),
        backend: backend_name().to_string(),
        software: software_name(),
    })
}
