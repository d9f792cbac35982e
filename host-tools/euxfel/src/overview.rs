//! Virtual overview files (EXtra-data's `extra_data.voview`): one file of virtual datasets
//! presenting a whole run, with the names and sizes of the run's files in `/.source_files`.
//! [`DataCollection::open_run`] opens a valid one instead of the run's files, as
//! `RunDirectory` does: valid means its recorded file names are exactly the run's `.h5`
//! files and every size matches (modification times are not compared, as in EXtra-data).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenAscii;

use super::data_collection::DataCollection;
use super::error::{Error, Result};
use super::file_access::FileAccess;
use super::open::OpenOptions;

/// The newest overview format this reader understands (`virtual_overview_version`).
pub const VOVIEW_VERSION: i64 = 1;

/// Where an overview file of `run_dir` is looked for and written by default.
pub fn default_path(run_dir: &Path) -> PathBuf {
    run_dir.join("overview.h5")
}

/// The run's data files: names ending in `.h5`, except `overview.h5` (any case).
pub fn run_file_names(run_dir: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(run_dir).map_err(|e| Error::io(run_dir, e))? {
        let n = e
            .map_err(|e| Error::io(run_dir, e))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if n.ends_with(".h5") && n.to_lowercase() != "overview.h5" {
            out.insert(n);
        }
    }
    Ok(out)
}

/// The names and sizes recorded in an overview file, and its `virtual_overview_version`
/// (0 when absent).
pub fn recorded_sources(overview: &Path) -> Result<(Vec<(String, u64)>, i64)> {
    let h5err = |e: hdf5::Error| Error::Hdf5 {
        path: overview.into(),
        object: ".source_files".into(),
        msg: e.to_string(),
    };
    let f = hdf5::File::open(overview).map_err(|e| Error::NotHdf5 {
        path: overview.into(),
        msg: e.to_string(),
    })?;
    let version = match f.attr("virtual_overview_version") {
        Ok(a) => a.read_scalar::<i64>().map_err(h5err)?,
        Err(_) => 0,
    };
    let names: Vec<VarLenAscii> = f
        .dataset(".source_files/names")
        .and_then(|d| d.read_raw())
        .map_err(h5err)?;
    let sizes: Vec<u64> = f
        .dataset(".source_files/sizes")
        .and_then(|d| d.read_raw())
        .map_err(h5err)?;
    if names.len() != sizes.len() {
        return Err(Error::structure(
            overview,
            format!(
                ".source_files: {} names but {} sizes",
                names.len(),
                sizes.len()
            ),
        ));
    }
    let v = names
        .iter()
        .map(|n| n.as_str().to_string())
        .zip(sizes)
        .collect();
    Ok((v, version))
}

/// Whether `overview` describes the files now in `run_dir` (EXtra-data's `check_sources`).
pub fn check_sources(overview: &Path, run_dir: &Path) -> Result<bool> {
    let (recorded, _) = recorded_sources(overview)?;
    let now = run_file_names(run_dir)?;
    let stored: BTreeSet<String> = recorded.iter().map(|(n, _)| n.clone()).collect();
    if stored != now {
        return Ok(false);
    }
    for (name, size) in &recorded {
        let p = run_dir.join(name);
        let m = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
        if m.len() != *size {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The run opened from its overview file, if there is a valid one (any problem with the
/// overview file means the run's own files are opened instead).
pub(crate) fn open_if_valid(run_dir: &Path, opts: &OpenOptions) -> Option<DataCollection> {
    if !opts.use_overview || opts.include != "*" {
        return None;
    }
    let path = default_path(run_dir);
    if !path.is_file() {
        return None;
    }
    let (_, version) = recorded_sources(&path).ok()?;
    if version > VOVIEW_VERSION || !check_sources(&path, run_dir).ok()? {
        return None;
    }
    let fa = FileAccess::open(&path).ok()?;
    DataCollection::from_files(vec![fa], opts.inc_suspect_trains, true).ok()
}
