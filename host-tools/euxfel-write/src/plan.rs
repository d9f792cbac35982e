//! What a selection becomes in the output file: train IDs, flags and timestamps, and for
//! each source and index group the keys, the regenerated per-train counts and the runs of
//! rows ("segments") to take from each source file, in output order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use euxfel::{DataCollection, FileAccess, Section};

use crate::error::{Error, Result};

/// Rows `src_first .. src_first + rows` of a source file go to `dst_first ..` of the output.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub file: Arc<FileAccess>,
    pub src_first: u64,
    pub rows: u64,
    pub dst_first: u64,
}

/// One index group of one source (`""` for control sources).
#[derive(Debug)]
pub(crate) struct GroupPlan {
    pub name: String,
    /// Key names (dotted) written in this group.
    pub keys: Vec<String>,
    /// Entries per output train.
    pub counts: Vec<u64>,
    pub segments: Vec<Segment>,
    pub total: u64,
}

/// One source.
#[derive(Debug)]
pub(crate) struct SourcePlan {
    pub name: String,
    pub section: Section,
    /// The files holding the source, in name order.
    pub files: Vec<Arc<FileAccess>>,
    pub groups: Vec<GroupPlan>,
}

impl SourcePlan {
    /// `CONTROL/<src>` or `INSTRUMENT/<src>`.
    pub fn data_path(&self) -> String {
        format!("{}/{}", self.section.as_str(), self.name)
    }

    /// `INDEX/<src>` or `INDEX/<src>/<group>`.
    pub fn index_path(&self, group: &str) -> String {
        if group.is_empty() {
            format!("INDEX/{}", self.name)
        } else {
            format!("INDEX/{}/{group}", self.name)
        }
    }

    /// The `METADATA/dataSources/dataSourceId` entries of this source.
    pub fn source_ids(&self) -> Vec<String> {
        match self.section {
            Section::Control => vec![self.data_path()],
            Section::Instrument => self
                .groups
                .iter()
                .map(|g| format!("{}/{}", self.data_path(), g.name))
                .collect(),
        }
    }
}

/// The whole output.
#[derive(Debug)]
pub(crate) struct Plan {
    pub train_ids: Vec<u64>,
    /// `INDEX/timestamp`, if any file had one.
    pub timestamps: Option<Vec<u64>>,
    /// `INDEX/flag`: 1 where a train is valid in any file.
    pub flag: Vec<i32>,
    /// The collection's files, in name order (first one gives METADATA).
    pub files: Vec<Arc<FileAccess>>,
    pub is_single_run: bool,
    pub sources: Vec<SourcePlan>,
    /// Legacy source names (soft links) selected with their target: (legacy, target index).
    pub legacy: Vec<(String, usize)>,
}

impl Plan {
    pub fn new(dc: &DataCollection) -> Result<Plan> {
        let train_ids: Vec<u64> = dc.train_ids.iter().copied().collect();
        let pos: HashMap<u64, usize> = train_ids.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        let legacy = dc.legacy_sources();
        let mut sources = Vec::new();
        for name in dc.all_sources() {
            // A legacy name is a soft link to a source that is written under its own name.
            if legacy.contains_key(&name) {
                continue;
            }
            let sd = dc.source(&name)?;
            let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for key in dc.keys_for_source(&name)? {
                let group = match sd.section {
                    Section::Control => String::new(),
                    Section::Instrument => key.split('.').next().unwrap_or("").to_string(),
                };
                by_group.entry(group).or_default().push(key);
            }
            if sd.section == Section::Control && by_group.is_empty() {
                // A RUN-only source still gets its (empty) index.
                by_group.insert(String::new(), Vec::new());
            }
            let selected: HashSet<u64> = sd.train_ids.iter().copied().collect();
            let mut files = sd.files.clone();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            let mut groups = Vec::new();
            for (group, keys) in by_group {
                groups.push(group_plan(
                    &name,
                    group,
                    keys,
                    &files,
                    &selected,
                    dc.inc_suspect_trains,
                    &pos,
                )?);
            }
            sources.push(SourcePlan {
                name,
                section: sd.section,
                files,
                groups,
            });
        }
        if sources.is_empty() {
            return Err(Error::EmptySelection);
        }
        if train_ids.is_empty() {
            return Err(Error::NoTrains);
        }
        let legacy = legacy
            .into_iter()
            .filter(|(name, _)| dc.all_sources().contains(name))
            .filter_map(|(name, target)| {
                let i = sources.iter().position(|s: &SourcePlan| s.name == target)?;
                Some((name, i))
            })
            .collect();
        let ts = dc.train_timestamps()?;
        let timestamps = if ts.iter().any(Option::is_some) {
            Some(ts.iter().map(|t| t.unwrap_or(0)).collect())
        } else {
            None
        };
        let mut flag = vec![0i32; train_ids.len()];
        for f in &dc.files {
            for (t, &valid) in f.train_ids.iter().zip(&f.validity_flag) {
                if let (true, Some(&i)) = (valid, pos.get(t)) {
                    flag[i] = 1;
                }
            }
        }
        let mut files = dc.files.clone();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Plan {
            train_ids,
            timestamps,
            flag,
            files,
            is_single_run: dc.is_single_run,
            sources,
            legacy,
        })
    }
}

