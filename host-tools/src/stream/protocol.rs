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

use serde::{Deserialize, Serialize};

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
    pub n_bins: u32,
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
    /// Why the series ended early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
        })
        .unwrap()
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
}
