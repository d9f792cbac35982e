//! The Karabo Bridge wire format (docs/karabo-bridge.md; reference: karabo_bridge's
//! `serializer.py`), protocols 2.2 and 1.0, both ways.
//!
//! 2.2: per source, in name order, a header `{source, content: 'msgpack', metadata}` and a map of
//! the non-array values; then per array a header `{source, content: 'array', path, dtype, shape}`
//! and its raw C-contiguous bytes. 1.0: one part, `{source: {key: value, ..., metadata}}`, arrays
//! and numpy scalars encoded as msgpack-numpy does.
//!
//! Decoding never trusts a declared size: every length is checked against the bytes received
//! before it is used, and a message that breaks a rule is an error, never a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use rmpv::Value;

use crate::dtype::{Dtype, Scalar};
use crate::train::{map_of, Array, Entry, Payload, SourceTrain, Train};

/// A protocol version the bridge speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    #[value(name = "1.0")]
    V1_0,
    #[value(name = "2.2")]
    V2_2,
}

/// The fields `--dummy-timestamps` adds to metadata that lacks `timestamp`, as karabo_bridge
/// makes them from the machine clock: epoch seconds, and its decimal digits as two strings (the
/// fraction padded to 18 digits).
#[derive(Clone, Debug, PartialEq)]
pub struct Timestamp {
    pub epoch: f64,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Timestamp { epoch }
    }

    /// `timestamp`, `timestamp.sec`, `timestamp.frac`, from Python's `str(epoch)` (shortest
    /// round-trip digits, which Rust's `Display` also prints).
    pub fn fields(&self) -> [(String, Value); 3] {
        let text = format!("{}", self.epoch);
        let (sec, frac) = text.split_once('.').unwrap_or((&text, "0"));
        [
            ("timestamp".into(), Value::F64(self.epoch)),
            ("timestamp.sec".into(), Value::from(sec)),
            ("timestamp.frac".into(), Value::from(format!("{frac:0<18}"))),
        ]
    }
}

/// Why a value could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("{source_name} {key}: a complex scalar cannot be packed as msgpack")]
    Complex { source_name: String, key: String },
}

/// The metadata to send for a source: its own, plus dummy timestamps if asked for and missing.
fn header_metadata(st: &SourceTrain, ts: Option<&Timestamp>) -> Value {
    let mut meta = st.metadata.clone();
    if let Some(ts) = ts {
        if !meta.iter().any(|(k, _)| k == "timestamp") {
            meta.extend(ts.fields());
        }
    }
    map_of(&meta)
}

fn pack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

fn str_key(s: &str) -> Value {
    Value::from(s)
}

/// Parts below this size are copied into the ZeroMQ message (as pyzmq's `copy_threshold` does):
/// a zero-copy message costs libzmq an allocation of its own and a free callback, more than
/// copying a few kilobytes.
const COPY_BELOW: usize = 64 << 10;

/// An owned buffer as a ZeroMQ message: moved if it is large, copied if it is small.
fn message(bytes: Vec<u8>) -> zmq::Message {
    if bytes.len() < COPY_BELOW {
        zmq::Message::from(&bytes[..])
    } else {
        zmq::Message::from(bytes)
    }
}

/// Encodes a train as protocol 2.2 message parts. Large arrays are moved, not copied: an owned
/// payload becomes a ZeroMQ message without a copy.
pub fn encode_v2(train: Train, ts: Option<&Timestamp>) -> Result<Vec<zmq::Message>, EncodeError> {
    let mut parts = Vec::new();
    for (source, st) in train.sources {
        let header = Value::Map(vec![
            (str_key("source"), Value::from(source.as_str())),
            (str_key("content"), Value::from("msgpack")),
            (str_key("metadata"), header_metadata(&st, ts)),
        ]);
        let mut values = Vec::new();
        let mut arrays = Vec::new();
        for (key, entry) in st.data {
            match entry {
                Entry::Value(v) => values.push((Value::from(key.as_str()), v)),
                Entry::Scalar(s) => {
                    let v = s.item().ok_or_else(|| EncodeError::Complex {
                        source_name: source.clone(),
                        key: key.clone(),
                    })?;
                    values.push((Value::from(key.as_str()), v));
                }
                Entry::Array(a) => arrays.push((key, a)),
            }
        }
        parts.push(message(pack(&header)));
        parts.push(message(pack(&Value::Map(values))));
        for (key, a) in arrays {
            let header = Value::Map(vec![
                (str_key("source"), Value::from(source.as_str())),
                (str_key("content"), Value::from("array")),
                (str_key("path"), Value::from(key.as_str())),
                (str_key("dtype"), Value::from(a.dtype.name())),
                (
                    str_key("shape"),
                    Value::Array(a.shape.iter().map(|&d| Value::from(d as u64)).collect()),
                ),
            ]);
            parts.push(message(pack(&header)));
            parts.push(match a.data {
                Payload::Owned(v) => message(v),
                Payload::Message(m) => m,
            });
        }
    }
    Ok(parts)
}

