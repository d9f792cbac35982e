//! Trains of EuXFEL files as EXtra-data's `serve_data` sends them: `DataCollection.trains()`
//! (a `metadata` dict per source; control keys one value per train; instrument keys all entries
//! of the train, the first axis dropped when there is exactly one), optionally the detector
//! modules appended, then arrays of Python objects (strings) dropped with their `.timestamp`.
//!
//! A key that cannot be read for a train (its dataset shorter than its index says, a corrupt
//! chunk) is left out of that train only, and named with it ([`ReadTrain::omitted`]): one bad
//! key never costs the other keys and sources of the train (EXtra-data's server stops there).
//! A detector module's stacked key that cannot be read is sent as a missing module (NaN or 0,
//! as `stack_detector_data` fills modules without data) and named the same way.
//!
//! Each array is read with one copy out of the file into the buffer that is sent: a key's
//! entries into a buffer of its exact size (never zero-filled first), appended detector
//! modules straight into their places in the stacked array.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use euxfel::{DataCollection, KeyData, TrainValue};
use rmpv::Value;

use crate::append::{
    append_modules, find_detector, is_stacked_key, AppendError, ArrayBytes, Detector, ModuleArray,
    ModuleArrays,
};
use crate::dtype::{Dtype, Kind, Scalar};
use crate::train::{file_metadata, map_of, Array, Entry, Payload, SourceTrain, Train};

/// The ID of the train being read (0 before the first). Data is read from memory maps of the
/// files: one that shrinks while it is served faults the read (SIGBUS), and `xfel-serve`'s
/// handler of that signal names this train.
pub static TRAIN_BEING_READ: AtomicU64 = AtomicU64::new(0);

/// The key being read while [`FileTrains::for_each`] reads it (null otherwise), for the same
/// handler: it names the key, its source and file. It points into the [`FileTrains`] that
/// `for_each` borrows, and is null again before `for_each` returns.
pub static KEY_BEING_READ: AtomicPtr<KeyData> = AtomicPtr::new(std::ptr::null_mut());

fn reading(kd: &KeyData) {
    KEY_BEING_READ.store(std::ptr::from_ref(kd).cast_mut(), Ordering::Relaxed);
}

/// Clears [`KEY_BEING_READ`] when `for_each` returns, however it returns.
struct ReadingNothing;

impl Drop for ReadingNothing {
    fn drop(&mut self) {
        KEY_BEING_READ.store(std::ptr::null_mut(), Ordering::Relaxed);
    }
}

/// Why a train could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Data(#[from] euxfel::Error),
    #[error("{0}")]
    Append(#[from] AppendError),
}

/// A key of a train that could not be read: the train is sent without it.
#[derive(Debug)]
pub struct OmittedKey {
    pub source: String,
    pub key: String,
    /// The file holding the key's data for that train (not every error names it).
    pub file: Option<PathBuf>,
    pub error: ReadError,
}

/// The file holding `kd`'s data for train `tid`.
fn file_of(kd: &KeyData, tid: u64) -> Option<PathBuf> {
    kd.files
        .iter()
        .find(|f| f.train_ids.binary_search(&tid).is_ok())
        .map(|f| f.path.clone())
}

/// A train read from the files, and the keys that could not be read for it.
#[derive(Debug)]
pub struct ReadTrain {
    pub train: Train,
    pub omitted: Vec<OmittedKey>,
}

/// Trains whose small values are read together (one read per key instead of one per train).
const BLOCK_TRAINS: usize = 64;
/// A key's values for a block of trains are read together up to this many bytes.
const BLOCK_BYTES: u64 = 1 << 20;
/// What one variable-length string is taken to cost in that reckoning.
const STRING_BYTES: u64 = 64;

/// Per source and key, a block's values read ahead (see [`FileTrains::prefetch`]).
type Prefetched = Vec<Vec<Option<Vec<Option<TrainValue>>>>>;

/// One selected source and its keys, in name order.
struct SourceKeys {
    name: String,
    control: bool,
    keys: Vec<KeyData>,
    /// Keys of types without a fixed size that are not strings (variable-length arrays,
    /// opaque data): numpy objects in EXtra-data, dropped like object arrays, never read.
    objects: Vec<String>,
    /// Its module number if its stacked keys go into the appended detector source.
    module: Option<usize>,
}

