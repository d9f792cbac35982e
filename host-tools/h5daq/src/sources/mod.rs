//! Built-in job sources: system values, a ZeroMQ JSON subscriber, a ZeroMQ JSON request/reply
//! status poller (the `xsp3-acquire serve` control socket) and external commands.

pub mod command;
pub mod system;
pub mod zmq_json;

use super::column::{Column, Entry, Scalar};
use super::job::DatasetSpec;

/// A dataset filled from a named field of a JSON object (`key` may be a dotted path `a.b.c`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonField {
    pub spec: DatasetSpec,
    pub key: String,
}

fn lookup<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    if let Some(x) = v.get(key) {
        return Some(x);
    }
    key.split('.').try_fold(v, |cur, part| cur.get(part))
}

fn json_scalar(v: &serde_json::Value) -> Option<Scalar> {
    match v {
        serde_json::Value::Bool(b) => Some(Scalar::Int(i64::from(*b))),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Scalar::Int(i))
            } else if let Some(u) = n.as_u64() {
                Some(Scalar::UInt(u))
            } else {
                n.as_f64().map(Scalar::Float)
            }
        }
        // JSON has no NaN; `null` stands for a missing reading.
        serde_json::Value::Null => Some(Scalar::Float(f64::NAN)),
        _ => None,
    }
}

fn flatten(v: &serde_json::Value, out: &mut Vec<f64>) -> bool {
    match v {
        serde_json::Value::Array(a) => a.iter().all(|x| flatten(x, out)),
        other => match json_scalar(other) {
            Some(Scalar::Float(f)) => {
                out.push(f);
                true
            }
            Some(Scalar::Int(i)) => {
                out.push(i as f64);
                true
            }
            Some(Scalar::UInt(u)) => {
                out.push(u as f64);
                true
            }
            None => false,
        },
    }
}

/// Takes each field's entry out of a JSON object; the error names the field and the value.
pub fn entries_from_json(
    obj: &serde_json::Value,
    fields: &[JsonField],
) -> Result<Vec<Entry>, String> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let v =
            lookup(obj, &f.key).ok_or_else(|| format!("the message has no field {:?}", f.key))?;
        if f.spec.shape.is_empty() {
            let s =
                json_scalar(v).ok_or_else(|| format!("field {:?}: {v} is not a number", f.key))?;
            out.push(Entry::Scalar(s));
        } else {
            let mut flat = Vec::new();
            if !flatten(v, &mut flat) {
                return Err(format!("field {:?}: {v} is not an array of numbers", f.key));
            }
            out.push(Entry::Array(Column::F64(flat)));
        }
    }
    Ok(out)
}

/// Reads a time (Unix seconds) from a JSON field.
pub fn time_from_json(obj: &serde_json::Value, key: &str) -> Result<f64, String> {
    let v = lookup(obj, key).ok_or_else(|| format!("the message has no time field {key:?}"))?;
    v.as_f64()
        .ok_or_else(|| format!("time field {key:?}: {v} is not a number"))
}
