//! A collection of EuXFEL data (EXtra-data's `DataCollection`): a set of files,
//! the union of their trains, their sources; selection by globs and by trains,
//! union and splitting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::error::{Error, Result};
use super::file_access::FileAccess;
use super::fnmatch::Pattern;
use super::key_data::KeyData;
use super::names::{detector_source_match, near_matches};
use super::selection::{select_train_ids, split_ranges, TrainSelection};
use super::source_data::{Section, SourceData};
use super::warning::Warning;

/// The train IDs a file contributes: all, or only those not flagged suspect.
fn file_train_ids(f: &FileAccess, inc_suspect_trains: bool) -> std::borrow::Cow<'_, [u64]> {
    if inc_suspect_trains {
        std::borrow::Cow::Borrowed(&f.train_ids)
    } else {
        std::borrow::Cow::Owned(f.valid_train_ids())
    }
}

fn strictly_increasing(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[0] < w[1])
}

/// The sorted distinct train IDs of all files. Files of a run hold increasing IDs,
/// and the files of one sequence the same ones: those are appended or recognised as
/// already present without sorting; anything else falls back to sort + dedup.
fn sorted_union<S: AsRef<[u64]>>(per_file: &[S]) -> Vec<u64> {
    let mut order: Vec<&[u64]> = per_file
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| !s.is_empty())
        .collect();
    if order.iter().all(|s| strictly_increasing(s)) {
        order.sort_by_key(|s| s[0]);
        let mut out: Vec<u64> = Vec::new();
        let merged = order.iter().all(|s| {
            match out.last() {
                Some(&last) if s[0] <= last => {
                    // Already present as a contiguous run of the output?
                    let at = out.partition_point(|&t| t < s[0]);
                    out.get(at..at + s.len()) == Some(*s)
                }
                _ => {
                    out.extend_from_slice(s);
                    true
                }
            }
        });
        if merged {
            return out;
        }
    }
    let mut all: Vec<u64> = order.concat();
    all.sort_unstable();
    all.dedup();
    all
}

/// Whether a train ID occurs twice among the files of one source (within a file or
/// across files). Files with increasing IDs and disjoint ranges are checked without
/// sorting the IDs.
fn has_repeated_train<S: AsRef<[u64]>>(per_file: &[S]) -> bool {
    let mut order: Vec<&[u64]> = per_file
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| !s.is_empty())
        .collect();
    if order.iter().all(|s| strictly_increasing(s)) {
        order.sort_by_key(|s| s[0]);
        if order.windows(2).all(|w| w[0][w[0].len() - 1] < w[1][0]) {
            return false;
        }
    }
    let mut all: Vec<u64> = order.concat();
    all.sort_unstable();
    all.windows(2).any(|w| w[0] == w[1])
}

/// A collection of EuXFEL data (EXtra-data's `DataCollection`).
#[derive(Debug, Clone)]
pub struct DataCollection {
    pub files: Vec<Arc<FileAccess>>,
    pub train_ids: Arc<Vec<u64>>,
    pub(crate) sources: BTreeMap<String, SourceData>,
    pub is_single_run: bool,
    pub inc_suspect_trains: bool,
    pub(crate) warnings: Vec<Warning>,
}

/// What `lsxfel` shows of an XTDF detector module (EXtra-data's `detector_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectorInfo {
    /// Pixel dimensions: the last two of `image.data`'s shape.
    pub dims: Vec<usize>,
    /// Frames per train: the smallest non-zero count in the first file by name.
    pub frames_per_train: u64,
    /// `frames_per_train` times the number of trains.
    pub total_frames: u64,
    /// The distinct non-zero frame counts of the first file (more than one:
    /// [`Warning::VaryingFramesPerTrain`]).
    pub frame_counts: BTreeSet<u64>,
}

