//! `photon_daq._native` classes over the euxfel-components crate: a multi-module
//! detector and one key over all its modules. `photon_daq.components` builds
//! EXtra-data's `components` API on these; reads run with the GIL released and the
//! output buffer is handed to numpy without a copy.

use std::collections::{BTreeMap, BTreeSet};

use euxfel::DType;
use euxfel_components::{
    DetectorOptions, DetectorType, Error, FillValue, ModuleArray, MultiModDetector, MultiModKey,
    PulseSelection, Pulses, Roi, StackOptions, MAX_PULSES,
};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyException, PyIndexError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::run_data::{self, train_selection, Collection};

pyo3::import_exception!(photon_daq.exceptions, SourceNameError);

/// EXtra-data's exception class for each error, with its message.
fn to_py(e: Error) -> PyErr {
    match e {
        Error::Data(e) => run_data::to_py(e),
        Error::NoSources(pattern) => SourceNameError::new_err((pattern,)),
        Error::MissingInnerIds(_) | Error::InconsistentInnerIds(_) => {
            PyException::new_err(e.to_string())
        }
        Error::MultipleDetectors { .. }
        | Error::NoDetectorIdentified
        | Error::MultipleIdentified(_)
        | Error::MinModules(_)
        | Error::RawNotFound(_)
        | Error::InconsistentFrameCounts { .. }
        | Error::TooFewModules(_)
        | Error::EntriesPerTrain { .. }
        | Error::PulseSelection(_)
        | Error::ParallelGainFrames
        | Error::ParallelGainType(_)
        | Error::Roi(_)
        | Error::JungfrauModules
        | Error::ModuleBelowFirst { .. }
        | Error::VaryingFramesPerTrain(_)
        | Error::SplitArguments
        | Error::FillValue { .. }
        | Error::StackNoData
        | Error::PatternMismatch { .. }
        | Error::BadPattern { .. }
        | Error::MismatchedDtypes(_)
        | Error::MismatchedShapes(_)
        | Error::ArraySize { .. } => PyValueError::new_err(e.to_string()),
        Error::ModuleOutOfRange { .. } | Error::Axis { .. } => PyIndexError::new_err(e.to_string()),
        Error::UnsupportedDtype(_) | Error::Astype { .. } => PyTypeError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn detector_type(name: &str) -> PyResult<DetectorType> {
    DetectorType::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown detector type {name:?}")))
}

/// `(detector name, class name)` of each multi-module detector in the data.
#[pyfunction]
#[pyo3(signature = (coll, types=None))]
pub fn identify_multimod_detectors(
    py: Python<'_>,
    coll: &Collection,
    types: Option<Vec<String>>,
) -> PyResult<Vec<(String, &'static str)>> {
    let types = types
        .map(|v| {
            v.iter()
                .map(|n| detector_type(n))
                .collect::<PyResult<Vec<_>>>()
        })
        .transpose()?;
    let found =
        py.detach(|| euxfel_components::identify_multimod_detectors(coll.data(), types.as_deref()));
    Ok(found
        .into_iter()
        .map(|(name, t)| (name, t.class_name()))
        .collect())
}

/// The module sources of one detector (EXtra-data's `MultimodDetectorBase` core).
#[pyclass(frozen, module = "photon_daq._native")]
pub struct Detector {
    det: MultiModDetector,
}

fn availability<'py>(
    py: Python<'py>,
    (shape, flags): (Vec<usize>, Vec<bool>),
) -> PyResult<Bound<'py, PyArray2<bool>>> {
    let cols = shape.get(1).copied().unwrap_or(0);
    let rows: Vec<Vec<bool>> = if cols == 0 {
        vec![Vec::new(); shape.first().copied().unwrap_or(0)]
    } else {
        flags.chunks(cols).map(<[bool]>::to_vec).collect()
    };
    PyArray2::from_vec2(py, &rows).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

#[pymethods]
impl Detector {
    /// Find the detector's sources in `coll`; also returns the warnings (raw fallback).
    #[staticmethod]
    #[pyo3(signature = (coll, kind, detector_name, modules, min_modules, raw, n_modules, first_modno, parallel_gain))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        coll: &Collection,
        kind: &str,
        detector_name: Option<String>,
        modules: Option<Vec<usize>>,
        min_modules: usize,
        raw: Option<bool>,
        n_modules: Option<usize>,
        first_modno: usize,
        parallel_gain: bool,
    ) -> PyResult<(Detector, Vec<String>)> {
        let opts = DetectorOptions {
            detector_name,
            modules: modules.map(|m| m.into_iter().collect::<BTreeSet<_>>()),
            min_modules,
            raw,
            n_modules,
            first_modno,
            parallel_gain,
        };
        let kind = detector_type(kind)?;
        let det = py
            .detach(|| MultiModDetector::new(kind, coll.data(), &opts))
            .map_err(to_py)?;
        let w = det.warnings().iter().map(|w| w.to_string()).collect();
        Ok((Detector { det }, w))
    }

    #[getter]
    fn detector_name(&self) -> &str {
        &self.det.detector_name
    }

    #[getter]
    fn n_modules(&self) -> usize {
        self.det.n_modules
    }

    #[getter]
    fn source_to_modno(&self) -> BTreeMap<String, usize> {
        self.det.source_to_modno.clone()
    }

    /// The selected data (the module sources, trains with enough modules).
    fn data(&self) -> Collection {
        Collection::from_data(self.det.data.clone())
    }

    fn train_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, self.det.train_ids())
    }

    fn frame_counts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, self.det.frame_counts())
    }

    fn train_ids_perframe<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.det.train_ids_perframe().into_pyarray(py)
    }

    /// Whether every module source holds raw data (EXtra-data's repr: raw / proc).
    fn is_raw(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| {
            for s in self.det.source_to_modno.keys() {
                if !self.det.kind.data_is_raw(&self.det.data, s)? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .map_err(to_py)
    }

    fn frames_per_train(&self) -> PyResult<u64> {
        self.det.frames_per_train().map_err(to_py)
    }

    fn data_availability<'py>(
        &self,
        py: Python<'py>,
        module_gaps: bool,
    ) -> PyResult<Bound<'py, PyArray2<bool>>> {
        let a = py
            .detach(|| self.det.data_availability(module_gaps))
            .map_err(to_py)?;
        availability(py, a)
    }

    /// A train selection as `run_data`'s `(kind, value)`; no warnings of its own.
    fn select_trains(
        &self,
        py: Python<'_>,
        kind: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<(Detector, Vec<String>)> {
        let sel = train_selection(kind, value)?;
        py.detach(|| self.det.select_trains(&sel))
            .map(|det| (Detector { det }, Vec::new()))
            .map_err(to_py)
    }

    #[pyo3(signature = (parts=None, trains_per_part=None, frames_per_part=None))]
    fn split_trains(
        &self,
        py: Python<'_>,
        parts: Option<usize>,
        trains_per_part: Option<usize>,
        frames_per_part: Option<u64>,
    ) -> PyResult<Vec<Detector>> {
        py.detach(|| {
            self.det
                .split_trains(parts, trains_per_part, frames_per_part)
        })
        .map(|v| v.into_iter().map(|det| Detector { det }).collect())
        .map_err(to_py)
    }

    fn key(&self, py: Python<'_>, key: &str) -> PyResult<ModKey> {
        py.detach(|| self.det.key(key))
            .map(|key| ModKey { key })
            .map_err(to_py)
    }
}

