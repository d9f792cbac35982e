//! The Xspress3 frame stream (docs/protocol.md): one ZMQ message per event.
//!
//! - `header`: one part, JSON, at the start of a series;
//! - `image`: three parts per frame: JSON, the MCA (`[chan][bin]` u32 little-endian) and the
//!   scalers (`[chan][scaler]` u32 little-endian, SDK order);
//! - `series_end`: one part, JSON, with the totals and the drop record.
//!
//! Field names follow MAX IV's streamer (`htype`, `frame`, `shape`, `type`, `compression`,
//! `exptime`) so its receivers keep working for the first two parts; `msg_number` counts image
//! messages from 0 so a receiver can detect gaps; there is no pickle.

use acq_core::detector::{AcqParams, GapMode, Recording, TriggerMode};
use acq_core::geometry::{Geometry, Scaler, MAX_BINS};
use serde::{Deserialize, Serialize};

use crate::roi::Roi;
pub use crate::roi::RoiValues;
use crate::AcqDescription;

/// Version string carried in every header.
pub const PROTOCOL: &str = "xsp3-stream/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub htype: String,
    pub protocol: String,
    /// Base name for receivers that write files; "" for none.
    pub filename: String,
    pub overwritable: bool,
    pub n_channels: u32,
    /// Bins per channel of the spectra sent (recorded bins).
    pub n_bins: u32,
    /// The detector bin of the first bin sent (`--bins`); 0 by default.
    #[serde(default)]
    pub first_bin: u32,
    /// Detector bins summed into each bin sent (`--rebin`); 1 by default.
    #[serde(default = "one")]
    pub rebin: u32,
    /// Frames requested; 0 for an unbounded acquisition.
    pub n_frames: u64,
    pub exposure_ticks: u32,
    /// Seconds.
    pub exptime: f64,
    pub clock_hz: f64,
    pub trigger_mode: String,
    pub gap_ns: u32,
    pub scaler_names: Vec<String>,
    pub event_widths: Vec<u32>,
    /// Per channel `[low0, high0, low1, high1]`.
    pub windows: Vec<[u32; 4]>,
    pub good_thresholds: Vec<u32>,
    /// Software ROIs: name and per channel `[low, high]` or null.
    #[serde(default)]
    pub rois: Vec<Roi>,
    pub backend: String,
    pub software: String,
    #[serde(rename = "type")]
    pub dtype: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageHeader {
    pub htype: String,
    /// The detector's frame number (gaps here are frames lost before the stream).
    pub frame: u64,
    /// Image messages of this series, counted from 0 (gaps here are stream losses).
    pub msg_number: u64,
    /// `[n_channels, n_bins]` of the MCA part.
    pub shape: [u32; 2],
    /// `[n_channels, 9]` of the scaler part.
    pub scaler_shape: [u32; 2],
    #[serde(rename = "type")]
    pub dtype: String,
    pub compression: String,
    pub exptime: f64,
    pub timestamp_ns: u64,
    /// `FrameMeta` flags (1: frames lost before this one, 2: SDK overrun, 4: last frame).
    pub flags: u32,
    /// The frame's ROI values, in the header's ROI order (absent without ROIs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rois: Vec<RoiValues>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesEnd {
    pub htype: String,
    /// Image messages sent (or queued, for PUSH).
    pub frames_sent: u64,
    /// Frames moved out of the detector.
    pub frames_acquired: u64,
    /// Frames lost before they were read (SDK overruns).
    pub frames_lost: u64,
    /// `[first, count]` pairs.
    pub lost_ranges: Vec<[u64; 2]>,
    pub lost_ranges_overflow: u64,
    pub sdk_overruns: u64,
    /// Image messages a PUB socket refused at its high-water mark.
    pub stream_drops: u64,
    /// Frames acquired that the sender could not deliver (its peer took nothing after a stop, or
    /// the stream failed); they have no image message.
    #[serde(default)]
    pub frames_unsent: u64,
    /// `[first, count]` pairs of those frames.
    #[serde(default)]
    pub unsent_ranges: Vec<[u64; 2]>,
    /// With acknowledging receivers (docs/protocol.md, "Acknowledged PUSH"): frames sent that no
    /// receiver acknowledged (lost with a receiver that died).
    #[serde(default)]
    pub frames_unacked: u64,
    /// `[first, count]` pairs of those frames.
    #[serde(default)]
    pub unacked_ranges: Vec<[u64; 2]>,
    /// Why the series ended early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With a detector failure: the first frame it cost (every frame before it was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_frame: Option<u64>,
}

