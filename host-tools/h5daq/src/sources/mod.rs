//! Built-in job sources: system values, a ZeroMQ JSON subscriber, a ZeroMQ JSON request/reply
//! status poller (the `xsp3-acquire serve` control socket) and external commands.
//!
//! Each source reads its own table of settings (a `deny_unknown_fields` struct), checks it into
//! a `*Config` and builds the job from it; the `fields` list is shared and parsed here.

pub mod command;
pub mod system;
pub mod zmq_json;

use crate::column::{Column, ConvertError, Dtype, Entry, Scalar};
use crate::job::DatasetSpec;
use crate::setting::{shown, SettingError};

/// Largest number of elements of one entry (`shape`'s product): 2^28, 1 GiB of float32.
pub const MAX_ENTRY_ELEMENTS: usize = 1 << 28;

/// A dataset filled from a named field of a JSON object (`key` may be a dotted path `a.b.c`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonField {
    pub spec: DatasetSpec,
    pub key: String,
}

const FIELD_KEYS: &str = "name, dtype, shape, unit, key, truncate";

/// Parses a `fields` list: names, or tables `{ name, dtype, shape, unit, key, truncate }`.
/// String fields (`S<n>`, `str`) are scalars; `truncate` is for `S<n>` only. Errors name the
/// entry (`fields[1] ("v").shape`) and the value.
pub(crate) fn parse_fields(
    value: &toml::Value,
    default_dtype: Dtype,
) -> Result<Vec<JsonField>, SettingError> {
    let list = value.as_array().ok_or_else(|| {
        SettingError::wrong_type("fields", value, "a list of names or { name = ... } tables")
    })?;
    if list.is_empty() {
        return Err(SettingError::invalid(
            "fields",
            "[]",
            "needs at least one field",
        ));
    }
    let mut out: Vec<JsonField> = Vec::new();
    for (k, item) in list.iter().enumerate() {
        let at = format!("fields[{k}]");
        let (name, table) = match item {
            toml::Value::String(n) => (n.clone(), None),
            toml::Value::Table(t) => match t.get("name") {
                Some(toml::Value::String(n)) => (n.clone(), Some(t)),
                Some(other) => {
                    return Err(SettingError::wrong_type(
                        format!("{at}.name"),
                        other,
                        "a string",
                    ))
                }
                None => {
                    return Err(SettingError::missing(
                        format!("{at}.name"),
                        "every field needs a name",
                    ))
                }
            },
            other => {
                return Err(SettingError::wrong_type(
                    at,
                    other,
                    "a name or a { name = ... } table",
                ))
            }
        };
        let at = format!("{at} ({name:?})");
        if name.is_empty()
            || name.contains(['/', '\0'])
            || name == "time"
            || name == "."
            || name == ".."
        {
            return Err(SettingError::invalid(
                at,
                format!("{name:?}"),
                "a dataset name must be non-empty, contain no '/' and not be \"time\"",
            ));
        }
        if out.iter().any(|o| o.spec.name == name) {
            return Err(SettingError::invalid(
                at,
                format!("{name:?}"),
                "appears twice",
            ));
        }
        let mut dtype = default_dtype;
        let mut shape = Vec::new();
        let mut unit = None;
        let mut key = name.clone();
        let mut truncate = None;
        for (k, v) in table.into_iter().flatten() {
            let setting = format!("{at}.{k}");
            let text = |v: &toml::Value| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| SettingError::wrong_type(&setting, v, "a string"))
            };
            match k.as_str() {
                "name" => {}
                "dtype" => {
                    dtype = text(v)?.parse().map_err(|e: crate::error::ParseError| {
                        SettingError::invalid(&setting, shown(v), e.problem)
                    })?;
                }
                "shape" => shape = parse_shape(&setting, v)?,
                "unit" => unit = Some(text(v)?),
                "key" => key = text(v)?,
                "truncate" => {
                    truncate =
                        Some(v.as_bool().ok_or_else(|| {
                            SettingError::wrong_type(&setting, v, "true or false")
                        })?)
                }
                _ => {
                    return Err(SettingError::Unknown {
                        setting,
                        owner: "a field".into(),
                        allowed: FIELD_KEYS.into(),
                    })
                }
            }
        }
        if dtype.is_text() && !shape.is_empty() {
            return Err(SettingError::invalid(
                format!("{at}.shape"),
                format!("{shape:?}"),
                format!("a {dtype} field holds one string per row (leave shape out)"),
            ));
        }
        if truncate.is_some() && !matches!(dtype, Dtype::FixedStr(_)) {
            return Err(SettingError::invalid(
                format!("{at}.truncate"),
                format!("{}", truncate.unwrap_or_default()),
                format!("only fixed-length string fields (dtype \"S<bytes>\") are cut; this one is {dtype}"),
            ));
        }
        let mut spec =
            DatasetSpec::array(name, dtype, &shape).with_truncate(truncate.unwrap_or(false));
        spec.unit = unit;
        out.push(JsonField { spec, key });
    }
    Ok(out)
}

