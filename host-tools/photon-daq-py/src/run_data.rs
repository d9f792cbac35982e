//! `photon_daq._native` classes over the euxfel crate. The Python package
//! (`photon_daq.euxfel`) builds EXtra-data's API on these; everything here is file
//! work, run with the GIL released, and array hand-over without copies.

use std::collections::BTreeMap;
use std::path::PathBuf;

use euxfel::display::{info, InfoOptions};
use euxfel::{DType, DataCollection, Error, FileAccess, KeyData, OpenOptions};
use euxfel::{TrainData, TrainSelection, TrainValue, Warning};
use numpy::ndarray::IxDyn;
use numpy::{IntoPyArray, PyArray, PyArray1, PyArrayMethods, PyReadwriteArray1};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

pyo3::import_exception!(photon_daq.exceptions, SourceNameError);
pyo3::import_exception!(photon_daq.exceptions, PropertyNameError);
pyo3::import_exception!(photon_daq.exceptions, TrainIDError);
pyo3::import_exception!(photon_daq.exceptions, FileStructureError);

/// EXtra-data's exception for each error, built from the error's fields so the
/// text is EXtra-data's (not the Rust message).
pub(crate) fn to_py(e: Error) -> PyErr {
    match e {
        Error::SourceName { source_name, .. } => SourceNameError::new_err((source_name,)),
        Error::KeyName {
            source_name, key, ..
        } => PropertyNameError::new_err((key, source_name)),
        Error::TrainId(t) => TrainIDError::new_err((t,)),
        Error::NoFiles { dir, pattern } => PyFileNotFoundError::new_err(format!(
            "No HDF5 files found in {} with glob pattern {pattern}",
            dir.display()
        )),
        Error::NoMatch {
            source_glob,
            key_glob,
        } => PyValueError::new_err(format!(
            "No matches for pattern ({}, {})",
            py_str_repr(&source_glob),
            py_str_repr(&key_glob)
        )),
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        Error::NotHdf5 { .. } => PyOSError::new_err(e.to_string()),
        Error::AllUnusable(_) => PyOSError::new_err("All HDF5 files specified are unusable"),
        Error::FileStructure { .. } | Error::Missing { .. } | Error::IndexOutsideData { .. } => {
            FileStructureError::new_err(e.to_string())
        }
        Error::TrainIndex { .. }
        | Error::SliceStepZero
        | Error::SplitArguments(_)
        | Error::SourceConflict { .. }
        | Error::BufferSize { .. } => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// A write error: reading errors as [`to_py`] gives them, file errors as OSError.
fn write_to_py(e: euxfel_write::Error) -> PyErr {
    use euxfel_write::Error as W;
    match e {
        W::Read(e) => to_py(e),
        W::EmptySelection | W::NoTrains => PyValueError::new_err(e.to_string()),
        W::Io { .. } | W::NoSpace { .. } | W::Exists(_) | W::Hdf5 { .. } => {
            PyOSError::new_err(e.to_string())
        }
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Python's `repr()` of a str without quotes or backslashes inside (glob patterns).
fn py_str_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{s}'")
    }
}

fn warnings_text(w: &[Warning]) -> Vec<String> {
    w.iter().map(|w| w.to_string()).collect()
}

/// A train selection passed from Python as `(kind, value)`: `("id_range", (start,
/// stop))`, `("id_list", [ids])`, `("index_range", (start, stop, step))`,
/// `("index_list", [positions])`.
pub(crate) fn train_selection(kind: &str, value: &Bound<'_, PyAny>) -> PyResult<TrainSelection> {
    Ok(match kind {
        "id_range" => {
            let (a, b): (Option<u64>, Option<u64>) = value.extract()?;
            TrainSelection::IdRange(a, b)
        }
        "id_list" => TrainSelection::IdList(value.extract()?),
        "index_range" => {
            let (a, b, c): (Option<i64>, Option<i64>, Option<i64>) = value.extract()?;
            TrainSelection::IndexRange(a, b, c)
        }
        "index_list" => TrainSelection::IndexList(value.extract()?),
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown train selection kind {other:?}"
            )))
        }
    })
}