impl DataCollection {
    /// Build a collection from opened files (checks source conflicts).
    pub fn from_files(
        files: Vec<Arc<FileAccess>>,
        inc_suspect_trains: bool,
        is_single_run: bool,
    ) -> Result<DataCollection> {
        let per_file: Vec<std::borrow::Cow<'_, [u64]>> = files
            .iter()
            .map(|f| file_train_ids(f, inc_suspect_trains))
            .collect();
        let train_ids = Arc::new(sorted_union(&per_file));
        let mut by_src: BTreeMap<(String, Section), Vec<Arc<FileAccess>>> = BTreeMap::new();
        let mut legacy = BTreeMap::new();
        for f in &files {
            for s in &f.control_sources {
                by_src
                    .entry((s.clone(), Section::Control))
                    .or_default()
                    .push(f.clone());
            }
            for s in &f.instrument_sources {
                by_src
                    .entry((s.clone(), Section::Instrument))
                    .or_default()
                    .push(f.clone());
            }
            legacy.extend(f.legacy_sources.iter().map(|(a, b)| (a.clone(), b.clone())));
        }
        let mut sources = BTreeMap::new();
        for ((name, section), fs) in by_src {
            let canonical = legacy.get(&name).cloned().unwrap_or_else(|| name.clone());
            // A name both in CONTROL and INSTRUMENT cannot happen (':' in instrument names).
            sources.insert(
                name.clone(),
                SourceData {
                    source: name,
                    section,
                    files: fs,
                    sel_keys: None,
                    train_ids: train_ids.clone(),
                    canonical_name: canonical,
                    is_single_run,
                    inc_suspect_trains,
                },
            );
        }
        let dc = DataCollection {
            files,
            train_ids,
            sources,
            is_single_run,
            inc_suspect_trains,
            warnings: Vec::new(),
        };
        dc.check_source_conflicts()?;
        Ok(dc)
    }

    /// Same train for the same source in two files -> error. O(n log n) per distinct
    /// file set (sort + adjacent compare), each file set checked once.
    fn check_source_conflicts(&self) -> Result<()> {
        let mut cache: HashMap<Vec<usize>, bool> = HashMap::new();
        let mut bad = Vec::new();
        let ptr_of = |f: &Arc<FileAccess>| Arc::as_ptr(f) as usize;
        // Sources in one file too: a train ID twice in a file is a conflict, as in
        // EXtra-data.
        for (name, sd) in &self.sources {
            let mut key: Vec<usize> = sd.files.iter().map(ptr_of).collect();
            key.sort_unstable();
            let conflict = *cache.entry(key).or_insert_with(|| {
                let per_file: Vec<_> = sd
                    .files
                    .iter()
                    .map(|f| file_train_ids(f, self.inc_suspect_trains))
                    .collect();
                has_repeated_train(&per_file)
            });
            if conflict {
                bad.push(name.clone());
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::SourceConflict {
                count: bad.len(),
                sources: bad.join(", "),
            })
        }
    }

    pub fn control_sources(&self) -> BTreeSet<String> {
        self.sources
            .values()
            .filter(|s| s.is_control())
            .map(|s| s.source.clone())
            .collect()
    }

    pub fn instrument_sources(&self) -> BTreeSet<String> {
        self.sources
            .values()
            .filter(|s| s.is_instrument())
            .map(|s| s.source.clone())
            .collect()
    }

    pub fn all_sources(&self) -> BTreeSet<String> {
        self.sources.keys().cloned().collect()
    }

    /// Legacy name -> canonical name.
    pub fn legacy_sources(&self) -> BTreeMap<String, String> {
        self.sources
            .values()
            .filter(|s| s.is_legacy())
            .map(|s| (s.source.clone(), s.canonical_name.clone()))
            .collect()
    }

    /// Instrument sources matching `(.+/(?:DET|CORR))/(\d+)CH`, minus legacy names.
    pub fn detector_sources(&self) -> BTreeSet<String> {
        let legacy = self.legacy_sources();
        self.instrument_sources()
            .into_iter()
            .filter(|s| detector_source_match(s).is_some() && !legacy.contains_key(s))
            .collect()
    }

    /// The selection: source -> selected keys (None = all).
    pub fn selection(&self) -> BTreeMap<String, Option<BTreeSet<String>>> {
        self.sources
            .iter()
            .map(|(k, v)| (k.clone(), v.sel_keys.clone()))
            .collect()
    }

    /// `run[source]`.
    pub fn source(&self, name: &str) -> Result<&SourceData> {
        self.sources.get(name).ok_or_else(|| Error::SourceName {
            source_name: name.into(),
            hint: near_matches(name, &self.all_sources()),
        })
    }

    /// `run[source, key]` (control keys may omit `.value`).
    pub fn key(&self, source: &str, key: &str) -> Result<KeyData> {
        self.source(source)?.key(key)
    }

    /// Keys of a source (selected ones), with timestamps.
    pub fn keys_for_source(&self, source: &str) -> Result<BTreeSet<String>> {
        self.source(source)?.keys(true)
    }

