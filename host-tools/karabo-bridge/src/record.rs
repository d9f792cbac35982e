//! Received trains written as a EuXFEL run (`xfel-bridge record`) with euxfel-write's
//! [`Recorder`]: the bridge's values mapped to the writer's cells.
//!
//! Arrays and numpy scalars keep their type (big-endian arrays are stored little-endian);
//! msgpack integers become int64 (uint64 above its range), floats float32/float64, booleans
//! bool, strings and UTF-8 bytes variable-length strings. The `metadata` entry is not stored
//! (readers make it from the train ID); what the EuXFEL format has no type for (lists, maps,
//! nil, complex numbers, float16, numpy unicode strings, bytes that are not UTF-8) is left out
//! and named in [`RecordedTrain::dropped`].

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use euxfel_write::{Cell, Element, Recorder, SourceData};
use rmpv::Value;

use crate::dtype::{to_little_endian, Dtype, Kind};
use crate::train::{Entry, SourceTrain, Train};

/// What recording one train did.
#[derive(Debug, Default)]
pub struct RecordedTrain {
    pub train_id: u64,
    /// `source key` of values the format cannot hold.
    pub dropped: Vec<String>,
    /// Sources left out of this train (their keys or shapes differ from their first train).
    pub refused: Vec<(String, String)>,
}

/// Why a train was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("a train without a train ID (no timestamp.tid in any source's metadata)")]
    NoTrainId,
    /// A train ID that is 0 or not above the previous one: that train is left out.
    #[error(transparent)]
    Order(euxfel_write::Error),
    /// Writing failed: the recording cannot go on.
    #[error(transparent)]
    Write(euxfel_write::Error),
}

/// A value as the writer takes it, owning what had to be converted.
enum Owned<'a> {
    Raw {
        element: Element,
        shape: Cow<'a, [usize]>,
        bytes: Cow<'a, [u8]>,
    },
    Text(Cow<'a, str>),
}

impl Owned<'_> {
    fn cell(&self) -> Cell<'_> {
        match self {
            Owned::Raw {
                element,
                shape,
                bytes,
            } => Cell::Raw {
                element: *element,
                shape,
                bytes,
            },
            Owned::Text(t) => Cell::Text(t),
        }
    }
}

fn element(d: Dtype) -> Option<Element> {
    Some(match (d.kind, d.size) {
        (Kind::Bool, 1) => Element::Bool,
        (Kind::Int, n) => Element::Int(n),
        (Kind::UInt, n) => Element::UInt(n),
        (Kind::Float, 4 | 8) => Element::Float(d.size),
        (Kind::Bytes, n) if n > 0 => Element::Bytes(n),
        _ => return None,
    })
}

fn little_endian<'a>(d: Dtype, bytes: &'a [u8]) -> Cow<'a, [u8]> {
    if d.big_endian {
        Cow::Owned(to_little_endian(d, bytes))
    } else {
        Cow::Borrowed(bytes)
    }
}

fn scalar(element: Element, bytes: Vec<u8>) -> Owned<'static> {
    Owned::Raw {
        element,
        shape: Cow::Borrowed(&[]),
        bytes: Cow::Owned(bytes),
    }
}

fn convert(entry: &Entry) -> Option<Owned<'_>> {
    match entry {
        Entry::Array(a) => Some(Owned::Raw {
            element: element(a.dtype)?,
            shape: Cow::Borrowed(&a.shape),
            bytes: little_endian(a.dtype, &a.data),
        }),
        Entry::Scalar(s) => Some(Owned::Raw {
            element: element(s.dtype)?,
            shape: Cow::Borrowed(&[]),
            bytes: little_endian(s.dtype, &s.bytes),
        }),
        Entry::Value(v) => match v {
            Value::Boolean(b) => Some(scalar(Element::Bool, vec![u8::from(*b)])),
            Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
                (Some(i), _) => Some(scalar(Element::Int(8), i.to_le_bytes().to_vec())),
                (None, Some(u)) => Some(scalar(Element::UInt(8), u.to_le_bytes().to_vec())),
                (None, None) => None,
            },
            Value::F32(f) => Some(scalar(Element::Float(4), f.to_le_bytes().to_vec())),
            Value::F64(f) => Some(scalar(Element::Float(8), f.to_le_bytes().to_vec())),
            Value::String(s) => s.as_str().map(|s| Owned::Text(Cow::Borrowed(s))),
            Value::Binary(b) => std::str::from_utf8(b)
                .ok()
                .map(|s| Owned::Text(Cow::Borrowed(s))),
            _ => None,
        },
    }
}

/// INDEX/timestamp of a train: the sender's `timestamp` (epoch seconds) when its metadata has
/// one, else now; in nanoseconds.
fn timestamp_ns(train: &Train) -> u64 {
    let sent = train.sources.values().find_map(|st| {
        st.metadata
            .iter()
            .find(|(k, _)| k == "timestamp")
            .and_then(|(_, v)| v.as_f64())
    });
    match sent {
        Some(s) if s.is_finite() && s > 0.0 => (s * 1e9) as u64,
        _ => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

fn source_cells<'a>(
    name: &str,
    st: &'a SourceTrain,
    dropped: &mut Vec<String>,
) -> Vec<(&'a str, Owned<'a>)> {
    let mut out = Vec::new();
    for (key, entry) in &st.data {
        if key == "metadata" {
            continue;
        }
        match convert(entry) {
            Some(o) => out.push((key.as_str(), o)),
            None => dropped.push(format!("{name} {key}")),
        }
    }
    out
}

/// Appends `train` to `rec`.
pub fn record_train(rec: &mut Recorder, train: &Train) -> Result<RecordedTrain, RecordError> {
    let train_id = train.train_id().ok_or(RecordError::NoTrainId)?;
    let mut dropped = Vec::new();
    let owned: Vec<(&str, Vec<(&str, Owned)>)> = train
        .sources
        .iter()
        .map(|(name, st)| (name.as_str(), source_cells(name, st, &mut dropped)))
        .collect();
    let sources: Vec<SourceData> = owned
        .iter()
        .map(|(name, keys)| SourceData {
            name,
            keys: keys.iter().map(|(k, o)| (*k, o.cell())).collect(),
        })
        .collect();
    match rec.append(train_id, timestamp_ns(train), &sources) {
        Ok(a) => Ok(RecordedTrain {
            train_id,
            dropped,
            refused: a.refused,
        }),
        Err(e @ euxfel_write::Error::TrainOrder { .. }) => Err(RecordError::Order(e)),
        Err(e) => Err(RecordError::Write(e)),
    }
}
