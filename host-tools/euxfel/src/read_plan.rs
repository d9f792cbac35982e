//! Read plans: where opening one file of an aggregator found its metadata, asked
//! for at once when the other files of that aggregator are opened.
//!
//! The sequence files of one aggregator (`RAW-R0450-LPD15-S00000.h5`,
//! `...-S00001.h5`, ...) are written by the same writer with the same sources, so
//! their groups, index datasets and string heaps sit at the same places. Opening a
//! file reads a few dozen KiB scattered over it; with page caches dropped, the
//! generic prefetch (the file's head, then the neighbourhood of each top-level
//! group) reads more than that and waits twice per file. A plan made from the
//! first file's accesses asks for exactly those pages, in one round. It is only a
//! hint: a page it misses is read when the walk touches it, so a file laid out
//! differently is read correctly, only more slowly.

use std::ops::Range;

const PAGE: u64 = 4096;

/// Pages between two accessed runs that are read anyway to make one request of
/// two: a request costs about as much as five more pages (a queued read of the
/// virtual disk here, ~17 us, against ~3 us per 4 KiB page).
const MERGE_GAP: u64 = 4 * PAGE;

/// Byte ranges to ask for when a file of an aggregator is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadPlan {
    /// Length of the file the plan was made from.
    len: u64,
    /// Page-aligned, sorted, disjoint ranges in that file.
    ranges: Vec<Range<u64>>,
}

impl ReadPlan {
    /// The plan for the accesses `(offset, len)` made while opening a file of
    /// length `len`: their pages, with gaps of up to [`MERGE_GAP`] filled.
    pub fn from_accesses(len: u64, accesses: &[(u64, u64)]) -> ReadPlan {
        let mut pages: Vec<Range<u64>> = accesses
            .iter()
            .filter(|&&(_, n)| n > 0)
            .map(|&(off, n)| {
                let end = off.saturating_add(n).min(len);
                off / PAGE * PAGE..end.div_ceil(PAGE) * PAGE
            })
            .filter(|r| r.start < r.end)
            .collect();
        pages.sort_unstable_by_key(|r| r.start);
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for r in pages {
            match ranges.last_mut() {
                Some(last) if r.start <= last.end.saturating_add(MERGE_GAP) => {
                    last.end = last.end.max(r.end);
                }
                _ => ranges.push(r),
            }
        }
        ReadPlan { len, ranges }
    }

    /// The ranges for a file of length `len` of the same aggregator. A range in
    /// the first half of the planned file keeps its offset (objects written when
    /// the file was created); one in the second half keeps its distance to the end
    /// (objects written when it was closed, after the data). Clamped to the file.
    pub fn ranges_for(&self, len: u64) -> Vec<Range<u64>> {
        self.ranges
            .iter()
            .filter_map(|r| {
                let r = if r.start < self.len / 2 || len == self.len {
                    r.clone()
                } else {
                    let from_end = self.len - r.start;
                    let start = len.checked_sub(from_end)? / PAGE * PAGE;
                    start..start + (r.end - r.start)
                };
                let end = r.end.min(len);
                (r.start < end).then_some(r.start..end)
            })
            .collect()
    }
}

/// The aggregator a file belongs to: its name without the sequence number
/// (`RAW-R0450-LPD15-S00003.h5` -> `RAW-R0450-LPD15`); files named otherwise are
/// their own family.
pub(crate) fn family(file_name: &str) -> &str {
    let Some(stem) = file_name.strip_suffix(".h5") else {
        return file_name;
    };
    match stem.rfind("-S") {
        Some(i)
            if i > 0 && stem.len() > i + 2 && stem[i + 2..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &stem[..i]
        }
        _ => file_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_become_merged_page_ranges() {
        let p = ReadPlan::from_accesses(
            100 * PAGE,
            &[
                (10, 20),
                (5000, 3000),
                (90 * PAGE + 7, 1),
                (92 * PAGE, 2 * PAGE),
                (99 * PAGE, 5 * PAGE), // past the end: clamped
                (50 * PAGE, 0),        // empty: no page
            ],
        );
        assert_eq!(
            p.ranges,
            vec![0..2 * PAGE, 90 * PAGE..94 * PAGE, 99 * PAGE..100 * PAGE]
        );
        // Gaps wider than MERGE_GAP stay apart.
        let p = ReadPlan::from_accesses(100 * PAGE, &[(0, 1), (6 * PAGE, 1)]);
        assert_eq!(p.ranges, vec![0..PAGE, 6 * PAGE..7 * PAGE]);
    }

    #[test]
    fn ranges_keep_their_anchor_in_files_of_other_lengths() {
        let p = ReadPlan::from_accesses(100 * PAGE, &[(0, 3 * PAGE), (95 * PAGE, 3 * PAGE)]);
        assert_eq!(p.ranges_for(100 * PAGE), p.ranges);
        // Head ranges keep their offset, tail ranges their distance to the end.
        assert_eq!(
            p.ranges_for(80 * PAGE),
            vec![0..3 * PAGE, 75 * PAGE..78 * PAGE]
        );
        // A much shorter file: what lies beyond it is dropped, the rest clamped.
        assert_eq!(p.ranges_for(2 * PAGE + 5), vec![0..2 * PAGE + 5]);
        assert_eq!(p.ranges_for(0), Vec::<Range<u64>>::new());
    }

    #[test]
    fn families_are_aggregators() {
        assert_eq!(family("RAW-R0450-LPD15-S00003.h5"), "RAW-R0450-LPD15");
        assert_eq!(family("CORR-R0012-AGIPD00-S00000.h5"), "CORR-R0012-AGIPD00");
        assert_eq!(family("RAW-R0450-DA01-S00019.h5"), "RAW-R0450-DA01");
        assert_eq!(family("overview.h5"), "overview.h5");
        assert_eq!(family("data-S.h5"), "data-S.h5");
        assert_eq!(family("-S0001.h5"), "-S0001.h5");
        assert_eq!(family("notes.txt"), "notes.txt");
    }
}