/// EXtra-data's split arithmetic: `(start, stop)` positions of each part.
#[pyfunction]
#[pyo3(signature = (n_trains, parts=None, trains_per_part=None))]
pub fn split_ranges(
    n_trains: usize,
    parts: Option<usize>,
    trains_per_part: Option<usize>,
) -> PyResult<Vec<(usize, usize)>> {
    euxfel::split_ranges(n_trains, parts, trains_per_part)
        .map(|r| r.into_iter().map(|r| (r.start, r.end)).collect())
        .map_err(to_py)
}

/// A collection of files (EXtra-data's `DataCollection` without the Python sugar).
#[pyclass(frozen, module = "photon_daq._native")]
pub struct Collection {
    dc: DataCollection,
}

impl Collection {
    pub(crate) fn data(&self) -> &DataCollection {
        &self.dc
    }

    pub(crate) fn from_data(dc: DataCollection) -> Collection {
        Collection { dc }
    }
}

type Opened = (Collection, Vec<String>);

fn opened(dc: DataCollection) -> Opened {
    let w = warnings_text(dc.warnings());
    (Collection { dc }, w)
}

#[pymethods]
impl Collection {
    /// Open a run directory; also returns the warnings (files skipped).
    #[staticmethod]
    fn open_run(
        py: Python<'_>,
        path: PathBuf,
        include: String,
        inc_suspect_trains: bool,
        parallelize: bool,
    ) -> PyResult<Opened> {
        let opts = OpenOptions {
            include,
            inc_suspect_trains,
            threads: if parallelize { 0 } else { 1 },
            ..OpenOptions::default()
        };
        py.detach(|| DataCollection::open_run(&path, &opts))
            .map(opened)
            .map_err(to_py)
    }

    /// Open one file.
    #[staticmethod]
    fn open_file(py: Python<'_>, path: PathBuf, inc_suspect_trains: bool) -> PyResult<Opened> {
        py.detach(|| {
            let f = FileAccess::open(&path)?;
            DataCollection::from_files(vec![f], inc_suspect_trains, true)
        })
        .map(opened)
        .map_err(to_py)
    }

    /// Open several files as one collection.
    #[staticmethod]
    fn from_paths(
        py: Python<'_>,
        paths: Vec<PathBuf>,
        inc_suspect_trains: bool,
    ) -> PyResult<Opened> {
        let opts = OpenOptions {
            inc_suspect_trains,
            ..OpenOptions::default()
        };
        py.detach(|| DataCollection::from_paths(&paths, &opts))
            .map(opened)
            .map_err(to_py)
    }

