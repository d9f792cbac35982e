//! `--append-detector-modules`: the modules of an AGIPD, DSSC or LPD detector stacked into one
//! source `<detector>/DET/APPEND`, as EXtra-data's `serve_data` does (its `XtdfDetectorBase`
//! subclasses find the detector, `stack_detector_data` stacks `image.data`, `image.gain` and
//! `image.mask` along axis -3 over 16 modules, missing modules filled with NaN or 0).

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use euxfel::DataCollection;
use rmpv::Value;

use crate::dtype::{Dtype, Kind};
use crate::train::{Array, Entry, Payload, SourceTrain, Train};

/// Modules `stack_detector_data` stacks, whatever the detector.
const STACKED_MODULES: usize = 16;
/// Keys stacked; `image.data` always, the others if the source sending the other keys has them.
const STACKED_KEYS: [&str; 3] = ["image.data", "image.gain", "image.mask"];

/// Why the detector modules cannot be appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(
        "--append-detector-modules: several detectors in the data: {0}; select one with --source"
    )]
    SeveralDetectors(String),
    #[error("--append-detector-modules: inconsistent frame counts for train {train_id} across the modules of {detector}: {counts:?}")]
    FrameCounts {
        detector: String,
        train_id: u64,
        counts: Vec<u64>,
    },
    #[error("--append-detector-modules: {0}")]
    Read(#[from] euxfel::Error),
    #[error(
        "train {train_id}: {key}: module {module} has {what}, module {first} has {first_what}"
    )]
    Mismatch {
        train_id: u64,
        key: String,
        module: usize,
        what: String,
        first: usize,
        first_what: String,
    },
    #[error("train {train_id}: {key}: module {module} is out of range for a detector with {STACKED_MODULES} modules")]
    ModuleRange {
        train_id: u64,
        key: String,
        module: usize,
    },
    #[error(
        "train {train_id}: {key}: module arrays of shape {shape:?} cannot be stacked on axis -3"
    )]
    Rank {
        train_id: u64,
        key: String,
        shape: Vec<usize>,
    },
    #[error("train {train_id}: {key}: 16 module arrays of shape {shape:?} are too large")]
    TooLarge {
        train_id: u64,
        key: String,
        shape: Vec<usize>,
    },
    #[error("train {train_id}: {key}: module {module} gave {got} bytes, its array has {expected}")]
    Size {
        train_id: u64,
        key: String,
        module: usize,
        got: usize,
        expected: usize,
    },
}

/// The detector whose modules are appended.
#[derive(Debug, Clone)]
pub struct Detector {
    pub name: String,
    /// Module number -> source.
    pub modules: BTreeMap<usize, String>,
}

impl Detector {
    /// The module number of `source` if it is one of this detector's modules.
    pub fn module_of(&self, source: &str) -> Option<usize> {
        self.modules
            .iter()
            .find(|(_, s)| *s == source)
            .map(|(&m, _)| m)
    }

    /// The appended source's name.
    pub fn append_source(&self) -> String {
        format!("{}/DET/APPEND", self.name)
    }
}

/// EXtra-data's detector classes in the order `XtdfDetectorBase.__subclasses__()` lists them
/// (AGIPD1M, AGIPD500K, DSSC1M, LPDBase), each as a test on the detector name: the text and
/// whether it must follow an underscore. LPDBase accepts any name.
const CLASSES: [Option<(&str, bool)>; 4] = [
    Some(("AGIPD1M", true)),
    Some(("AGIPD500K", false)),
    Some(("DSSC1M", true)),
    None,
];

