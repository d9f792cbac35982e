//! Host-side tools of the photon-science DAQ workspace.
//!
//! - [`euxfel`]: European XFEL run data (read, list, validate, extract).
//! - [`daq`]: H5DAQ-style scheduled jobs appending sampled values to HDF5 groups.

pub mod daq;
pub mod euxfel;