    fn train_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, &self.dc.train_ids)
    }

    fn control_sources(&self) -> Vec<String> {
        self.dc.control_sources().into_iter().collect()
    }

    fn instrument_sources(&self) -> Vec<String> {
        self.dc.instrument_sources().into_iter().collect()
    }

    fn legacy_sources(&self) -> BTreeMap<String, String> {
        self.dc.legacy_sources()
    }

    /// `(path, format version)` of each file.
    fn files(&self, py: Python<'_>) -> PyResult<Vec<(PathBuf, String)>> {
        py.detach(|| {
            self.dc
                .files
                .iter()
                .map(|f| Ok((f.path.clone(), f.format_version()?)))
                .collect::<euxfel::Result<Vec<_>>>()
        })
        .map_err(to_py)
    }

    fn is_single_run(&self) -> bool {
        self.dc.is_single_run
    }

    fn inc_suspect_trains(&self) -> bool {
        self.dc.inc_suspect_trains
    }

    /// Selected keys per source (None: all keys).
    fn selection(&self) -> BTreeMap<String, Option<Vec<String>>> {
        self.dc
            .selection()
            .into_iter()
            .map(|(s, k)| (s, k.map(|k| k.into_iter().collect())))
            .collect()
    }

    fn keys(&self, py: Python<'_>, source: &str, inc_timestamps: bool) -> PyResult<Vec<String>> {
        py.detach(|| self.dc.source(source)?.keys(inc_timestamps))
            .map(|k| k.into_iter().collect())
            .map_err(to_py)
    }

    fn has_key(&self, py: Python<'_>, source: &str, key: &str) -> PyResult<bool> {
        py.detach(|| self.dc.source(source)?.has_key(key))
            .map_err(to_py)
    }

    fn index_groups(&self, py: Python<'_>, source: &str) -> PyResult<Vec<String>> {
        py.detach(|| self.dc.source(source)?.index_groups())
            .map(|k| k.into_iter().collect())
            .map_err(to_py)
    }

    fn data_counts<'py>(
        &self,
        py: Python<'py>,
        source: &str,
        index_group: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        py.detach(|| self.dc.source(source)?.data_counts(index_group))
            .map(|v| v.into_pyarray(py))
            .map_err(to_py)
    }

    fn key(&self, py: Python<'_>, source: &str, key: &str) -> PyResult<Key> {
        py.detach(|| self.dc.key(source, key))
            .map(|kd| Key { kd })
            .map_err(to_py)
    }

    fn select(
        &self,
        py: Python<'_>,
        patterns: Vec<(String, String)>,
        require_all: bool,
        require_any: bool,
    ) -> PyResult<Collection> {
        py.detach(|| self.dc.select(&patterns, require_all, require_any))
            .map(|dc| Collection { dc })
            .map_err(to_py)
    }

    /// Exact names: `{source: keys or None}`.
    fn select_exact(
        &self,
        py: Python<'_>,
        selection: BTreeMap<String, Option<std::collections::BTreeSet<String>>>,
    ) -> PyResult<Collection> {
        py.detach(|| self.dc.select_exact(&selection))
            .map(|dc| Collection { dc })
            .map_err(to_py)
    }

    fn deselect(&self, py: Python<'_>, patterns: Vec<(String, String)>) -> PyResult<Collection> {
        py.detach(|| self.dc.deselect(&patterns))
            .map(|dc| Collection { dc })
            .map_err(to_py)
    }

    fn select_trains(
        &self,
        py: Python<'_>,
        kind: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<Opened> {
        let sel = train_selection(kind, value)?;
        py.detach(|| self.dc.select_trains(&sel))
            .map(opened)
            .map_err(to_py)
    }

    fn union(&self, py: Python<'_>, others: Vec<Py<Collection>>) -> PyResult<Collection> {
        let refs: Vec<&DataCollection> = others.iter().map(|o| &o.get().dc).collect();
        py.detach(|| self.dc.union(&refs))
            .map(|dc| Collection { dc })
            .map_err(to_py)
    }

    /// EXtra-data's `write` (a copy) or, with `virtual_`, `write_virtual`: the
    /// selection into one file, replacing it if it exists (as h5py's mode "w").
    #[pyo3(signature = (path, virtual_))]
    fn write(&self, py: Python<'_>, path: PathBuf, virtual_: bool) -> PyResult<()> {
        let opts = euxfel_write::WriteOptions {
            overwrite: true,
            ..euxfel_write::WriteOptions::default()
        };
        py.detach(|| {
            if virtual_ {
                euxfel_write::write_virtual(&self.dc, &path, &opts, &mut |_| {})
            } else {
                euxfel_write::write(&self.dc, &path, &opts, &mut |_| {})
            }
        })
        .map(|_| ())
        .map_err(write_to_py)
    }

    /// The text of `info()` and its warnings.
    fn info(
        &self,
        py: Python<'_>,
        details_for_sources: Vec<String>,
        counts: bool,
        group_sources: bool,
        with_aggregators: bool,
        with_auxiliary: bool,
    ) -> PyResult<(String, Vec<String>)> {
        let opts = InfoOptions {
            details_for_sources,
            counts,
            group_sources,
            with_aggregators,
            with_auxiliary,
        };
        py.detach(|| info(&self.dc, &opts))
            .map(|(text, w)| (text, warnings_text(&w)))
            .map_err(to_py)
    }

    /// One train: `{source: {key: value}}`, values as [`train_value`] gives them.
    fn train_from_id<'py>(&self, py: Python<'py>, tid: u64) -> PyResult<Bound<'py, PyDict>> {
        let data = py.detach(|| self.dc.train_from_id(tid)).map_err(to_py)?;
        train_dict(py, data)
    }

    /// The block reader behind `trains()` (every selected key, timestamps included).
    fn train_blocks(&self, py: Python<'_>) -> PyResult<TrainBlocks> {
        let keys = py
            .detach(|| -> euxfel::Result<Vec<BlockKey>> {
                let mut keys = Vec::new();
                for name in self.dc.all_sources() {
                    let sd = self.dc.source(&name)?;
                    for k in sd.keys(true)? {
                        keys.push(BlockKey::new(name.clone(), sd.key(&k)?));
                    }
                }
                Ok(keys)
            })
            .map_err(to_py)?;
        Ok(TrainBlocks {
            train_ids: self.dc.train_ids.to_vec(),
            keys,
        })
    }
}

