//! Virtual overview files (EXtra-data's `python -m extra_data.voview`): the whole run as
//! virtual datasets plus `/.source_files/{names,sizes}` and `virtual_overview_version = 1`,
//! so that opening the run is one file read ([`euxfel::overview`] is the reader's side).

use std::path::Path;

use euxfel::overview::{check_sources, default_path, recorded_sources, VOVIEW_VERSION};
use euxfel::{DataCollection, OpenOptions};

use crate::error::{Error, Result};
use crate::write::{write_collection, Mode, OverviewExtra, Progress, Summary, WriteOptions};

/// Writes the overview file of `run_dir` to `out` (default `<run_dir>/overview.h5`),
/// from the run's own files (never from an existing overview).
pub fn write_overview(
    run_dir: &Path,
    out: Option<&Path>,
    opts: &WriteOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let open = OpenOptions {
        use_overview: false,
        ..OpenOptions::default()
    };
    let dc = DataCollection::open_run(run_dir, &open)?;
    let mut files = dc.files.clone();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let extra = OverviewExtra {
        names: files.iter().map(|f| f.filename()).collect(),
        sizes: files.iter().map(|f| f.size).collect(),
    };
    let path = out.map_or_else(|| default_path(run_dir), Path::to_path_buf);
    write_collection(&dc, &path, Mode::Virtual, opts, Some(extra), progress)
}

/// Whether the overview file `file` (default `<run_dir>/overview.h5`) can be used for
/// `run_dir`: a version this reader knows, and the run's file names and sizes unchanged.
pub fn check_overview(run_dir: &Path, file: Option<&Path>) -> Result<bool> {
    let path = file.map_or_else(|| default_path(run_dir), Path::to_path_buf);
    let (_, version) = recorded_sources(&path).map_err(|e| Error::NotOverview {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    if version > VOVIEW_VERSION {
        return Ok(false);
    }
    Ok(check_sources(&path, run_dir)?)
}
