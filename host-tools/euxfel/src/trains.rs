//! Data of whole trains: one train by ID, or an iterator over the trains of a
//! collection (EXtra-data's `train_from_id` / `trains()`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::data_collection::DataCollection;
use super::dtype::DType;
use super::error::{Error, Result};
use super::file_access::FileAccess;
use super::h5::read_strings_ds;
use super::key_data::{zeroed_vec, KeyData};
use super::source_data::Section;

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

    /// Every selected key (timestamps included), prepared for reading train by train with
    /// [`KeyData::train_value`] or [`KeyData::visit_train_bytes`].
    pub fn selected_keys(&self) -> Result<Vec<KeyData>> {
        Ok(self
            .all_key_data()?
            .into_iter()
            .map(|(_, _, kd)| kd)
            .collect())
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
        for (name, _, kd) in keys {
            let Some(v) = kd.train_value(tid)? else {
                continue;
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

/// Reads of at least this many bytes hand the file's bytes over in pieces (appended to an
/// unfilled buffer: no zero-fill before the copy). Smaller reads go through a zeroed buffer,
/// which costs less than the piecewise walk for a few bytes (a control value per train).
pub(crate) const PIECEWISE_MIN_BYTES: usize = 64 << 10;

impl KeyData {
    /// Where a whole-train read of train `tid` lies: (file, first row, rows). Control keys
    /// give their train's row (at most one), instrument keys all the train's entries.
    /// `None` if the key has no entries in that train.
    fn train_span(&self, tid: u64) -> Option<(Arc<FileAccess>, u64, u64)> {
        let (f, first, count) = self.train_rows(tid)?;
        let count = match self.section {
            Section::Control => count.min(1),
            Section::Instrument => count,
        };
        (count > 0).then_some((f, first, count))
    }

    /// Entries of this key in train `tid` that [`KeyData::train_value`] reads (0 if none).
    pub fn train_entries(&self, tid: u64) -> u64 {
        self.train_span(tid).map_or(0, |(_, _, count)| count)
    }

    /// Bytes of train `tid`'s `count` rows from `first` in `f`, for a buffer about to be
    /// allocated: a big (or overflowing) size is first checked against the dataset, so a
    /// count from a corrupt index is refused naming the train, never allocated.
    fn checked_span_bytes(
        &self,
        f: &Arc<FileAccess>,
        (first, count): (u64, u64),
        tid: u64,
    ) -> Result<usize> {
        let n = self.span_bytes(count);
        if n.as_ref().map_or(true, |&n| n >= PIECEWISE_MIN_BYTES) {
            self.check_window(f, first, count, tid)?;
        }
        n
    }

    /// Bytes of `count` entries, checked for overflow.
    fn span_bytes(&self, count: u64) -> Result<usize> {
        let eb = self.entry_bytes()?;
        usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(eb))
            .ok_or_else(|| Error::TooLarge {
                object: format!("{} {}", self.source, self.key),
                what: "train data size",
                size: format!("{count} entries of {eb} bytes"),
            })
    }

    /// Hands the bytes of this key's entries in train `tid` (as [`KeyData::train_value`]
    /// reads them, C order) to `f` in order, in pieces: slices of the file's map where the
    /// layout allows it (no copy), else batches read through libhdf5. Returns the number of
    /// entries (0: `f` is not called). Fixed-size types only.
    pub fn visit_train_bytes(
        &self,
        tid: u64,
        f: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<u64> {
        let Some((file, first, count)) = self.train_span(tid) else {
            return Ok(0);
        };
        let eb = self.entry_bytes()?;
        file.visit_rows(&self.hdf5_data_path(), first, count, eb, f)?;
        Ok(count)
    }

    /// Values of this key for the trains `tids` (in order), each as [`KeyData::train_value`]
    /// gives it, with one read per run of trains whose rows follow each other in one file: a
    /// control key's values for a block of trains in one read instead of one read (and one
    /// dataset lookup) per train. Meant for small values; the rows of a run are held at once.
    pub fn train_values(&self, tids: &[u64]) -> Result<Vec<Option<TrainValue>>> {
        let spans: Vec<_> = tids.iter().map(|&t| self.train_span(t)).collect();
        let mut out = Vec::with_capacity(tids.len());
        let mut i = 0;
        while i < spans.len() {
            let Some((f, first, count)) = &spans[i] else {
                out.push(None);
                i += 1;
                continue;
            };
            // Saturating: an end past u64::MAX is refused by the read, and no later
            // train joins the run.
            let (mut j, mut end) = (i + 1, first.saturating_add(*count));
            while let Some(Some((g, s, c))) = spans.get(j) {
                if !Arc::ptr_eq(f, g) || *s != end || end == u64::MAX {
                    break;
                }
                end = end.saturating_add(*c);
                j += 1;
            }
            let counts = spans[i..j].iter().flatten().map(|&(_, _, c)| c);
            self.read_run(f, (*first, end, tids[i]), counts, &mut out)?;
            i = j;
        }
        Ok(out)
    }

    /// Rows `first..end` of `f`, one value per count of `counts` (which add up to the rows),
    /// the first of them train `tid`'s.
    fn read_run(
        &self,
        f: &Arc<FileAccess>,
        (first, end, tid): (u64, u64, u64),
        counts: impl Iterator<Item = u64>,
        out: &mut Vec<Option<TrainValue>>,
    ) -> Result<()> {
        let path = self.hdf5_data_path();
        if self.dtype == DType::VlenStr {
            self.check_window(f, first, end - first, tid)?;
            let h = f.file()?;
            let ds = h.dataset(&path)?;
            let mut strings =
                read_strings_ds(&h, &ds, &path, Some((first as usize, end as usize)))?.into_iter();
            for c in counts {
                let value: Vec<String> = strings.by_ref().take(c as usize).collect();
                out.push(Some(TrainValue::Strings(value)));
            }
            return Ok(());
        }
        let eb = self.entry_bytes()?;
        let n = self.checked_span_bytes(f, (first, end - first), tid)?;
        let mut buf: Vec<u8> = zeroed_vec(n, &path)?;
        f.read_rows(&path, first, end - first, eb, &mut buf)?;
        let mut rest = buf.as_slice();
        for c in counts {
            let (bytes, after) = rest.split_at((c as usize * eb).min(rest.len()));
            rest = after;
            out.push(Some(self.array_value(c, bytes.to_vec())));
        }
        Ok(())
    }

    /// A train's array value: `count` entries (control: one, its axis dropped).
    fn array_value(&self, count: u64, bytes: Vec<u8>) -> TrainValue {
        let mut shape = Vec::with_capacity(self.entry_shape.len() + 1);
        if self.section == Section::Instrument {
            shape.push(count as usize);
        }
        shape.extend(&self.entry_shape);
        TrainValue::Array {
            dtype: self.dtype.clone(),
            shape,
            bytes,
        }
    }

    /// This key's value for train `tid` as [`DataCollection::trains`] gives it (control: the
    /// train's row, its first axis dropped; instrument: all the train's entries); `None`
    /// without entries. Arrays are read with one copy out of the file.
    pub fn train_value(&self, tid: u64) -> Result<Option<TrainValue>> {
        let Some((f, first, count)) = self.train_span(tid) else {
            return Ok(None);
        };
        let path = self.hdf5_data_path();
        if self.dtype == DType::VlenStr {
            self.check_window(&f, first, count, tid)?;
            let h = f.file()?;
            let ds = h.dataset(&path)?;
            let range = (first as usize, (first + count) as usize);
            return Ok(Some(TrainValue::Strings(read_strings_ds(
                &h,
                &ds,
                &path,
                Some(range),
            )?)));
        }
        let eb = self.entry_bytes()?;
        let n = self.checked_span_bytes(&f, (first, count), tid)?;
        let bytes = if n < PIECEWISE_MIN_BYTES {
            let mut buf: Vec<u8> = zeroed_vec(n, &path)?;
            f.read_rows(&path, first, count, eb, &mut buf)?;
            buf
        } else {
            let mut buf: Vec<u8> = Vec::new();
            buf.try_reserve_exact(n).map_err(|_| Error::TooLarge {
                object: path.clone(),
                what: "allocation",
                size: format!("{n} bytes"),
            })?;
            let mismatch = |got: usize| {
                Error::structure(
                    &f.path,
                    format!("{path}: the rows of train {tid} gave {got} bytes, expected {n}"),
                )
            };
            f.visit_rows(&path, first, count, eb, &mut |piece| {
                if buf.len() + piece.len() > n {
                    return Err(mismatch(buf.len() + piece.len()));
                }
                buf.extend_from_slice(piece);
                Ok(())
            })?;
            if buf.len() != n {
                return Err(mismatch(buf.len()));
            }
            buf
        };
        Ok(Some(self.array_value(count, bytes)))
    }
}