/// One value of a train: `(dtype descr, shape, uint8 array)` for fixed-size data
/// (the Python side views it as the dtype, no copy), or a list of str.
fn train_value<'py>(py: Python<'py>, v: TrainValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        TrainValue::Array {
            dtype,
            shape,
            bytes,
        } => {
            let descr = dtype.npy_descr().unwrap_or_else(|| dtype.numpy_name());
            (descr, shape, bytes.into_pyarray(py))
                .into_pyobject(py)?
                .into_any()
        }
        TrainValue::Strings(s) => PyList::new(py, s)?.into_any(),
    })
}

fn train_dict(py: Python<'_>, data: TrainData) -> PyResult<Bound<'_, PyDict>> {
    let out = PyDict::new(py);
    for (src, keys) in data {
        let d = PyDict::new(py);
        for (k, v) in keys {
            d.set_item(k, train_value(py, v)?)?;
        }
        out.set_item(src, d)?;
    }
    Ok(out)
}

/// Reader behind `DataCollection.trains()`: reads a block of trains with one read
/// per key (not one per key and train) and the GIL released; the Python side slices
/// each train's values out of the block arrays as views.
#[pyclass(frozen, module = "photon_daq._native")]
pub struct TrainBlocks {
    train_ids: Vec<u64>,
    keys: Vec<BlockKey>,
}

struct BlockKey {
    /// Source name as selected (possibly a legacy name).
    source: String,
    kd: KeyData,
    /// Where a block's entries are without a train selection per block (which
    /// costs a pass over all the key's trains): the trains with data in data
    /// order and their cumulative entry offsets (one more). `None` for strings
    /// and for data whose train IDs do not increase.
    entries: Option<(Vec<u64>, Vec<u64>)>,
}

impl BlockKey {
    fn new(source: String, kd: KeyData) -> BlockKey {
        let runs = kd.train_counts_in_data_order();
        let increasing = runs.windows(2).all(|w| w[0].0 < w[1].0);
        let entries = (kd.dtype != DType::VlenStr && increasing).then(|| {
            let mut cum = Vec::with_capacity(runs.len() + 1);
            cum.push(0u64);
            for &(_, n) in &runs {
                cum.push(cum[cum.len() - 1].saturating_add(n));
            }
            (runs.into_iter().map(|(t, _)| t).collect(), cum)
        });
        BlockKey {
            source,
            kd,
            entries,
        }
    }
}

/// One key's data for a block of trains: entries per train and the values.
type KeyBlock = (String, String, Vec<u64>, BlockValues);

enum BlockValues {
    /// numpy dtype descr, entry shape, the block's entries as bytes.
    Array(String, Vec<usize>, Vec<u8>),
    Strings(Vec<String>),
}

impl TrainBlocks {
    fn read_key(bk: &BlockKey, tids: &[u64]) -> euxfel::Result<Option<KeyBlock>> {
        let (Some(&first), Some(&last)) = (tids.first(), tids.last()) else {
            return Ok(None);
        };
        let kd = &bk.kd;
        let descr = || {
            kd.dtype
                .npy_descr()
                .unwrap_or_else(|| kd.dtype.numpy_name())
        };
        let (counts, values) = match &bk.entries {
            Some((data_tids, cum)) => {
                let a = data_tids.partition_point(|&t| t < first);
                let b = data_tids.partition_point(|&t| t <= last);
                if cum[a] == cum[b] {
                    return Ok(None);
                }
                // Both lists increase: one merge pass gives each block train's count.
                let mut counts = vec![0u64; tids.len()];
                let mut j = a;
                for (c, &t) in counts.iter_mut().zip(tids) {
                    while j < b && data_tids[j] < t {
                        j += 1;
                    }
                    if j < b && data_tids[j] == t {
                        *c = cum[j + 1] - cum[j];
                        j += 1;
                    }
                }
                let bytes = kd.read_entries(cum[a]..cum[b])?;
                (
                    counts,
                    BlockValues::Array(descr(), kd.entry_shape.clone(), bytes),
                )
            }
            None => {
                let sel = TrainSelection::IdRange(Some(first), last.checked_add(1));
                let kb = kd.select_trains(&sel)?;
                let by_tid: BTreeMap<u64, u64> = kb
                    .train_ids
                    .iter()
                    .copied()
                    .zip(kb.data_counts()?)
                    .collect();
                // Counts per train of this block (the selection can skip trains of the range).
                let counts: Vec<u64> = tids
                    .iter()
                    .map(|t| by_tid.get(t).copied().unwrap_or(0))
                    .collect();
                if counts.iter().all(|&c| c == 0) {
                    return Ok(None);
                }
                let values = if kd.dtype == DType::VlenStr {
                    BlockValues::Strings(kb.read_strings()?)
                } else {
                    BlockValues::Array(descr(), kd.entry_shape.clone(), kb.read_bytes()?)
                };
                (counts, values)
            }
        };
        Ok(Some((bk.source.clone(), kd.key.clone(), counts, values)))
    }
}

#[pymethods]
impl TrainBlocks {
    /// Estimated bytes per train over all keys, to size the blocks.
    fn bytes_per_train(&self) -> u64 {
        let n = self.train_ids.len().max(1) as u64;
        self.keys
            .iter()
            .map(|bk| bk.kd.nbytes().unwrap_or(0) / n)
            .sum()
    }

    /// Keys with data in trains `start..stop` (positions):
    /// `[(source, key, counts, values)]`, values `(dtype descr, entry shape, uint8
    /// array of all the block's entries)` or a list of str.
    fn read<'py>(
        &self,
        py: Python<'py>,
        start: usize,
        stop: usize,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let tids = self
            .train_ids
            .get(start..stop.min(self.train_ids.len()))
            .unwrap_or(&[]);
        let blocks = py
            .detach(|| -> euxfel::Result<Vec<KeyBlock>> {
                let mut out = Vec::with_capacity(self.keys.len());
                for bk in &self.keys {
                    out.extend(Self::read_key(bk, tids)?);
                }
                Ok(out)
            })
            .map_err(to_py)?;
        blocks
            .into_iter()
            .map(|(src, key, counts, values)| {
                let v = match values {
                    BlockValues::Array(descr, entry_shape, bytes) => {
                        (descr, entry_shape, bytes.into_pyarray(py))
                            .into_pyobject(py)?
                            .into_any()
                    }
                    BlockValues::Strings(s) => PyList::new(py, s)?.into_any(),
                };
                PyTuple::new(
                    py,
                    [
                        src.into_pyobject(py)?.into_any(),
                        key.into_pyobject(py)?.into_any(),
                        counts.into_pyobject(py)?.into_any(),
                        v,
                    ],
                )
            })
            .collect()
    }
}