fn parse_shape(setting: &str, v: &toml::Value) -> Result<Vec<usize>, SettingError> {
    let bad = || SettingError::wrong_type(setting, v, "a list of positive integers like [1000]");
    let list = v.as_array().ok_or_else(bad)?;
    let mut shape = Vec::with_capacity(list.len());
    for x in list {
        match x.as_integer() {
            Some(n) if n >= 1 => shape.push(usize::try_from(n).map_err(|_| bad())?),
            Some(_) => {
                return Err(SettingError::invalid(
                    setting,
                    shown(v),
                    "every axis needs a length >= 1",
                ))
            }
            None => return Err(bad()),
        }
    }
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .filter(|&n| n <= MAX_ENTRY_ELEMENTS);
    if elements.is_none() {
        return Err(SettingError::invalid(
            setting,
            shown(v),
            format!("more than {MAX_ENTRY_ELEMENTS} elements per row"),
        ));
    }
    Ok(shape)
}

/// Why a JSON message does not give a row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    #[error("the message has no field {key:?}")]
    MissingField { key: String },
    #[error("field {key:?}: {value} is not a number")]
    NotNumber { key: String, value: String },
    #[error("field {key:?}: {value} is not a string")]
    NotString { key: String, value: String },
    #[error("field {key:?}: {value} is not an array of numbers")]
    NotNumberArray { key: String, value: String },
    #[error("field {key:?}: {source}")]
    DoesNotFit {
        key: String,
        #[source]
        source: ConvertError,
    },
    #[error("the message has no time field {key:?}")]
    MissingTime { key: String },
    #[error("time field {key:?}: {value} is not a number")]
    TimeNotNumber { key: String, value: String },
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
        // Python's json.dumps writes these bare; the message parser quotes them.
        serde_json::Value::String(s) => match s.as_str() {
            "Infinity" => Some(Scalar::Float(f64::INFINITY)),
            "-Infinity" => Some(Scalar::Float(f64::NEG_INFINITY)),
            "NaN" => Some(Scalar::Float(f64::NAN)),
            _ => None,
        },
        _ => None,
    }
}

/// Flattens nested arrays of numbers into `out` (the field's dtype: integers stay exact).
fn flatten(v: &serde_json::Value, out: &mut Column) -> Result<(), Option<ConvertError>> {
    match v {
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| flatten(x, out)),
        other => match json_scalar(other) {
            Some(s) => out.push_scalar(s).map_err(Some),
            None => Err(None),
        },
    }
}

