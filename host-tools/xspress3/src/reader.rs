//! Reads an Xspress3 acquisition file back (tests, tools, consistency checks).

use std::path::Path;

use hdf5::File;
use ndarray::{Array1, Array2, Array3};

use super::layout;

/// The datasets and key attributes of one file.
#[derive(Debug)]
pub struct AcqFile {
    pub data: Array3<u32>,
    /// The nine scalers in SDK order, each (N, n_channels).
    pub scalers: Vec<Array2<u32>>,
    pub dead_time_correction: Array2<f64>,
    pub dead_time_saturated: Array2<u8>,
    pub output_count_rate: Array2<f64>,
    pub frame_number: Array1<u64>,
    pub timestamp: Array1<u64>,
    pub event_width: Array1<u32>,
    /// `(first, count)` rows.
    pub lost_frame_ranges: Array2<u64>,
    pub frames_lost: u64,
    pub clock_hz: f64,
}

/// Reads every dataset of `path` (written and finished by [`super::AcqFileWriter`]).
pub fn read_acq_file(path: &Path) -> hdf5::Result<AcqFile> {
    let file = File::open(path)?;
    let det = file.group(layout::DETECTOR)?;
    let scalers = acq_core::geometry::Scaler::ALL
        .iter()
        .map(|s| det.dataset(s.name())?.read_2d())
        .collect::<hdf5::Result<Vec<_>>>()?;
    Ok(AcqFile {
        data: det.dataset(layout::DATA)?.read::<u32, ndarray::Ix3>()?,
        scalers,
        dead_time_correction: det.dataset(layout::DEAD_TIME_CORRECTION)?.read_2d()?,
        dead_time_saturated: det.dataset(layout::DEAD_TIME_SATURATED)?.read_2d()?,
        output_count_rate: det.dataset(layout::OUTPUT_COUNT_RATE)?.read_2d()?,
        frame_number: det.dataset(layout::FRAME_NUMBER)?.read_1d()?,
        timestamp: det.dataset(layout::TIMESTAMP)?.read_1d()?,
        event_width: det.dataset(layout::EVENT_WIDTH)?.read_1d()?,
        lost_frame_ranges: det.dataset(layout::LOST_FRAME_RANGES)?.read_2d()?,
        frames_lost: det.attr("frames_lost")?.read_scalar()?,
        clock_hz: det.attr("clock_hz")?.read_scalar()?,
    })
}
