//! One train as the bridge carries it: per source, its metadata and its values in order, each a
//! plain msgpack value, a numpy scalar or an array.

use std::collections::BTreeMap;
use std::ops::Deref;

use rmpv::Value;

use crate::dtype::{Dtype, Scalar};

/// The bytes of an array: owned (read from a file, zero-copy into a ZeroMQ message when sent)
/// or a received message part (zero-copy out of the socket).
pub enum Payload {
    Owned(Vec<u8>),
    Message(zmq::Message),
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Owned(v) => v,
            Payload::Message(m) => m,
        }
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self[..] == other[..]
    }
}

/// A C-contiguous little-endian array.
#[derive(Debug, PartialEq)]
pub struct Array {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Payload,
}

impl Array {
    /// Elements times element size, if it does not overflow.
    pub fn expected_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
        shape
            .iter()
            .try_fold(dtype.size, |acc, &d| acc.checked_mul(d))
    }
}

/// One value of a source.
#[derive(Debug, PartialEq)]
pub enum Entry {
    /// A plain msgpack value (ints, floats, strings, bytes, lists, maps).
    Value(Value),
    /// A numpy scalar: protocol 2.2 sends its `.item()`, protocol 1.0 its type and bytes.
    Scalar(Scalar),
    Array(Array),
}

/// One source's part of a train.
#[derive(Debug, Default, PartialEq)]
pub struct SourceTrain {
    /// The header's metadata (`source`, `timestamp.tid`, ...), in order.
    pub metadata: Vec<(String, Value)>,
    /// The values, in order. Data served from files has a `metadata` entry first, as
    /// EXtra-data's train dicts do.
    pub data: Vec<(String, Entry)>,
}

impl SourceTrain {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.data.iter().find(|(k, _)| k == key).map(|(_, e)| e)
    }

    /// The train ID of the metadata, if it has one.
    pub fn train_id(&self) -> Option<u64> {
        self.metadata
            .iter()
            .find(|(k, _)| k == "timestamp.tid")
            .and_then(|(_, v)| v.as_u64())
    }
}

/// A train: sources in name order (the order the bridge sends them in).
#[derive(Debug, Default, PartialEq)]
pub struct Train {
    pub sources: BTreeMap<String, SourceTrain>,
}

impl Train {
    /// The train ID of the first source that has one.
    pub fn train_id(&self) -> Option<u64> {
        self.sources.values().find_map(SourceTrain::train_id)
    }
}

/// The metadata EXtra-data gives every source of a train read from files.
pub fn file_metadata(source: &str, train_id: u64) -> Vec<(String, Value)> {
    vec![
        ("source".into(), Value::from(source)),
        ("timestamp.tid".into(), Value::from(train_id)),
    ]
}

/// Converts metadata pairs into a msgpack map.
pub fn map_of(pairs: &[(String, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
            .collect(),
    )
}