/// Takes each field's entry out of a JSON object.
pub fn entries_from_json(
    obj: &serde_json::Value,
    fields: &[JsonField],
) -> Result<Vec<Entry>, JsonError> {
    let mut out = Vec::with_capacity(fields.len());
    for f in fields {
        let v =
            lookup(obj, &f.key).ok_or_else(|| JsonError::MissingField { key: f.key.clone() })?;
        if f.spec.dtype.is_text() {
            let s = v.as_str().ok_or_else(|| JsonError::NotString {
                key: f.key.clone(),
                value: crate::job::bounded_message(&v.to_string()),
            })?;
            let text = f.spec.fit_text(s);
            f.spec
                .dtype
                .check_text(text)
                .map_err(|source| JsonError::DoesNotFit {
                    key: f.key.clone(),
                    source,
                })?;
            out.push(Entry::Text(text.to_string()));
        } else if f.spec.shape.is_empty() {
            let s = json_scalar(v).ok_or_else(|| JsonError::NotNumber {
                key: f.key.clone(),
                value: v.to_string(),
            })?;
            out.push(Entry::Scalar(s));
        } else {
            let mut flat = Column::with_capacity(f.spec.dtype, f.spec.entry_len());
            match flatten(v, &mut flat) {
                Ok(()) => out.push(Entry::Array(flat)),
                Err(Some(source)) => {
                    return Err(JsonError::DoesNotFit {
                        key: f.key.clone(),
                        source,
                    })
                }
                Err(None) => {
                    return Err(JsonError::NotNumberArray {
                        key: f.key.clone(),
                        value: crate::job::bounded_message(&v.to_string()),
                    })
                }
            }
        }
    }
    Ok(out)
}

/// Reads a time (Unix seconds) from a JSON field.
pub fn time_from_json(obj: &serde_json::Value, key: &str) -> Result<f64, JsonError> {
    let v = lookup(obj, key).ok_or_else(|| JsonError::MissingTime {
        key: key.to_string(),
    })?;
    v.as_f64().ok_or_else(|| JsonError::TimeNotNumber {
        key: key.to_string(),
        value: v.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_with_errors_that_name_the_entry() {
        let v: toml::Value = toml::from_str::<toml::Table>(
            "f = ['a', { name = 'b', dtype = 'int16', shape = [2, 3], unit = 'V', key = 'x.y' }]",
        )
        .unwrap()["f"]
            .clone();
        let f = parse_fields(&v, Dtype::F64).unwrap();
        assert_eq!(f[0].spec, DatasetSpec::scalar("a", Dtype::F64));
        assert_eq!(f[1].spec.shape, vec![2, 3]);
        assert_eq!(f[1].key, "x.y");
        let err = |text: &str| {
            let v = toml::from_str::<toml::Table>(text).unwrap()["f"].clone();
            parse_fields(&v, Dtype::F64).unwrap_err().to_string()
        };
        assert!(
            err("f = [{ name = 'a', shape = [-1] }]").contains("fields[0] (\"a\").shape = [-1]")
        );
        assert!(err("f = [{ name = 'a', shpe = [1] }]")
            .contains("fields[0] (\"a\").shpe: not a setting"));
        assert!(
            err("f = [{ name = 'a', shape = [100000, 100000, 100000] }]")
                .contains("elements per row")
        );
        assert!(err("f = [{ name = 'a', dtype = 'float128' }]").contains("float128"));
        assert!(err("f = ['time']").contains("\"time\""));
        assert!(err("f = ['a', 'a']").contains("appears twice"));
        assert!(err("f = []").contains("at least one"));
        assert!(err("f = 3").contains("list of names"));
        let v = toml::from_str::<toml::Table>(
            "f = [{ name = 's', dtype = 'S4', truncate = true }, { name = 'v', dtype = 'str' }]",
        )
        .unwrap()["f"]
            .clone();
        let f = parse_fields(&v, Dtype::F64).unwrap();
        assert_eq!(f[0].spec.dtype, Dtype::FixedStr(4));
        assert!(f[0].spec.truncate);
        assert_eq!(f[1].spec.dtype, Dtype::Str);
        assert!(
            err("f = [{ name = 's', dtype = 'str', shape = [2] }]").contains("one string per row")
        );
        assert!(err("f = [{ name = 's', dtype = 'str', truncate = true }]")
            .contains("only fixed-length string fields"));
        assert!(err("f = [{ name = 's', dtype = 'S4', truncate = 1 }]").contains("true or false"));
        assert!(err("f = [{ name = 's', dtype = 'S0' }]").contains("S1 to S65536"));
    }
}
