//! A multi-module detector over a collection (EXtra-data's `MultimodDetectorBase`): its
//! module sources, the frames of each train (consistent across modules), the trains with
//! enough modules, train selection and splitting.

use std::collections::{BTreeMap, BTreeSet};

use euxfel::{split_ranges, DataCollection, TrainSelection};

use crate::detector::DetectorType;
use crate::error::{Error, Result};
use crate::key::MultiModKey;

/// How to build a [`MultiModDetector`] (the keyword arguments of EXtra-data's classes).
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// Needed only when the data holds more than one detector of the type.
    pub detector_name: Option<String>,
    /// Module numbers to use (as in the source names); all by default.
    pub modules: Option<BTreeSet<usize>>,
    /// Keep trains where at least this many modules have data.
    pub min_modules: usize,
    /// `Some(true)` raw only, `Some(false)` corrected only, `None` corrected preferred.
    pub raw: Option<bool>,
    /// JUNGFRAU: modules of the setup (inferred from the source names if `None`).
    pub n_modules: Option<usize>,
    /// JUNGFRAU: the module number in the source name of the first module.
    pub first_modno: usize,
    /// LPD: each train's frames are three gain stages one after the other, the same pulses
    /// in each (EXtra-data's `parallel_gain=True`).
    pub parallel_gain: bool,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            detector_name: None,
            modules: None,
            min_modules: 1,
            raw: None,
            n_modules: None,
            first_modno: 1,
            parallel_gain: false,
        }
    }
}

/// Something EXtra-data warns about while building a detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentWarning {
    /// No corrected sources: raw data is used (`raw=None`).
    RawFallback,
}

impl std::fmt::Display for ComponentWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComponentWarning::RawFallback => f.write_str(
                "Falling back to raw data for backwards compatibility. Please pass raw=False \
                 to make this warning into an error, or raw=True if you intend to work with \
                 raw detector data.",
            ),
        }
    }
}

/// A multi-module detector in a collection.
#[derive(Debug, Clone)]
pub struct MultiModDetector {
    pub kind: DetectorType,
    pub detector_name: String,
    /// Modules of the detector (the type's count, or JUNGFRAU's given/inferred count).
    pub n_modules: usize,
    /// Source -> module number (JUNGFRAU: counted from 1).
    pub source_to_modno: BTreeMap<String, usize>,
    /// The collection restricted to the trains with at least `min_modules` modules.
    pub data: DataCollection,
    /// Entries of the main key per train of `data` (0 where no module has data).
    frame_counts: Vec<u64>,
    /// Frames in one entry (JUNGFRAU burst mode stores several cells per entry).
    frames_per_entry: u64,
    /// LPD frames as three gain stages per train.
    parallel_gain: bool,
    warnings: Vec<ComponentWarning>,
}