/// How often an acknowledging receiver says hello on the back channel while no series runs
/// (docs/protocol.md, "Acknowledged PUSH").
pub const HELLO_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

/// The back channel of acknowledged PUSH (docs/protocol.md): one-part JSON messages between a
/// receiver's DEALER and the sender's ROUTER. `header` and `series_end` travel on it too, in
/// their stream form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "htype", rename_all = "snake_case")]
pub enum BackChannel {
    /// Receiver to sender: I am here (at start, then every [`HELLO_PERIOD`] while idle).
    Hello,
    /// Sender to a receiver it had not seen in this series: the next image message's number.
    /// While a series runs, its `header` follows.
    Join { next_msg_number: u64 },
    /// Receiver to sender: image messages written, as `[first msg_number, count]`.
    Ack { msgs: Vec<[u64; 2]> },
}

/// The back-channel endpoint of a data endpoint: the next TCP port, or the ipc/inproc name with
/// `.ack` appended. `None` for a TCP endpoint without a numeric port below 65535.
pub fn ack_endpoint(data: &str) -> Option<String> {
    if let Some(rest) = data.strip_prefix("tcp://") {
        let (host, port) = rest.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        return Some(format!("tcp://{host}:{}", port.checked_add(1)?));
    }
    if data.starts_with("ipc://") || data.starts_with("inproc://") {
        return Some(format!("{data}.ack"));
    }
    None
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Header(Box<Header>),
    Image {
        header: ImageHeader,
        mca: Vec<u32>,
        scalers: Vec<u32>,
    },
    SeriesEnd(SeriesEnd),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("empty message")]
    Empty,
    #[error("message part 1 is not valid JSON: {0}")]
    Json(String),
    #[error("unknown htype `{0}`")]
    UnknownHtype(String),
    #[error("{htype} message has {got} parts, expected {expected}")]
    Parts {
        htype: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("image {frame}: {what} part has {got} bytes, expected {expected}")]
    PayloadSize {
        frame: u64,
        what: &'static str,
        got: usize,
        expected: u128,
    },
    #[error("image {frame}: unsupported type `{dtype}` / compression `{compression}`")]
    Encoding {
        frame: u64,
        dtype: String,
        compression: String,
    },
}

#[derive(Deserialize)]
struct Htype {
    htype: String,
}

/// Decodes a multipart message.
pub fn decode(parts: &[Vec<u8>]) -> Result<Message, ProtocolError> {
    let first = parts.first().ok_or(ProtocolError::Empty)?;
    let json = |e: serde_json::Error| ProtocolError::Json(e.to_string());
    let kind: Htype = serde_json::from_slice(first).map_err(json)?;
    match kind.htype.as_str() {
        "header" => {
            expect_parts("header", parts.len(), 1)?;
            Ok(Message::Header(Box::new(
                serde_json::from_slice(first).map_err(json)?,
            )))
        }
        "image" => {
            let header = image_header(parts)?;
            Ok(Message::Image {
                mca: words(&parts[1]),
                scalers: words(&parts[2]),
                header,
            })
        }
        "series_end" => {
            expect_parts("series_end", parts.len(), 1)?;
            Ok(Message::SeriesEnd(
                serde_json::from_slice(first).map_err(json)?,
            ))
        }
        other => Err(ProtocolError::UnknownHtype(other.to_string())),
    }
}

