//! File names: `{prefix}_{date_from}_{date_to}.h5`, or sdaq's format string with the same
//! placeholders, and their parsing (for `recover`).

use std::path::{Path, PathBuf};

use crate::error::ParseError;
use crate::time::{compact_stamp, parse_compact_stamp};

/// How files are named: `{head}{from}{middle}{to}{tail}` with `%Y%m%dT%H%M%S.mmmZ` stamps;
/// a name already taken gets `_1`, `_2`, ... before `tail`. The default is
/// `DAQ_{date_from}_{date_to}.h5`; sdaq's `file_format_str` placeholders are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNames {
    head: String,
    middle: String,
    tail: String,
}

impl Default for FileNames {
    fn default() -> Self {
        FileNames::prefix("DAQ")
    }
}

impl FileNames {
    /// `{prefix}_{date_from}_{date_to}.h5`.
    pub fn prefix(prefix: &str) -> FileNames {
        FileNames {
            head: format!("{prefix}_"),
            middle: "_".into(),
            tail: ".h5".into(),
        }
    }

    /// The name of a file from `from` to `to`.
    pub fn name(&self, from: f64, to: f64) -> String {
        format!(
            "{}{}{}{}{}",
            self.head,
            compact_stamp(from),
            self.middle,
            compact_stamp(to),
            self.tail
        )
    }

    /// `(from, to)` of a name this format makes (with or without a `_{n}` suffix).
    pub fn parse(&self, name: &str) -> Option<(f64, f64)> {
        let rest = name.strip_prefix(&self.head)?.strip_suffix(&self.tail)?;
        let from = parse_compact_stamp(rest.get(..20)?)?;
        let rest = rest.get(20..)?.strip_prefix(&self.middle)?;
        let to = parse_compact_stamp(rest.get(..20)?)?;
        let suffix = rest.get(20..)?;
        let plain = suffix.is_empty()
            || suffix
                .strip_prefix('_')
                .is_some_and(|n| n.parse::<u32>().is_ok());
        plain.then_some((from, to))
    }

    /// Whether the names are plain file names (no `/` or NUL, not hidden).
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let parts = [&self.head, &self.middle, &self.tail];
        if parts.iter().any(|p| p.contains(['/', '\0'])) || self.head.starts_with('.') {
            return Err("file names must be plain names (no '/', not starting with '.')");
        }
        Ok(())
    }

    /// A free path in `dir` for the file from `from` to `to` (`except` counts as free).
    pub(crate) fn free_path(
        &self,
        dir: &Path,
        from: f64,
        to: f64,
        except: Option<&Path>,
    ) -> PathBuf {
        let name = self.name(from, to);
        let p = dir.join(&name);
        if !p.exists() || Some(p.as_path()) == except {
            return p;
        }
        let stem = name.strip_suffix(&self.tail).unwrap_or(&name);
        (1u32..)
            .map(|i| dir.join(format!("{stem}_{i}{}", self.tail)))
            .find(|p| !p.exists() || Some(p.as_path()) == except)
            .unwrap_or(p)
    }
}

impl std::str::FromStr for FileNames {
    type Err = ParseError;
    /// A format with `{date_from}` and then `{date_to}`, once each, and no `/`, e.g.
    /// `"DAQ_{date_from}_{date_to}.hdf5"`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let fail = |problem: &str| ParseError {
            what: "file name format",
            given: s.to_string(),
            problem: problem.to_string(),
        };
        if s.contains(['/', '\0']) || s.starts_with('.') {
            return Err(fail("must be a plain file name"));
        }
        let (head, rest) = s
            .split_once("{date_from}")
            .ok_or_else(|| fail("needs {date_from}"))?;
        let (middle, tail) = rest
            .split_once("{date_to}")
            .ok_or_else(|| fail("needs {date_to} after {date_from}"))?;
        if [head, middle, tail]
            .iter()
            .any(|p| p.contains('{') || p.contains('}'))
        {
            return Err(fail("takes only {date_from} and {date_to}, once each"));
        }
        if tail.is_empty() {
            return Err(fail("needs an extension after {date_to}, e.g. .h5"));
        }
        Ok(FileNames {
            head: head.into(),
            middle: middle.into(),
            tail: tail.into(),
        })
    }
}

/// The file name `{prefix}_{from}_{to}.h5` with `%Y%m%dT%H%M%S.mmmZ` stamps.
pub fn file_name(prefix: &str, from: f64, to: f64) -> String {
    FileNames::prefix(prefix).name(from, to)
}

/// Parses `{prefix}_{from}_{to}.h5` (optionally `_{n}` before `.h5`) into `(from, to)`.
pub fn parse_file_name(prefix: &str, name: &str) -> Option<(f64, f64)> {
    FileNames::prefix(prefix).parse(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = file_name("DAQ", 1_795_287_050.612, 1_795_305_599.999);
        assert_eq!(n, "DAQ_20261121T185050.612Z_20261121T235959.999Z.h5");
        assert_eq!(
            parse_file_name("DAQ", &n),
            Some((1_795_287_050.612, 1_795_305_599.999))
        );
        let n1 = "DAQ_20261121T185050.612Z_20261121T235959.999Z_3.h5";
        assert!(parse_file_name("DAQ", n1).is_some());
        assert!(parse_file_name("DAQ", "DAQ_x.h5").is_none());
        assert!(parse_file_name("OTHER", &n).is_none());
        let sdaq: FileNames = "DAQ_{date_from}_{date_to}.hdf5".parse().unwrap();
        let n = sdaq.name(1_795_287_050.612, 1_795_305_599.999);
        assert_eq!(n, "DAQ_20261121T185050.612Z_20261121T235959.999Z.hdf5");
        assert_eq!(sdaq.parse(&n), Some((1_795_287_050.612, 1_795_305_599.999)));
        assert!(sdaq
            .parse("DAQ_20261121T185050.612Z_20261121T235959.999Z_2.hdf5")
            .is_some());
        for bad in [
            "x.h5",
            "{date_to}_{date_from}.h5",
            "a/{date_from}{date_to}.h5",
            "{date_from}{date_to}",
        ] {
            assert!(bad.parse::<FileNames>().is_err(), "{bad}");
        }
    }
}