impl MultiModDetector {
    /// Finds the detector's module sources in `dc` and checks the frame counts, as
    /// EXtra-data's constructors do.
    pub fn new(
        kind: DetectorType,
        dc: &DataCollection,
        opts: &DetectorOptions,
    ) -> Result<MultiModDetector> {
        let detector_name = match &opts.detector_name {
            Some(n) => n.clone(),
            None => kind.find_detector_name(dc)?,
        };
        if opts.min_modules == 0 {
            return Err(Error::MinModules(0));
        }
        let (mut source_to_modno, fell_back) =
            kind.identify_sources(dc, &detector_name, opts.modules.as_ref(), opts.raw)?;
        let main = kind.main_data_key();
        let n_all = dc.train_ids.len();
        let mut counts: Vec<Vec<u64>> = Vec::with_capacity(source_to_modno.len());
        for src in source_to_modno.keys() {
            counts.push(dc.key(src, main)?.data_counts()?);
        }
        let mut frame_counts_all = vec![0u64; n_all];
        let mut present = vec![0usize; n_all];
        for (i, (fc, p)) in frame_counts_all.iter_mut().zip(&mut present).enumerate() {
            let vals: BTreeSet<u64> = counts.iter().map(|c| c[i]).filter(|&c| c > 0).collect();
            if vals.len() > 1 {
                return Err(Error::InconsistentFrameCounts {
                    train_id: dc.train_ids[i],
                    counts: vals.into_iter().collect(),
                });
            }
            *fc = vals.first().copied().unwrap_or(0);
            *p = counts.iter().filter(|c| c[i] > 0).count();
        }
        let keep: Vec<usize> = (0..n_all)
            .filter(|&i| present[i] >= opts.min_modules)
            .collect();
        if keep.is_empty() {
            return Err(Error::TooFewModules(opts.min_modules));
        }
        let kept_ids: Vec<u64> = keep.iter().map(|&i| dc.train_ids[i]).collect();
        let data = dc.select_trains(&TrainSelection::IdList(kept_ids))?;
        let frame_counts: Vec<u64> = keep.iter().map(|&i| frame_counts_all[i]).collect();
        if opts.parallel_gain {
            if !matches!(kind, DetectorType::Lpd1M | DetectorType::LpdSolo) {
                return Err(Error::ParallelGainType(kind.class_name()));
            }
            if frame_counts.iter().any(|c| c % 3 != 0) {
                return Err(Error::ParallelGainFrames);
            }
        }

        let mut n_modules = kind.n_modules();
        let mut frames_per_entry = 1;
        if kind == DetectorType::Jungfrau {
            let first = opts.first_modno;
            let renumber = |m: usize| (m + 1).checked_sub(first).filter(|&n| n > 0);
            let mut renumbered = BTreeMap::new();
            for (s, m) in source_to_modno {
                let n = renumber(m).ok_or(Error::ModuleBelowFirst { modno: m, first })?;
                renumbered.insert(s, n);
            }
            source_to_modno = renumbered;
            n_modules = match opts.n_modules {
                Some(n) => n,
                None => {
                    let (all, _) = kind.identify_sources(dc, &detector_name, None, opts.raw)?;
                    all.values()
                        .filter_map(|&m| renumber(m))
                        .max()
                        .ok_or(Error::JungfrauModules)?
                }
            };
            if let Some(src) = source_to_modno.keys().next() {
                let kd = data.key(src, main)?;
                frames_per_entry = kd.entry_shape.first().copied().unwrap_or(1) as u64;
            }
        }
        Ok(MultiModDetector {
            kind,
            detector_name,
            n_modules,
            source_to_modno,
            data,
            frame_counts,
            frames_per_entry,
            parallel_gain: opts.parallel_gain,
            warnings: if fell_back {
                vec![ComponentWarning::RawFallback]
            } else {
                Vec::new()
            },
        })
    }

    /// Whether each train's frames are three gain stages (LPD's `parallel_gain`).
    pub fn parallel_gain(&self) -> bool {
        self.parallel_gain
    }

    /// What EXtra-data would have warned about.
    pub fn warnings(&self) -> &[ComponentWarning] {
        &self.warnings
    }

    pub fn train_ids(&self) -> &[u64] {
        &self.data.train_ids
    }

    /// Entries of the main key per train (0 where no module has data).
    pub fn frame_counts(&self) -> &[u64] {
        &self.frame_counts
    }

    pub(crate) fn frames_per_entry(&self) -> u64 {
        self.frames_per_entry
    }

    /// Module number -> source, in module order.
    pub fn modno_to_source(&self) -> BTreeMap<usize, String> {
        self.source_to_modno
            .iter()
            .map(|(s, &m)| (m, s.clone()))
            .collect()
    }

