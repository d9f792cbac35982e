//! Software regions of interest: `--roi NAME:[CH:]LOW:HIGH` (repeatable) sums the counts of bins
//! `LOW..=HIGH` of channel `CH` (every channel without it) per frame, from the full spectrum.
//! Several specs of one name make one ROI with a range per channel (a later spec replaces an
//! earlier one for the channels both cover); a channel no spec of the name covers has no range
//! and sums to 0. The dead-time-corrected value is the sum times the channel's dead-time
//! correction (NaN where that is saturated).

use std::fmt;
use std::str::FromStr;

use acq_core::deadtime::{channel_scalers, dead_time};
use acq_core::detector::Recording;
use serde::{Deserialize, Deserializer, Serialize};

/// One `NAME:[CH:]LOW:HIGH` as a user gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoiSpec {
    pub name: String,
    pub channel: Option<u32>,
    pub low: u32,
    pub high: u32,
}

/// A ROI spec that does not parse, or does not fit the detector.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoiError {
    #[error("roi `{0}`: expected NAME:[CH:]LOW:HIGH, e.g. Fe:630:650 or Fe:2:630:650")]
    Syntax(String),
    #[error(
        "roi `{0}`: the name must be letters, digits and `_` (it names the datasets roi_NAME)"
    )]
    Name(String),
    #[error("roi {spec}: no such channel (the detector has channels 0..={last})")]
    Channel { spec: RoiSpec, last: u32 },
    #[error("roi {spec}: bins must lie in 0..={last} with LOW <= HIGH")]
    Bins { spec: RoiSpec, last: u32 },
    #[error(
        "roi {spec}: with --bins/--rebin a ROI is summed from the recorded bins, so it must lie \
         in bins {first}..={last} and start and end on a rebin boundary (groups of {rebin})"
    )]
    NotRecorded {
        spec: RoiSpec,
        first: u32,
        last: u32,
        rebin: u32,
    },
}

impl fmt::Display for RoiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.name)?;
        if let Some(c) = self.channel {
            write!(f, "{c}:")?;
        }
        write!(f, "{}:{}", self.low, self.high)
    }
}

impl FromStr for RoiSpec {
    type Err = RoiError;

    fn from_str(text: &str) -> Result<Self, RoiError> {
        let bad = || RoiError::Syntax(text.to_string());
        let (name, rest) = text.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(RoiError::Name(name.to_string()));
        }
        let n: Vec<u32> = rest
            .split(':')
            .map(|p| p.trim().parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let (channel, low, high) = match n[..] {
            [low, high] => (None, low, high),
            [c, low, high] => (Some(c), low, high),
            _ => return Err(bad()),
        };
        Ok(RoiSpec {
            name: name.to_string(),
            channel,
            low,
            high,
        })
    }
}

impl<'de> Deserialize<'de> for RoiSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A ROI over the detector's channels: per channel `[low, high]`, or `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roi {
    pub name: String,
    pub ranges: Vec<Option<[u32; 2]>>,
}

impl Roi {
    /// The dataset of the sums, `roi_NAME`.
    pub fn dataset(&self) -> String {
        format!("roi_{}", self.name)
    }

    /// The dataset of the dead-time-corrected sums, `roi_NAME_dtc`.
    pub fn dtc_dataset(&self) -> String {
        format!("roi_{}_dtc", self.name)
    }

    /// The sums of one frame's recorded spectra (`[chan][bin]`, as `recording` made them) into
    /// `out` (one per channel). The ranges are detector bins that [`build`] checked to be whole
    /// recorded bins, so the sums equal those of the full spectrum.
    pub fn sums(&self, frame_mca: &[u32], recording: &Recording, out: &mut Vec<u64>) {
        let n_bins = recording.recorded_bins() as usize;
        let rebin = recording.rebin.max(1);
        for (chan, range) in self.ranges.iter().enumerate() {
            let sum = match range {
                Some([low, high]) if *low >= recording.first_bin => {
                    let lo = ((low - recording.first_bin) / rebin) as usize;
                    let hi = ((high + 1 - recording.first_bin) / rebin) as usize;
                    frame_mca
                        .get(chan * n_bins + lo..chan * n_bins + hi)
                        .map_or(0, |bins| bins.iter().map(|&v| u64::from(v)).sum())
                }
                _ => 0,
            };
            out.push(sum);
        }
    }
}

/// One ROI's values of one frame: per channel the sum and the dead-time-corrected sum (`None`,
/// JSON null, where the correction is saturated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoiValues {
    pub name: String,
    pub counts: Vec<u64>,
    pub dtc: Vec<Option<f64>>,
}

/// Every ROI's values of one frame: `mca` its spectra `[chan][bin]`, `scalers` its
/// `[chan][scaler]`, `event_widths` per channel (the dead-time model of the file's
/// `dead_time_correction`).
pub fn frame_values(
    rois: &[Roi],
    event_widths: &[u32],
    recording: &Recording,
    mca: &[u32],
    scalers: &[u32],
) -> Vec<RoiValues> {
    let correction: Vec<Option<f64>> = (0..event_widths.len())
        .map(|chan| {
            let sc = channel_scalers(scalers, chan)?;
            dead_time(sc, event_widths[chan]).ok().map(|d| d.correction)
        })
        .collect();
    rois.iter()
        .map(|roi| {
            let mut counts = Vec::with_capacity(roi.ranges.len());
            roi.sums(mca, recording, &mut counts);
            let dtc = counts
                .iter()
                .enumerate()
                .map(|(chan, &c)| {
                    correction
                        .get(chan)
                        .copied()
                        .flatten()
                        .map(|k| c as f64 * k)
                })
                .collect();
            RoiValues {
                name: roi.name.clone(),
                counts,
                dtc,
            }
        })
        .collect()
}

