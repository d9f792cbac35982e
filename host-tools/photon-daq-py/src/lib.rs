//! The native module `photon_daq._native`: thin PyO3 classes over the euxfel and
//! h5daq crates. The visible API (EXtra-data's and sdaq's names) is the Python
//! package `photon_daq` around it.

use pyo3::prelude::*;

mod components;
mod daq;
mod run_data;
mod validation;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<run_data::Collection>()?;
    m.add_class::<run_data::Key>()?;
    m.add_class::<run_data::TrainBlocks>()?;
    m.add_function(wrap_pyfunction!(run_data::split_ranges, m)?)?;
    m.add_function(wrap_pyfunction!(validation::check_names, m)?)?;
    m.add_function(wrap_pyfunction!(validation::validate_file, m)?)?;
    m.add_function(wrap_pyfunction!(validation::validate_run, m)?)?;
    m.add_class::<components::Detector>()?;
    m.add_class::<components::ModKey>()?;
    m.add_function(wrap_pyfunction!(components::stack_detector_data, m)?)?;
    m.add_function(wrap_pyfunction!(
        components::identify_multimod_detectors,
        m
    )?)?;
    m.add_class::<daq::Job>()?;
    m.add_class::<daq::Daemon>()?;
    Ok(())
}