/// msgpack-numpy's encoding of an array (binary keys, as it writes them).
fn numpy_array(a: &Array) -> Value {
    Value::Map(vec![
        (Value::Binary(b"nd".to_vec()), Value::Boolean(true)),
        (
            Value::Binary(b"type".to_vec()),
            Value::from(a.dtype.descr()),
        ),
        (Value::Binary(b"kind".to_vec()), Value::Binary(Vec::new())),
        (
            Value::Binary(b"shape".to_vec()),
            Value::Array(a.shape.iter().map(|&d| Value::from(d as u64)).collect()),
        ),
        (
            Value::Binary(b"data".to_vec()),
            Value::Binary(a.data.to_vec()),
        ),
    ])
}

/// msgpack-numpy's encoding of a numpy scalar; float64 is a Python float and packed as one.
fn numpy_scalar(s: &Scalar) -> Value {
    if s.dtype == Dtype::new(crate::dtype::Kind::Float, 8) {
        if let Some(v) = s.item() {
            return v;
        }
    }
    Value::Map(vec![
        (Value::Binary(b"nd".to_vec()), Value::Boolean(false)),
        (
            Value::Binary(b"type".to_vec()),
            Value::from(s.dtype.descr()),
        ),
        (
            Value::Binary(b"data".to_vec()),
            Value::Binary(s.bytes.clone()),
        ),
    ])
}

/// Encodes a train as the single part of protocol 1.0. The source's `metadata` entry (added at
/// the end if it has none) carries the header metadata, timestamps included.
pub fn encode_v1(train: &Train, ts: Option<&Timestamp>) -> zmq::Message {
    let mut sources = Vec::new();
    for (source, st) in &train.sources {
        let meta = header_metadata(st, ts);
        let mut values = Vec::new();
        let mut has_meta = false;
        for (key, entry) in &st.data {
            let v = if key == "metadata" {
                has_meta = true;
                meta.clone()
            } else {
                match entry {
                    Entry::Value(v) => v.clone(),
                    Entry::Scalar(s) => numpy_scalar(s),
                    Entry::Array(a) => numpy_array(a),
                }
            };
            values.push((Value::from(key.as_str()), v));
        }
        if !has_meta {
            values.push((str_key("metadata"), meta));
        }
        sources.push((Value::from(source.as_str()), Value::Map(values)));
    }
    message(pack(&Value::Map(sources)))
}

/// Encodes a train in `protocol`.
pub fn encode(
    train: Train,
    protocol: Protocol,
    ts: Option<&Timestamp>,
) -> Result<Vec<zmq::Message>, EncodeError> {
    match protocol {
        Protocol::V2_2 => encode_v2(train, ts),
        Protocol::V1_0 => Ok(vec![encode_v1(&train, ts)]),
    }
}