/// One key over all modules (EXtra-data's `MultimodKeyData` core).
#[pyclass(frozen, module = "photon_daq._native")]
pub struct ModKey {
    key: MultiModKey,
}

/// A pulse selection from Python: `("all", None)`, `("index" | "id", (start, stop,
/// step))` (stop None: to `MAX_PULSES`) or `("index" | "id", [pulses])`.
fn pulse_selection(kind: &str, value: &Bound<'_, PyAny>) -> PyResult<PulseSelection> {
    let pulses = || -> PyResult<Pulses> {
        if let Ok((start, stop, step)) = value.extract::<(u64, Option<u64>, u64)>() {
            return Ok(Pulses::Slice {
                start,
                stop: stop.unwrap_or(MAX_PULSES),
                step,
            });
        }
        Ok(Pulses::List(value.extract()?))
    };
    Ok(match kind {
        "all" => PulseSelection::All,
        "index" => PulseSelection::ByIndex(pulses()?),
        "id" => PulseSelection::ById(pulses()?),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown pulse selection kind {other:?}"
            )))
        }
    })
}

/// The dtype named by numpy's protocol string (`<f4`), for `ndarray(astype=...)`.
fn dtype_from_descr(descr: &str) -> PyResult<DType> {
    let (kind, size) = descr.split_at(descr.len().min(2));
    let size: usize = size
        .parse()
        .map_err(|_| PyTypeError::new_err(format!("unsupported dtype {descr:?}")))?;
    Ok(match kind.trim_start_matches(['<', '|', '=']) {
        "f" => DType::Float(size),
        "i" => DType::Int(size),
        "u" => DType::UInt(size),
        "b" => DType::Bool,
        _ => return Err(PyTypeError::new_err(format!("unsupported dtype {descr:?}"))),
    })
}

