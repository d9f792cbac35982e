//! A region of interest on the trailing dimensions of each module's entries (EXtra-data's
//! `ndarray(roi=...)`: a tuple of slices and indices applied to every frame, as numpy and
//! h5py index it).

use std::str::FromStr;

use crate::error::{Error, Result};

/// One axis of a region of interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoiAxis {
    /// One position (negative from the end); the axis is dropped from the output.
    Index(i64),
    /// `start:stop:step` as a Python slice (negative bounds from the end, clipped to the
    /// axis); h5py reads only steps >= 1.
    Slice {
        start: Option<i64>,
        stop: Option<i64>,
        step: i64,
    },
}

/// A region of interest: one entry per leading axis of an entry; axes past the last are
/// taken whole. The empty ROI selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roi(pub Vec<RoiAxis>);

impl FromStr for Roi {
    type Err = Error;

    /// Parses numpy's index syntax without brackets: `0:64,::2`, `0`, `:, 10:-10`.
    fn from_str(s: &str) -> Result<Roi> {
        let bad = || Error::Roi(format!("{s:?} is not a region of interest like 0:64,::2"));
        let num = |t: &str| -> Result<Option<i64>> {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse().map(Some).map_err(|_| bad())
            }
        };
        if s.trim().is_empty() {
            return Ok(Roi::default());
        }
        let mut axes = Vec::new();
        for part in s.split(',') {
            let fields: Vec<&str> = part.split(':').collect();
            axes.push(match fields.as_slice() {
                [i] => RoiAxis::Index(num(i)?.ok_or_else(bad)?),
                [a, b] => RoiAxis::Slice {
                    start: num(a)?,
                    stop: num(b)?,
                    step: 1,
                },
                [a, b, c] => RoiAxis::Slice {
                    start: num(a)?,
                    stop: num(b)?,
                    step: num(c)?.unwrap_or(1),
                },
                _ => return Err(bad()),
            });
        }
        Ok(Roi(axes))
    }
}

/// Positions selected on one axis, and whether the axis stays in the output.
struct AxisSel {
    positions: Vec<usize>,
    keep: bool,
}

fn select_axis(axis: Option<&RoiAxis>, len: usize) -> Result<AxisSel> {
    let n = len as i64;
    match axis {
        None => Ok(AxisSel {
            positions: (0..len).collect(),
            keep: true,
        }),
        Some(RoiAxis::Index(i)) => {
            let j = if *i < 0 { i.saturating_add(n) } else { *i };
            if !(0..n).contains(&j) {
                return Err(Error::Roi(format!(
                    "index {i} is out of range for an axis of length {len}"
                )));
            }
            Ok(AxisSel {
                positions: vec![j as usize],
                keep: false,
            })
        }
        Some(RoiAxis::Slice { start, stop, step }) => {
            if *step < 1 {
                return Err(Error::Roi(format!(
                    "slice step {step}: the step must be >= 1"
                )));
            }
            // Python's slice.indices for a positive step.
            let clip = |v: Option<i64>, default: i64| match v {
                None => default,
                Some(v) if v < 0 => v.saturating_add(n).max(0),
                Some(v) => v.min(n),
            };
            let (a, b) = (clip(*start, 0), clip(*stop, n));
            Ok(AxisSel {
                positions: (a..b.max(a))
                    .step_by(*step as usize)
                    .map(|p| p as usize)
                    .collect(),
                keep: true,
            })
        }
    }
}

/// Where the bytes of a ROI lie in one entry: runs of `(offset, length)` of the source entry,
/// concatenated in order they make the output entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoiPlan {
    /// Output entry shape (indexed axes dropped).
    pub shape: Vec<usize>,
    runs: Vec<(usize, usize)>,
    /// Bytes of one output entry (the sum of the run lengths).
    pub entry_bytes: usize,
}

