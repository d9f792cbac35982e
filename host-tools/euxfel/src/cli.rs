//! Command-line options shared by the binaries.

use std::path::PathBuf;

use super::error::Result;
use super::run_lookup::{data_root, run_directories, DataOrigin, RunDirectories};

/// `--proposal P --run R [--data default|all|raw|proc|LOCATION] [--data-root DIR]`: a run
/// found as EXtra-data's `open_run` finds it, instead of a path.
#[derive(clap::Args, Debug, Clone)]
pub struct RunLookup {
    /// Proposal number (2012), name (p002012) or directory; with --run, instead of a path.
    #[arg(long, requires = "run")]
    pub proposal: Option<String>,
    /// Run number (243 or r0243); with --proposal.
    #[arg(long, requires = "proposal")]
    pub run: Option<String>,
    /// Which data of the run, as open_run's data=: 'default' (proc and raw, raw winning for
    /// sources in both; the run may have no proc), 'all' (raw and proc, proc winning; no proc
    /// is a warning), 'raw', 'proc', any other directory of the proposal holding run
    /// directories (usr/Shared/x), or a comma list of them merged in order (later ones win).
    #[arg(long, default_value = "default", requires = "proposal")]
    pub data: DataOrigin,
    /// Data root [env: EXTRA_DATA_DATA_ROOT; default: /gpfs/exfel/exp].
    #[arg(long, requires = "proposal")]
    pub data_root: Option<PathBuf>,
}

impl RunLookup {
    /// The run directories asked for, or `None` if no proposal was given.
    pub fn directories(&self) -> Result<Option<RunDirectories>> {
        match (&self.proposal, &self.run) {
            (Some(p), Some(r)) => {
                let root = data_root(self.data_root.as_deref());
                run_directories(&root, p, r, &self.data).map(Some)
            }
            _ => Ok(None),
        }
    }
}
