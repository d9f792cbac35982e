//! xfel-make-virtual-cxi: write a virtual CXI file to access a run's multi-module detector
//! data, as `extra-data-make-virtual-cxi` does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use euxfel::{DataCollection, OpenOptions};
use euxfel_components::cxi::write_virtual_cxi;
use euxfel_components::{identify_single_detector, DetectorOptions, FillValue, MultiModDetector};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-make-virtual-cxi",
    about = "Write a virtual CXI file to access the detector data.",
    after_help = "Example:\n\n  xfel-make-virtual-cxi -o ./out_file.h5 --min-modules 15 \\\n    \
                  --fill-value data 0 --fill-value gain 1 /path/to/source/run\n\n\
                  Exit codes: 0 written, 1 error, 2 bad arguments, 130 interrupted (Ctrl-C, SIGINT), \
                  143 terminated (SIGTERM: kill, a Slurm cancel or time limit); after a signal \
                  nothing is written, a second one ends it at once."
)]
struct Args {
    /// Path to an EuXFEL run directory.
    run_dir: PathBuf,
    /// EXtra-data's older interface: with a run number, RUN_DIR is the proposal directory
    /// and the run is PROPOSAL/proc/r%04d (hidden, as in EXtra-data's help).
    #[arg(hide = true)]
    run_number: Option<String>,
    /// Filename or path for the CXI output file. By default, it is written in the
    /// proposal's scratch directory.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Include trains where at least N modules have data (default: half+1 of all detector
    /// modules).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    min_modules: Option<i64>,
    /// Number of detector modules in the experiment setup. Should be used only for
    /// JUNGFRAU data.
    #[arg(long, value_name = "N")]
    n_modules: Option<usize>,
    /// Define fill value (V) for individual dataset (DS). Datasets are "data", "gain" and
    /// "mask". (defaults: data: nan (proc, float32) or 0 (raw, uint16); gain: 0; mask:
    /// 0xffffffff)
    #[arg(long, num_args = 2, value_names = ["DS", "V"], action = clap::ArgAction::Append,
          allow_negative_numbers = true)]
    fill_value: Vec<String>,
    /// Exclude suspect trains. This tries to avoid some issues with incorrect train IDs in
    /// the data, but may mean less data is available.
    #[arg(long)]
    exc_suspect_trains: bool,
}

/// `path` with `.` and `..` components resolved by their names, as Python's
/// `os.path.abspath` does (EXtra-data's run path, and so its mapped file names).
fn normalize(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `<proposal>/scratch/r0123_proc_detectors_virt.cxi` for `<proposal>/proc/r0123`.
fn default_output(run_dir: &std::path::Path) -> Option<PathBuf> {
    let run = run_dir.file_name()?.to_str()?;
    let kind = run_dir.parent()?.file_name()?.to_str()?;
    let proposal = run_dir.parent()?.parent()?;
    let is_run =
        run.len() == 5 && run.starts_with('r') && run[1..].bytes().all(|b| b.is_ascii_digit());
    if !is_run || !matches!(kind, "raw" | "proc") {
        return None;
    }
    Some(
        proposal
            .join("scratch")
            .join(format!("{run}_{kind}_detectors_virt.cxi")),
    )
}

/// `os.access(path, mode)`, as EXtra-data checks the run and output directories: the
/// permissions of this process's real user (root may write where the mode bits say
/// read-only; nobody may write on a read-only file system).
fn access(path: &std::path::Path, mode: libc::c_int) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a NUL-terminated string that lives across the call; access(2)
    // only reads it.
    unsafe { libc::access(c_path.as_ptr(), mode) == 0 }
}