/// The ROIs of `specs` for a detector of `n_channels` x `n_bins` recording `recording`, in the
/// order their names first appear.
pub fn build(
    specs: &[RoiSpec],
    n_channels: u32,
    n_bins: u32,
    recording: &Recording,
) -> Result<Vec<Roi>, RoiError> {
    let mut rois: Vec<Roi> = Vec::new();
    for spec in specs {
        if spec.channel.is_some_and(|c| c >= n_channels) {
            return Err(RoiError::Channel {
                spec: spec.clone(),
                last: n_channels.saturating_sub(1),
            });
        }
        if spec.low > spec.high || spec.high >= n_bins {
            return Err(RoiError::Bins {
                spec: spec.clone(),
                last: n_bins.saturating_sub(1),
            });
        }
        let (first, rebin) = (recording.first_bin, recording.rebin.max(1));
        let end = first + recording.n_bins;
        if spec.low < first
            || spec.high >= end
            || (spec.low - first) % rebin != 0
            || (spec.high + 1 - first) % rebin != 0
        {
            return Err(RoiError::NotRecorded {
                spec: spec.clone(),
                first,
                last: end.saturating_sub(1),
                rebin,
            });
        }
        let index = match rois.iter().position(|r| r.name == spec.name) {
            Some(i) => i,
            None => {
                rois.push(Roi {
                    name: spec.name.clone(),
                    ranges: vec![None; n_channels as usize],
                });
                rois.len() - 1
            }
        };
        for (chan, range) in rois[index].ranges.iter_mut().enumerate() {
            if spec.channel.is_none_or(|c| c as usize == chan) {
                *range = Some([spec.low, spec.high]);
            }
        }
    }
    Ok(rois)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> RoiSpec {
        text.parse().unwrap()
    }

    #[test]
    fn specs_parse_and_print_as_typed() {
        for text in ["Fe:630:650", "Cu_K:3:790:820"] {
            assert_eq!(spec(text).to_string(), text);
        }
        assert_eq!(
            "Fe:1:2:3:4".parse::<RoiSpec>(),
            Err(RoiError::Syntax("Fe:1:2:3:4".into()))
        );
        assert_eq!("Fe".parse::<RoiSpec>(), Err(RoiError::Syntax("Fe".into())));
        assert_eq!(
            "a/b:1:2".parse::<RoiSpec>(),
            Err(RoiError::Name("a/b".into()))
        );
    }

    #[test]
    fn specs_of_one_name_make_one_roi() {
        let rois = build(
            &[
                spec("Fe:630:650"),
                spec("Cu:1:790:820"),
                spec("Fe:2:600:700"),
            ],
            3,
            4096,
            &Recording::full(4096),
        )
        .unwrap();
        assert_eq!(rois.len(), 2);
        assert_eq!(
            rois[0].ranges,
            [Some([630, 650]), Some([630, 650]), Some([600, 700])]
        );
        assert_eq!(rois[1].ranges, [None, Some([790, 820]), None]);
        assert_eq!(rois[1].dataset(), "roi_Cu");
        let mca: Vec<u32> = (0..3 * 4096).map(|i| (i % 4096) as u32).collect();
        let mut out = Vec::new();
        rois[0].sums(&mca, &Recording::full(4096), &mut out);
        rois[1].sums(&mca, &Recording::full(4096), &mut out);
        let range_sum = |lo: u64, hi: u64| (lo..=hi).sum::<u64>();
        assert_eq!(
            out,
            [
                range_sum(630, 650),
                range_sum(630, 650),
                range_sum(600, 700),
                0,
                range_sum(790, 820),
                0
            ]
        );
    }

    #[test]
    fn with_a_recording_rois_sum_whole_recorded_bins() {
        let rec = Recording {
            first_bin: 600,
            n_bins: 200,
            rebin: 4,
        };
        let rois = build(&[spec("Fe:620:659")], 2, 4096, &rec).unwrap();
        // Recorded bin i holds detector bins 600 + 4i ..= 603 + 4i; here its value is i.
        let mca: Vec<u32> = (0..2 * 50).map(|i| (i % 50) as u32).collect();
        let mut out = Vec::new();
        rois[0].sums(&mca, &rec, &mut out);
        assert_eq!(out, [(5..15).sum::<u64>(), (5..15).sum::<u64>()]);
        for bad in ["Fe:598:659", "Fe:621:659", "Fe:620:660", "Fe:700:900"] {
            let e = build(&[spec(bad)], 2, 4096, &rec).unwrap_err();
            assert!(matches!(e, RoiError::NotRecorded { .. }), "{bad}: {e}");
        }
        let e = build(&[spec("Fe:598:659")], 2, 4096, &rec).unwrap_err();
        assert_eq!(
            e.to_string(),
            "roi Fe:598:659: with --bins/--rebin a ROI is summed from the recorded bins, so it \
             must lie in bins 600..=799 and start and end on a rebin boundary (groups of 4)"
        );
    }

    #[test]
    fn specs_outside_the_detector_are_refused_naming_them() {
        let e = build(&[spec("Fe:4:1:2")], 4, 4096, &Recording::full(4096)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "roi Fe:4:1:2: no such channel (the detector has channels 0..=3)"
        );
        let e = build(&[spec("Fe:10:4096")], 4, 4096, &Recording::full(4096)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "roi Fe:10:4096: bins must lie in 0..=4095 with LOW <= HIGH"
        );
        assert!(build(&[spec("Fe:20:10")], 4, 4096, &Recording::full(4096)).is_err());
    }
}
