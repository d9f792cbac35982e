//! The checks on one file: EXtra-data's (`train_ids_nonzero`, `train_ids_order`,
//! `index_control`, `index_instrument`, `control_timestamps_order`) and
//! `train_ids_unique`. Each appends its problems; the caller adds the check's name
//! and the file.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::Problem;
use crate::display::shape_repr;
use crate::dtype::DType;
use crate::error::Error;
use crate::file_access::FileAccess;
use crate::meta::{MetaError, MetaReader, MetaResult};

/// A read inside a check failed: the problem names the dataset and the error.
fn read_problem(dataset: &str, e: &Error) -> Problem {
    Problem::new("", "Could not read dataset")
        .with("dataset", dataset)
        .with("error", e)
}

/// Run `rule` on the file's metadata readers; a failure becomes a problem.
fn read<T>(
    fa: &Arc<FileAccess>,
    dataset: &str,
    problems: &mut Vec<Problem>,
    rule: impl Fn(&dyn MetaReader) -> MetaResult<T>,
) -> Option<T> {
    match fa.read_meta(rule) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(read_problem(dataset, &e));
            None
        }
    }
}

/// `INDEX/trainId` as numpy holds it: stored as int64, a negative ID is negative
/// (out of order after positive ones), not a huge unsigned one.
fn all_train_ids(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) -> Option<Vec<i128>> {
    read(fa, "INDEX/trainId", problems, |r| {
        let signed = is_signed(&r.dtype_shape("INDEX/trainId")?.0);
        let ids = r.read_ints("INDEX/trainId", None)?;
        Ok(ids.into_iter().map(|t| index_value(t, signed)).collect())
    })
}

pub(super) fn train_ids_nonzero(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let Some(tids) = all_train_ids(fa, problems) else {
        return;
    };
    if let Some(first0) = tids.iter().position(|&t| t == 0) {
        if tids[first0..].iter().any(|&t| t != 0) {
            problems.push(
                Problem::new("", "Zeroes in trainId index before last train ID")
                    .with("dataset", "INDEX/trainId"),
            );
        }
    }
}

pub(super) fn train_ids_order(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let Some(tids) = all_train_ids(fa, problems) else {
        return;
    };
    let nonzero: Vec<i128> = tids.into_iter().filter(|&t| t != 0).collect();
    if let Some(pos) = nonzero.windows(2).position(|w| w[1] <= w[0]) {
        problems.push(
            Problem::new(
                "",
                format!(
                    "Train IDs are not strictly increasing, e.g. at {pos} ({} >= {})",
                    nonzero[pos],
                    nonzero[pos + 1]
                ),
            )
            .with("dataset", "INDEX/trainId"),
        );
    }
}

pub(super) fn train_ids_unique(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let Some(tids) = all_train_ids(fa, problems) else {
        return;
    };
    let mut sorted: Vec<i128> = tids.into_iter().filter(|&t| t != 0).collect();
    sorted.sort_unstable();
    let dups: BTreeSet<i128> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    if let Some(first) = dups.first() {
        problems.push(
            Problem::new(
                "",
                format!("Duplicate train IDs ({}), e.g. {first}", dups.len()),
            )
            .with("dataset", "INDEX/trainId"),
        );
    }
}

/// An index group's arrays, read whole (EXtra-data's `_get_index` in validation).
struct IndexArrays {
    first: Vec<u64>,
    count: Vec<u64>,
    first_shape: Vec<usize>,
    count_shape: Vec<usize>,
    /// Stored as signed integers: the values are their two's complement, and
    /// negative ones are compared and printed as numpy does (`128 + -5 < 256`).
    first_signed: bool,
    count_signed: bool,
}

fn is_signed(dtype: &DType) -> bool {
    match dtype {
        DType::Int(_) => true,
        DType::BigEndian(inner) => is_signed(inner),
        _ => false,
    }
}

/// `first + count` as numpy computes it: uint64 sums (`wrap`) wrap around.
fn index_end(first: i128, count: i128, wrap: bool) -> i128 {
    let end = first + count;
    if wrap {
        end % (1i128 << 64)
    } else {
        end
    }
}

/// An index value as numpy holds it: a stored int64 is read back from its bits.
fn index_value(v: u64, signed: bool) -> i128 {
    if signed {
        i128::from(v as i64)
    } else {
        i128::from(v)
    }
}

