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

    fn name_regexes(self) -> Vec<Regex> {
        let det = self.det_name_pattern();
        [RawOrCorrected::Raw, RawOrCorrected::Corrected]
            .into_iter()
            .filter_map(|k| {
                Regex::new(&format!("^(?P<detname>{det}){}", self.module_pattern(k))).ok()
            })
            .collect()
    }

    /// The detector name of a module source of this type (raw or corrected), if it is one.
    pub fn detector_name_of(self, source: &str) -> Option<String> {
        detector_name_with(&self.name_regexes(), source)
    }

    /// Names of detectors of this type in the collection (raw or corrected sources).
    pub fn find_detector_names(self, dc: &DataCollection) -> BTreeSet<String> {
        let res = self.name_regexes();
        dc.instrument_sources()
            .iter()
            .filter_map(|s| detector_name_with(&res, s))
            .collect()
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

fn detector_name_with(res: &[Regex], source: &str) -> Option<String> {
    res.iter()
        .find_map(|r| r.captures(source))
        .and_then(|c| c.name("detname").map(|m| m.as_str().to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_match_extra_data_patterns() {
        use DetectorType::*;
        let cases = [
            (
                "SPB_DET_AGIPD1M-1/DET/0CH0:xtdf",
                Agipd1M,
                "SPB_DET_AGIPD1M-1",
            ),
            (
                "SPB_DET_AGIPD1M-1/CORR/15CH0:output",
                Agipd1M,
                "SPB_DET_AGIPD1M-1",
            ),
            (
                "HED_DET_AGIPD500K2G/DET/7CH0:xtdf",
                Agipd500K,
                "HED_DET_AGIPD500K2G",
            ),
            ("SCS_DET_DSSC1M-1/DET/3CH0:xtdf", Dssc1M, "SCS_DET_DSSC1M-1"),
            ("FXE_DET_LPD1M-1/DET/12CH0:xtdf", Lpd1M, "FXE_DET_LPD1M-1"),
            (
                "FXE_DET_LPD_SOLO/DET/0CH0:xtdf",
                LpdSolo,
                "FXE_DET_LPD_SOLO",
            ),
            (
                "SPB_IRDA_JF4M/DET/JNGFR03:daqOutput",
                Jungfrau,
                "SPB_IRDA_JF4M",
            ),
            (
                "SPB_IRDA_JNGFR/DET/MODULE_1:daqOutput",
                Jungfrau,
                "SPB_IRDA_JNGFR",
            ),
            (
                "FXE_XAD_JF1M/DET/RECEIVER-1:display",
                Jungfrau,
                "FXE_XAD_JF1M",
            ),
            (
                "HED_IA1_JF500K1/DET/JNGFR01:daqOutput",
                Jungfrau,
                "HED_IA1_JF500K1",
            ),
        ];
        for (src, kind, name) in cases {
            for t in DetectorType::ALL {
                let want = (t == kind).then(|| name.to_string());
                assert_eq!(t.detector_name_of(src), want, "{src} as {t:?}");
            }
        }
        // No leading characters, no module channel, or a name that only contains the type.
        assert_eq!(Agipd1M.detector_name_of("_AGIPD1M/DET/0CH0:xtdf"), None);
        assert_eq!(Lpd1M.detector_name_of("FXE_DET_LPD1M-1/DET/0:xtdf"), None);
        assert_eq!(
            Jungfrau.detector_name_of("SPB_IRDA_JF4M_X/DET/JNGFR03:daqOutput"),
            None
        );
        assert_eq!(DetectorType::from_name("lpdsolo"), Some(LpdSolo));
    }
}