fn expect_parts(htype: &'static str, got: usize, expected: usize) -> Result<(), ProtocolError> {
    if got == expected {
        Ok(())
    } else {
        Err(ProtocolError::Parts {
            htype,
            got,
            expected,
        })
    }
}

/// Checks an image message without converting its payload: part count, JSON, encoding, and
/// the sizes of the MCA and scaler parts against their shapes. A receiver that copies the payload
/// straight into its own buffers calls this instead of [`decode`].
pub fn image_header<P: std::ops::Deref<Target = [u8]>>(
    parts: &[P],
) -> Result<ImageHeader, ProtocolError> {
    expect_parts("image", parts.len(), 3)?;
    let header: ImageHeader =
        serde_json::from_slice(&parts[0]).map_err(|e| ProtocolError::Json(e.to_string()))?;
    if header.dtype != "uint32" || header.compression != "none" {
        return Err(ProtocolError::Encoding {
            frame: header.frame,
            dtype: header.dtype,
            compression: header.compression,
        });
    }
    for (what, part, shape) in [
        ("MCA", &parts[1][..], header.shape),
        ("scaler", &parts[2][..], header.scaler_shape),
    ] {
        // u128: two u32 factors and 4 (at most 2^66) cannot overflow it, whatever a peer sends.
        let expected = shape[0] as u128 * shape[1] as u128 * 4;
        if part.len() as u128 != expected {
            return Err(ProtocolError::PayloadSize {
                frame: header.frame,
                what,
                got: part.len(),
                expected,
            });
        }
    }
    Ok(header)
}

/// A header field that does not describe an acquisition this side can record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeaderError {
    #[error("protocol `{}` is not `{PROTOCOL}`", .0.escape_debug())]
    Protocol(String),
    #[error("type `{}` is not `uint32`", .0.escape_debug())]
    Dtype(String),
    #[error("n_channels {n_channels} / n_bins {n_bins}: {reason}")]
    Geometry {
        n_channels: u32,
        n_bins: u32,
        reason: String,
    },
    #[error("unknown trigger_mode `{}`", .0.escape_debug())]
    TriggerMode(String),
    #[error("gap_ns {0} is not 25, 200, 500 or 1000")]
    Gap(u32),
    #[error("clock_hz {0} is not a positive number")]
    Clock(f64),
    #[error("scaler_names {got:?} differ from {expected:?}")]
    ScalerNames {
        got: Vec<String>,
        expected: Vec<String>,
    },
    #[error("{field} has {len} entries for {channels} channels")]
    PerChannel {
        field: &'static str,
        len: usize,
        channels: usize,
    },
    #[error("roi `{}`: {reason}", .name.escape_debug())]
    Roi { name: String, reason: String },
    #[error("first_bin {first_bin}, n_bins {n_bins}, rebin {rebin}: not a range of the spectrum")]
    Recording {
        first_bin: u32,
        n_bins: u32,
        rebin: u32,
    },
}

impl Header {
    /// The header that announces an acquisition described by `desc`; `filename` is the base
    /// name receivers write to ("" for none).
    pub fn for_acquisition(desc: &AcqDescription, filename: &str, overwritable: bool) -> Header {
        Header {
            htype: "header".into(),
            protocol: PROTOCOL.into(),
            filename: filename.into(),
            overwritable,
            n_channels: desc.geometry.n_channels() as u32,
            n_bins: desc.geometry.n_bins() as u32,
            first_bin: desc.recording.first_bin,
            rebin: desc.recording.rebin,
            n_frames: desc.params.n_frames,
            exposure_ticks: desc.params.exposure_ticks,
            exptime: desc.params.exposure_ticks as f64 / desc.clock_hz,
            clock_hz: desc.clock_hz,
            trigger_mode: desc.params.trigger.name().into(),
            gap_ns: desc.params.gap.nanos(),
            scaler_names: Scaler::ALL.iter().map(|s| s.name().to_string()).collect(),
            event_widths: desc.event_widths.clone(),
            windows: desc.windows.clone(),
            good_thresholds: desc.good_thresholds.clone(),
            rois: desc.rois.clone(),
            backend: desc.backend.clone(),
            software: desc.software.clone(),
            dtype: "uint32".into(),
        }
    }

