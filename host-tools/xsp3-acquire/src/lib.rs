//! The rack-server acquisition process behind `xsp3-acquire`: sessions (engine, ring and sinks),
//! the live monitor, the control daemon and the frame-stream sender.

mod ack;
mod monitor;
mod request;
mod sender;
pub mod serve;
mod session;
mod settings;
mod strict_json;

pub use monitor::MonitorError;
pub use request::{prepare, AcqRequest, RequestError, Site, Span};
pub use sender::{StreamError, StreamKind};
pub use session::{
    run_session, DetectorFailure, FileSummary, Outcome, SessionConfig, SessionControl,
    SessionError, Status, Summary,
};
pub use settings::{ChannelValue, EventWidth, GoodThreshold, SettingSyntaxError, Window};

use acq_core::detector::{AcqParams, Detector};
use acq_core::engine::{Acquisition, Clock, EngineError};
use acq_core::geometry::{Geometry, GeometryError};
use sdk_shim::Xspress3;
use sender::StreamConfig;

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

/// Frames the engine reads from the SDK in one call at most.
const READ_BATCH: usize = 256;

/// The acquisition engine over `dev`, timestamping frames with `clock`.
pub fn new_engine<K: Clock>(
    dev: Xspress3,
    clock: K,
) -> Result<Acquisition<Xspress3, K>, EngineError> {
    Acquisition::new(dev, clock, READ_BATCH)
}

/// What files and stream headers record about an acquisition with `params` on `dev`.
fn describe(
    dev: &Xspress3,
    params: AcqParams,
    rois: Vec<xspress3::roi::Roi>,
) -> Result<AcqDescription, GeometryError> {
    let info = dev.info();
    let recording = dev.recording();
    Ok(AcqDescription {
        // The ROI count must fit u32: roi::build refuses more than MAX_ROIS names.
        geometry: Geometry::new(info.n_channels, recording.recorded_bins())?
            .with_rois(u32::try_from(rois.len()).unwrap_or(u32::MAX))?,
        recording,
        params,
        clock_hz: info.clock_hz,
        event_widths: info.event_widths.iter().copied().collect(),
        windows: dev.windows().to_vec(),
        good_thresholds: dev.good_thresholds().to_vec(),
        rois,
        backend: backend_name().to_string(),
        software: software_name(),
    })
}