/// `(detector name, "DET" | "CORR", module number)` of a module source name
/// (`<name>/DET/<n>CH...`, the name without `/`).
fn module_of(source: &str) -> Option<(&str, &str, usize)> {
    let (name, rest) = source.split_once('/')?;
    let (kind, rest) = rest.split_once('/')?;
    if name.is_empty() || !(kind == "DET" || kind == "CORR") {
        return None;
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || !rest[digits..].starts_with("CH") {
        return None;
    }
    Some((name, kind, rest[..digits].parse().ok()?))
}

fn class_matches(class: Option<(&str, bool)>, name: &str) -> bool {
    let Some((text, after_underscore)) = class else {
        return true;
    };
    let needle = if after_underscore {
        format!("_{text}")
    } else {
        text.to_string()
    };
    // `[^/]+<needle>[^/]*`: at least one character before the needle.
    name.match_indices(&needle).any(|(i, _)| i >= 1)
}

/// Finds the detector as EXtra-data does: the first class with a matching detector name, its
/// corrected (`/CORR/`) modules if there are any, else its `/DET/` modules. `Ok(None)` if there is
/// no detector (EXtra-data then serves the modules unchanged).
pub fn find_detector(dc: &DataCollection) -> Result<Option<Detector>, AppendError> {
    let instrument = dc.instrument_sources();
    for class in CLASSES {
        let mut names: Vec<&str> = instrument
            .iter()
            .filter_map(|s| module_of(s))
            .map(|(name, _, _)| name)
            .filter(|name| class_matches(class, name))
            .collect();
        names.sort_unstable();
        names.dedup();
        match names.as_slice() {
            [] => continue,
            [name] => {
                let modules_of = |kind: &str| -> BTreeMap<usize, String> {
                    instrument
                        .iter()
                        .filter_map(|s| {
                            let (n, k, m) = module_of(s)?;
                            (n == *name && k == kind).then(|| (m, s.clone()))
                        })
                        .collect()
                };
                let mut modules = modules_of("CORR");
                if modules.is_empty() {
                    modules = modules_of("DET");
                }
                let det = Detector {
                    name: name.to_string(),
                    modules,
                };
                check_frame_counts(dc, &det)?;
                return Ok(Some(det));
            }
            several => return Err(AppendError::SeveralDetectors(several.join(", "))),
        }
    }
    Ok(None)
}

/// Within a train all modules with data must have the same number of frames (EXtra-data
/// refuses the detector otherwise).
fn check_frame_counts(dc: &DataCollection, det: &Detector) -> Result<(), AppendError> {
    let mut per_train: Vec<Vec<u64>> = vec![Vec::new(); dc.train_ids.len()];
    for source in det.modules.values() {
        let counts = dc.key(source, "image.data")?.data_counts()?;
        for (train, c) in per_train.iter_mut().zip(counts) {
            if c > 0 && !train.contains(&c) {
                train.push(c);
            }
        }
    }
    for (&train_id, counts) in dc.train_ids.iter().zip(per_train) {
        if counts.len() > 1 {
            return Err(AppendError::FrameCounts {
                detector: det.name.clone(),
                train_id,
                counts,
            });
        }
    }
    Ok(())
}

/// Whether `key` of a module source is stacked (and so read straight into the stacked array).
pub fn is_stacked_key(key: &str) -> bool {
    STACKED_KEYS.contains(&key)
}

/// Bytes of an array (C order) not read yet.
pub trait ArrayBytes {
    /// Hands the bytes to `f` in order, in pieces.
    fn visit(
        &self,
        f: &mut dyn FnMut(&[u8]) -> Result<(), euxfel::Error>,
    ) -> Result<(), euxfel::Error>;
}

/// One module's array of a stacked key in one train: dtype and shape as the module source
/// would send it, the bytes read only when stacked.
pub struct ModuleArray<'a> {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Box<dyn ArrayBytes + 'a>,
}

/// A module's stacked keys with data in one train: key -> array.
pub type ModuleArrays<'a> = BTreeMap<String, ModuleArray<'a>>;