    /// One train ID per entry of the main key.
    pub fn train_ids_perframe(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.frame_counts.iter().sum::<u64>() as usize);
        for (&t, &c) in self.train_ids().iter().zip(&self.frame_counts) {
            out.extend(std::iter::repeat_n(t, c as usize));
        }
        out
    }

    /// Frames per train if all trains with data have the same number.
    pub fn frames_per_train(&self) -> Result<u64> {
        let counts: BTreeSet<u64> = self
            .frame_counts
            .iter()
            .copied()
            .filter(|&c| c > 0)
            .collect();
        if counts.len() > 1 {
            return Err(Error::VaryingFramesPerTrain(counts.into_iter().collect()));
        }
        Ok(counts.first().copied().unwrap_or(0) * self.frames_per_entry)
    }

    /// `det[key]`: the key over all modules.
    pub fn key(&self, key: &str) -> Result<MultiModKey> {
        MultiModKey::new(self.clone(), key)
    }

    /// True where a module has data for the main key (modules, entries).
    pub fn data_availability(&self, module_gaps: bool) -> Result<(Vec<usize>, Vec<bool>)> {
        self.key(self.kind.main_data_key())?
            .data_availability(module_gaps)
    }

    fn with_train_ids(&self, ids: Vec<u64>) -> Result<MultiModDetector> {
        let pos: BTreeMap<u64, u64> = self
            .train_ids()
            .iter()
            .copied()
            .zip(self.frame_counts.iter().copied())
            .collect();
        let data = self.data.select_trains(&TrainSelection::IdList(ids))?;
        let frame_counts = data
            .train_ids
            .iter()
            .map(|t| pos.get(t).copied().unwrap_or(0))
            .collect();
        Ok(MultiModDetector {
            data,
            frame_counts,
            ..self.clone()
        })
    }

    /// A subset of trains (by ID or by position, EXtra-data's selection semantics).
    pub fn select_trains(&self, sel: &TrainSelection) -> Result<MultiModDetector> {
        let data = self.data.select_trains(sel)?;
        self.with_train_ids(data.train_ids.to_vec())
    }

    fn select_positions(&self, r: std::ops::Range<usize>) -> Result<MultiModDetector> {
        self.with_train_ids(self.train_ids()[r].to_vec())
    }

    /// Splits into parts of whole trains, as EXtra-data's `split_trains`: `parts` (a
    /// minimum when `trains_per_part` is given), `trains_per_part` (a maximum),
    /// `frames_per_part` (a target; a part always holds whole trains).
    pub fn split_trains(
        &self,
        parts: Option<usize>,
        trains_per_part: Option<usize>,
        frames_per_part: Option<u64>,
    ) -> Result<Vec<MultiModDetector>> {
        if parts.is_none() && trains_per_part.is_none() && frames_per_part.is_none() {
            return Err(Error::SplitArguments);
        }
        let n = self.train_ids().len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut tpp = trains_per_part;
        let mut fpp = frames_per_part;
        if let Some(f) = fpp {
            if let Ok(fpt) = self.frames_per_train() {
                if let Some(per) = f.checked_div(fpt) {
                    let ntpp = (per as usize).max(1);
                    tpp = Some(ntpp.min(tpp.unwrap_or(ntpp)));
                    fpp = None;
                }
            }
        }
        let Some(fpp) = fpp else {
            return split_ranges(n, parts, tpp)?
                .into_iter()
                .map(|r| self.select_positions(r))
                .collect();
        };
        // Varying frames per train: cut whenever the next train would exceed a limit.
        let mut tpp = tpp.unwrap_or(usize::MAX);
        if let Some(p) = parts.filter(|&p| p > 0) {
            tpp = tpp.min(n / p);
        }
        let mut out = Vec::new();
        let mut start = 0;
        let mut ntrains = 1usize;
        let mut nentries = self.frame_counts[0];
        for &c in &self.frame_counts[1..] {
            ntrains += 1;
            nentries += c;
            if ntrains > tpp || nentries * self.frames_per_entry > fpp {
                let end = start + ntrains - 1;
                out.push(self.select_positions(start..end)?);
                start = end;
                ntrains = 1;
                nentries = c;
            }
        }
        out.push(self.select_positions(start..n)?);
        Ok(out)
    }
}