    /// The acquisition this header describes, checked field by field. The debounce and the
    /// input inversions are not on the wire: they come back as 0 and false.
    pub fn description(&self) -> Result<AcqDescription, HeaderError> {
        if self.protocol != PROTOCOL {
            return Err(HeaderError::Protocol(self.protocol.clone()));
        }
        if self.dtype != "uint32" {
            return Err(HeaderError::Dtype(self.dtype.clone()));
        }
        let n_rois = u32::try_from(self.rois.len()).unwrap_or(u32::MAX);
        let geometry = Geometry::new(self.n_channels, self.n_bins)
            .and_then(|g| g.with_rois(n_rois))
            .map_err(|e| HeaderError::Geometry {
                n_channels: self.n_channels,
                n_bins: self.n_bins,
                reason: e.to_string(),
            })?;
        let channels = geometry.n_channels();
        let trigger = TriggerMode::from_name(&self.trigger_mode)
            .ok_or_else(|| HeaderError::TriggerMode(self.trigger_mode.clone()))?;
        let gap = GapMode::from_nanos(self.gap_ns).ok_or(HeaderError::Gap(self.gap_ns))?;
        if !(self.clock_hz.is_finite() && self.clock_hz > 0.0) {
            return Err(HeaderError::Clock(self.clock_hz));
        }
        let expected: Vec<String> = Scaler::ALL.iter().map(|s| s.name().to_string()).collect();
        if self.scaler_names != expected {
            return Err(HeaderError::ScalerNames {
                got: self.scaler_names.clone(),
                expected,
            });
        }
        for (field, len) in [
            ("event_widths", self.event_widths.len()),
            ("windows", self.windows.len()),
            ("good_thresholds", self.good_thresholds.len()),
        ] {
            if len != channels {
                return Err(HeaderError::PerChannel {
                    field,
                    len,
                    channels,
                });
            }
        }
        let recording = Recording {
            first_bin: self.first_bin,
            n_bins: self.n_bins.saturating_mul(self.rebin),
            rebin: self.rebin,
        };
        recording
            .check(MAX_BINS as u32)
            .map_err(|_| HeaderError::Recording {
                first_bin: self.first_bin,
                n_bins: self.n_bins,
                rebin: self.rebin,
            })?;
        self.check_rois(channels)?;
        Ok(AcqDescription {
            geometry,
            recording,
            params: AcqParams {
                n_frames: self.n_frames,
                exposure_ticks: self.exposure_ticks,
                gap,
                trigger,
                debounce_ticks: 0,
                invert_f0: false,
                invert_veto: false,
            },
            clock_hz: self.clock_hz,
            event_widths: self.event_widths.clone(),
            windows: self.windows.clone(),
            good_thresholds: self.good_thresholds.clone(),
            rois: self.rois.clone(),
            backend: self.backend.clone(),
            software: self.software.clone(),
        })
    }