/// One key of one source (EXtra-data's `KeyData` core).
#[pyclass(frozen, module = "photon_daq._native")]
pub struct Key {
    kd: KeyData,
}

/// Typed read into a new `numpy.zeros` array: numpy's calloc gives pages that are
/// zero until written (unallocated chunks are not written) and asks for huge pages
/// for big arrays (fewer page faults than 4 KiB pages of a Rust buffer).
fn read_typed<'py, T: euxfel::Element + numpy::Element>(
    py: Python<'py>,
    kd: &KeyData,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = PyArray::<T, IxDyn>::zeros(py, kd.shape(), false);
    {
        let mut rw = arr.readwrite();
        let buf = rw
            .as_slice_mut()
            .map_err(|_| PyRuntimeError::new_err("numpy.zeros gave a non-contiguous array"))?;
        py.detach(|| kd.read_into_zeroed(buf)).map_err(to_py)?;
    }
    Ok(arr.into_any())
}

#[pymethods]
impl Key {
    #[getter]
    fn source(&self) -> &str {
        &self.kd.source
    }

    #[getter]
    fn key(&self) -> &str {
        &self.kd.key
    }

    #[getter]
    fn section(&self) -> &'static str {
        self.kd.section.as_str()
    }

    /// numpy's name for the dtype (`<f4`, `|b1`, `object` ...).
    #[getter]
    fn dtype(&self) -> String {
        self.kd
            .dtype
            .npy_descr()
            .unwrap_or_else(|| self.kd.dtype.numpy_name())
    }

    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.kd.shape()
    }

    #[getter]
    fn entry_shape(&self) -> Vec<usize> {
        self.kd.entry_shape.clone()
    }

    #[getter]
    fn nbytes(&self) -> Option<u64> {
        self.kd.nbytes()
    }

    fn train_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        PyArray1::from_slice(py, &self.kd.train_ids)
    }

    fn file_paths(&self) -> Vec<PathBuf> {
        self.kd.files.iter().map(|f| f.path.clone()).collect()
    }

    fn data_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        py.detach(|| self.kd.data_counts())
            .map(|v| v.into_pyarray(py))
            .map_err(to_py)
    }

    fn train_id_coordinates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        py.detach(|| self.kd.train_id_coordinates())
            .map(|v| v.into_pyarray(py))
            .map_err(to_py)
    }

    /// All selected data as a new array (bool as uint8, strings as a list).
    fn read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let kd = &self.kd;
        match kd.dtype {
            DType::Bool | DType::UInt(1) => read_typed::<u8>(py, kd),
            DType::Int(1) => read_typed::<i8>(py, kd),
            DType::UInt(2) => read_typed::<u16>(py, kd),
            DType::Int(2) => read_typed::<i16>(py, kd),
            DType::UInt(4) => read_typed::<u32>(py, kd),
            DType::Int(4) => read_typed::<i32>(py, kd),
            DType::UInt(8) => read_typed::<u64>(py, kd),
            DType::Int(8) => read_typed::<i64>(py, kd),
            DType::Float(4) => read_typed::<f32>(py, kd),
            DType::Float(8) => read_typed::<f64>(py, kd),
            DType::VlenStr | DType::FixedStr(_) => {
                let s = py.detach(|| kd.read_strings()).map_err(to_py)?;
                Ok(PyList::new(py, s)?.into_any())
            }
            _ => {
                let b = py.detach(|| kd.read_bytes()).map_err(to_py)?;
                Ok(b.into_pyarray(py).into_any())
            }
        }
    }

    /// Read into a caller's C-contiguous buffer, viewed as bytes.
    fn read_into(&self, py: Python<'_>, mut out: PyReadwriteArray1<'_, u8>) -> PyResult<()> {
        let buf = out
            .as_slice_mut()
            .map_err(|_| PyValueError::new_err("out must be a C-contiguous array"))?;
        py.detach(|| self.kd.read_into_bytes(buf)).map_err(to_py)
    }

    fn select_trains(
        &self,
        py: Python<'_>,
        kind: &str,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<(Key, Vec<String>)> {
        let sel = train_selection(kind, value)?;
        py.detach(|| self.kd.select_trains(&sel))
            .map(|kd| {
                let w = warnings_text(kd.warnings());
                (Key { kd }, w)
            })
            .map_err(to_py)
    }
}