/// Replaces the detector's module sources of `train` by the appended source. The appended
/// source carries the other keys of the lowest-numbered module with `image.data` in this train
/// (EXtra-data takes an arbitrary module's); `stacked` holds the modules' stacked keys (module
/// number -> arrays), whose places among a module's values hold a placeholder. Returns the
/// stacked keys of modules that could not be read (module, key, why): each is sent as a missing
/// module.
pub fn append_modules(
    train: &mut Train,
    det: &Detector,
    train_id: u64,
    stacked: &BTreeMap<usize, ModuleArrays<'_>>,
) -> Result<Vec<(usize, String, AppendError)>, AppendError> {
    let mut modules: BTreeMap<usize, SourceTrain> = BTreeMap::new();
    for (&m, source) in &det.modules {
        if let Some(st) = train.sources.remove(source) {
            modules.insert(m, st);
        }
    }
    let has = |m: usize, key: &str| stacked.get(&m).is_some_and(|a| a.contains_key(key));
    let reference = modules
        .keys()
        .find(|&&m| has(m, "image.data"))
        .or_else(|| modules.keys().next())
        .copied();
    let Some(reference) = reference else {
        return Ok(Vec::new());
    };
    let mut arrays = Vec::new();
    let mut unreadable = Vec::new();
    for key in STACKED_KEYS {
        if key == "image.data" || has(reference, key) {
            let of_key: BTreeMap<usize, &ModuleArray<'_>> = stacked
                .iter()
                .filter(|(m, _)| modules.contains_key(m))
                .filter_map(|(&m, a)| Some((m, a.get(key)?)))
                .collect();
            if let Some((array, failed)) = stack(&of_key, key, train_id)? {
                arrays.push((key, array));
                unreadable.extend(failed.into_iter().map(|(m, e)| (m, key.to_string(), e)));
            }
        }
    }
    let Some(mut appended) = modules.remove(&reference) else {
        return Ok(unreadable);
    };
    let name = det.append_source();
    for (k, v) in appended.metadata.iter_mut() {
        if k == "source" {
            *v = Value::from(name.as_str());
        }
    }
    for (k, entry) in appended.data.iter_mut() {
        if k == "metadata" {
            *entry = Entry::Value(crate::train::map_of(&appended.metadata));
        }
    }
    for (key, array) in arrays {
        match appended.data.iter_mut().find(|(k, _)| k == key) {
            Some((_, entry)) => *entry = Entry::Array(array),
            None => appended.data.push((key.to_string(), Entry::Array(array))),
        }
    }
    train.sources.insert(name, appended);
    Ok(unreadable)
}

/// The fill value of a missing module: NaN for floats, 0 otherwise, as little-endian bytes.
fn fill_bytes(dtype: Dtype) -> Vec<u8> {
    match (dtype.kind, dtype.size) {
        (Kind::Float, 2) => 0x7e00u16.to_le_bytes().to_vec(),
        (Kind::Float, 4) => f32::NAN.to_le_bytes().to_vec(),
        (Kind::Float, 8) => f64::NAN.to_le_bytes().to_vec(),
        _ => vec![0; dtype.size],
    }
}

/// `stack_detector_data(modules, key)` for one train: the module arrays stacked on axis -3 of a
/// 16-module result, each module read straight into its places (one copy out of the file, no
/// pass over the buffer before). `None` if no module has the key. A module whose bytes cannot
/// be read (or fall short of its shape) is filled as a missing one and returned with why.
#[allow(clippy::type_complexity)]
fn stack(
    arrays: &BTreeMap<usize, &ModuleArray<'_>>,
    key: &str,
    train_id: u64,
) -> Result<Option<(Array, Vec<(usize, AppendError)>)>, AppendError> {
    let Some((&first, a0)) = arrays.first_key_value() else {
        return Ok(None);
    };
    for (&m, a) in arrays {
        if a.dtype != a0.dtype || a.shape != a0.shape {
            return Err(AppendError::Mismatch {
                train_id,
                key: key.into(),
                module: m,
                what: format!("{} {:?}", a.dtype, a.shape),
                first,
                first_what: format!("{} {:?}", a0.dtype, a0.shape),
            });
        }
        if m >= STACKED_MODULES {
            return Err(AppendError::ModuleRange {
                train_id,
                key: key.into(),
                module: m,
            });
        }
    }
    let rank = a0.shape.len();
    if rank < 2 {
        return Err(AppendError::Rank {
            train_id,
            key: key.into(),
            shape: a0.shape.clone(),
        });
    }
    let too_large = || AppendError::TooLarge {
        train_id,
        key: key.into(),
        shape: a0.shape.clone(),
    };
    // Result shape: the module shape with 16 inserted before its last two axes; in C order each
    // of the `outer` leading blocks holds one `inner`-byte block per module.
    let axis = rank - 2;
    let module_bytes = Array::expected_len(a0.dtype, &a0.shape).ok_or_else(too_large)?;
    let outer: usize = a0.shape[..axis].iter().product();
    let inner = module_bytes.checked_div(outer).unwrap_or(0);
    let total = module_bytes
        .checked_mul(STACKED_MODULES)
        .ok_or_else(too_large)?;
    let mut shape = a0.shape.clone();
    shape.insert(axis, STACKED_MODULES);
    let mut out: Vec<u8> = Vec::new();
    out.try_reserve_exact(total).map_err(|_| too_large())?;
    let mut unreadable = Vec::new();
    if inner > 0 {
        let places = &mut out.spare_capacity_mut()[..total];
        let fill = fill_bytes(a0.dtype);
        for m in 0..STACKED_MODULES {
            let failed =
                arrays
                    .get(&m)
                    .and_then(|a| match read_module(a, places, m, inner, module_bytes) {
                        Ok(got) if got == module_bytes => None,
                        Ok(got) => Some(AppendError::Size {
                            train_id,
                            key: key.into(),
                            module: m,
                            got,
                            expected: module_bytes,
                        }),
                        Err(e) => Some(AppendError::Read(e)),
                    });
            if arrays.contains_key(&m) && failed.is_none() {
                continue;
            }
            // No data, or data that could not be read (whatever part of it was written is
            // overwritten): the fill value.
            for o in 0..outer {
                let at = (o * STACKED_MODULES + m) * inner;
                for elem in places[at..at + inner].chunks_exact_mut(fill.len()) {
                    write_bytes(elem, &fill);
                }
            }
            unreadable.extend(failed.map(|e| (m, e)));
        }
    }
    // SAFETY: `out` has capacity `total`, and every byte of its first `total` was written
    // above: the places of module m are the `inner` bytes at (o * 16 + m) * inner for o in
    // 0..outer (outer * inner = module_bytes, total = 16 * module_bytes); a module read whole
    // wrote its module_bytes bytes into them in order, every other module (without data, or
    // whose read failed or gave another size) had each of them filled. With inner == 0, total
    // is 0.
    unsafe { out.set_len(total) };
    let array = Array {
        dtype: a0.dtype,
        shape,
        data: Payload::Owned(out),
    };
    Ok(Some((array, unreadable)))
}

