//! One source of a collection (EXtra-data's `SourceData`): its keys, index groups,
//! data counts and RUN values.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::dtype::DType;
use super::error::{Error, Result};
use super::file_access::FileAccess;
use super::h5::read_strings_ds;
use super::key_data::{zeroed_vec, KeyData};
use super::names::near_matches;

/// The section a source lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Control,
    Instrument,
}

impl Section {
    pub fn as_str(&self) -> &'static str {
        match self {
            Section::Control => "CONTROL",
            Section::Instrument => "INSTRUMENT",
        }
    }
}

/// One source of a collection (EXtra-data's `SourceData`).
#[derive(Debug, Clone)]
pub struct SourceData {
    pub source: String,
    pub section: Section,
    pub files: Vec<Arc<FileAccess>>,
    /// Selected keys, `None` for all.
    pub sel_keys: Option<BTreeSet<String>>,
    pub train_ids: Arc<Vec<u64>>,
    pub canonical_name: String,
    pub is_single_run: bool,
    pub inc_suspect_trains: bool,
}

impl SourceData {
    pub fn is_control(&self) -> bool {
        self.section == Section::Control
    }
    pub fn is_instrument(&self) -> bool {
        self.section == Section::Instrument
    }
    pub fn is_legacy(&self) -> bool {
        self.canonical_name != self.source
    }

    pub(crate) fn first_file(&self) -> Result<&Arc<FileAccess>> {
        self.files.first().ok_or_else(|| Error::SourceName {
            source_name: self.source.clone(),
            hint: " (no files)".into(),
        })
    }

    /// Aggregator of the first file holding this source.
    pub fn aggregator(&self) -> Option<String> {
        let mut fs: Vec<&Arc<FileAccess>> = self.files.iter().collect();
        fs.sort_by_key(|f| f.filename());
        fs.first().and_then(|f| f.aggregator())
    }

    /// Keys of this source (selected ones if a selection was made). With
    /// `inc_timestamps = false`, control keys lose `.timestamp` keys and the `.value` suffix.
    pub fn keys(&self, inc_timestamps: bool) -> Result<BTreeSet<String>> {
        let all: BTreeSet<String> = match &self.sel_keys {
            Some(k) => k.clone(),
            None => (*self.first_file()?.get_keys(&self.source)?).clone(),
        };
        if !inc_timestamps && self.is_control() {
            return Ok(all
                .into_iter()
                .filter_map(|k| k.strip_suffix(".value").map(str::to_string))
                .collect());
        }
        Ok(all)
    }

    /// Whether the (exact) key exists and is selected.
    pub fn has_key(&self, key: &str) -> Result<bool> {
        if let Some(s) = &self.sel_keys {
            return Ok(s.contains(key));
        }
        self.first_file()?.has_source_key(&self.source, key)
    }

    /// Index groups (`""` for control sources).
    pub fn index_groups(&self) -> Result<BTreeSet<String>> {
        if self.is_control() {
            return Ok(BTreeSet::from([String::new()]));
        }
        let mut out = BTreeSet::new();
        if let Some(s) = &self.sel_keys {
            for k in s {
                out.insert(k.split('.').next().unwrap_or("").to_string());
            }
            return Ok(out);
        }
        self.first_file()?.index_groups(&self.source)
    }

    /// One key of the source in `index_group` (any group if None), if there is one.
    pub fn one_key(&self, index_group: Option<&str>) -> Result<Option<String>> {
        let keys = self.keys(true)?;
        Ok(match index_group {
            None => keys.into_iter().next(),
            Some(_) if self.is_control() => keys.into_iter().next(),
            Some(g) => {
                let p = format!("{g}.");
                keys.into_iter().find(|k| k.starts_with(&p))
            }
        })
    }

    /// Whether the control source has only RUN keys.
    pub fn is_run_only(&self) -> Result<bool> {
        Ok(self.is_control() && self.one_key(None)?.is_none())
    }

    /// KeyData for a key (control keys may omit `.value`).
    pub fn key(&self, key: &str) -> Result<KeyData> {
        if key.contains('/') {
            return Err(Error::KeyName {
                source_name: self.source.clone(),
                key: key.into(),
                hint: format!(
                    "; keys separate their parts with '.': did you mean {}?",
                    key.trim_matches('/').replace('/', ".")
                ),
            });
        }
        let mut k = key.to_string();
        if !self.has_key(&k)? {
            if self.is_control() && self.has_key(&format!("{key}.value"))? {
                k = format!("{key}.value");
            } else {
                let hint = near_matches(key, &self.keys(true).unwrap_or_default());
                return Err(Error::KeyName {
                    source_name: self.source.clone(),
                    key: key.into(),
                    hint,
                });
            }
        }
        KeyData::new(self, k)
    }