/// First and count (or first/last/status) of `INDEX/<base>`, whole. Arrays that
/// are not 1-D are returned empty with their shapes.
fn index_arrays(r: &dyn MetaReader, base: &str) -> MetaResult<IndexArrays> {
    let first_path = format!("{base}/first");
    let (first_dtype, first_shape) = r.dtype_shape(&first_path)?;
    let (count_path, legacy) = match r.dtype_shape(&format!("{base}/count")) {
        Ok(_) => (format!("{base}/count"), false),
        Err(MetaError::NotFound(_)) => (format!("{base}/last"), true),
        Err(e) => return Err(e),
    };
    let (count_dtype, mut count_shape) = r.dtype_shape(&count_path)?;
    let mut arrays = IndexArrays {
        first: Vec::new(),
        count: Vec::new(),
        first_shape,
        count_shape: count_shape.clone(),
        first_signed: is_signed(&first_dtype),
        // A legacy count is computed from last and status in uint64, as numpy does.
        count_signed: !legacy && is_signed(&count_dtype),
    };
    if arrays.first_shape.len() != 1 || count_shape.len() != 1 {
        return Ok(arrays);
    }
    arrays.first = r.read_ints(&first_path, None)?;
    arrays.count = if legacy {
        let last = r.read_ints(&count_path, None)?;
        let status = r.read_ints(&format!("{base}/status"), None)?;
        if last.len() != status.len() || last.len() != arrays.first.len() {
            // numpy cannot broadcast these; report the lengths that differ.
            count_shape = vec![last.len().min(status.len())];
            arrays.count_shape = count_shape;
            return Ok(arrays);
        }
        arrays
            .first
            .iter()
            .zip(&last)
            .zip(&status)
            .map(|((&f, &l), &s)| l.wrapping_sub(f).wrapping_add(1).wrapping_mul(s))
            .collect()
    } else {
        r.read_ints(&count_path, None)?
    };
    Ok(arrays)
}

/// Largest `first + count` over the file's trains (numpy's wrapping uint64 sum), if
/// it is past `rows`; `None` when the arrays cannot be combined (lengths differ).
fn end_outside(ix: &IndexArrays, ntrains: usize, rows: u64) -> Option<i128> {
    let n = ntrains.min(ix.first.len());
    if ix.count.len().min(ntrains) != n {
        return None;
    }
    let wrap = !ix.first_signed && !ix.count_signed;
    let max_end = ix.first[..n]
        .iter()
        .zip(&ix.count[..n])
        .map(|(&f, &c)| {
            index_end(
                index_value(f, ix.first_signed),
                index_value(c, ix.count_signed),
                wrap,
            )
        })
        .max()?;
    (max_end > i128::from(rows)).then_some(max_end)
}

/// The file's trains as the index checks see them.
#[derive(Clone, Copy)]
struct Trains {
    /// Non-zero train IDs.
    n: usize,
    /// Length of `INDEX/trainId` when its zeros are trailing padding only.
    padded_len: Option<usize>,
}

fn trains(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) -> Option<Trains> {
    let raw = all_train_ids(fa, problems)?;
    let n = raw.iter().filter(|&&t| t != 0).count();
    let trailing = raw[..n].iter().all(|&t| t != 0);
    Some(Trains {
        n,
        padded_len: (trailing && raw.len() > n).then_some(raw.len()),
    })
}

/// EXtra-data's `_check_index`, except that an index padded like `INDEX/trainId`
/// (same length, zero entries where the train IDs are padding) is not a problem.
fn check_index(ix: &IndexArrays, trains: Trains, dataset: &str, problems: &mut Vec<Problem>) {
    let ntrains = trains.n;
    let shape_problem = |msg: &str| {
        Problem::new("", msg)
            .with("dataset", dataset)
            .with("first_shape", shape_repr(&ix.first_shape))
            .with("count_shape", shape_repr(&ix.count_shape))
    };
    if ix.first_shape.len() != 1 || ix.count_shape.len() != 1 {
        problems.push(shape_problem("Index first / count are not 1D"));
        return;
    }
    if ix.first.len() != ix.count.len() || ix.first_shape != ix.count_shape {
        problems.push(shape_problem(
            "Index first & count have different number of entries",
        ));
        return;
    }
    let padding_only = trains.padded_len == Some(ix.first.len())
        && ix.first[ntrains..].iter().all(|&f| f == 0)
        && ix.count[ntrains..].iter().all(|&c| c == 0);
    let n = if padding_only {
        ntrains
    } else {
        if ix.first.len() != ntrains {
            problems.push(
                Problem::new("", "Index has wrong number of entries")
                    .with("dataset", dataset)
                    .with("index_shape", shape_repr(&ix.first_shape))
                    .with("trainids_shape", shape_repr(&[ntrains])),
            );
        }
        ix.first.len()
    };
    let first: Vec<i128> = ix.first[..n]
        .iter()
        .map(|&v| index_value(v, ix.first_signed))
        .collect();
    let count: Vec<i128> = ix.count[..n]
        .iter()
        .map(|&v| index_value(v, ix.count_signed))
        .collect();
    let wrap = !ix.first_signed && !ix.count_signed;
    check_index_contiguous(&first, &count, wrap, dataset, problems);
}