/// Why a received message is not a valid bridge train. `part` counts from 0.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("{0} parts: protocol 2.2 sends (header, payload) pairs")]
    OddParts(usize),
    #[error("part {part}: not msgpack: {reason}")]
    Msgpack { part: usize, reason: String },
    #[error("part {part}: more than {max} msgpack values")]
    TooManyValues { part: usize, max: u64 },
    #[error("part {part}: {extra} bytes after the msgpack value")]
    TrailingBytes { part: usize, extra: usize },
    #[error("part {part}: not a msgpack map")]
    NotAMap { part: usize },
    #[error("part {part}: `{field}` missing or of the wrong type")]
    Field { part: usize, field: &'static str },
    #[error("part {part}: unknown content `{content}`")]
    UnknownContent { part: usize, content: String },
    #[error("part {part}: array `{path}` of source `{source_name}` before the source's values")]
    ArrayWithoutSource {
        part: usize,
        source_name: String,
        path: String,
    },
    #[error("part {part}: unsupported dtype `{dtype}`")]
    Dtype { part: usize, dtype: String },
    #[error("part {part}: array `{path}`: shape {shape:?} of {dtype} is {expected} bytes, the payload has {got}")]
    Size {
        part: usize,
        path: String,
        dtype: String,
        shape: Vec<u64>,
        expected: String,
        got: usize,
    },
}

/// Most msgpack values decoded from one message part. Each becomes a [`Value`] of 32 bytes or
/// more, so a part of one-byte values (nils, small integers) would take 30 to 60 times its size
/// in memory (2 GB for 50 MB of nils): a limit on the part's size is no limit on that.
pub const MAX_VALUES_PER_PART: u64 = 1 << 22;

/// The big-endian length of `n` bytes at `at`, if the part holds them.
fn length_at(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(n)?)?;
    Some(field.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)))
}

/// Counts the msgpack values of `bytes` (without decoding them) until `limit` is passed.
/// False if it is; a truncated or invalid part counts as within it (decoding reports it).
fn values_within(bytes: &[u8], limit: u64) -> bool {
    let (mut at, mut pending, mut count) = (0usize, 1u64, 0u64);
    while pending > 0 {
        let Some(&marker) = bytes.get(at) else {
            return true;
        };
        at += 1;
        pending -= 1;
        count += 1;
        if count > limit {
            return false;
        }
        // Bytes after the marker, and the values contained.
        let (skip, contained) = match marker {
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 | 0xc5 | 0xda | 0xc6 | 0xdb => {
                let n = match marker {
                    0xc4 | 0xd9 => 1,
                    0xc5 | 0xda => 2,
                    _ => 4,
                };
                let Some(len) = length_at(bytes, at, n) else {
                    return true;
                };
                (n as u64 + len, 0)
            }
            0xc7..=0xc9 => {
                let n = 1 << (marker - 0xc7);
                let Some(len) = length_at(bytes, at, n) else {
                    return true;
                };
                (n as u64 + 1 + len, 0)
            }
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xd4..=0xd8 => (1 + (1u64 << (marker - 0xd4)), 0),
            0xdc..=0xdf => {
                let n = if marker & 1 == 0 { 2 } else { 4 };
                let Some(len) = length_at(bytes, at, n) else {
                    return true;
                };
                (n as u64, if marker >= 0xde { 2 * len } else { len })
            }
            // nil, booleans, fixints; 0xc1 is never used (decoding refuses it).
            _ => (0, 0),
        };
        at = at.saturating_add(usize::try_from(skip).unwrap_or(usize::MAX));
        pending = pending.saturating_add(contained);
    }
    true
}

fn unpack(part: usize, bytes: &[u8]) -> Result<Value, DecodeError> {
    if !values_within(bytes, MAX_VALUES_PER_PART) {
        return Err(DecodeError::TooManyValues {
            part,
            max: MAX_VALUES_PER_PART,
        });
    }
    let mut rd = bytes;
    let value = rmpv::decode::read_value(&mut rd).map_err(|e| DecodeError::Msgpack {
        part,
        reason: e.to_string(),
    })?;
    if !rd.is_empty() {
        return Err(DecodeError::TrailingBytes {
            part,
            extra: rd.len(),
        });
    }
    Ok(value)
}

