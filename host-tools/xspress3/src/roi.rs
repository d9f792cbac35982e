//! Software regions of interest: `--roi NAME:[CH:]LOW:HIGH` (repeatable) sums the counts of bins
//! `LOW..=HIGH` of channel `CH` (every channel without it) per frame, from the full spectrum:
//! before `--bins`/`--rebin` reduce it, so a ROI may lie anywhere in the detector's bins. The
//! detector backend sums them while it reads each frame (`Detector::read_mca_rois`) into the
//! ring slot's ROI area; the file and the stream take the sums from there.
//! Several specs of one name make one ROI with a range per channel (a later spec replaces an
//! earlier one for the channels both cover); a channel no spec of the name covers has no range
//! and sums to 0. The dead-time-corrected value is the sum times the channel's dead-time
//! correction (NaN where that is saturated).

use std::fmt;
use std::str::FromStr;

use acq_core::deadtime::{channel_scalers, dead_time};
use acq_core::geometry::MAX_ROIS;
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
    #[error("roi {spec}: at most {MAX_ROIS} ROI names")]
    TooMany { spec: RoiSpec },
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
}

/// One ROI's values of one frame: per channel the sum and the dead-time-corrected sum (`None`,
/// JSON null, where the correction is saturated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoiValues {
    pub name: String,
    pub counts: Vec<u64>,
    pub dtc: Vec<Option<f64>>,
}

/// Every ROI's values of one frame: `sums` its ROI sums `[roi][chan]` (as the detector made
/// them), `scalers` its `[chan][scaler]`, `event_widths` per channel (the dead-time model of the
/// file's `dead_time_correction`).
pub fn frame_values(
    rois: &[Roi],
    event_widths: &[u32],
    sums: &[u64],
    scalers: &[u32],
) -> Vec<RoiValues> {
    let correction: Vec<Option<f64>> = (0..event_widths.len())
        .map(|chan| {
            let sc = channel_scalers(scalers, chan)?;
            dead_time(sc, event_widths[chan]).ok().map(|d| d.correction)
        })
        .collect();
    let nch = event_widths.len();
    rois.iter()
        .enumerate()
        .map(|(index, roi)| {
            let counts = sums
                .get(index * nch..(index + 1) * nch)
                .unwrap_or_default()
                .to_vec();
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

/// The ROIs of `specs` for a detector of `n_channels` x `n_bins`, in the order their names first
/// appear.
pub fn build(specs: &[RoiSpec], n_channels: u32, n_bins: u32) -> Result<Vec<Roi>, RoiError> {
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
        let index = match rois.iter().position(|r| r.name == spec.name) {
            Some(i) => i,
            None if rois.len() >= MAX_ROIS as usize => {
                return Err(RoiError::TooMany { spec: spec.clone() })
            }
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
        )
        .unwrap();
        assert_eq!(rois.len(), 2);
        assert_eq!(
            rois[0].ranges,
            [Some([630, 650]), Some([630, 650]), Some([600, 700])]
        );
        assert_eq!(rois[1].ranges, [None, Some([790, 820]), None]);
        assert_eq!(rois[1].dataset(), "roi_Cu");
        assert_eq!(rois[1].dtc_dataset(), "roi_Cu_dtc");
    }

    #[test]
    fn frame_values_take_the_detectors_sums_and_correct_them() {
        let rois = build(&[spec("Fe:0:10"), spec("Cu:1:20:30")], 2, 4096).unwrap();
        // Channel 0 without dead time (correction 1); channel 1 saturated (all time in reset).
        let mut scalers = vec![0u32; 2 * 9];
        scalers[0] = 1000;
        scalers[9] = 1000;
        scalers[9 + 1] = 1000;
        let values = frame_values(&rois, &[0, 0], &[5, 6, 0, 9], &scalers);
        assert_eq!(values[0].name, "Fe");
        assert_eq!(values[0].counts, [5, 6]);
        assert_eq!(values[1].counts, [0, 9]);
        assert_eq!(values[0].dtc[0], Some(5.0));
        assert_eq!(values[1].dtc[1], None);
    }

    #[test]
    fn rois_may_lie_anywhere_in_the_spectrum_up_to_the_limit() {
        // Bins need not be recorded or on rebin boundaries: the detector sums the full spectrum.
        let rois = build(&[spec("Lo:0:3"), spec("Hi:4001:4095")], 2, 4096).unwrap();
        assert_eq!(rois[1].ranges, [Some([4001, 4095]); 2]);
        let many: Vec<RoiSpec> = (0..=MAX_ROIS).map(|i| spec(&format!("R{i}:1:2"))).collect();
        let e = build(&many, 2, 4096).unwrap_err();
        assert_eq!(e.to_string(), "roi R32:1:2: at most 32 ROI names");
        // More specs of names already seen are fine.
        let mut same = many[..MAX_ROIS as usize].to_vec();
        same.push(spec("R0:0:5:6"));
        assert_eq!(build(&same, 2, 4096).unwrap().len(), MAX_ROIS as usize);
    }

    #[test]
    fn specs_outside_the_detector_are_refused_naming_them() {
        let e = build(&[spec("Fe:4:1:2")], 4, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "roi Fe:4:1:2: no such channel (the detector has channels 0..=3)"
        );
        let e = build(&[spec("Fe:10:4096")], 4, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "roi Fe:10:4096: bins must lie in 0..=4095 with LOW <= HIGH"
        );
        assert!(build(&[spec("Fe:20:10")], 4, 4096).is_err());
    }
}
