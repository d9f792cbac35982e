//! `--append-detector-modules`: the modules of an AGIPD, DSSC or LPD detector stacked into one
//! source `<detector>/DET/APPEND`, as EXtra-data's `serve_data` does (its `XtdfDetectorBase`
//! subclasses find the detector, `stack_detector_data` stacks `image.data`, `image.gain` and
//! `image.mask` along axis -3 over 16 modules, missing modules filled with NaN or 0).

use std::collections::BTreeMap;

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
}

/// The detector whose modules are appended.
#[derive(Debug, Clone)]
pub struct Detector {
    pub name: String,
    /// Module number -> source.
    pub modules: BTreeMap<usize, String>,
}

impl Detector {
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

/// Replaces the detector's module sources of `train` by the appended source. The appended
/// source carries the other keys of the lowest-numbered module with `image.data` in this train
/// (EXtra-data takes an arbitrary module's).
pub fn append_modules(train: &mut Train, det: &Detector, train_id: u64) -> Result<(), AppendError> {
    let mut modules: BTreeMap<usize, SourceTrain> = BTreeMap::new();
    for (&m, source) in &det.modules {
        if let Some(st) = train.sources.remove(source) {
            modules.insert(m, st);
        }
    }
    let reference = modules
        .iter()
        .find(|(_, st)| st.get("image.data").is_some())
        .or_else(|| modules.iter().next())
        .map(|(&m, _)| m);
    let Some(reference) = reference else {
        return Ok(());
    };
    let mut stacked = Vec::new();
    for key in STACKED_KEYS {
        let present = modules
            .get(&reference)
            .is_some_and(|st| st.get(key).is_some());
        if key == "image.data" || present {
            if let Some(array) = stack(&modules, key, train_id)? {
                stacked.push((key, array));
            }
        }
    }
    let Some(mut appended) = modules.remove(&reference) else {
        return Ok(());
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
    for (key, array) in stacked {
        match appended.data.iter_mut().find(|(k, _)| k == key) {
            Some((_, entry)) => *entry = Entry::Array(array),
            None => appended.data.push((key.to_string(), Entry::Array(array))),
        }
    }
    train.sources.insert(name, appended);
    Ok(())
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
/// 16-module result. `None` if no module has the key.
fn stack(
    modules: &BTreeMap<usize, SourceTrain>,
    key: &str,
    train_id: u64,
) -> Result<Option<Array>, AppendError> {
    let arrays: Vec<(usize, &Array)> = modules
        .iter()
        .filter_map(|(&m, st)| match st.get(key) {
            Some(Entry::Array(a)) => Some((m, a)),
            _ => None,
        })
        .collect();
    let Some(&(first, a0)) = arrays.first() else {
        return Ok(None);
    };
    for &(m, a) in &arrays {
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
    // Result shape: the module shape with 16 inserted before its last two axes; in C order each
    // of the `outer` leading blocks holds one `inner`-byte block per module.
    let axis = rank - 2;
    let outer: usize = a0.shape[..axis].iter().product();
    let inner = a0.data.len() / outer.max(1);
    let mut shape = a0.shape.clone();
    shape.insert(axis, STACKED_MODULES);
    let fill = fill_bytes(a0.dtype);
    let mut out = Vec::with_capacity(a0.data.len() * STACKED_MODULES);
    let mut by_module: [Option<&Array>; STACKED_MODULES] = [None; STACKED_MODULES];
    for &(m, a) in &arrays {
        by_module[m] = Some(a);
    }
    for o in 0..outer {
        for module in &by_module {
            match module {
                Some(a) => out.extend_from_slice(&a.data[o * inner..(o + 1) * inner]),
                None => {
                    for _ in 0..inner / fill.len().max(1) {
                        out.extend_from_slice(&fill);
                    }
                }
            }
        }
    }
    Ok(Some(Array {
        dtype: a0.dtype,
        shape,
        data: Payload::Owned(out),
    }))
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

    fn module(shape: &[usize], fill: u16) -> SourceTrain {
        let n: usize = shape.iter().product();
        let data = (0..n as u16)
            .flat_map(|i| (i + fill).to_le_bytes())
            .collect();
        SourceTrain {
            metadata: Vec::new(),
            data: vec![(
                "image.data".into(),
                Entry::Array(Array {
                    dtype: Dtype::new(Kind::UInt, 2),
                    shape: shape.to_vec(),
                    data: Payload::Owned(data),
                }),
            )],
        }
    }

    #[test]
    fn stacking_interleaves_modules_on_axis_minus_3() {
        // Two frames of 1 x 2 pixels from modules 0 and 2; module 1 (and 3..16) missing.
        let modules = BTreeMap::from([(0, module(&[2, 1, 2], 0)), (2, module(&[2, 1, 2], 100))]);
        let a = stack(&modules, "image.data", 7).unwrap().unwrap();
        assert_eq!(a.shape, vec![2, 16, 1, 2]);
        let words: Vec<u16> = a
            .data
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(words.len(), 2 * 16 * 2);
        assert_eq!(&words[0..6], &[0, 1, 0, 0, 100, 101]);
        assert_eq!(&words[32..38], &[2, 3, 0, 0, 102, 103]);
        assert!(words[6..32].iter().all(|&w| w == 0));
        // Different shapes are refused, never stacked wrongly.
        let bad = BTreeMap::from([(0, module(&[2, 1, 2], 0)), (1, module(&[3, 1, 2], 0))]);
        assert!(matches!(
            stack(&bad, "image.data", 7),
            Err(AppendError::Mismatch { module: 1, .. })
        ));
    }
}