/// The segments and counts of one index group: for each file, each run of consecutive
/// selected trains becomes one segment; runs are put in train order (split per train where
/// files interleave).
fn group_plan(
    source: &str,
    group: String,
    keys: Vec<String>,
    files: &[Arc<FileAccess>],
    selected: &HashSet<u64>,
    inc_suspect: bool,
    pos: &HashMap<u64, usize>,
) -> Result<GroupPlan> {
    let mut counts = vec![0u64; pos.len()];
    // (first train position, last train position, file, first row, rows)
    let mut runs: Vec<(usize, usize, Arc<FileAccess>, u64, u64)> = Vec::new();
    let mut per_train: Vec<(usize, usize, Arc<FileAccess>, u64, u64)> = Vec::new();
    for f in files {
        if f.train_ids.is_empty() {
            continue;
        }
        let (firsts, fcounts) = {
            let ix = f.get_index(source, &group)?;
            (ix.0.clone(), ix.1.clone())
        };
        let mut i = 0;
        let n = f.train_ids.len().min(firsts.len()).min(fcounts.len());
        while i < n {
            let take = |i: usize| {
                selected.contains(&f.train_ids[i])
                    && (inc_suspect || f.validity_flag.get(i).copied().unwrap_or(false))
                    && pos.contains_key(&f.train_ids[i])
            };
            if !take(i) {
                i += 1;
                continue;
            }
            let start = i;
            let mut rows = 0u64;
            // A run also ends where the index has a gap or goes back.
            while i < n
                && take(i)
                && (i == start || firsts[i] == firsts[start].saturating_add(rows))
            {
                let p = pos[&f.train_ids[i]];
                counts[p] += fcounts[i];
                per_train.push((p, p, f.clone(), firsts[i], fcounts[i]));
                rows = rows.saturating_add(fcounts[i]);
                i += 1;
            }
            let (p0, p1) = (pos[&f.train_ids[start]], pos[&f.train_ids[i - 1]]);
            runs.push((p0, p1, f.clone(), firsts[start], rows));
        }
    }
    runs.sort_by_key(|r| r.0);
    let ordered = runs.windows(2).all(|w| w[0].1 < w[1].0) && runs.iter().all(|r| r.1 >= r.0);
    let chosen = if ordered {
        runs
    } else {
        per_train.sort_by_key(|r| r.0);
        per_train
    };
    let mut segments = Vec::new();
    let mut dst = 0u64;
    for (_, _, file, src_first, rows) in chosen {
        if rows == 0 {
            continue;
        }
        segments.push(Segment {
            file,
            src_first,
            rows,
            dst_first: dst,
        });
        dst += rows;
    }
    Ok(GroupPlan {
        name: group,
        keys,
        counts,
        segments,
        total: dst,
    })
}