/// `wrap`: first and count are both unsigned, and numpy's uint64 `first + count`
/// wraps around.
fn check_index_contiguous(
    first: &[i128],
    count: &[i128],
    wrap: bool,
    dataset: &str,
    problems: &mut Vec<Problem>,
) {
    let Some(&f0) = first.first() else {
        return;
    };
    if f0 != 0 {
        problems.push(Problem::new("", "Index doesn't start at 0").with("dataset", dataset));
    }
    // numpy computes these gaps in float64 (int64 - uint64); i128 is exact.
    let gaps: Vec<i128> = (0..first.len().saturating_sub(1))
        .map(|i| first[i + 1] - index_end(first[i], count[i], wrap))
        .collect();
    let report = |pred: fn(&i128) -> bool, what: &str, op: &str, problems: &mut Vec<Problem>| {
        let n = gaps.iter().filter(|g| pred(g)).count();
        if let Some(pos) = gaps.iter().position(pred) {
            problems.push(
                Problem::new(
                    "",
                    format!(
                        "{what} ({n}) in index, e.g. at {pos} ({} + {} {op} {})",
                        first[pos],
                        count[pos],
                        first[pos + 1]
                    ),
                )
                .with("dataset", dataset),
            );
        }
    };
    report(|g| *g > 0, "Gaps", "<", problems);
    report(|g| *g < 0, "Overlaps", ">", problems);
}

/// Rows of a dataset (its first dimension; 0 for a scalar).
fn rows(fa: &Arc<FileAccess>, dataset: &str, problems: &mut Vec<Problem>) -> Option<u64> {
    read(fa, dataset, problems, |r| r.dtype_shape(dataset))
        .map(|(_, shape)| shape.first().copied().unwrap_or(0) as u64)
}

fn keys(fa: &Arc<FileAccess>, source: &str, problems: &mut Vec<Problem>) -> Vec<String> {
    match fa.get_keys(source) {
        Ok(k) => k.iter().cloned().collect(),
        Err(e) => {
            problems.push(read_problem(source, &e));
            Vec::new()
        }
    }
}

pub(super) fn index_control(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let n = fa.train_ids.len();
    let Some(t) = trains(fa, problems) else {
        return;
    };
    for src in &fa.control_sources {
        let base = format!("INDEX/{src}");
        let Some(ix) = read(fa, &base, problems, |r| index_arrays(r, &base)) else {
            continue;
        };
        for key in keys(fa, src, problems) {
            let ds = format!("CONTROL/{src}/{}", key.replace('.', "/"));
            let Some(dim0) = rows(fa, &ds, problems) else {
                continue;
            };
            if let Some(max_end) = end_outside(&ix, n, dim0) {
                problems.push(
                    Problem::new(
                        "",
                        format!("Index referring to data ({max_end}) outside dataset ({dim0})"),
                    )
                    .with("dataset", &ds),
                );
                // One per source: every key of a bad source would repeat it.
                break;
            }
        }
        check_index(&ix, t, &base, problems);
    }
}

pub(super) fn index_instrument(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    let n = fa.train_ids.len();
    let Some(t) = trains(fa, problems) else {
        return;
    };
    for src in &fa.instrument_sources {
        let mut groups: BTreeMap<String, Option<IndexArrays>> = BTreeMap::new();
        for key in keys(fa, src, problems) {
            let ds = format!("INSTRUMENT/{src}/{}", key.replace('.', "/"));
            let group = key.split('.').next().unwrap_or("").to_string();
            let base = format!("INDEX/{src}/{group}");
            let ix = groups
                .entry(group)
                .or_insert_with(|| read(fa, &base, problems, |r| index_arrays(r, &base)));
            let Some(ix) = ix else {
                continue;
            };
            let Some(dim0) = rows(fa, &ds, problems) else {
                continue;
            };
            if let Some(max_end) = end_outside(ix, n, dim0) {
                problems.push(
                    Problem::new(
                        "",
                        format!("Index referring to data ({max_end}) outside dataset ({dim0})"),
                    )
                    .with("dataset", &ds),
                );
            }
        }
        for (group, ix) in &groups {
            if let Some(ix) = ix {
                check_index(ix, t, &format!("INDEX/{src}/{group}"), problems);
            }
        }
    }
}