/// Map entries with string keys (other keys are kept as their msgpack text).
fn string_map(part: usize, value: Value) -> Result<Vec<(String, Value)>, DecodeError> {
    match value {
        Value::Map(entries) => Ok(entries
            .into_iter()
            .map(|(k, v)| (key_text(&k), v))
            .collect()),
        _ => Err(DecodeError::NotAMap { part }),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.as_str().map_or_else(
            || String::from_utf8_lossy(s.as_bytes()).into_owned(),
            str::to_string,
        ),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

fn field<'a>(
    part: usize,
    map: &'a [(String, Value)],
    name: &'static str,
) -> Result<&'a Value, DecodeError> {
    map.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .ok_or(DecodeError::Field { part, field: name })
}

fn str_field(
    part: usize,
    map: &[(String, Value)],
    name: &'static str,
) -> Result<String, DecodeError> {
    field(part, map, name)?
        .as_str()
        .map(str::to_string)
        .ok_or(DecodeError::Field { part, field: name })
}

fn shape_of(part: usize, v: &Value) -> Result<Vec<u64>, DecodeError> {
    let err = || DecodeError::Field {
        part,
        field: "shape",
    };
    v.as_array()
        .ok_or_else(err)?
        .iter()
        .map(|d| d.as_u64().ok_or_else(err))
        .collect()
}

/// Checks a declared shape against the payload size without trusting either.
fn checked_array(
    part: usize,
    path: &str,
    dtype: Dtype,
    shape: Vec<u64>,
    data: Payload,
) -> Result<Array, DecodeError> {
    let size_err = |expected: String| DecodeError::Size {
        part,
        path: path.to_string(),
        dtype: dtype.name(),
        shape: shape.clone(),
        expected,
        got: data.len(),
    };
    let dims: Option<Vec<usize>> = shape.iter().map(|&d| usize::try_from(d).ok()).collect();
    let Some(dims) = dims else {
        return Err(size_err("more than addressable".into()));
    };
    match Array::expected_len(dtype, &dims) {
        Some(n) if n == data.len() => Ok(Array {
            dtype,
            shape: dims,
            data,
        }),
        Some(n) => Err(size_err(n.to_string())),
        None => Err(size_err("more than addressable".into())),
    }
}

/// Decodes a received message: one part is protocol 1.0, pairs are 2.2 (as karabo_bridge's
/// `deserialize` tells them apart).
pub fn decode(parts: Vec<zmq::Message>) -> Result<Train, DecodeError> {
    match parts.len() {
        0 => Err(DecodeError::Empty),
        1 => decode_v1(&parts[0]),
        n if n % 2 == 1 => Err(DecodeError::OddParts(n)),
        _ => decode_v2(parts),
    }
}

fn decode_v2(parts: Vec<zmq::Message>) -> Result<Train, DecodeError> {
    let mut train = Train::default();
    let mut it = parts.into_iter().enumerate();
    while let (Some((hi, header)), Some((pi, payload))) = (it.next(), it.next()) {
        let header = string_map(hi, unpack(hi, &header)?)?;
        let source = str_field(hi, &header, "source")?;
        let content = str_field(hi, &header, "content")?;
        match content.as_str() {
            "msgpack" => {
                let metadata = match header.iter().find(|(k, _)| k == "metadata") {
                    Some((_, m)) => string_map(hi, m.clone())?,
                    None => Vec::new(),
                };
                let data = string_map(pi, unpack(pi, &payload)?)?
                    .into_iter()
                    .map(|(k, v)| (k, Entry::Value(v)))
                    .collect();
                train.sources.insert(source, SourceTrain { metadata, data });
            }
            // `ImageData` is the pre-2019 name the C++ client still accepts.
            "array" | "ImageData" => {
                let path = str_field(hi, &header, "path")?;
                let dtype_name = str_field(hi, &header, "dtype")?;
                let dtype = Dtype::from_name(&dtype_name).ok_or(DecodeError::Dtype {
                    part: hi,
                    dtype: dtype_name,
                })?;
                let shape = shape_of(hi, field(hi, &header, "shape")?)?;
                let array = checked_array(pi, &path, dtype, shape, Payload::Message(payload))?;
                let Some(st) = train.sources.get_mut(&source) else {
                    return Err(DecodeError::ArrayWithoutSource {
                        part: hi,
                        source_name: source,
                        path,
                    });
                };
                st.data.push((path, Entry::Array(array)));
            }
            _ => {
                return Err(DecodeError::UnknownContent {
                    part: hi,
                    content: content.chars().take(64).collect(),
                })
            }
        }
    }
    Ok(train)
}