    /// Data counts per train of the selection, for one index group or the max over all.
    pub fn data_counts(&self, index_group: Option<&str>) -> Result<Vec<u64>> {
        let n = self.train_ids.len();
        match index_group {
            Some(g) => match self.one_key(Some(g))? {
                Some(k) => self.key(&k)?.data_counts(),
                None => Ok(vec![0; n]),
            },
            None => {
                let mut res = vec![0u64; n];
                for g in self.index_groups()? {
                    if let Some(k) = self.one_key(Some(&g))? {
                        for (r, c) in res.iter_mut().zip(self.key(&k)?.data_counts()?) {
                            *r = (*r).max(c);
                        }
                    }
                }
                Ok(res)
            }
        }
    }

    /// RUN-section entries: key -> (dtype, shape of the stored dataset).
    pub fn run_entries(
        &self,
        inc_timestamps: bool,
    ) -> Result<BTreeMap<String, (DType, Vec<usize>)>> {
        let f = self.first_file()?;
        let m = f
            .run_entries(&self.source)?
            .ok_or_else(|| Error::NoRunValues {
                source_name: self.source.clone(),
            })?;
        if inc_timestamps {
            return Ok(m);
        }
        Ok(m.into_iter()
            .filter_map(|(k, v)| k.strip_suffix(".value").map(|s| (s.to_string(), v)))
            .collect())
    }

    /// A value from the RUN section, as raw bytes or strings.
    pub fn run_value(&self, key: &str) -> Result<RunValue> {
        let f = self.first_file()?;
        let h = f.file()?;
        let base = format!("RUN/{}/{}", self.source, key.replace('.', "/"));
        let p = if h.has(&format!("{base}/value")) && h.h5.dataset(&base).is_err() {
            format!("{base}/value")
        } else {
            base
        };
        let ds = h.h5.dataset(&p).map_err(|_| Error::KeyName {
            source_name: self.source.clone(),
            key: key.into(),
            hint: " in the RUN section".into(),
        })?;
        let d = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| Error::h5(&f.path, &p, e))?;
        let dtype = DType::from_descriptor(&d);
        let shape = ds.shape();
        if shape.first().copied().unwrap_or(0) == 0 {
            return Err(Error::structure(&f.path, format!("{p}: empty RUN dataset")));
        }
        if dtype.is_string() {
            let v = read_strings_ds(&h, &ds, &p, Some((0, 1)))?;
            return Ok(RunValue::Str(v.into_iter().next().unwrap_or_default()));
        }
        let isz = dtype.item_size().ok_or_else(|| Error::UnsupportedType {
            path: f.path.clone(),
            object: p.clone(),
            dtype: dtype.numpy_name(),
        })?;
        let row = shape[1..]
            .iter()
            .try_fold(isz, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::TooLarge {
                object: p.clone(),
                what: "RUN value",
                size: format!("{shape:?}"),
            })?;
        let mut buf = zeroed_vec(row, &p)?;
        h.read_rows_raw(&ds, &p, 0, 1, row, &mut buf)?;
        Ok(RunValue::Array {
            dtype,
            shape: shape[1..].to_vec(),
            bytes: buf,
        })
    }

    pub(crate) fn only_tids(&self, tids: Arc<Vec<u64>>) -> SourceData {
        let set: std::collections::HashSet<u64> = tids.iter().copied().collect();
        let mut files: Vec<Arc<FileAccess>> = self
            .files
            .iter()
            .filter(|f| {
                if self.inc_suspect_trains {
                    f.train_ids.iter().any(|t| set.contains(t))
                } else {
                    f.train_ids
                        .iter()
                        .zip(&f.validity_flag)
                        .any(|(t, &v)| v && set.contains(t))
                }
            })
            .cloned()
            .collect();
        if files.is_empty() {
            if let Some(f) = self.files.first() {
                files.push(f.clone());
            }
        }
        SourceData {
            files,
            train_ids: tids,
            ..self.clone()
        }
    }

    /// Select a subset of keys: None/empty = keep current selection.
    pub(crate) fn select_keys(&self, keys: Option<BTreeSet<String>>) -> SourceData {
        let new = match (&self.sel_keys, keys) {
            (None, k) => k,
            (Some(cur), None) => Some(cur.clone()),
            (Some(cur), Some(k)) => Some(cur.intersection(&k).cloned().collect()),
        };
        SourceData {
            sel_keys: new,
            ..self.clone()
        }
    }
}

/// A value from the RUN section.
#[derive(Debug, Clone, PartialEq)]
pub enum RunValue {
    Str(String),
    Array {
        dtype: DType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    },
}
