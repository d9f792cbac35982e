//! One train's module arrays stacked along a new module axis (EXtra-data's
//! `stack_detector_data`), with its checks and messages.

use std::collections::{BTreeMap, BTreeSet};

use euxfel::DType;
use regex::Regex;

use crate::error::{Error, Result};
use crate::fill::{fill_bytes, FillValue};
use crate::key::StackedArray;

/// One module's array for one key of one train (raw little-endian bytes, C order).
#[derive(Debug, Clone, Copy)]
pub struct ModuleArray<'a> {
    pub dtype: &'a DType,
    pub shape: &'a [usize],
    pub data: &'a [u8],
}

/// The keyword arguments of `stack_detector_data`.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Where the module axis goes (negative from the end), default -3.
    pub axis: isize,
    /// Modules of the detector, default 16.
    pub modules: usize,
    /// For missing modules; NaN for floats and 0 for integers by default.
    pub fill: Option<FillValue>,
    /// Regex finding the module number (first group) in a source name.
    pub pattern: String,
    /// The number of the first module.
    pub starts_at: i64,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            axis: -3,
            modules: 16,
            fill: None,
            pattern: r"/DET/(\d+)CH".into(),
            starts_at: 0,
        }
    }
}

fn shape_repr(s: &[usize]) -> String {
    match s {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            s.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Stacks `key` of every source of one train (source -> key -> array) into one array with
/// a module axis at `opts.axis`; modules without data hold the fill value. Modules with
/// zero frames where others have some count as missing.
pub fn stack_detector_data(
    train: &BTreeMap<String, BTreeMap<String, ModuleArray<'_>>>,
    key: &str,
    opts: &StackOptions,
) -> Result<StackedArray> {
    if train.is_empty() {
        return Err(Error::StackNoData);
    }
    let re = Regex::new(&opts.pattern).map_err(|e| Error::BadPattern {
        pattern: opts.pattern.clone(),
        msg: e.to_string(),
    })?;
    let mut dtypes: BTreeSet<String> = BTreeSet::new();
    let mut shapes: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut arrays: BTreeMap<i64, ModuleArray<'_>> = BTreeMap::new();
    for (src, keys) in train {
        let modno: i64 = re
            .captures(src)
            .and_then(|c| c.get(1))
            .and_then(|m| m.as_str().parse::<i64>().ok())
            .ok_or_else(|| Error::PatternMismatch {
                source_name: src.clone(),
                pattern: opts.pattern.clone(),
            })?
            - opts.starts_at;
        let Some(a) = keys.get(key) else { continue };
        let needed = a
            .dtype
            .item_size()
            .and_then(|i| a.shape.iter().try_fold(i, |x, &d| x.checked_mul(d)));
        if needed != Some(a.data.len()) {
            return Err(Error::ArraySize {
                source_name: src.clone(),
                key: key.into(),
                got: a.data.len(),
                needed: needed.unwrap_or(0),
            });
        }
        dtypes.insert(a.dtype.numpy_name());
        shapes.insert(a.shape.to_vec());
        arrays.insert(modno, *a);
    }
    if dtypes.len() > 1 {
        return Err(Error::MismatchedDtypes(
            dtypes.iter().map(|d| format!("dtype('{d}')")).collect(),
        ));
    }
    let mismatched = || Error::MismatchedShapes(shapes.iter().map(|s| shape_repr(s)).collect());
    if shapes.len() > 1 {
        let mut it = shapes.iter();
        let (s1, s2) = match (it.next(), it.next()) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => return Err(mismatched()),
        };
        if shapes.len() > 2 || s1.first() != Some(&0) || s1[1..] != s2[1..] {
            return Err(mismatched());
        }
        arrays.retain(|_, a| a.shape != s1.as_slice());
        shapes.remove(&s1);
    }
    let (Some((&max_mod, _)), Some(shape)) = (arrays.last_key_value(), shapes.first()) else {
        return Err(Error::StackNoData);
    };
    if max_mod >= opts.modules as i64 || arrays.keys().any(|&m| m < 0) {
        let module = if max_mod >= opts.modules as i64 {
            max_mod
        } else {
            arrays.keys().next().copied().unwrap_or(0)
        };
        return Err(Error::ModuleOutOfRange {
            module,
            modules: opts.modules,
        });
    }
    let dtype = train
        .values()
        .find_map(|k| k.get(key))
        .map(|a| a.dtype.clone())
        .ok_or(Error::StackNoData)?;
    let fill = opts.fill.unwrap_or_else(|| FillValue::default_for(&dtype));
    let elem = fill.to_bytes(&dtype)?;
    let ndim = shape.len() + 1;
    let ax = if opts.axis < 0 {
        opts.axis + ndim as isize
    } else {
        opts.axis
    };
    if ax < 0 || ax >= ndim as isize {
        return Err(Error::Axis {
            axis: opts.axis,
            ndim,
        });
    }
    let ax = ax as usize;
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax..].iter().product::<usize>() * elem.len();
    let mut out_shape = shape[..ax].to_vec();
    out_shape.push(opts.modules);
    out_shape.extend(&shape[ax..]);
    let mut data = vec![0u8; outer * opts.modules * inner];
    fill_bytes(&mut data, &elem);
    if inner > 0 {
        for (&m, a) in &arrays {
            let m = m as usize;
            for o in 0..outer {
                let dst = (o * opts.modules + m) * inner;
                data[dst..dst + inner].copy_from_slice(&a.data[o * inner..(o + 1) * inner]);
            }
        }
    }
    Ok(StackedArray {
        dtype,
        shape: out_shape,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train<'a>(
        dtype: &'a DType,
        mods: &'a [(usize, Vec<usize>, Vec<u8>)],
    ) -> BTreeMap<String, BTreeMap<String, ModuleArray<'a>>> {
        mods.iter()
            .map(|(m, shape, data)| {
                (
                    format!("FXE_DET_LPD1M-1/DET/{m}CH0:xtdf"),
                    BTreeMap::from([(
                        "image.data".to_string(),
                        ModuleArray { dtype, shape, data },
                    )]),
                )
            })
            .collect()
    }

    #[test]
    fn stacks_on_axis_and_fills_missing_modules() {
        let dt = DType::UInt(1);
        let mods = [
            (0, vec![2, 3], vec![1, 2, 3, 4, 5, 6]),
            (2, vec![2, 3], vec![7; 6]),
        ];
        let t = train(&dt, &mods);
        let opts = StackOptions {
            axis: -2,
            modules: 3,
            fill: Some(FillValue::Int(9)),
            ..StackOptions::default()
        };
        let a = stack_detector_data(&t, "image.data", &opts).unwrap();
        assert_eq!(a.shape, vec![2, 3, 3]);
        assert_eq!(
            a.data,
            vec![1, 2, 3, 9, 9, 9, 7, 7, 7, 4, 5, 6, 9, 9, 9, 7, 7, 7]
        );
    }

    #[test]
    fn errors_carry_extra_data_messages() {
        let dt = DType::UInt(1);
        let mods = [(0, vec![2], vec![1, 2]), (1, vec![3], vec![1, 2, 3])];
        let t = train(&dt, &mods);
        let e = stack_detector_data(&t, "image.data", &StackOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "Arrays have mismatched shapes: {(2,), (3,)}");
        let mods = [(16, vec![2], vec![1, 2])];
        let t = train(&dt, &mods);
        let e = stack_detector_data(&t, "image.data", &StackOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Module 16 is out of range for a detector with 16 modules"
        );
        let empty = BTreeMap::new();
        let e = stack_detector_data(&empty, "image.data", &StackOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), "No data");
    }

    #[test]
    fn empty_modules_count_as_missing() {
        let dt = DType::UInt(1);
        let mods = [(0, vec![0, 2], vec![]), (1, vec![1, 2], vec![5, 6])];
        let t = train(&dt, &mods);
        let opts = StackOptions {
            axis: 0,
            modules: 2,
            ..StackOptions::default()
        };
        let a = stack_detector_data(&t, "image.data", &opts).unwrap();
        assert_eq!(a.shape, vec![2, 1, 2]);
        assert_eq!(a.data, vec![0, 0, 5, 6]);
    }
}