    /// A ROI from a peer: a valid name and, per channel, a range of detector bins (anywhere in
    /// the spectrum: ROIs are summed from the full spectrum, not from the bins sent).
    fn check_rois(&self, channels: usize) -> Result<(), HeaderError> {
        let last = MAX_BINS as u32 - 1;
        for roi in &self.rois {
            let bad = |reason: String| HeaderError::Roi {
                name: roi.name.clone(),
                reason,
            };
            if format!("{}:0:0", roi.name)
                .parse::<crate::roi::RoiSpec>()
                .is_err()
            {
                return Err(bad("not a ROI name".into()));
            }
            if roi.ranges.len() != channels {
                return Err(bad(format!(
                    "{} ranges for {channels} channels",
                    roi.ranges.len()
                )));
            }
            if let Some([low, high]) = roi
                .ranges
                .iter()
                .flatten()
                .find(|[l, h]| l > h || *h > last)
            {
                return Err(bad(format!(
                    "range [{low}, {high}] is not bins within 0..={last} with low <= high"
                )));
            }
        }
        Ok(())
    }
}

fn one() -> u32 {
    1
}

/// Little-endian u32 words of a part whose length [`image_header`] checked.
fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_json(frame: u64, shape: [u32; 2]) -> Vec<u8> {
        serde_json::to_vec(&ImageHeader {
            htype: "image".into(),
            frame,
            msg_number: frame,
            shape,
            scaler_shape: [shape[0], 9],
            dtype: "uint32".into(),
            compression: "none".into(),
            exptime: 0.001,
            timestamp_ns: 5,
            flags: 0,
            rois: Vec::new(),
        })
        .unwrap()
    }

    fn description() -> AcqDescription {
        AcqDescription {
            geometry: Geometry::new(2, 16).unwrap().with_rois(1).unwrap(),
            recording: Recording {
                first_bin: 100,
                n_bins: 32,
                rebin: 2,
            },
            params: AcqParams {
                n_frames: 10,
                exposure_ticks: 80_000,
                gap: GapMode::Ns200,
                trigger: TriggerMode::Gate,
                debounce_ticks: 0,
                invert_f0: false,
                invert_veto: false,
            },
            clock_hz: 80e6,
            event_widths: vec![6, 7],
            windows: vec![[0, 15, 1, 14], [2, 13, 3, 12]],
            good_thresholds: vec![0, 4],
            rois: vec![Roi {
                name: "Fe".into(),
                // Beyond the bins sent (100..=131): ROIs come from the full spectrum.
                ranges: vec![Some([90, 111]), None],
            }],
            backend: "simulated SDK".into(),
            software: "xsp3-acquire 0.1.0".into(),
        }
    }

    #[test]
    fn descriptions_round_trip_through_the_header_and_its_json() {
        let desc = description();
        let header = Header::for_acquisition(&desc, "scan", true);
        assert_eq!(header.filename, "scan");
        assert!(header.overwritable);
        assert_eq!(header.exptime, 0.001);
        let json = serde_json::to_vec(&header).unwrap();
        let Message::Header(back) = decode(&[json]).unwrap() else {
            panic!("not a header");
        };
        assert_eq!(*back, header);
        assert_eq!(back.description().unwrap(), desc);
    }

    #[test]
    fn headers_are_checked_field_by_field() {
        let bad = |edit: fn(&mut Header), field: &str| {
            let mut h = Header::for_acquisition(&description(), "scan", false);
            edit(&mut h);
            let e = h.description().unwrap_err().to_string();
            assert!(e.contains(field), "{e} should name {field}");
        };
        bad(|h| h.n_channels = 0, "n_channels 0");
        bad(|h| h.n_bins = 5000, "n_bins 5000");
        bad(
            |h| h.trigger_mode = "sometimes".into(),
            "trigger_mode `sometimes`",
        );
        bad(|h| h.gap_ns = 7, "gap_ns 7");
        bad(|h| h.clock_hz = f64::NAN, "clock_hz NaN");
        bad(|h| h.clock_hz = 0.0, "clock_hz 0");
        bad(|h| h.scaler_names.swap(0, 1), "scaler_names");
        bad(
            |h| h.event_widths.pop().map_or((), drop),
            "event_widths has 1",
        );
        bad(|h| h.windows.clear(), "windows has 0");
        bad(|h| h.good_thresholds.push(1), "good_thresholds has 3");
        bad(|h| h.protocol = "xsp3-stream/9".into(), "xsp3-stream/9");
        bad(|h| h.dtype = "float64".into(), "float64");
        bad(|h| h.rebin = 0, "first_bin 100, n_bins 16, rebin 0");
        bad(|h| h.first_bin = 4090, "first_bin 4090");
        bad(
            |h| h.rois[0].ranges[1] = Some([105, 4096]),
            "roi `Fe`: range [105, 4096] is not bins within 0..=4095",
        );
        bad(
            |h| h.rois[0].ranges.pop().map_or((), drop),
            "1 ranges for 2",
        );
        bad(
            |h| h.rois[0].name = "a/b".into(),
            "roi `a/b`: not a ROI name",
        );
    }

    #[test]
    fn images_round_trip() {
        let mca: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let scalers = vec![7u8; 2 * 9 * 4];
        let Message::Image {
            header,
            mca: m,
            scalers: s,
        } = decode(&[image_json(4, [2, 3]), mca, scalers]).unwrap()
        else {
            panic!("not an image");
        };
        assert_eq!(header.frame, 4);
        assert_eq!(m[1], u32::from_le_bytes([4, 5, 6, 7]));
        assert_eq!(s.len(), 18);
        assert_eq!(s[0], 0x0707_0707);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(decode(&[]), Err(ProtocolError::Empty));
        assert!(matches!(
            decode(&[b"{not json".to_vec()]),
            Err(ProtocolError::Json(_))
        ));
        assert!(matches!(
            decode(&[b"[1,2]".to_vec()]),
            Err(ProtocolError::Json(_))
        ));
        assert_eq!(
            decode(&[br#"{"htype":"pickle"}"#.to_vec()]),
            Err(ProtocolError::UnknownHtype("pickle".into()))
        );
        assert!(matches!(
            decode(&[image_json(1, [2, 3])]),
            Err(ProtocolError::Parts {
                got: 1,
                expected: 3,
                ..
            })
        ));
        assert!(matches!(
            decode(&[image_json(1, [2, 3]), vec![0; 5], vec![0; 72]]),
            Err(ProtocolError::PayloadSize { what: "MCA", .. })
        ));
        // A hostile shape whose byte count overflows 32-bit and 64-bit usize arithmetic alike.
        assert!(matches!(
            decode(&[image_json(1, [u32::MAX, u32::MAX]), vec![0; 8], vec![0; 8]]),
            Err(ProtocolError::PayloadSize { what: "MCA", .. })
        ));
        // A header missing required fields.
        assert!(matches!(
            decode(&[br#"{"htype":"header"}"#.to_vec()]),
            Err(ProtocolError::Json(_))
        ));
    }

    #[test]
    fn ack_endpoints_follow_the_data_endpoint() {
        assert_eq!(
            ack_endpoint("tcp://127.0.0.1:9999").as_deref(),
            Some("tcp://127.0.0.1:10000")
        );
        assert_eq!(
            ack_endpoint("ipc:///tmp/x").as_deref(),
            Some("ipc:///tmp/x.ack")
        );
        assert_eq!(ack_endpoint("tcp://*:65535"), None);
        assert_eq!(ack_endpoint("tcp://host:port"), None);
    }

    #[test]
    fn back_channel_messages_are_tagged_json() {
        let ack: BackChannel = serde_json::from_str(r#"{"htype":"ack","msgs":[[0,5]]}"#).unwrap();
        assert_eq!(ack, BackChannel::Ack { msgs: vec![[0, 5]] });
        assert_eq!(
            serde_json::to_string(&BackChannel::Join { next_msg_number: 7 }).unwrap(),
            r#"{"htype":"join","next_msg_number":7}"#
        );
        assert_eq!(
            serde_json::from_str::<BackChannel>(r#"{"htype":"hello"}"#).unwrap(),
            BackChannel::Hello
        );
    }
}
