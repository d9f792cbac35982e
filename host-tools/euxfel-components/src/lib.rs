//! EuXFEL multi-module detectors, as EXtra-data's `components`, `stacking` and `write_cxi`.
//!
//! - [`DetectorType`]: AGIPD 1M / 500K, DSSC 1M, LPD 1M / Solo, JUNGFRAU: module counts and
//!   shapes, source-name patterns; [`identify_multimod_detectors`].
//! - [`MultiModDetector`]: the module sources of one detector in a collection, the frames of
//!   each train (consistent across modules), trains with at least `min_modules` modules.
//! - [`MultiModKey`]: one key over all modules, shape `(modules, frames, ...)`, pulse
//!   selection, reads straight into the output (modules in parallel), fill values,
//!   train/pulse/cell coordinates, data availability, a region of interest ([`Roi`]) of
//!   each frame.
//! - [`stack_detector_data`]: one train's module arrays stacked along a new axis.
//! - [`cxi`]: the virtual CXI file of `extra-data-make-virtual-cxi`.

mod astype;
pub mod cxi;
mod detector;
mod error;
mod fill;
mod key;
mod multimod;
mod output;
mod roi;
mod stack;

pub use detector::{
    identify_multimod_detectors, identify_single_detector, DetectorType, RawOrCorrected,
};
pub use error::{Error, Result};
pub use fill::FillValue;
pub use key::{MultiModKey, PulseSelection, Pulses, StackedArray, MAX_PULSES, NO_PULSE_ID};
pub use multimod::{ComponentWarning, DetectorOptions, MultiModDetector};
pub use output::zeroed_vec;
pub use roi::{Roi, RoiAxis};
pub use stack::{stack_detector_data, ModuleArray, StackOptions};