pub(super) fn control_timestamps_order(fa: &Arc<FileAccess>, problems: &mut Vec<Problem>) {
    for src in &fa.control_sources {
        for key in keys(fa, src, problems) {
            if !key.ends_with(".timestamp") {
                continue;
            }
            let ds = format!("CONTROL/{src}/{}", key.replace('.', "/"));
            let Some(ts) = read(fa, &ds, problems, |r| r.read_ints(&ds, None)) else {
                continue;
            };
            let nonzero = match ts.iter().position(|&t| t == 0) {
                Some(first0) => {
                    if ts[first0..].iter().any(|&t| t != 0) {
                        problems.push(
                            Problem::new("", "Zeroes in Timestamp before last train ID")
                                .with("dataset", &ds),
                        );
                    }
                    &ts[..first0]
                }
                None => &ts[..],
            };
            if let Some(pos) = nonzero.windows(2).position(|w| w[1] < w[0]) {
                problems.push(
                    Problem::new(
                        "",
                        format!(
                            "Timestamp is decreasing, e.g. at {} ({} < {})",
                            pos + 1,
                            ts[pos + 1],
                            ts[pos]
                        ),
                    )
                    .with("dataset", &ds),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrays(first: &[u64], count: &[u64]) -> IndexArrays {
        IndexArrays {
            first: first.to_vec(),
            count: count.to_vec(),
            first_shape: vec![first.len()],
            count_shape: vec![count.len()],
            first_signed: false,
            count_signed: false,
        }
    }

    fn msgs(ix: &IndexArrays, trains: Trains) -> Vec<String> {
        let mut p = Vec::new();
        check_index(ix, trains, "INDEX/x", &mut p);
        p.into_iter().map(|p| p.msg).collect()
    }

    const FOUR: Trains = Trains {
        n: 4,
        padded_len: None,
    };

    #[test]
    fn contiguous_index_is_fine() {
        assert!(msgs(&arrays(&[0, 2, 2, 5], &[2, 0, 3, 1]), FOUR).is_empty());
    }

    #[test]
    fn gaps_overlaps_and_start_as_extra_data_words_them() {
        assert_eq!(
            msgs(&arrays(&[1, 4, 4, 6], &[2, 1, 3, 1]), FOUR),
            [
                "Index doesn't start at 0",
                "Gaps (1) in index, e.g. at 0 (1 + 2 < 4)",
                "Overlaps (2) in index, e.g. at 1 (4 + 1 > 4)",
            ]
        );
    }

    #[test]
    fn negative_signed_counts_are_printed_as_numpy_does() {
        let mut ix = arrays(&[0, 128, 256, 384], &[128, (-5i64) as u64, 128, 128]);
        assert_eq!(
            msgs(&ix, FOUR),
            ["Gaps (1) in index, e.g. at 1 (128 + 18446744073709551611 < 256)"]
        );
        ix.count_signed = true;
        assert_eq!(
            msgs(&ix, FOUR),
            ["Gaps (1) in index, e.g. at 1 (128 + -5 < 256)"]
        );
    }

    #[test]
    fn length_and_shape_problems() {
        assert_eq!(
            msgs(&arrays(&[0, 1, 2], &[1, 1, 1]), FOUR),
            ["Index has wrong number of entries"]
        );
        assert_eq!(
            msgs(&arrays(&[0, 1, 2, 3], &[1, 1, 1]), FOUR),
            ["Index first & count have different number of entries"]
        );
        let mut two_d = arrays(&[], &[]);
        two_d.first_shape = vec![4, 1];
        two_d.count_shape = vec![4];
        assert_eq!(msgs(&two_d, FOUR), ["Index first / count are not 1D"]);
    }

    #[test]
    fn zero_padding_like_the_train_ids_is_not_a_problem() {
        let padded = arrays(&[0, 1, 2, 3, 0, 0], &[1, 1, 1, 1, 0, 0]);
        let with_padded_tids = Trains {
            n: 4,
            padded_len: Some(6),
        };
        assert!(msgs(&padded, with_padded_tids).is_empty());
        // Without padded train IDs the same arrays are wrong, as for EXtra-data.
        assert_eq!(
            msgs(&padded, FOUR),
            [
                "Index has wrong number of entries",
                "Overlaps (1) in index, e.g. at 3 (3 + 1 > 0)",
            ]
        );
        // Padding positions that hold data are not padding.
        let data_in_padding = arrays(&[0, 1, 2, 3, 4, 0], &[1, 1, 1, 1, 1, 0]);
        assert_eq!(
            msgs(&data_in_padding, with_padded_tids)[0],
            "Index has wrong number of entries"
        );
    }
}