    fn select_glob(
        &self,
        source_glob: &str,
        key_glob: &str,
    ) -> Result<BTreeMap<String, Option<BTreeSet<String>>>> {
        let sp = Pattern::new(source_glob);
        let kp = Pattern::new(key_glob);
        let ctrl_glob = if key_glob.ends_with(".value") || key_glob.ends_with('*') {
            key_glob.to_string()
        } else {
            format!("{key_glob}.value")
        };
        let cp = Pattern::new(&ctrl_glob);
        let mut matched = BTreeMap::new();
        for (name, sd) in &self.sources {
            if !sp.matches(name) {
                continue;
            }
            if key_glob == "*" {
                matched.insert(name.clone(), sd.sel_keys.clone());
            } else if !Pattern::has_wildcards(key_glob) {
                let k = if sd.is_control() {
                    &ctrl_glob
                } else {
                    key_glob
                };
                if sd.has_key(k)? {
                    matched.insert(name.clone(), Some(BTreeSet::from([k.to_string()])));
                }
            } else {
                let p = if sd.is_control() { &cp } else { &kp };
                let keys: BTreeSet<String> = sd
                    .keys(true)?
                    .into_iter()
                    .filter(|k| p.matches(k))
                    .collect();
                if !keys.is_empty() {
                    matched.insert(name.clone(), Some(keys));
                }
            }
        }
        if matched.is_empty() {
            return Err(Error::NoMatch {
                source_glob: source_glob.into(),
                key_glob: key_glob.into(),
            });
        }
        Ok(matched)
    }

    /// Expand (source glob, key glob) pairs into source -> keys, union over patterns.
    fn expand(
        &self,
        patterns: &[(String, String)],
    ) -> Result<BTreeMap<String, Option<BTreeSet<String>>>> {
        let mut out: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for (s, k) in patterns {
            for (src, keys) in self.select_glob(s, k)? {
                match out.get_mut(&src) {
                    None => {
                        out.insert(src, keys);
                    }
                    Some(cur) => match (cur.as_mut(), keys) {
                        (None, _) => {}
                        (Some(_), None) => *cur = None,
                        (Some(c), Some(k)) => c.extend(k),
                    },
                }
            }
        }
        Ok(out)
    }

    /// Select sources and keys by (source glob, key glob) pairs. `require_all` /
    /// `require_any` keep only trains where all / any selected source index groups have data.
    pub fn select(
        &self,
        patterns: &[(String, String)],
        require_all: bool,
        require_any: bool,
    ) -> Result<DataCollection> {
        let expanded = self.expand(patterns)?;
        let mut sources: BTreeMap<String, SourceData> = BTreeMap::new();
        for (src, keys) in expanded {
            let sd = &self.sources[&src];
            sources.insert(src, sd.select_keys(keys));
        }
        let mut train_ids = self.train_ids.clone();
        if require_all || require_any {
            let mut tids: BTreeSet<u64> = if require_all {
                self.train_ids.iter().copied().collect()
            } else {
                BTreeSet::new()
            };
            for (src, sd) in &sources {
                if sd.is_run_only()? {
                    continue;
                }
                for g in sd.index_groups()? {
                    let mut have = BTreeSet::new();
                    for f in &self.sources[src].files {
                        let ix = f.get_index(src, &g)?;
                        for (i, (&t, &c)) in f.train_ids.iter().zip(&ix.1).enumerate() {
                            if c > 0 && (self.inc_suspect_trains || f.validity_flag[i]) {
                                have.insert(t);
                            }
                        }
                    }
                    if require_all {
                        tids = tids.intersection(&have).copied().collect();
                    } else {
                        tids.extend(have);
                    }
                }
            }
            let v: Vec<u64> = tids.into_iter().collect();
            train_ids = Arc::new(v);
            for sd in sources.values_mut() {
                *sd = sd.only_tids(train_ids.clone());
            }
        }
        self.rebuild(sources, train_ids)
    }

    /// Select by a simple source glob and key glob.
    pub fn select_glob_pair(&self, source_glob: &str, key_glob: &str) -> Result<DataCollection> {
        self.select(&[(source_glob.into(), key_glob.into())], false, false)
    }

    /// Everything except the matched sources / keys.
    pub fn deselect(&self, patterns: &[(String, String)]) -> Result<DataCollection> {
        let expanded = self.expand(patterns)?;
        let mut sources = BTreeMap::new();
        for (name, sd) in &self.sources {
            match expanded.get(name) {
                None => {
                    sources.insert(name.clone(), sd.clone());
                }
                Some(None) => {}
                Some(Some(drop)) => {
                    let cur = sd.keys(true)?;
                    let keep: BTreeSet<String> = cur.difference(drop).cloned().collect();
                    if !keep.is_empty() {
                        sources.insert(
                            name.clone(),
                            SourceData {
                                sel_keys: Some(keep),
                                ..sd.clone()
                            },
                        );
                    }
                }
            }
        }
        self.rebuild(sources, self.train_ids.clone())
    }

