//! Train selections (EXtra-data's `by_id` / `by_index`) and the split arithmetic.

use std::collections::BTreeSet;

use super::error::{Error, Result};
use super::warning::Warning;

/// A train selection, with EXtra-data's `by_id` / `by_index` semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainSelection {
    /// `by_id[start:stop]` (stop exclusive; absent IDs map to the next greater ID).
    IdRange(Option<u64>, Option<u64>),
    /// `by_id[[...]]`: sorted intersection.
    IdList(Vec<u64>),
    /// `by_index[start:stop:step]` / a plain slice (Python slice semantics).
    IndexRange(Option<i64>, Option<i64>, Option<i64>),
    /// A list of positions (negative from the end), result sorted.
    IndexList(Vec<i64>),
}

/// EXtra-data's split arithmetic: `[i*n//k, (i+1)*n//k)` for k parts.
pub fn split_ranges(
    n_trains: usize,
    parts: Option<usize>,
    trains_per_part: Option<usize>,
) -> Result<Vec<std::ops::Range<usize>>> {
    let n_parts = match (parts, trains_per_part) {
        (_, Some(0)) => return Err(Error::SplitArguments("trains_per_part must be >= 1")),
        (Some(0), _) => return Err(Error::SplitArguments("parts must be >= 1")),
        (p, Some(tpp)) => {
            let mut n = n_trains.div_ceil(tpp);
            if let Some(p) = p {
                n = n.max(p.min(n_trains));
            }
            n
        }
        (Some(p), None) => p.min(n_trains),
        (None, None) => {
            return Err(Error::SplitArguments(
                "either parts or trains_per_part must be specified",
            ))
        }
    };
    Ok((0..n_parts)
        .map(|i| i * n_trains / n_parts..(i + 1) * n_trains / n_parts)
        .collect())
}

/// Python slice of a sequence of length `len` -> indices.
fn py_slice(
    len: usize,
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
) -> Result<Vec<usize>> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(Error::SliceStepZero);
    }
    let n = len as i64;
    let norm = |v: i64, lo: i64, hi: i64| -> i64 {
        let v = if v < 0 { v + n } else { v };
        v.clamp(lo, hi)
    };
    let mut out = Vec::new();
    if step > 0 {
        let s = start.map_or(0, |v| norm(v, 0, n));
        let e = stop.map_or(n, |v| norm(v, 0, n));
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i += step;
        }
    } else {
        let s = start.map_or(n - 1, |v| norm(v, -1, n - 1));
        let e = stop.map_or(-1, |v| norm(v, -1, n - 1));
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(out)
}

/// Position in `tids` of a train ID slice bound (`stop` for the end bound), with
/// EXtra-data's warnings for bounds outside the data.
fn tid_to_slice_ix(
    tid: Option<u64>,
    tids: &[u64],
    stop: bool,
    warnings: &mut Vec<Warning>,
) -> Option<i64> {
    let tid = tid?;
    if let Ok(i) = tids.binary_search(&tid) {
        return Some(i as i64);
    }
    let (Some(&first), Some(&last)) = (tids.first(), tids.last()) else {
        warnings.push(Warning::SliceOfNoTrains);
        return Some(0);
    };
    if tid < first {
        if stop {
            warnings.push(Warning::TrainBeforeRun {
                train_id: tid,
                first,
            });
            Some(0)
        } else {
            None
        }
    } else if tid > last {
        if stop {
            None
        } else {
            warnings.push(Warning::TrainAfterRun {
                train_id: tid,
                last,
            });
            Some(tids.len() as i64)
        }
    } else {
        Some(tids.partition_point(|&t| t <= tid) as i64)
    }
}

/// Apply a train selection to a sorted list of train IDs; warnings are appended
/// to `warnings`.
pub(crate) fn select_train_ids(
    tids: &[u64],
    sel: &TrainSelection,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<u64>> {
    Ok(match sel {
        TrainSelection::IdRange(a, b) => {
            let s = tid_to_slice_ix(*a, tids, false, warnings);
            let e = tid_to_slice_ix(*b, tids, true, warnings);
            py_slice(tids.len(), s, e, None)?
                .into_iter()
                .map(|i| tids[i])
                .collect()
        }
        TrainSelection::IdList(list) => {
            let want: BTreeSet<u64> = list.iter().copied().collect();
            let r: Vec<u64> = tids.iter().copied().filter(|t| want.contains(t)).collect();
            if !list.is_empty() && r.is_empty() {
                warnings.push(Warning::TrainIdsNotFound {
                    n_trains: tids.len(),
                });
            }
            r
        }
        TrainSelection::IndexRange(a, b, c) => py_slice(tids.len(), *a, *b, *c)?
            .into_iter()
            .map(|i| tids[i])
            .collect(),
        TrainSelection::IndexList(list) => {
            let n = tids.len() as i64;
            let mut r = Vec::with_capacity(list.len());
            for &i in list {
                let j = if i < 0 { i + n } else { i };
                if j < 0 || j >= n {
                    return Err(Error::TrainIndex {
                        index: i,
                        n_trains: tids.len(),
                    });
                }
                r.push(tids[j as usize]);
            }
            r.sort_unstable();
            r
        }
    })
}