fn fill_value(v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<FillValue>> {
    let Some(v) = v.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if let Ok(i) = v.extract::<i128>() {
        return Ok(Some(FillValue::Int(i)));
    }
    Ok(Some(FillValue::Float(v.extract::<f64>()?)))
}

#[pymethods]
impl ModKey {
    #[getter]
    fn key(&self) -> &str {
        &self.key.key
    }

    #[getter]
    fn modules(&self) -> Vec<usize> {
        self.key.modules()
    }

    /// numpy's protocol string of the dtype (`<u2`).
    #[getter]
    fn dtype(&self) -> PyResult<String> {
        let d = self.key.dtype().map_err(to_py)?;
        Ok(d.npy_descr().unwrap_or_else(|| d.numpy_name()))
    }

    fn shape(&self, py: Python<'_>, module_gaps: bool) -> PyResult<Vec<usize>> {
        py.detach(|| self.key.buffer_shape(module_gaps))
            .map_err(to_py)
    }

    #[getter]
    fn entry_shape(&self) -> PyResult<Vec<usize>> {
        self.key.entry_shape().map_err(to_py)
    }

    #[getter]
    fn dimensions(&self) -> PyResult<Vec<String>> {
        self.key.dimensions().map_err(to_py)
    }

    fn select_trains(
        &self,
        py: Python<'_>,
        kind: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<(ModKey, Vec<String>)> {
        let sel = train_selection(kind, value)?;
        py.detach(|| self.key.select_trains(&sel))
            .map(|key| (ModKey { key }, Vec::new()))
            .map_err(to_py)
    }

    fn select_pulses(
        &self,
        py: Python<'_>,
        kind: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<ModKey> {
        let sel = pulse_selection(kind, value)?;
        py.detach(|| self.key.select_pulses(sel))
            .map(|key| ModKey { key })
            .map_err(to_py)
    }

    /// A region of interest in numpy's index syntax without brackets (`0:64,::2`).
    fn select_roi(&self, py: Python<'_>, roi: &str) -> PyResult<ModKey> {
        let roi: Roi = roi.parse().map_err(to_py)?;
        py.detach(|| self.key.select_roi(roi))
            .map(|key| ModKey { key })
            .map_err(to_py)
    }

    fn train_id_coordinates<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        py.detach(|| self.key.train_id_coordinates())
            .into_pyarray(py)
    }

    fn pulse_id_coordinates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        py.detach(|| self.key.pulse_id_coordinates())
            .map(|v| v.into_pyarray(py))
            .map_err(to_py)
    }

    fn cell_id_coordinates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        py.detach(|| self.key.cell_id_coordinates())
            .map(|v| v.into_pyarray(py))
            .map_err(to_py)
    }

    fn data_availability<'py>(
        &self,
        py: Python<'py>,
        module_gaps: bool,
    ) -> PyResult<Bound<'py, PyArray2<bool>>> {
        let a = py
            .detach(|| self.key.data_availability(module_gaps))
            .map_err(to_py)?;
        availability(py, a)
    }

    /// All selected data: `(dtype descr, shape, bytes)`; the bytes are the output
    /// buffer itself, handed to numpy without a copy (viewed and reshaped in Python).
    #[pyo3(signature = (fill_value=None, astype=None, module_gaps=false))]
    fn ndarray<'py>(
        &self,
        py: Python<'py>,
        fill_value: Option<&Bound<'py, PyAny>>,
        astype: Option<&str>,
        module_gaps: bool,
    ) -> PyResult<(String, Vec<usize>, Bound<'py, PyArray1<u8>>)> {
        let fill = self::fill_value(fill_value)?;
        let astype = astype.map(dtype_from_descr).transpose()?;
        let out = py
            .detach(|| match &astype {
                Some(t) => self.key.ndarray_bytes_as(t, fill, module_gaps),
                None => self.key.ndarray_bytes(fill, module_gaps),
            })
            .map_err(to_py)?;
        let descr = out
            .dtype
            .npy_descr()
            .unwrap_or_else(|| out.dtype.numpy_name());
        Ok((descr, out.shape, out.data.into_pyarray(py)))
    }
}

