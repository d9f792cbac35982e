//! Selection by exact source and key names (EXtra-data's `select({source: {keys}})`),
//! where glob selection would turn a control key `x.timestamp` into `x.timestamp.value`.

use std::collections::{BTreeMap, BTreeSet};

use super::data_collection::DataCollection;
use super::error::{Error, Result};

impl DataCollection {
    /// Keep the named sources with the named keys (`None` or an empty set: the
    /// source's current keys). Control keys may omit `.value`. Unknown names are
    /// [`Error::SourceName`] / [`Error::KeyName`].
    pub fn select_exact(
        &self,
        selection: &BTreeMap<String, Option<BTreeSet<String>>>,
    ) -> Result<DataCollection> {
        let mut sources = BTreeMap::new();
        for (name, keys) in selection {
            let sd = self.source(name)?;
            let keys = match keys {
                Some(ks) if !ks.is_empty() => {
                    let mut exact = BTreeSet::new();
                    for k in ks {
                        let value = format!("{k}.value");
                        if sd.has_key(k)? {
                            exact.insert(k.clone());
                        } else if sd.is_control() && sd.has_key(&value)? {
                            exact.insert(value);
                        } else {
                            return Err(Error::KeyName {
                                source_name: name.clone(),
                                key: k.clone(),
                                hint: String::new(),
                            });
                        }
                    }
                    Some(exact)
                }
                _ => None,
            };
            sources.insert(name.clone(), sd.select_keys(keys));
        }
        let mut files = Vec::new();
        for sd in sources.values() {
            for f in &sd.files {
                if !files.iter().any(|g| std::sync::Arc::ptr_eq(g, f)) {
                    files.push(f.clone());
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(DataCollection {
            files,
            train_ids: self.train_ids.clone(),
            sources,
            is_single_run: self.is_single_run,
            inc_suspect_trains: self.inc_suspect_trains,
            warnings: Vec::new(),
        })
    }
}