/// A msgpack-numpy map (`{b'nd': ..., b'type': ..., b'data': ...}`) as an array or scalar;
/// any other value as itself.
fn from_numpy(value: Value) -> Result<Entry, DecodeError> {
    let is_numpy = match &value {
        Value::Map(entries) => entries
            .iter()
            .any(|(k, v)| matches!(k, Value::Binary(b) if b == b"nd") && v.is_bool()),
        _ => false,
    };
    let Value::Map(entries) = value else {
        return Ok(Entry::Value(value));
    };
    if !is_numpy {
        return Ok(Entry::Value(Value::Map(entries)));
    }
    let (mut nd, mut descr, mut shape, mut data) = (false, None, None, None);
    for (k, v) in entries {
        match (k, v) {
            (Value::Binary(k), Value::Boolean(b)) if k == b"nd" => nd = b,
            (Value::Binary(k), v) if k == b"type" => descr = v.as_str().map(str::to_string),
            (Value::Binary(k), v) if k == b"shape" => shape = Some(v),
            // The data is moved out of the decoded message, not copied.
            (Value::Binary(k), Value::Binary(d)) if k == b"data" => data = Some(d),
            _ => {}
        }
    }
    let descr = descr.ok_or(DecodeError::Field {
        part: 0,
        field: "type",
    })?;
    let dtype = Dtype::from_descr(&descr).ok_or_else(|| DecodeError::Dtype {
        part: 0,
        dtype: descr.chars().take(64).collect(),
    })?;
    let data = data.ok_or(DecodeError::Field {
        part: 0,
        field: "data",
    })?;
    if nd {
        let shape = shape_of(0, shape.as_ref().unwrap_or(&Value::Nil))?;
        Ok(Entry::Array(checked_array(
            0,
            "",
            dtype,
            shape,
            Payload::Owned(data),
        )?))
    } else if data.len() == dtype.size {
        Ok(Entry::Scalar(Scalar { dtype, bytes: data }))
    } else {
        Err(DecodeError::Size {
            part: 0,
            path: String::new(),
            dtype: dtype.name(),
            shape: Vec::new(),
            expected: dtype.size.to_string(),
            got: data.len(),
        })
    }
}