/// One module's array from Python: numpy's dtype descr, shape and C-order bytes.
type ModuleBytes<'py> = (String, Vec<usize>, PyReadonlyArray1<'py, u8>);

/// EXtra-data's `stack_detector_data` over one train: `train` maps each source to its
/// array of `key` (None where the source lacks it); returns `(descr, shape, bytes)`.
#[pyfunction]
#[pyo3(signature = (train, key, axis, modules, fill_value, pattern, starts_at))]
#[allow(clippy::too_many_arguments)]
pub fn stack_detector_data<'py>(
    py: Python<'py>,
    train: BTreeMap<String, Option<ModuleBytes<'py>>>,
    key: &str,
    axis: isize,
    modules: usize,
    fill_value: Option<&Bound<'py, PyAny>>,
    pattern: String,
    starts_at: i64,
) -> PyResult<(String, Vec<usize>, Bound<'py, PyArray1<u8>>)> {
    let mut dtypes = BTreeMap::new();
    for (src, a) in &train {
        if let Some((descr, _, _)) = a {
            dtypes.insert(src.clone(), dtype_from_descr(descr)?);
        }
    }
    let mut arrays: BTreeMap<String, BTreeMap<String, ModuleArray<'_>>> = BTreeMap::new();
    for (src, a) in &train {
        let mut keys = BTreeMap::new();
        if let (Some((_, shape, data)), Some(dtype)) = (a, dtypes.get(src)) {
            let data = data
                .as_slice()
                .map_err(|_| PyValueError::new_err("module arrays must be C-contiguous"))?;
            keys.insert(key.to_string(), ModuleArray { dtype, shape, data });
        }
        arrays.insert(src.clone(), keys);
    }
    let opts = StackOptions {
        axis,
        modules,
        fill: self::fill_value(fill_value)?,
        pattern,
        starts_at,
    };
    let out = py
        .detach(|| euxfel_components::stack_detector_data(&arrays, key, &opts))
        .map_err(to_py)?;
    let descr = out
        .dtype
        .npy_descr()
        .unwrap_or_else(|| out.dtype.numpy_name());
    Ok((descr, out.shape, out.data.into_pyarray(py)))
}
