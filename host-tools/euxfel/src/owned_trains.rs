//! An iterator over trains that owns its collection, for callers that cannot hold a
//! borrow (the Python binding's `trains()` generator).

use super::data_collection::DataCollection;
use super::error::Result;
use super::key_data::KeyData;
use super::trains::TrainData;

/// Like [`DataCollection::trains`], owning a (cheap, `Arc`-shared) clone of the
/// collection. The per-key index is prepared on the first step.
#[derive(Debug, Clone)]
pub struct OwnedTrains {
    dc: DataCollection,
    keys: Option<Vec<(String, bool, KeyData)>>,
    pos: usize,
}

impl DataCollection {
    /// Iterate over trains as [`DataCollection::trains`] does, owning the collection.
    pub fn into_trains(self) -> OwnedTrains {
        OwnedTrains {
            dc: self,
            keys: None,
            pos: 0,
        }
    }
}

impl Iterator for OwnedTrains {
    type Item = Result<(u64, TrainData)>;
    fn next(&mut self) -> Option<Self::Item> {
        let &tid = self.dc.train_ids.get(self.pos)?;
        self.pos += 1;
        let keys = match &self.keys {
            Some(k) => k,
            None => match self.dc.all_key_data() {
                Ok(k) => self.keys.insert(k),
                Err(e) => {
                    self.pos = self.dc.train_ids.len();
                    return Some(Err(e));
                }
            },
        };
        Some(self.dc.train_values(keys, tid).map(|d| (tid, d)))
    }
}
