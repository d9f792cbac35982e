//! Detector types (EXtra-data's `AGIPD1M`, `AGIPD500K`, `DSSC1M`, `LPD1M`, `LPDSolo`,
//! `JUNGFRAU`): module counts and shapes, source-name patterns, and finding them in a
//! collection (`identify_multimod_detectors`).

use std::collections::{BTreeMap, BTreeSet};

use euxfel::{DType, DataCollection};
use regex::Regex;

use crate::error::{Error, Result};

/// A multi-module detector type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DetectorType {
    Agipd1M,
    Agipd500K,
    Dssc1M,
    Lpd1M,
    LpdSolo,
    Jungfrau,
}

/// Data of this type was written by the DAQ (raw) or by the correction pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawOrCorrected {
    Raw,
    Corrected,
}

impl DetectorType {
    /// All types, in EXtra-data's order.
    pub const ALL: [DetectorType; 6] = [
        DetectorType::Agipd1M,
        DetectorType::Agipd500K,
        DetectorType::Dssc1M,
        DetectorType::Lpd1M,
        DetectorType::LpdSolo,
        DetectorType::Jungfrau,
    ];

    /// EXtra-data's class name.
    pub fn class_name(self) -> &'static str {
        match self {
            DetectorType::Agipd1M => "AGIPD1M",
            DetectorType::Agipd500K => "AGIPD500K",
            DetectorType::Dssc1M => "DSSC1M",
            DetectorType::Lpd1M => "LPD1M",
            DetectorType::LpdSolo => "LPDSolo",
            DetectorType::Jungfrau => "JUNGFRAU",
        }
    }

    /// A type from its class name (case-insensitive).
    pub fn from_name(name: &str) -> Option<DetectorType> {
        DetectorType::ALL
            .into_iter()
            .find(|t| t.class_name().eq_ignore_ascii_case(name))
    }

    /// Modules of the full detector; 0 for JUNGFRAU, whose count is given or inferred.
    pub fn n_modules(self) -> usize {
        match self {
            DetectorType::Agipd500K => 8,
            DetectorType::LpdSolo => 1,
            DetectorType::Jungfrau => 0,
            _ => 16,
        }
    }

    /// Pixels of one module (slow scan, fast scan).
    pub fn module_shape(self) -> (usize, usize) {
        match self {
            DetectorType::Agipd1M | DetectorType::Agipd500K => (512, 128),
            DetectorType::Dssc1M => (128, 512),
            DetectorType::Lpd1M | DetectorType::LpdSolo => (256, 256),
            DetectorType::Jungfrau => (512, 1024),
        }
    }

    /// The key whose data counts define the frames of a train.
    pub fn main_data_key(self) -> &'static str {
        match self {
            DetectorType::Jungfrau => "data.adc",
            _ => "image.data",
        }
    }

    /// XTDF detectors (AGIPD, DSSC, LPD) store trains and pulses along the first axis of
    /// their `image` group; JUNGFRAU stores one entry per train.
    pub fn is_xtdf(self) -> bool {
        self != DetectorType::Jungfrau
    }

    /// The first module number (JUNGFRAU counts from 1).
    pub fn modnos_start_at(self) -> usize {
        match self {
            DetectorType::Jungfrau => 1,
            _ => 0,
        }
    }

    fn det_name_pattern(self) -> &'static str {
        match self {
            DetectorType::Agipd1M => r"[^/]+_AGIPD1M[^/]*",
            DetectorType::Agipd500K => r"[^/]+AGIPD500K[^/]*",
            DetectorType::Dssc1M => r"[^/]+_DSSC1M[^/]*",
            DetectorType::Lpd1M => r"[^/]+_LPD1M[^/]*",
            DetectorType::LpdSolo => r"[^/]+_LPD_SOLO[^/]*",
            DetectorType::Jungfrau => r"[^/]+_(JNGFR|JF[14]M|JUNGF|JF|JF500K\d?)",
        }
    }

    fn module_pattern(self, kind: RawOrCorrected) -> &'static str {
        match (self, kind) {
            (DetectorType::Jungfrau, RawOrCorrected::Raw) => {
                r"/DET/(MODULE_|RECEIVER-|JNGFR)(?P<modno>\d+)"
            }
            (DetectorType::Jungfrau, RawOrCorrected::Corrected) => {
                r"/CORR/(MODULE_|RECEIVER-|JNGFR)(?P<modno>\d+)"
            }
            (_, RawOrCorrected::Raw) => r"/DET/(?P<modno>\d+)CH",
            (_, RawOrCorrected::Corrected) => r"/CORR/(?P<modno>\d+)CH",
        }
    }

    /// Names of detectors of this type in the collection (raw or corrected sources).
    pub fn find_detector_names(self, dc: &DataCollection) -> BTreeSet<String> {
        let det = self.det_name_pattern();
        let res: Vec<Regex> = [RawOrCorrected::Raw, RawOrCorrected::Corrected]
            .into_iter()
            .filter_map(|k| {
                Regex::new(&format!("^(?P<detname>{det}){}", self.module_pattern(k))).ok()
            })
            .collect();
        let mut names = BTreeSet::new();
        for s in dc.instrument_sources() {
            if let Some(c) = res.iter().find_map(|r| r.captures(&s)) {
                if let Some(m) = c.name("detname") {
                    names.insert(m.as_str().to_string());
                }
            }
        }
        names
    }

    /// The one detector name of this type in the collection.
    pub fn find_detector_name(self, dc: &DataCollection) -> Result<String> {
        let names = self.find_detector_names(dc);
        let mut it = names.iter();
        match (it.next(), it.next()) {
            (None, _) => Err(Error::NoSources(format!(
                "{}({}|{})",
                self.det_name_pattern(),
                self.module_pattern(RawOrCorrected::Raw),
                self.module_pattern(RawOrCorrected::Corrected)
            ))),
            (Some(n), None) => Ok(n.clone()),
            _ => Err(Error::MultipleDetectors {
                names: names
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                class: self.class_name(),
            }),
        }
    }

    /// Sources of `detector_name` of one kind -> module number (as in the source name).
    fn source_matches(
        self,
        dc: &DataCollection,
        detector_name: &str,
        kind: RawOrCorrected,
    ) -> BTreeMap<String, usize> {
        let pat = format!(
            "^{}{}",
            regex::escape(detector_name),
            self.module_pattern(kind)
        );
        let Ok(re) = Regex::new(&pat) else {
            return BTreeMap::new();
        };
        dc.instrument_sources()
            .into_iter()
            .filter_map(|s| {
                let n = re.captures(&s)?.name("modno")?.as_str().parse().ok()?;
                Some((s, n))
            })
            .collect()
    }

    /// Whether a source holds raw data: corrected data has `/CORR/` in its name since
    /// 2026; before, raw AGIPD data has a data/gain axis and other raw data is integer.
    pub fn data_is_raw(self, dc: &DataCollection, source: &str) -> Result<bool> {
        if source.contains("/CORR/") {
            return Ok(false);
        }
        let kd = dc.key(source, self.main_data_key())?;
        Ok(match self {
            DetectorType::Agipd1M | DetectorType::Agipd500K => kd.ndim() == 4,
            _ => matches!(kd.dtype, DType::Int(_) | DType::UInt(_)),
        })
    }

    /// The module sources of `detector_name` (source -> module number as named), corrected
    /// preferred unless `raw` says which. The flag says the raw fallback was taken, where
    /// EXtra-data warns.
    pub fn identify_sources(
        self,
        dc: &DataCollection,
        detector_name: &str,
        modules: Option<&BTreeSet<usize>>,
        raw: Option<bool>,
    ) -> Result<(BTreeMap<String, usize>, bool)> {
        let mut fell_back = false;
        let mut found = if raw == Some(true) {
            let m = self.source_matches(dc, detector_name, RawOrCorrected::Raw);
            for s in m.keys() {
                if !self.data_is_raw(dc, s)? {
                    return Err(Error::RawNotFound(detector_name.to_string()));
                }
            }
            m
        } else {
            let mut m = self.source_matches(dc, detector_name, RawOrCorrected::Corrected);
            if m.is_empty() {
                m = self.source_matches(dc, detector_name, RawOrCorrected::Raw);
                let mut any_raw = false;
                for s in m.keys() {
                    any_raw |= self.data_is_raw(dc, s)?;
                }
                if any_raw {
                    if raw == Some(false) {
                        return Err(Error::NoSources(format!("{detector_name}/CORR/...")));
                    }
                    fell_back = true;
                }
            }
            m
        };
        if let Some(sel) = modules {
            found.retain(|_, n| sel.contains(n));
        }
        if found.is_empty() {
            let dc_s = match raw {
                None => "(DET|CORR)",
                Some(true) => "DET",
                Some(false) => "CORR",
            };
            return Err(Error::NoSources(format!("{detector_name}/{dc_s}/...")));
        }
        Ok((found, fell_back))
    }
}

/// Multi-module detectors in the collection: (detector name, type) pairs, sorted
/// (EXtra-data's `identify_multimod_detectors`). `types` restricts the types checked.
pub fn identify_multimod_detectors(
    dc: &DataCollection,
    types: Option<&[DetectorType]>,
) -> BTreeSet<(String, DetectorType)> {
    let types = types.unwrap_or(&DetectorType::ALL);
    let mut res = BTreeSet::new();
    for &t in types {
        for name in t.find_detector_names(dc) {
            res.insert((name, t));
        }
    }
    res
}

/// The single multi-module detector of the collection (`single=True`).
pub fn identify_single_detector(
    dc: &DataCollection,
    types: Option<&[DetectorType]>,
) -> Result<(String, DetectorType)> {
    let res = identify_multimod_detectors(dc, types);
    let mut it = res.iter();
    match (it.next(), it.next()) {
        (None, _) => Err(Error::NoDetectorIdentified),
        (Some(one), None) => Ok(one.clone()),
        _ => Err(Error::MultipleIdentified(
            res.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}
