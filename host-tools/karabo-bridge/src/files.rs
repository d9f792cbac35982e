//! Trains of EuXFEL files as EXtra-data's `serve_data` sends them: `DataCollection.trains()`
//! (a `metadata` dict per source; control keys one value per train; instrument keys all entries
//! of the train, the first axis dropped when there is exactly one), optionally the detector
//! modules appended, then arrays of Python objects (strings) dropped with their `.timestamp`.

use std::collections::{HashMap, HashSet};

use euxfel::{DataCollection, TrainValue};
use rmpv::Value;

use crate::append::{append_modules, find_detector, AppendError, Detector};
use crate::dtype::{Dtype, Kind, Scalar};
use crate::train::{file_metadata, map_of, Array, Entry, Payload, SourceTrain, Train};

/// Why a train could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Data(#[from] euxfel::Error),
    #[error("{0}")]
    Append(#[from] AppendError),
}

/// The trains of a collection, ready to send.
pub struct FileTrains {
    dc: DataCollection,
    detector: Option<Detector>,
    control: HashSet<String>,
    /// (source, key) of string keys -> whether one entry is one string (a scalar).
    string_scalar: HashMap<(String, String), bool>,
}

impl FileTrains {
    /// `append`: stack the modules of the detector in the data (if there is one).
    pub fn new(dc: DataCollection, append: bool) -> Result<FileTrains, AppendError> {
        let detector = if append { find_detector(&dc)? } else { None };
        Ok(FileTrains {
            control: dc.control_sources().into_iter().collect(),
            dc,
            detector,
            string_scalar: HashMap::new(),
        })
    }

    /// The detector whose modules are appended, if any.
    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// Reads every train in order and hands each to `each` with its ID (or the error reading it,
    /// after which the iteration goes on with the next train). `each` returns false to stop.
    pub fn for_each(&mut self, each: &mut dyn FnMut(u64, Result<Train, ReadError>) -> bool) {
        // The iterator borrows its collection while `convert` updates the string-key cache.
        let dc = self.dc.clone();
        for (&tid, item) in dc.train_ids.iter().zip(dc.trains()) {
            let result = item
                .map_err(ReadError::from)
                .and_then(|(tid, data)| self.convert(tid, data));
            if !each(tid, result) {
                break;
            }
        }
    }

    fn is_string_scalar(&mut self, source: &str, key: &str) -> Result<bool, euxfel::Error> {
        let id = (source.to_string(), key.to_string());
        if let Some(&s) = self.string_scalar.get(&id) {
            return Ok(s);
        }
        let scalar = self.dc.key(source, key)?.entry_shape.is_empty();
        self.string_scalar.insert(id, scalar);
        Ok(scalar)
    }

    fn convert(&mut self, tid: u64, data: euxfel::TrainData) -> Result<Train, ReadError> {
        let mut train = Train::default();
        for (source, keys) in data {
            let is_control = self.control.contains(&source);
            let metadata = file_metadata(&source, tid);
            let mut st = SourceTrain {
                data: vec![("metadata".into(), Entry::Value(map_of(&metadata)))],
                metadata,
            };
            let mut objects = Vec::new();
            for (key, value) in keys {
                match value {
                    TrainValue::Array {
                        dtype,
                        mut shape,
                        bytes,
                    } => {
                        // Types numpy would hold as objects (or this crate cannot name) are
                        // dropped like object arrays.
                        let Some(dtype) = Dtype::from_euxfel(&dtype) else {
                            objects.push(key);
                            continue;
                        };
                        if !is_control && shape.first() == Some(&1) {
                            shape.remove(0);
                        }
                        st.data.push((key, entry(dtype, shape, bytes)));
                    }
                    TrainValue::Strings(strings) => {
                        let single = match strings.as_slice() {
                            [s] if self.is_string_scalar(&source, &key)? => Some(s),
                            _ => None,
                        };
                        match single {
                            // h5py reads one variable-length string as bytes.
                            Some(s) => st
                                .data
                                .push((key, Entry::Value(Value::Binary(s.as_bytes().to_vec())))),
                            None => objects.push(key),
                        }
                    }
                }
            }
            drop_timestamps_of(&mut st, &objects);
            train.sources.insert(source, st);
        }
        if let Some(det) = &self.detector {
            append_modules(&mut train, det, tid)?;
        }
        Ok(train)
    }
}

/// One value: a numpy scalar for a 0-d entry (a fixed-length string as bytes), else an array.
fn entry(dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> Entry {
    if !shape.is_empty() {
        return Entry::Array(Array {
            dtype,
            shape,
            data: Payload::Owned(bytes),
        });
    }
    let scalar = Scalar { dtype, bytes };
    match (dtype.kind, scalar.item()) {
        (Kind::Bytes, Some(v)) => Entry::Value(v),
        _ => Entry::Scalar(scalar),
    }
}

/// `_drop_object_arrays`: with a dropped `<x>.value`, its `<x>.timestamp` goes too.
fn drop_timestamps_of(st: &mut SourceTrain, dropped: &[String]) {
    let timestamps: Vec<String> = dropped
        .iter()
        .filter_map(|k| k.strip_suffix(".value"))
        .map(|base| format!("{base}.timestamp"))
        .collect();
    st.data.retain(|(k, _)| !timestamps.contains(k));
}
