//! Errors of one setting (a config key, or an argument of the job and daemon builders), and the
//! serde glue every source uses to read its own table of settings.

use serde::de::DeserializeOwned;

/// A setting that is invalid, missing or unknown. `setting` is the key as the user wrote it,
/// relative to its table (`period`, `fields[0] ("v").dtype`); the config prefixes the job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// The value is of the right type but not allowed.
    #[error("{setting} = {value}: {reason}")]
    Invalid {
        setting: String,
        value: String,
        reason: String,
    },
    /// The value has the wrong type.
    #[error("{setting}: {value} is not {expected}")]
    Type {
        setting: String,
        value: String,
        expected: String,
    },
    /// A required setting is absent.
    #[error("{setting} is missing: {reason}")]
    Missing { setting: String, reason: String },
    /// A key that the table does not take.
    #[error("{setting}: not a setting of {owner} (use {allowed})")]
    Unknown {
        setting: String,
        owner: String,
        allowed: String,
    },
}

impl SettingError {
    /// An invalid value; `value` is shown as written (strings quoted by `Debug`).
    pub fn invalid(
        setting: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        SettingError::Invalid {
            setting: setting.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A required setting that is absent.
    pub fn missing(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        SettingError::Missing {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// A value of the wrong type.
    pub fn wrong_type(setting: impl Into<String>, value: &toml::Value, expected: &str) -> Self {
        SettingError::Type {
            setting: setting.into(),
            value: shown(value),
            expected: expected.into(),
        }
    }

    /// The setting's name.
    pub fn setting(&self) -> &str {
        match self {
            SettingError::Invalid { setting, .. }
            | SettingError::Type { setting, .. }
            | SettingError::Missing { setting, .. }
            | SettingError::Unknown { setting, .. } => setting,
        }
    }

    /// The same error with the setting named inside `table` (`job[0]` + `period`).
    pub(crate) fn within(mut self, table: &str) -> Self {
        let s = match &mut self {
            SettingError::Invalid { setting, .. }
            | SettingError::Type { setting, .. }
            | SettingError::Missing { setting, .. }
            | SettingError::Unknown { setting, .. } => setting,
        };
        *s = format!("{table}.{s}");
        self
    }
}

/// A TOML value as the user would write it, cut short when long.
pub(crate) fn shown(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Deserializes a source's settings table (`deny_unknown_fields` structs), turning serde's
/// messages into a [`SettingError`] that names the key: an unknown key lists the keys `owner`
/// takes; a type error names the key and the value.
pub(crate) fn from_table<T: DeserializeOwned>(
    table: &toml::Table,
    owner: &str,
) -> Result<T, SettingError> {
    toml::Value::Table(table.clone())
        .try_into::<T>()
        .map_err(|e| {
            let msg = e.message();
            if let Some(rest) = msg.strip_prefix("unknown field `") {
                let (key, allowed) = rest.split_once('`').unwrap_or((rest, ""));
                let allowed = allowed
                    .trim_start_matches(", expected one of ")
                    .trim_start_matches(", expected ")
                    .replace('`', "");
                return SettingError::Unknown {
                    setting: key.to_string(),
                    owner: owner.to_string(),
                    allowed,
                };
            }
            // The key is the first of the path toml appends as "in `key`"; without one the
            // message is about the table itself (a missing field).
            let text = e.to_string();
            let key = text
                .split_once("in `")
                .and_then(|(_, k)| k.split_once('`'))
                .map(|(k, _)| k.to_string());
            match key {
                Some(k) => {
                    let value = table.get(k.split('.').next().unwrap_or(&k));
                    SettingError::Type {
                        value: value.map_or_else(|| serde_value(msg), shown),
                        setting: k,
                        expected: plain_expected(msg),
                    }
                }
                None => match msg.strip_prefix("missing field `") {
                    Some(rest) => SettingError::missing(
                        rest.trim_end_matches('`'),
                        format!("{owner} needs it"),
                    ),
                    None => SettingError::invalid(owner, "", msg),
                },
            }
        })
}

/// What serde's "invalid type: string \"x\", expected u32" expected, in the user's words
/// rather than Rust's type names.
pub(crate) fn plain_expected(msg: &str) -> String {
    let expected = msg.rsplit_once("expected ").map_or(msg, |(_, x)| x).trim();
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a borrowed string" | "a string" | "string" => "a string",
        other => other,
    }
    .to_string()
}

/// The value serde's message quotes (`string "x"`, `integer `5``), or "the value".
pub(crate) fn serde_value(msg: &str) -> String {
    msg.split_once(": ")
        .and_then(|(_, rest)| rest.split_once(", expected"))
        .map_or_else(|| "the value".to_string(), |(v, _)| v.replace('`', ""))
}

/// A duration in seconds: a finite number from `min` (> 0) to below 10^9.
pub(crate) fn seconds(
    setting: &str,
    v: &toml::Value,
    min: f64,
) -> Result<std::time::Duration, SettingError> {
    let x = match v {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => {
            return Err(SettingError::wrong_type(
                setting,
                other,
                "a number of seconds",
            ))
        }
    };
    if !(x.is_finite() && x > 0.0 && x < 1e9) {
        return Err(SettingError::invalid(
            setting,
            shown(v),
            "must be a positive number of seconds",
        ));
    }
    if x < min {
        return Err(SettingError::invalid(
            setting,
            shown(v),
            format!("must be at least {min} s"),
        ));
    }
    Ok(std::time::Duration::from_secs_f64(x))
}

/// Byte offset of the value of `key` inside `span` of `src`: the first line of the span that
/// starts with `key =`. `None` when the key is not written there (inline tables).
pub(crate) fn value_position(src: &str, span: std::ops::Range<usize>, key: &str) -> Option<usize> {
    let text = src.get(span.clone())?;
    let mut offset = span.start;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let bare = trimmed
            .strip_prefix(key)
            .or_else(|| trimmed.strip_prefix(&format!("\"{key}\"")));
        if let Some(rest) = bare {
            let after = rest.trim_start();
            if let Some(value) = after.strip_prefix('=') {
                let v = value.trim_start();
                return Some(offset + indent + (trimmed.len() - v.len()));
            }
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        period: Option<f64>,
        name: String,
    }

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn serde_errors_name_the_key() {
        let e = from_table::<S>(&table("name='a'\nperod=1"), "source \"x\"").unwrap_err();
        assert_eq!(e.setting(), "perod");
        assert!(
            e.to_string().contains("not a setting of source \"x\""),
            "{e}"
        );
        assert!(e.to_string().contains("period"), "{e}");
        let e = from_table::<S>(&table("name='a'\nperiod='x'"), "x").unwrap_err();
        assert_eq!(e.setting(), "period");
        assert!(e.to_string().contains("\"x\""), "{e}");
        let e = from_table::<S>(&table("period=1.0"), "source \"x\"").unwrap_err();
        assert!(matches!(e, SettingError::Missing { .. }), "{e}");
        assert_eq!(e.within("job[0]").setting(), "job[0].name");
    }

    #[test]
    fn value_positions() {
        let src = "[[job]]\ngroup = 'a'\n  source='b'\n";
        assert_eq!(value_position(src, 0..src.len(), "group"), Some(16));
        assert_eq!(value_position(src, 0..src.len(), "source"), Some(29));
        assert_eq!(value_position(src, 0..src.len(), "sour"), None);
    }
}
