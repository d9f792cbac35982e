//! `photon_daq._native` functions over euxfel's validation: the checks of
//! `extra-data-validate` (and those it lacks), run with the GIL released. The
//! Python side (`photon_daq.euxfel_validation`) gives them EXtra-data's classes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use euxfel::validation::{self, Checks, Problem};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A problem as `(message, {field: value})`, EXtra-data's dict without `msg`.
type PyProblem = (String, BTreeMap<String, String>);

fn to_py_problems(problems: Vec<Problem>) -> Vec<PyProblem> {
    problems.into_iter().map(|p| (p.msg, p.fields)).collect()
}

fn checks(skip: &[String]) -> PyResult<Checks> {
    Checks::skipping(skip).map_err(|unknown| {
        PyValueError::new_err(format!(
            "Unknown names passed to --skip: {}",
            unknown.join(", ")
        ))
    })
}

/// Every check name, EXtra-data's first.
#[pyfunction]
pub fn check_names() -> Vec<&'static str> {
    validation::check_names()
}

/// The problems of one file (opening it is part of the checks).
#[pyfunction]
pub fn validate_file(py: Python<'_>, path: PathBuf, skip: Vec<String>) -> PyResult<Vec<PyProblem>> {
    let checks = checks(&skip)?;
    let r = py.detach(|| validation::validate_file(&path, &checks));
    Ok(to_py_problems(r.problems))
}

/// The problems of a run directory: each file's (in name order, checked on
/// `threads` threads, 0: one per CPU), then the run's.
#[pyfunction]
pub fn validate_run(
    py: Python<'_>,
    path: PathBuf,
    skip: Vec<String>,
    threads: usize,
) -> PyResult<Vec<PyProblem>> {
    let checks = checks(&skip)?;
    py.detach(|| validation::validate_run(&path, &checks, threads, None, |_| {}))
        .map(|report| to_py_problems(report.problems()))
        .map_err(crate::run_data::to_py)
}