/// The trains of a collection, ready to send.
pub struct FileTrains {
    train_ids: Arc<Vec<u64>>,
    sources: Vec<SourceKeys>,
    detector: Option<Detector>,
}

/// A key's rows of one train, read when they are stacked.
struct TrainRows<'a> {
    key: &'a KeyData,
    train_id: u64,
}

impl ArrayBytes for TrainRows<'_> {
    fn visit(
        &self,
        f: &mut dyn FnMut(&[u8]) -> Result<(), euxfel::Error>,
    ) -> Result<(), euxfel::Error> {
        reading(self.key);
        self.key.visit_train_bytes(self.train_id, f).map(|_| ())
    }
}

impl FileTrains {
    /// `append`: stack the modules of the detector in the data (if there is one).
    pub fn new(dc: DataCollection, append: bool) -> Result<FileTrains, ReadError> {
        let detector = if append { find_detector(&dc)? } else { None };
        let mut keys: BTreeMap<String, Vec<KeyData>> = BTreeMap::new();
        // A failure here is the data's, not --append-detector-modules' (ReadError::Data).
        for kd in dc.selected_keys()? {
            keys.entry(kd.source.clone()).or_default().push(kd);
        }
        let control = dc.control_sources();
        // Every selected source, in name order; one without keys still sends its metadata.
        let sources = dc
            .all_sources()
            .into_iter()
            .map(|name| {
                let (keys, objects): (Vec<KeyData>, Vec<KeyData>) = keys
                    .remove(&name)
                    .unwrap_or_default()
                    .into_iter()
                    .partition(|kd| kd.dtype.is_string() || kd.dtype.item_size().is_some());
                SourceKeys {
                    control: control.contains(&name),
                    keys,
                    objects: objects.into_iter().map(|kd| kd.key).collect(),
                    module: detector.as_ref().and_then(|d| d.module_of(&name)),
                    name,
                }
            })
            .collect();
        Ok(FileTrains {
            train_ids: dc.train_ids.clone(),
            sources,
            detector,
        })
    }

    /// The detector whose modules are appended, if any.
    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// Reads every train in order and hands each to `each` with its ID (or the error that
    /// stopped it from being read at all, after which the iteration goes on with the next
    /// train). `each` returns false to stop.
    pub fn for_each(&self, each: &mut dyn FnMut(u64, Result<ReadTrain, ReadError>) -> bool) {
        let _cleared = ReadingNothing;
        for block in self.train_ids.chunks(BLOCK_TRAINS) {
            if let Some(&first) = block.first() {
                TRAIN_BEING_READ.store(first, Ordering::Relaxed);
            }
            let mut prefetched = self.prefetch(block);
            for (i, &tid) in block.iter().enumerate() {
                TRAIN_BEING_READ.store(tid, Ordering::Relaxed);
                if !each(tid, self.read(tid, i, &mut prefetched)) {
                    return;
                }
            }
        }
    }

    /// Per source and key, the values of the trains of `block` if the key is small enough to
    /// be read for the whole block at once (`None`: read train by train, as is a block read
    /// that failed, so that the error goes with the train it belongs to).
    fn prefetch(&self, block: &[u64]) -> Prefetched {
        self.sources
            .iter()
            .map(|src| {
                src.keys
                    .iter()
                    .map(|kd| {
                        let stacked = src.module.is_some() && is_stacked_key(&kd.key);
                        let entry_bytes = kd.entry_bytes().map_or(STRING_BYTES, |b| b as u64);
                        // Saturating: counts from a corrupt index may add up past u64::MAX.
                        let entries = block
                            .iter()
                            .fold(0u64, |a, &t| a.saturating_add(kd.train_entries(t)));
                        let small = entries.saturating_mul(entry_bytes) <= BLOCK_BYTES;
                        reading(kd);
                        (small && !stacked)
                            .then(|| kd.train_values(block).ok())
                            .flatten()
                    })
                    .collect()
            })
            .collect()
    }