/// Copies `src` into the first `src.len()` bytes of `dst` (a loop the compiler makes a memcpy).
fn write_bytes(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = MaybeUninit::new(s);
    }
}

/// Reads module `m`'s array (at most `module_bytes`, in `inner`-byte blocks) into its places
/// of the stacked array, block o at (o * 16 + m) * inner; returns the bytes it gave.
fn read_module(
    array: &ModuleArray<'_>,
    places: &mut [MaybeUninit<u8>],
    m: usize,
    inner: usize,
    module_bytes: usize,
) -> Result<usize, euxfel::Error> {
    let mut pos = 0usize;
    array.bytes.visit(&mut |mut piece| {
        if pos + piece.len() > module_bytes {
            return Err(euxfel::Error::BufferSize {
                object: format!("module {m}"),
                got: module_bytes,
                needed: (pos + piece.len()) as u64,
            });
        }
        while !piece.is_empty() {
            let (o, within) = (pos / inner, pos % inner);
            let n = (inner - within).min(piece.len());
            let at = (o * STACKED_MODULES + m) * inner + within;
            write_bytes(&mut places[at..at + n], &piece[..n]);
            piece = &piece[n..];
            pos += n;
        }
        Ok(())
    })?;
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_sources_and_classes() {
        assert_eq!(
            module_of("SPB_DET_AGIPD1M-1/DET/10CH0:xtdf"),
            Some(("SPB_DET_AGIPD1M-1", "DET", 10))
        );
        assert_eq!(
            module_of("FXE_DET_LPD1M-1/CORR/3CH0:output"),
            Some(("FXE_DET_LPD1M-1", "CORR", 3))
        );
        assert_eq!(module_of("SPB_DET_AGIPD1M-1/DET/APPEND"), None);
        assert_eq!(module_of("A/B/DET/1CH0"), None);
        assert_eq!(module_of("X/DET/CH0"), None);
        assert!(class_matches(CLASSES[0], "SPB_DET_AGIPD1M-1"));
        assert!(!class_matches(CLASSES[0], "_AGIPD1M"));
        assert!(class_matches(CLASSES[1], "HED_DET_AGIPD500K2G"));
        assert!(!class_matches(CLASSES[2], "FXE_DET_LPD1M-1"));
        assert!(class_matches(CLASSES[3], "FXE_DET_LPD1M-1"));
    }

    /// Bytes handed over in pieces of `piece` bytes (not aligned with frames or elements).
    struct Pieces {
        bytes: Vec<u8>,
        piece: usize,
    }

    impl ArrayBytes for Pieces {
        fn visit(
            &self,
            f: &mut dyn FnMut(&[u8]) -> Result<(), euxfel::Error>,
        ) -> Result<(), euxfel::Error> {
            self.bytes.chunks(self.piece).try_for_each(f)
        }
    }

    fn module(shape: &[usize], first: u16, piece: usize) -> ModuleArray<'static> {
        let n: usize = shape.iter().product();
        let bytes = (0..n as u16)
            .flat_map(|i| (i + first).to_le_bytes())
            .collect();
        ModuleArray {
            dtype: Dtype::new(Kind::UInt, 2),
            shape: shape.to_vec(),
            bytes: Box::new(Pieces { bytes, piece }),
        }
    }

    fn words(a: &Array) -> Vec<u16> {
        a.data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn stacking_interleaves_modules_on_axis_minus_3() {
        // Two frames of 1 x 2 pixels from modules 0 and 2; module 1 (and 3..16) missing. The
        // pieces (3 bytes) straddle elements and frames.
        let (m0, m2) = (module(&[2, 1, 2], 0, 3), module(&[2, 1, 2], 100, 3));
        let (a, unreadable) = stack(&BTreeMap::from([(0, &m0), (2, &m2)]), "image.data", 7)
            .unwrap()
            .unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(a.shape, vec![2, 16, 1, 2]);
        let w = words(&a);
        assert_eq!(w.len(), 2 * 16 * 2);
        assert_eq!(&w[0..6], &[0, 1, 0, 0, 100, 101]);
        assert_eq!(&w[32..38], &[2, 3, 0, 0, 102, 103]);
        assert!(w[6..32].iter().all(|&w| w == 0));
        // Different shapes are refused, never stacked wrongly.
        let m1 = module(&[3, 1, 2], 0, 3);
        assert!(matches!(
            stack(&BTreeMap::from([(0, &m0), (1, &m1)]), "image.data", 7),
            Err(AppendError::Mismatch { module: 1, .. })
        ));
    }

    #[test]
    fn missing_float_modules_are_nan_and_an_unreadable_module_is_missing() {
        let one = ModuleArray {
            dtype: Dtype::new(Kind::Float, 4),
            shape: vec![1, 2],
            bytes: Box::new(Pieces {
                bytes: [1.5f32, 2.5].iter().flat_map(|v| v.to_le_bytes()).collect(),
                piece: 8,
            }),
        };
        let (a, unreadable) = stack(&BTreeMap::from([(15, &one)]), "image.data", 7)
            .unwrap()
            .unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(a.shape, vec![16, 1, 2]);
        let v: Vec<f32> = a
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(v[..30].iter().all(|x| x.is_nan()));
        assert_eq!(&v[30..], &[1.5, 2.5]);
        // A module whose bytes fall short of (or exceed) its shape is sent as a missing module
        // and named, never as garbage; the other modules keep their data.
        let m0 = module(&[3, 1, 2], 0, 2);
        let mut short = module(&[2, 1, 2], 0, 2);
        short.shape = vec![3, 1, 2];
        let (a, unreadable) = stack(&BTreeMap::from([(0, &m0), (4, &short)]), "image.data", 7)
            .unwrap()
            .unwrap();
        assert!(matches!(
            unreadable.as_slice(),
            [(
                4,
                AppendError::Size {
                    module: 4,
                    got: 8,
                    expected: 12,
                    ..
                }
            )]
        ));
        let w = words(&a);
        assert_eq!(&w[0..2], &[0, 1]);
        assert!(w[2..32].iter().all(|&w| w == 0));
        let mut long = module(&[2, 1, 2], 7, 2);
        long.shape = vec![1, 1, 2];
        let m0 = module(&[1, 1, 2], 0, 2);
        let (a, unreadable) = stack(&BTreeMap::from([(0, &m0), (4, &long)]), "image.data", 7)
            .unwrap()
            .unwrap();
        assert!(matches!(
            unreadable.as_slice(),
            [(4, AppendError::Read(euxfel::Error::BufferSize { .. }))]
        ));
        assert!(words(&a)[2..].iter().all(|&w| w == 0));
    }
}