    fn rebuild(
        &self,
        sources: BTreeMap<String, SourceData>,
        train_ids: Arc<Vec<u64>>,
    ) -> Result<DataCollection> {
        let mut seen = BTreeSet::new();
        let mut files = Vec::new();
        for sd in sources.values() {
            for f in &sd.files {
                if seen.insert(Arc::as_ptr(f) as usize) {
                    files.push(f.clone());
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(DataCollection {
            files,
            train_ids,
            sources,
            is_single_run: self.is_single_run,
            inc_suspect_trains: self.inc_suspect_trains,
            warnings: Vec::new(),
        })
    }

    /// Select trains by ID range/list or by index. The new collection's
    /// [`DataCollection::warnings`] are those of this selection.
    pub fn select_trains(&self, sel: &TrainSelection) -> Result<DataCollection> {
        let mut warnings = Vec::new();
        let tids = Arc::new(select_train_ids(&self.train_ids, sel, &mut warnings)?);
        let sources = self
            .sources
            .iter()
            .map(|(k, v)| (k.clone(), v.only_tids(tids.clone())))
            .collect();
        let mut dc = self.rebuild(sources, tids)?;
        dc.warnings = warnings;
        Ok(dc)
    }

    /// Split into parts with EXtra-data's arithmetic.
    pub fn split_trains(
        &self,
        parts: Option<usize>,
        trains_per_part: Option<usize>,
    ) -> Result<Vec<DataCollection>> {
        split_ranges(self.train_ids.len(), parts, trains_per_part)?
            .into_iter()
            .map(|r| {
                self.select_trains(&TrainSelection::IndexRange(
                    Some(r.start as i64),
                    Some(r.end as i64),
                    None,
                ))
            })
            .collect()
    }

    /// Union of collections: sources merged, train IDs unioned and applied to all.
    pub fn union(&self, others: &[&DataCollection]) -> Result<DataCollection> {
        let mut sources: BTreeMap<String, SourceData> = self.sources.clone();
        for o in others {
            for (name, sd) in &o.sources {
                match sources.get_mut(name) {
                    None => {
                        sources.insert(name.clone(), sd.clone());
                    }
                    Some(cur) => {
                        let sel = match (&cur.sel_keys, &sd.sel_keys) {
                            (Some(a), Some(b)) => Some(a.union(b).cloned().collect()),
                            _ => None,
                        };
                        let mut files = cur.files.clone();
                        for f in &sd.files {
                            if !files.iter().any(|g| Arc::ptr_eq(g, f) || g.path == f.path) {
                                files.push(f.clone());
                            }
                        }
                        files.sort_by_key(|f| f.filename());
                        cur.files = files;
                        cur.sel_keys = sel;
                    }
                }
            }
        }
        let mut tids: BTreeSet<u64> = self.train_ids.iter().copied().collect();
        for o in others {
            tids.extend(o.train_ids.iter().copied());
        }
        let tids = Arc::new(tids.into_iter().collect::<Vec<_>>());
        for sd in sources.values_mut() {
            sd.train_ids = tids.clone();
        }
        let mut dc = self.rebuild(sources, tids)?;
        dc.is_single_run = self.is_single_run
            && others.iter().all(|o| o.is_single_run)
            && self.run_ident().is_some()
            && others.iter().all(|o| o.run_ident() == self.run_ident());
        dc.check_source_conflicts()?;
        Ok(dc)
    }

    /// (proposal, run) from the first file's METADATA, if present and readable.
    fn run_ident(&self) -> Option<(u64, u64)> {
        self.files.first()?.run_ident().ok().flatten()
    }

    /// Returns section -> (display name -> aggregator of its first file).
    pub fn auxiliary_sources(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        // (source, section) -> aggregator -> files
        type ByAgg = BTreeMap<String, Vec<Arc<FileAccess>>>;
        let mut by_src: BTreeMap<(String, String), ByAgg> = BTreeMap::new();
        let mut files: Vec<&Arc<FileAccess>> = self.files.iter().collect();
        files.sort_by_key(|f| f.filename());
        for f in files {
            let agg = f.aggregator().unwrap_or_else(|| "None".into());
            for (section, srcs) in f.auxiliary_sources()? {
                for s in srcs {
                    by_src
                        .entry((s, section.clone()))
                        .or_default()
                        .entry(agg.clone())
                        .or_default()
                        .push(f.clone());
                }
            }
        }
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for ((src, section), by_agg) in by_src {
            let mut with_prefix = true;
            if by_agg.len() == 1 {
                if let Some(fs) = by_agg.values().next() {
                    if fs.iter().any(|f| {
                        f.all_sources()
                            .iter()
                            .any(|real| src.ends_with(real.as_str()))
                    }) {
                        with_prefix = false;
                    }
                }
            }
            let m = out.entry(section).or_default();
            for (agg, fs) in by_agg {
                let name = if with_prefix {
                    format!("{agg}@{src}")
                } else {
                    src.clone()
                };
                let first_agg = fs
                    .first()
                    .and_then(|f| f.aggregator())
                    .unwrap_or_else(|| "None".into());
                m.insert(name, first_agg);
            }
        }
        Ok(out)
    }

    /// Timestamp of each train (ns since the Unix epoch, UTC) from `INDEX/timestamp`;
    /// `None` where no file has one (format 0.5) or it is 0 (EXtra-data's NaT).
    pub fn train_timestamps(&self) -> Result<Vec<Option<u64>>> {
        let pos: HashMap<u64, usize> = self
            .train_ids
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i))
            .collect();
        let mut out: Vec<Option<u64>> = vec![None; self.train_ids.len()];
        let mut missing = self.train_ids.len();
        for f in &self.files {
            if missing == 0 {
                break;
            }
            let wanted = f.train_ids.iter().zip(&f.validity_flag).any(|(t, &v)| {
                pos.get(t).is_some_and(|&i| out[i].is_none()) && (v || self.inc_suspect_trains)
            });
            if !wanted {
                continue;
            }
            let Some(ts) = f.timestamps()? else {
                continue;
            };
            for ((t, &v), &s) in f.train_ids.iter().zip(&f.validity_flag).zip(&ts) {
                if !(v || self.inc_suspect_trains) {
                    continue;
                }
                if let Some(&i) = pos.get(t) {
                    if out[i].is_none() && s != 0 {
                        out[i] = Some(s);
                        missing -= 1;
                    }
                }
            }
        }
        Ok(out)
    }

    /// EXtra-data's `detector_info` of a detector module source.
    pub fn detector_info(&self, source: &str) -> Result<DetectorInfo> {
        let sd = self.source(source)?;
        let f0 = sd
            .files
            .iter()
            .min_by_key(|f| f.filename())
            .ok_or_else(|| Error::SourceName {
                source_name: source.into(),
                hint: " (no files)".into(),
            })?;
        let ix = f0.get_index(source, "image")?;
        let mut frame_counts: BTreeSet<u64> = ix.1.iter().copied().collect();
        frame_counts.remove(&0);
        let frames_per_train = frame_counts.first().copied().unwrap_or(0);
        let (_, shape) = f0.key_dtype_shape(source, "image.data")?;
        Ok(DetectorInfo {
            dims: shape[shape.len().saturating_sub(2)..].to_vec(),
            frames_per_train,
            total_frames: frames_per_train.saturating_mul(self.train_ids.len() as u64),
            frame_counts,
        })
    }

    /// Warnings of the call that made this collection: files skipped when opening
    /// it, or train IDs outside the data when selecting trains.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
}

#[cfg(test)]
mod tests {
    use super::{has_repeated_train, sorted_union};