    /// One train (the `i`th of its block): every selected source (sources without data for it
    /// carry their metadata only), the detector's modules stacked if asked for; keys that
    /// cannot be read are left out and named.
    fn read(
        &self,
        tid: u64,
        i: usize,
        prefetched: &mut Prefetched,
    ) -> Result<ReadTrain, ReadError> {
        let mut train = Train::default();
        let mut omitted = Vec::new();
        let mut stacked: BTreeMap<usize, ModuleArrays<'_>> = BTreeMap::new();
        for (src, src_prefetched) in self.sources.iter().zip(prefetched.iter_mut()) {
            let metadata = file_metadata(&src.name, tid);
            let mut st = SourceTrain {
                data: vec![("metadata".into(), Entry::Value(map_of(&metadata)))],
                metadata,
            };
            let mut objects = src.objects.clone();
            for (kd, block) in src.keys.iter().zip(src_prefetched.iter_mut()) {
                if let Some(m) = src.module.filter(|_| is_stacked_key(&kd.key)) {
                    defer_stacked(kd, tid, m, &mut st, &mut stacked, &mut objects);
                    continue;
                }
                let value = match block {
                    Some(values) => values.get_mut(i).and_then(Option::take),
                    None => {
                        reading(kd);
                        match kd.train_value(tid) {
                            Ok(v) => v,
                            Err(e) => {
                                omitted.push(OmittedKey {
                                    source: src.name.clone(),
                                    key: kd.key.clone(),
                                    file: file_of(kd, tid),
                                    error: e.into(),
                                });
                                continue;
                            }
                        }
                    }
                };
                match value {
                    None => {}
                    Some(TrainValue::Array {
                        dtype,
                        mut shape,
                        bytes,
                    }) => {
                        // Types numpy would hold as objects (or this crate cannot name) are
                        // dropped like object arrays.
                        let Some(dtype) = Dtype::from_euxfel(&dtype) else {
                            objects.push(kd.key.clone());
                            continue;
                        };
                        if !src.control && shape.first() == Some(&1) {
                            shape.remove(0);
                        }
                        st.data.push((kd.key.clone(), entry(dtype, shape, bytes)));
                    }
                    Some(TrainValue::Strings(strings)) => match strings.as_slice() {
                        // h5py reads one variable-length string as bytes.
                        [s] if kd.entry_shape.is_empty() => st.data.push((
                            kd.key.clone(),
                            Entry::Value(Value::Binary(s.as_bytes().to_vec())),
                        )),
                        _ => objects.push(kd.key.clone()),
                    },
                }
            }
            drop_timestamps_of(&mut st, &objects);
            train.sources.insert(src.name.clone(), st);
        }
        if let Some(det) = &self.detector {
            for (module, key, error) in append_modules(&mut train, det, tid, &stacked)? {
                let source = det.modules.get(&module).cloned().unwrap_or_default();
                let file = self
                    .sources
                    .iter()
                    .filter(|s| s.name == source)
                    .flat_map(|s| &s.keys)
                    .find(|kd| kd.key == key)
                    .and_then(|kd| file_of(kd, tid));
                omitted.push(OmittedKey {
                    source,
                    key,
                    file,
                    error: error.into(),
                });
            }
        }
        Ok(ReadTrain { train, omitted })
    }
}

/// A stacked key of a detector module: its dtype and shape now, its bytes when it is stacked
/// (straight into the stacked array). It keeps its place among the source's values.
fn defer_stacked<'a>(
    kd: &'a KeyData,
    tid: u64,
    module: usize,
    st: &mut SourceTrain,
    stacked: &mut BTreeMap<usize, ModuleArrays<'a>>,
    objects: &mut Vec<String>,
) {
    let count = kd.train_entries(tid);
    if count == 0 {
        return;
    }
    let Some(dtype) = Dtype::from_euxfel(&kd.dtype) else {
        objects.push(kd.key.clone());
        return;
    };
    let mut shape = Vec::with_capacity(kd.entry_shape.len() + 1);
    if count != 1 {
        shape.push(count as usize);
    }
    shape.extend(&kd.entry_shape);
    st.data.push((kd.key.clone(), Entry::Value(Value::Nil)));
    stacked.entry(module).or_default().insert(
        kd.key.clone(),
        ModuleArray {
            dtype,
            shape,
            bytes: Box::new(TrainRows {
                key: kd,
                train_id: tid,
            }),
        },
    );
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