fn run(a: &Args) -> Result<String, String> {
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p)
            .map(|p| normalize(&p))
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let (run_dir, out) = match &a.run_number {
        Some(n) => {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("invalid run number: {n:?}"))?;
            let run = format!("r{n:04}");
            let proposal = absolute(&a.run_dir)?;
            let out = a.output.clone().unwrap_or_else(|| {
                proposal
                    .join("scratch")
                    .join(format!("{run}_detectors_virt.cxi"))
            });
            (proposal.join("proc").join(run), out)
        }
        None => {
            let run_dir = absolute(&a.run_dir)?;
            let out = match &a.output {
                Some(o) => o.clone(),
                None => default_output(&run_dir).ok_or(
                    "ERROR: '-o outfile' option needed when input directory doesn't look like \
                     .../proc/r0123",
                )?,
            };
            (run_dir, out)
        }
    };
    let mut fills = BTreeMap::new();
    for pair in a.fill_value.chunks(2) {
        let [ds, v] = pair else {
            return Err("--fill-value needs DS and V".into());
        };
        let value = FillValue::parse(v)
            .ok_or_else(|| format!("--fill-value {ds}: {v:?} is not a number"))?;
        fills.insert(ds.clone(), value);
    }
    if !access(&run_dir, libc::R_OK) {
        return Err(format!(
            "ERROR: Don't have read access to {}",
            run_dir.display()
        ));
    }
    let out_dir = std::path::absolute(&out)
        .ok()
        .and_then(|p| p.parent().map(|p| p.to_path_buf()))
        .unwrap_or_default();
    if !access(&out_dir, libc::W_OK) {
        return Err(format!(
            "ERROR: Don't have write access to {}",
            out_dir.display()
        ));
    }
    let opts = OpenOptions {
        inc_suspect_trains: !a.exc_suspect_trains,
        ..OpenOptions::default()
    };
    let dc = DataCollection::open_run(&run_dir, &opts).map_err(|e| e.to_string())?;
    for w in dc.warnings() {
        eprintln!("{w}");
    }
    let (name, kind) = identify_single_detector(&dc, None).map_err(|e| e.to_string())?;
    let mut n_modules = kind.n_modules();
    let mut det_opts = DetectorOptions {
        detector_name: Some(name),
        ..DetectorOptions::default()
    };
    if n_modules == 0 {
        det_opts.n_modules = a.n_modules;
        n_modules = a.n_modules.unwrap_or(0);
    }
    // Any integer is an argument (as argparse's type=int); the detector refuses those < 1.
    det_opts.min_modules = match a.min_modules {
        Some(n) => usize::try_from(n)
            .map_err(|_| format!("min_modules must be a positive integer, not {n}"))?,
        None if n_modules == 0 => 1,
        None => n_modules / 2 + 1,
    };
    let det = MultiModDetector::new(kind, &dc, &det_opts).map_err(|e| e.to_string())?;
    for w in det.warnings() {
        eprintln!("warning: {w}");
    }
    let summary = write_virtual_cxi(&det, &out, &fills).map_err(|e| e.to_string())?;
    let mut msg = format!(
        "{} ({}): {} trains, {} frames, {} modules -> {}",
        det.detector_name,
        kind.class_name(),
        det.train_ids().len(),
        summary.frames,
        summary.modules,
        out.display()
    );
    for (ds, (shape, maps)) in &summary.datasets {
        msg.push_str(&format!("\n  {ds} {shape:?}: {maps} mappings"));
    }
    Ok(msg)
}

fn main() -> ExitCode {
    let a = Args::parse();
    // Ctrl-C or SIGTERM stops the run's opening between files, or the write before the file
    // is renamed into place (its .partial removed).
    if let Err(e) = euxfel::catch_interrupt() {
        eprintln!("xfel-make-virtual-cxi: Ctrl-C and SIGTERM will end the process at once: {e}");
    }
    match run(&a) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => match euxfel::stop_signal() {
            Some(sig) => {
                eprintln!("xfel-make-virtual-cxi: {}", sig.verb());
                ExitCode::from(sig.exit_code())
            }
            None => {
                eprintln!("xfel-make-virtual-cxi: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
