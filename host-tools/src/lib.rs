//! Host-side tools of the photon-science DAQ workspace.
//!
//! - [`acquire`]: the Xspress3 acquisition process (sessions, monitor, control daemon).
//! - [`euxfel`]: European XFEL run data (read, list, validate, extract).
//! - [`daq`]: H5DAQ-style scheduled jobs appending sampled values to HDF5 groups.
//! - [`stream`]: the Xspress3 frame stream (wire format, sender, receiver).
//! - [`xspress3`]: the Xspress3 acquisition file layout, writer and reader.

pub mod acquire;
pub mod daq;
pub mod euxfel;
mod h5attrs;
pub mod stream;
pub mod xspress3;