impl RoiPlan {
    /// The plan for `roi` over entries of `shape` with `item`-byte elements.
    pub fn new(roi: &Roi, shape: &[usize], item: usize) -> Result<RoiPlan> {
        if roi.0.len() > shape.len() {
            return Err(Error::Roi(format!(
                "too many indices: {} for entries of {} dimensions",
                roi.0.len(),
                shape.len()
            )));
        }
        let sels = shape
            .iter()
            .enumerate()
            .map(|(i, &len)| select_axis(roi.0.get(i), len))
            .collect::<Result<Vec<_>>>()?;
        let out_shape = sels
            .iter()
            .filter(|s| s.keep)
            .map(|s| s.positions.len())
            .collect();
        // Byte stride of each axis in the source entry (C order).
        let mut strides = vec![item; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        // Every selected element as one run, in output order; adjacent runs merge.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let total: usize = sels.iter().map(|s| s.positions.len()).product();
        let mut idx = vec![0usize; sels.len()];
        for _ in 0..total {
            let off: usize = idx
                .iter()
                .zip(&sels)
                .zip(&strides)
                .map(|((&k, s), st)| s.positions[k] * st)
                .sum();
            match runs.last_mut() {
                Some((o, l)) if *o + *l == off => *l += item,
                _ => runs.push((off, item)),
            }
            // Next multi-index, the last axis fastest.
            for a in (0..idx.len()).rev() {
                idx[a] += 1;
                if idx[a] < sels[a].positions.len() {
                    break;
                }
                idx[a] = 0;
            }
        }
        Ok(RoiPlan {
            shape: out_shape,
            entry_bytes: total * item,
            runs,
        })
    }

    /// Copies the ROI of each `src_bytes`-byte entry of `src` into consecutive output entries
    /// of `out`.
    pub fn gather(&self, src: &[u8], src_bytes: usize, out: &mut [u8]) {
        if self.entry_bytes == 0 || src_bytes == 0 {
            return;
        }
        for (s, o) in src
            .chunks_exact(src_bytes)
            .zip(out.chunks_exact_mut(self.entry_bytes))
        {
            let mut at = 0;
            for &(off, len) in &self.runs {
                o[at..at + len].copy_from_slice(&s[off..off + len]);
                at += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(s: &str, shape: &[usize]) -> Result<RoiPlan> {
        RoiPlan::new(&s.parse()?, shape, 2)
    }

    #[test]
    fn shapes_follow_numpy_indexing() {
        assert_eq!(plan("", &[4, 6]).map(|p| p.shape).ok(), Some(vec![4, 6]));
        assert_eq!(plan("1:3", &[4, 6]).map(|p| p.shape).ok(), Some(vec![2, 6]));
        assert_eq!(plan("0", &[4, 6]).map(|p| p.shape).ok(), Some(vec![6]));
        assert_eq!(plan("-1,::4", &[4, 6]).map(|p| p.shape).ok(), Some(vec![2]));
        assert_eq!(
            plan(":,-10:", &[4, 6]).map(|p| p.shape).ok(),
            Some(vec![4, 6])
        );
        assert_eq!(
            plan("5:,2:1", &[4, 6]).map(|p| p.shape).ok(),
            Some(vec![0, 0])
        );
        assert!(plan("4", &[4, 6]).is_err());
        assert!(plan("::0", &[4, 6]).is_err());
        assert!(plan("::-1", &[4, 6]).is_err());
        assert!(plan("0,0,0", &[4, 6]).is_err());
        assert!(plan("a:b", &[4, 6]).is_err());
        assert!(plan("1:2:3:4", &[4, 6]).is_err());
        // Extreme numbers are errors or clipped, never an overflow.
        assert!(plan("-9223372036854775808", &[4, 6]).is_err());
        assert_eq!(
            plan("-9223372036854775808:9223372036854775807", &[4, 6])
                .map(|p| p.shape)
                .ok(),
            Some(vec![4, 6])
        );
    }

    #[test]
    fn gathers_the_selected_elements_in_order() {
        // Two entries of 3 x 4 elements of one byte each, values = their positions.
        let src: Vec<u8> = (0..24).collect();
        let p = RoiPlan::new(&"1:,::2".parse().expect("roi"), &[3, 4], 1).expect("plan");
        assert_eq!(p.shape, vec![2, 2]);
        let mut out = vec![0u8; 2 * p.entry_bytes];
        p.gather(&src, 12, &mut out);
        assert_eq!(out, vec![4, 6, 8, 10, 16, 18, 20, 22]);
        // Whole rows merge into one run.
        let p = RoiPlan::new(&"1:3".parse().expect("roi"), &[3, 4], 1).expect("plan");
        assert_eq!(p.runs, vec![(4, 8)]);
    }
}
