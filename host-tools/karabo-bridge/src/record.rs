//! Received trains written as a EuXFEL run (`xfel-bridge record`) with euxfel-write's
//! [`Recorder`]: the bridge's values mapped to the writer's cells.
//!
//! Arrays and numpy scalars keep their type (big-endian arrays are stored little-endian);
//! msgpack integers become int64 (uint64 above its range), floats float32/float64, booleans
//! bool, strings and UTF-8 bytes variable-length strings. The `metadata` entry is not stored
//! (readers make it from the train ID); what the EuXFEL format has no type for (lists, maps,
//! nil, complex numbers, float16, numpy unicode strings, bytes that are not UTF-8, strings with
//! a NUL byte) is left out and named in [`RecordedTrain::dropped`].
//!
//! A writer error ends the recording, so a source the file cannot hold is refused for the
//! train it comes in ([`RecordedTrain::refused`]) before it reaches the writer: names with a
//! NUL byte, a key that is also a group of another key (`a` and `a.b`), more dimensions than
//! HDF5 allows, and names that would share or nest in another source's group or that EuXFEL
//! readers would split elsewhere (an INSTRUMENT name with `/` after its `:`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use euxfel_write::{Cell, Element, RecordSummary, Recorder, SourceData};
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
            // HDF5 strings end at a NUL byte.
            Value::String(s) => s
                .as_str()
                .filter(|s| !s.contains('\0'))
                .map(|s| Owned::Text(Cow::Borrowed(s))),
            Value::Binary(b) => std::str::from_utf8(b)
                .ok()
                .filter(|s| !s.contains('\0'))
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

/// HDF5 allows 32 dimensions; the train axis is one of them.
const MAX_ENTRY_RANK: usize = 31;
/// The writer keeps up to 1024 entries of an empty array per chunk, each as if its zero
/// dimensions were 1, and an HDF5 chunk holds less than 4 GiB.
const MAX_EMPTY_ENTRY_BYTES: usize = 4 << 20;

/// Where the writer puts a source: its section and name in the file (see euxfel-write's
/// recorder: all keys `.value`/`.timestamp` is CONTROL; an INSTRUMENT name without `:` gets
/// `:output`).
fn stored_place(name: &str, keys: &[(&str, Owned)]) -> Place {
    let control = !keys.is_empty()
        && keys
            .iter()
            .all(|(k, _)| k.ends_with(".value") || k.ends_with(".timestamp"));
    if control {
        ("CONTROL", name.to_string())
    } else if name.contains(':') {
        ("INSTRUMENT", name.to_string())
    } else {
        ("INSTRUMENT", format!("{name}:output"))
    }
}

/// Why the file cannot hold this source's values as they are, if it cannot.
fn unstorable(name: &str, keys: &[(&str, Owned)]) -> Option<String> {
    if name.contains('\0') {
        return Some("a NUL byte in the source name".into());
    }
    let names: BTreeSet<&str> = keys.iter().map(|(k, _)| *k).collect();
    for (key, value) in keys {
        if key.contains('\0') {
            return Some(format!("a NUL byte in key {key:?}"));
        }
        // `a` and `a.b` would both be `a` in the file, a dataset and a group.
        let group = key
            .match_indices('.')
            .map(|(i, _)| &key[..i])
            .find(|prefix| names.contains(prefix));
        if let Some(group) = group {
            return Some(format!("key {group} is also a group of key {key}"));
        }
        if let Owned::Raw { element, shape, .. } = value {
            if shape.len() > MAX_ENTRY_RANK {
                return Some(format!(
                    "{key}: {} dimensions, HDF5 holds {MAX_ENTRY_RANK} per entry",
                    shape.len()
                ));
            }
            let empty_bytes = shape
                .iter()
                .try_fold(element.size(), |a, &d| a.checked_mul(d.max(1)));
            if shape.contains(&0) && empty_bytes.is_none_or(|b| b >= MAX_EMPTY_ENTRY_BYTES) {
                return Some(format!(
                    "{key}: empty array of shape {shape:?} too large to chunk"
                ));
            }
        }
    }
    None
}

type Place = (&'static str, String);

/// Why a source seen for the first time cannot have `place`, if it cannot: a name readers
/// split elsewhere, or the place of another source, a group inside one or around one.
fn place_conflict<'a>(
    place: &Place,
    taken: impl IntoIterator<Item = (&'a str, &'a Place)>,
) -> Option<String> {
    let (section, stored) = place;
    if *section == "INSTRUMENT" && stored.split_once(':').is_some_and(|(_, c)| c.contains('/')) {
        return Some("an INSTRUMENT source name with '/' after its ':'".into());
    }
    let nested =
        |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'));
    taken
        .into_iter()
        .find(|(_, (s, other))| s == section && (nested(stored, other) || nested(other, stored)))
        .map(|(other, (s, o))| {
            format!("{section}/{stored} would clash with {s}/{o} of source {other}")
        })
}

/// Received trains being written into a run (`xfel-bridge record`).
pub struct Recording {
    rec: Recorder,
    /// Each source written so far: where the file holds it.
    places: BTreeMap<String, Place>,
}

impl Recording {
    pub fn new(rec: Recorder) -> Recording {
        Recording {
            rec,
            places: BTreeMap::new(),
        }
    }

    /// Appends `train`.
    pub fn append(&mut self, train: &Train) -> Result<RecordedTrain, RecordError> {
        let train_id = train.train_id().ok_or(RecordError::NoTrainId)?;
        let mut dropped = Vec::new();
        let mut refused = Vec::new();
        let mut owned: Vec<(&str, Vec<(&str, Owned)>)> = Vec::new();
        // Places of the sources new in this train, taken if the writer accepts them.
        let mut new_places: Vec<(&str, Place)> = Vec::new();
        for (name, st) in &train.sources {
            let keys = source_cells(name, st, &mut dropped);
            let mut why = unstorable(name, &keys);
            if why.is_none() && !self.places.contains_key(name.as_str()) {
                let place = stored_place(name, &keys);
                let taken = self
                    .places
                    .iter()
                    .map(|(n, p)| (n.as_str(), p))
                    .chain(new_places.iter().map(|(n, p)| (*n, p)));
                why = place_conflict(&place, taken);
                if why.is_none() {
                    new_places.push((name, place));
                }
            }
            match why {
                Some(why) => refused.push((name.clone(), why)),
                None => owned.push((name.as_str(), keys)),
            }
        }
        let sources: Vec<SourceData> = owned
            .iter()
            .map(|(name, keys)| SourceData {
                name,
                keys: keys.iter().map(|(k, o)| (*k, o.cell())).collect(),
            })
            .collect();
        match self.rec.append(train_id, timestamp_ns(train), &sources) {
            Ok(a) => {
                for (name, place) in new_places {
                    if !a.refused.iter().any(|(r, _)| r == name) {
                        self.places.insert(name.to_string(), place);
                    }
                }
                refused.extend(a.refused);
                Ok(RecordedTrain {
                    train_id,
                    dropped,
                    refused,
                })
            }
            Err(e @ euxfel_write::Error::TrainOrder { .. }) => Err(RecordError::Order(e)),
            Err(e) => Err(RecordError::Write(e)),
        }
    }

    /// Completes the run file (see [`Recorder::finish`]).
    pub fn finish(self) -> euxfel_write::Result<RecordSummary> {
        self.rec.finish()
    }
}