fn decode_v1(part: &[u8]) -> Result<Train, DecodeError> {
    let mut train = Train::default();
    for (source, value) in string_map(0, unpack(0, part)?)? {
        let mut st = SourceTrain::default();
        for (key, v) in string_map(0, value)? {
            if key == "metadata" {
                if let Value::Map(_) = &v {
                    st.metadata = string_map(0, v.clone())?;
                }
                st.data.push((key, Entry::Value(v)));
                continue;
            }
            let entry = match from_numpy(v) {
                Err(DecodeError::Size {
                    part,
                    dtype,
                    shape,
                    expected,
                    got,
                    ..
                }) => {
                    return Err(DecodeError::Size {
                        part,
                        path: key,
                        dtype,
                        shape,
                        expected,
                        got,
                    })
                }
                other => other?,
            };
            st.data.push((key, entry));
        }
        train.sources.insert(source, st);
    }
    Ok(train)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::Kind;
    use crate::train::file_metadata;

    fn sample() -> Train {
        let mut train = Train::default();
        for (name, tid) in [("B_SRC/X:out", 7u64), ("A_SRC/Y", 7)] {
            let metadata = file_metadata(name, tid);
            train.sources.insert(
                name.into(),
                SourceTrain {
                    data: vec![
                        ("metadata".into(), Entry::Value(map_of(&metadata))),
                        ("count".into(), Entry::Value(Value::from(3))),
                        (
                            "gain".into(),
                            Entry::Scalar(Scalar {
                                dtype: Dtype::new(Kind::Float, 4),
                                bytes: 0.5f32.to_le_bytes().to_vec(),
                            }),
                        ),
                        (
                            "image.data".into(),
                            Entry::Array(Array {
                                dtype: Dtype::new(Kind::UInt, 2),
                                shape: vec![2, 3],
                                data: Payload::Owned((0u8..12).collect()),
                            }),
                        ),
                    ],
                    metadata,
                },
            );
        }
        train
    }

    fn bytes(parts: Vec<zmq::Message>) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    fn messages(parts: &[Vec<u8>]) -> Vec<zmq::Message> {
        parts.iter().map(|p| zmq::Message::from(&p[..])).collect()
    }

    /// The exact bytes msgpack (Python) packs for the first source of 2.2, from karabo_bridge's
    /// serializer with `use_bin_type=True`.
    #[test]
    fn v2_framing_is_karabo_bridges() {
        let parts = bytes(encode_v2(sample(), None).unwrap());
        assert_eq!(
            parts.len(),
            8,
            "two sources, each header, values, array header, array"
        );
        let header = unpack(0, &parts[0]).unwrap();
        assert_eq!(
            header.to_string(),
            r#"{"source": "A_SRC/Y", "content": "msgpack", "metadata": {"source": "A_SRC/Y", "timestamp.tid": 7}}"#
        );
        // fixmap(3), fixstr "source", fixstr "A_SRC/Y", ...
        assert_eq!(&parts[0][..9], b"\x83\xa6source\xa7");
        let values = unpack(1, &parts[1]).unwrap();
        assert_eq!(
            values.to_string(),
            r#"{"metadata": {"source": "A_SRC/Y", "timestamp.tid": 7}, "count": 3, "gain": 0.5}"#
        );
        // The float32 scalar goes out as its .item(), a float64.
        assert!(parts[1].ends_with(&[0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]));
        let array_header = unpack(2, &parts[2]).unwrap();
        assert_eq!(
            array_header.to_string(),
            r#"{"source": "A_SRC/Y", "content": "array", "path": "image.data", "dtype": "uint16", "shape": [2, 3]}"#
        );
        assert_eq!(parts[3], (0u8..12).collect::<Vec<_>>());
        assert!(unpack(4, &parts[4])
            .unwrap()
            .to_string()
            .contains("B_SRC/X:out"));
    }

    #[test]
    fn both_protocols_decode_to_what_was_encoded() {
        let parts = bytes(encode_v2(sample(), None).unwrap());
        let back = decode(messages(&parts)).unwrap();
        let a = back.sources.get("A_SRC/Y").unwrap();
        assert_eq!(a.train_id(), Some(7));
        assert_eq!(a.get("gain"), Some(&Entry::Value(Value::F64(0.5))));
        let Some(Entry::Array(img)) = a.get("image.data") else {
            panic!("no array")
        };
        assert_eq!(
            (img.dtype.name(), img.shape.clone()),
            ("uint16".into(), vec![2, 3])
        );

        let ts = Timestamp { epoch: 1.5 };
        let v1 = encode_v1(&sample(), Some(&ts));
        let back = decode(vec![v1]).unwrap();
        let a = back.sources.get("A_SRC/Y").unwrap();
        // 1.0 keeps the numpy scalar's type, and the timestamps are in the data's metadata.
        assert!(matches!(a.get("gain"), Some(Entry::Scalar(s)) if s.dtype.name() == "float32"));
        assert_eq!(a, &{
            let mut expected = sample().sources.remove("A_SRC/Y").unwrap();
            expected.metadata.extend(ts.fields());
            expected.data[0].1 = Entry::Value(map_of(&expected.metadata));
            expected
        });
    }

    #[test]
    fn dummy_timestamps_split_like_python_str() {
        let f = Timestamp {
            epoch: 1764512345.25,
        }
        .fields();
        assert_eq!(f[1].1, Value::from("1764512345"));
        assert_eq!(f[2].1, Value::from("250000000000000000"));
        let whole = Timestamp { epoch: 17.0 }.fields();
        assert_eq!(whole[2].1, Value::from("000000000000000000"));
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = bytes(encode_v2(sample(), None).unwrap());
        let mut odd = good.clone();
        odd.pop();
        assert_eq!(decode(messages(&odd)), Err(DecodeError::OddParts(7)));
        let mut short = good.clone();
        short[3].pop();
        assert!(matches!(
            decode(messages(&short)),
            Err(DecodeError::Size { got: 11, .. })
        ));
        let mut truncated = good.clone();
        truncated[1].truncate(5);
        assert!(matches!(
            decode(messages(&truncated)),
            Err(DecodeError::Msgpack { part: 1, .. })
        ));
        let mut unknown = good.clone();
        unknown[0] = pack(&Value::Map(vec![
            (str_key("source"), Value::from("A")),
            (str_key("content"), Value::from("pickle")),
        ]));
        assert!(matches!(
            decode(messages(&unknown)),
            Err(DecodeError::UnknownContent { part: 0, .. })
        ));
        // A declared shape of 2^62 x 2^62 elements is refused by arithmetic, not allocated.
        let mut huge = good.clone();
        huge[2] = pack(&Value::Map(vec![
            (str_key("source"), Value::from("A_SRC/Y")),
            (str_key("content"), Value::from("array")),
            (str_key("path"), Value::from("x")),
            (str_key("dtype"), Value::from("uint64")),
            (
                str_key("shape"),
                Value::Array(vec![Value::from(1u64 << 62), Value::from(1u64 << 62)]),
            ),
        ]));
        assert!(matches!(
            decode(messages(&huge)),
            Err(DecodeError::Size { part: 3, .. })
        ));
        // An array before its source's values.
        let swapped = vec![
            good[2].clone(),
            good[3].clone(),
            good[0].clone(),
            good[1].clone(),
        ];
        assert!(matches!(
            decode(messages(&swapped)),
            Err(DecodeError::ArrayWithoutSource { part: 0, .. })
        ));
        assert_eq!(decode(Vec::new()), Err(DecodeError::Empty));
    }

    #[test]
    fn values_are_counted_before_they_are_decoded() {
        // 5M nils: 5 MB received, 160 MB or more decoded.
        let mut nils = vec![0xdd];
        nils.extend_from_slice(&5_000_000u32.to_be_bytes());
        nils.resize(5 + 5_000_000, 0xc0);
        assert_eq!(
            unpack(1, &nils),
            Err(DecodeError::TooManyValues {
                part: 1,
                max: MAX_VALUES_PER_PART
            })
        );
        // Every kind of value counts once, whatever its size; containers count their items.
        let mixed = pack(&Value::Map(vec![
            (str_key("s"), Value::from("x".repeat(300))),
            (str_key("b"), Value::Binary(vec![0; 70_000])),
            (str_key("f"), Value::F64(1.5)),
            (str_key("e"), Value::Ext(3, vec![1, 2, 3])),
            (
                str_key("l"),
                Value::Array((0..20).map(|i| Value::from(i * 1_000_000)).collect()),
            ),
        ]));
        // The map, 5 keys, 4 values, the list and its 20 items.
        assert!(values_within(&mixed, 31));
        assert!(!values_within(&mixed, 30));
        assert!(unpack(0, &mixed).is_ok());
    }

    proptest::proptest! {
        /// Any corruption of a valid message (bytes flipped, parts cut, dropped or duplicated)
        /// decodes or is refused; nothing panics.
        #[test]
        fn corrupted_messages_never_panic(
            part in 0usize..8,
            at in 0usize..64,
            byte in proptest::num::u8::ANY,
            cut in proptest::option::of(0usize..64),
            drop_part in proptest::option::of(0usize..8),
            v1 in proptest::bool::ANY,
        ) {
            let mut parts = if v1 {
                vec![encode_v1(&sample(), None).to_vec()]
            } else {
                bytes(encode_v2(sample(), None).unwrap())
            };
            let part = part % parts.len();
            if let Some(b) = parts[part].get_mut(at) {
                *b = byte;
            }
            if let Some(cut) = cut {
                let len = parts[part].len().min(cut);
                parts[part].truncate(len);
            }
            if let Some(d) = drop_part {
                if d < parts.len() {
                    parts.remove(d);
                }
            }
            let _ = decode(messages(&parts));
        }

        /// Random bytes as a whole message.
        #[test]
        fn random_parts_never_panic(raw in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..6)) {
            let _ = decode(messages(&raw));
        }
    }
}
