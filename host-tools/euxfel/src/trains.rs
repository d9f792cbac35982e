//! Data of whole trains: one train by ID, or an iterator over the trains of a
//! collection (EXtra-data's `train_from_id` / `trains()`).

use std::collections::BTreeMap;

use super::data_collection::DataCollection;
use super::dtype::DType;
use super::error::{Error, Result};
use super::h5::read_strings_ds;
use super::key_data::{zeroed_vec, KeyData};

/// Data of one train: source -> key -> value.
pub type TrainData = BTreeMap<String, BTreeMap<String, TrainValue>>;

/// Data of one key for one train.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainValue {
    Array {
        dtype: DType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    },
    Strings(Vec<String>),
}

/// Iterator over the trains of a collection (see [`DataCollection::trains`]).
pub struct TrainIter<'a> {
    dc: &'a DataCollection,
    keys: Option<Vec<(String, bool, KeyData)>>,
    pos: usize,
}

impl Iterator for TrainIter<'_> {
    type Item = Result<(u64, TrainData)>;
    fn next(&mut self) -> Option<Self::Item> {
        let &tid = self.dc.train_ids.get(self.pos)?;
        self.pos += 1;
        if self.keys.is_none() {
            match self.dc.all_key_data() {
                Ok(k) => self.keys = Some(k),
                Err(e) => {
                    self.pos = self.dc.train_ids.len();
                    return Some(Err(e));
                }
            }
        }
        let keys = self.keys.as_deref().unwrap_or(&[]);
        Some(self.dc.train_values(keys, tid).map(|d| (tid, d)))
    }
}

impl DataCollection {
    /// KeyData of every selected key, built once for per-train access.
    pub(crate) fn all_key_data(&self) -> Result<Vec<(String, bool, KeyData)>> {
        let mut v = Vec::new();
        for (name, sd) in &self.sources {
            for k in sd.keys(true)? {
                v.push((name.clone(), sd.is_control(), sd.key(&k)?));
            }
        }
        Ok(v)
    }

    /// One train's values from prepared KeyData (control: the train's row; instrument:
    /// all its entries; keys without data for the train are omitted).
    pub(crate) fn train_values(
        &self,
        keys: &[(String, bool, KeyData)],
        tid: u64,
    ) -> Result<TrainData> {
        let mut out: TrainData = self
            .sources
            .keys()
            .map(|s| (s.clone(), BTreeMap::new()))
            .collect();
        for (name, is_control, kd) in keys {
            let Some((f, first, count)) = kd.train_rows(tid) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let count = if *is_control { 1 } else { count };
            let path = kd.hdf5_data_path();
            let v = if kd.dtype == DType::VlenStr {
                let h = f.file()?;
                let ds = h.dataset(&path)?;
                TrainValue::Strings(read_strings_ds(
                    &h,
                    &ds,
                    &path,
                    Some((first as usize, (first + count) as usize)),
                )?)
            } else {
                let eb = kd.entry_bytes()?;
                let n = usize::try_from(count)
                    .ok()
                    .and_then(|c| c.checked_mul(eb))
                    .ok_or_else(|| Error::TooLarge {
                        object: format!("{} {}", kd.source, kd.key),
                        what: "train data size",
                        size: format!("{count} entries of {eb} bytes"),
                    })?;
                let mut buf: Vec<u8> = zeroed_vec(n, &path)?;
                f.read_rows(&path, first, count, eb, &mut buf)?;
                let mut shape = vec![count as usize];
                shape.extend(&kd.entry_shape);
                if *is_control {
                    shape.remove(0);
                }
                TrainValue::Array {
                    dtype: kd.dtype.clone(),
                    shape,
                    bytes: buf,
                }
            };
            if let Some(m) = out.get_mut(name) {
                m.insert(kd.key.clone(), v);
            }
        }
        Ok(out)
    }

    /// Data of the selected sources for one train: source -> key -> value.
    pub fn train_from_id(&self, tid: u64) -> Result<TrainData> {
        if self.train_ids.binary_search(&tid).is_err() {
            return Err(Error::TrainId(tid));
        }
        let keys = self.all_key_data()?;
        self.train_values(&keys, tid)
    }

    /// Iterate over trains: `(train_id, data)`, data as from
    /// [`DataCollection::train_from_id`]. The per-key index is prepared once, on the
    /// first step; each step then reads only that train's rows.
    pub fn trains(&self) -> TrainIter<'_> {
        TrainIter {
            dc: self,
            keys: None,
            pos: 0,
        }
    }
}