    fn by_sorting(per_file: &[Vec<u64>]) -> (Vec<u64>, bool) {
        let mut all = per_file.concat();
        all.sort_unstable();
        let repeated = all.windows(2).any(|w| w[0] == w[1]);
        all.dedup();
        (all, repeated)
    }

    // The fast paths give what sorting gives, for run-like layouts and for the
    // irregular ones that fall back.
    #[test]
    fn union_and_repeats_match_sorting() {
        let cases: Vec<Vec<Vec<u64>>> = vec![
            vec![],
            vec![vec![], vec![5, 6]],
            // Two modules over two sequences (same IDs per sequence), any order.
            vec![vec![3, 4, 5], vec![1, 2], vec![1, 2], vec![3, 4, 5]],
            // A file with a gap that another file fills.
            vec![vec![1, 3, 5], vec![2, 4]],
            // Overlapping but not equal, a subset that is not contiguous.
            vec![vec![1, 2, 3], vec![2, 3, 4]],
            vec![vec![1, 2, 3, 4], vec![2, 4]],
            vec![vec![1, 2, 3, 4], vec![2, 3]],
            // Unsorted and repeated within one file.
            vec![vec![3, 1, 2]],
            vec![vec![1, 2, 2, 3]],
            vec![vec![u64::MAX], vec![0, u64::MAX]],
        ];
        for c in &cases {
            let (union, repeated) = by_sorting(c);
            assert_eq!(sorted_union(c), union, "{c:?}");
            assert_eq!(has_repeated_train(c), repeated, "{c:?}");
        }
    }
}
