//! xfel-extract: write one key of EuXFEL run data as NumPy .npy files.
//!
//! `DIR/data.npy` holds the selected data (first axis = entries), `DIR/train_ids.npy`
//! one train ID per entry (uint64). Strings are written as a fixed-width unicode array,
//! compound keys as structured arrays. Ctrl-C (SIGINT) or SIGTERM stops an extraction,
//! removes its outputs and exits 130 or 143.
//!
//! With `--detector[=TYPE]` the key is one of a multi-module detector, stacked over its
//! modules: `data.npy` has shape `(modules, frames or trains, ...)`, `train_ids.npy`,
//! `pulse_ids.npy` and `cell_ids.npy` (per-pulse `image.*` keys) label the second axis,
//! `modules.npy` the first (with `--module-gaps` every slot's module number), and
//! `availability.npy` is true where a module has data. They are
//! written as `NAME.partial` and renamed into place together once all are complete.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use euxfel::cli::RunLookup;
use euxfel::{npy, DType, DataCollection, OpenOptions, TrainSelection, Warning};
use euxfel_components::{
    identify_single_detector, DetectorOptions, DetectorType, FillValue, MultiModDetector,
    PulseSelection, Pulses, Roi,
};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-extract",
    about = "Extract one key of EuXFEL run data to NumPy .npy files (data.npy, train_ids.npy)",
    after_help = "With --detector: RUN [KEY] (KEY defaults to the detector's main key, \
                  image.data or data.adc), or [KEY] with --proposal and --run.\n\n\
                  Exit codes: 0 written, 1 error, 2 bad arguments, 130 interrupted (Ctrl-C, \
                  SIGINT), 143 terminated (SIGTERM: kill, a Slurm cancel or time limit); after an \
                  error or a signal nothing of this extraction is left. A second signal ends it at \
                  once."
)]
struct Args {
    /// RUN SOURCE KEY: the run directory or single .h5 file (left out with --proposal and
    /// --run), the source (e.g. SA1_XTD2_XGM/DOOCS/MAIN:output) and the key (e.g.
    /// data.intensityTD; control keys may omit '.value').
    #[arg(num_args = 0..=3, value_names = ["RUN", "SOURCE", "KEY"])]
    positional: Vec<String>,
    #[command(flatten)]
    lookup: RunLookup,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Trains to select: 'A:B' (train IDs, B exclusive; either may be empty) or a
    /// comma-separated list 'A,B,C'. With --by-index they are positions instead
    /// (negative from the end; write --trains=-4: so the value is not taken for an option).
    #[arg(long)]
    trains: Option<String>,
    /// Interpret --trains as positions in the run (Python slice semantics), not train IDs.
    #[arg(long)]
    by_index: bool,
    /// Neither read nor write the run map cache (karabo_data_map.json).
    #[arg(long)]
    no_cache: bool,
    /// Print a JSON summary (source, key, dtype, shape, entries, trains, output paths) on stdout;
    /// with --detector: detector, type, key, dtype, shape, modules, trains, files.
    #[arg(long)]
    json: bool,
    /// Stack a key of a multi-module detector over its modules: AGIPD1M, AGIPD500K, DSSC1M,
    /// LPD1M, LPDSolo or JUNGFRAU, found in the data when no TYPE is given (write
    /// --detector=TYPE). --trains then selects among the trains the detector keeps.
    #[arg(long, value_name = "TYPE", num_args = 0..=1, require_equals = true)]
    detector: Option<Option<String>>,
    /// With --detector: pulses within each train, 'index:A:B[:STEP]', 'index:I,J,K',
    /// 'id:A:B[:STEP]' or 'id:I,J,K'.
    #[arg(long, requires = "detector")]
    pulses: Option<String>,
    /// With --detector: keep trains where at least N modules have data.
    #[arg(long, requires = "detector", default_value_t = 1)]
    min_modules: usize,
    /// With --detector: value for missing modules and frames (default NaN for floats, 0
    /// for integers; decimal, float or 0x hex).
    #[arg(long, requires = "detector", allow_negative_numbers = true)]
    fill_value: Option<String>,
    /// With --detector: leave room for every module of the detector, missing ones filled.
    #[arg(long, requires = "detector")]
    module_gaps: bool,
    /// With --detector=JUNGFRAU: the number of modules (inferred from the sources if not given).
    #[arg(long, requires = "detector")]
    n_modules: Option<usize>,
    /// With --detector: convert the values to float32 or float64 (missing data NaN unless
    /// --fill-value is given).
    #[arg(long, requires = "detector", value_parser = ["float32", "float64"])]
    astype: Option<String>,
    /// With --detector: region of interest of each frame, numpy's index syntax on the
    /// frame's axes ('0:64,::2', '0' for the first row), as EXtra-data's ndarray(roi=...).
    #[arg(long, requires = "detector", allow_hyphen_values = true)]
    roi: Option<String>,
    /// With --detector=LPD1M or LPDSolo: each train's frames are three gain stages (pulse
    /// selections apply to each stage; pulse and cell IDs are the first stage's), as
    /// EXtra-data's parallel_gain=True.
    #[arg(long, requires = "detector")]
    parallel_gain: bool,
}

fn parse_trains(s: &str, by_index: bool) -> Result<TrainSelection, String> {
    let bad = |v: &str| format!("--trains: {v:?} is not an integer");
    if let Some((a, b)) = s.split_once(':') {
        if by_index {
            let p = |v: &str| -> Result<Option<i64>, String> {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.trim().parse().map(Some).map_err(|_| bad(v))
                }
            };
            Ok(TrainSelection::IndexRange(p(a)?, p(b)?, None))
        } else {
            let p = |v: &str| -> Result<Option<u64>, String> {
                if v.is_empty() {
                    Ok(None)
                } else {
                    v.trim().parse().map(Some).map_err(|_| bad(v))
                }
            };
            Ok(TrainSelection::IdRange(p(a)?, p(b)?))
        }
    } else if by_index {
        let v: Result<Vec<i64>, _> = s
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| bad(x)))
            .collect();
        Ok(TrainSelection::IndexList(v?))
    } else {
        let v: Result<Vec<u64>, _> = s
            .split(',')
            .map(|x| x.trim().parse().map_err(|_| bad(x)))
            .collect();
        Ok(TrainSelection::IdList(v?))
    }
}

fn run(a: &Args) -> Result<String, String> {
    let opts = OpenOptions {
        use_cache: !a.no_cache,
        ..OpenOptions::default()
    };
    let by_number = a.lookup.proposal.is_some();
    let detector = a.detector.is_some();
    let (run, rest) = match (by_number, a.positional.as_slice()) {
        (false, [run, rest @ ..]) => (Some(PathBuf::from(run)), rest),
        (true, rest) => (None, rest),
        (false, []) => (None, &[][..]),
    };
    let usage = match (detector, by_number) {
        (false, false) => "give RUN SOURCE KEY, or SOURCE KEY with --proposal and --run",
        (false, true) => "with --proposal and --run, give SOURCE KEY only",
        (true, false) => "with --detector, give RUN [KEY]",
        (true, true) => "with --detector, --proposal and --run, give [KEY] only",
    };
    let fits = match (detector, rest.len()) {
        (false, n) => n == 2,
        (true, n) => n <= 1,
    };
    if !fits || (!by_number && run.is_none()) {
        return Err(usage.into());
    }
    let dc = match &run {
        Some(run) if run.is_dir() => DataCollection::open_run(run, &opts),
        Some(run) => DataCollection::open_file(run),
        None => match a.lookup.directories() {
            Ok(Some(dirs)) => {
                for w in dirs.missing() {
                    eprintln!("{w}");
                }
                dirs.open(&opts)
            }
            Ok(None) => return Err("--proposal and --run go together".into()),
            Err(e) => Err(e),
        },
    }
    .map_err(|e| {
        print_warnings(&e.skipped_files());
        e.to_string()
    })?;
    print_warnings(dc.warnings());
    match (&a.detector, rest) {
        (Some(kind), key) => extract_detector(a, &dc, kind.as_deref(), key.first()),
        (None, [source, key]) => extract_key(a, &dc, source, key),
        (None, _) => Err(usage.into()),
    }
}

/// One key of one source, entries along the first axis.
fn extract_key(a: &Args, dc: &DataCollection, source: &str, key: &str) -> Result<String, String> {
    let mut kd = dc.key(source, key).map_err(|e| e.to_string())?;
    if let Some(t) = &a.trains {
        let sel = parse_trains(t, a.by_index)?;
        kd = kd.select_trains(&sel).map_err(|e| e.to_string())?;
        print_warnings(kd.warnings());
    }
    let shape = kd.shape();
    let files = euxfel::extract_key(&kd, &a.out).map_err(|e| e.to_string())?;
    let summary = serde_json::json!({
        "source": kd.source,
        "key": kd.key,
        "dtype": kd.dtype.numpy_name(),
        "shape": shape,
        "entries": kd.len(),
        "trains": kd.train_ids.len(),
        "data": path_str(&files.data),
        "train_ids": path_str(&files.train_ids),
    });
    if a.json {
        Ok(summary.to_string())
    } else {
        Ok(format!(
            "{} {}: {} entries, dtype {}, shape {:?} -> {}",
            kd.source,
            kd.key,
            kd.len(),
            kd.dtype.numpy_name(),
            shape,
            a.out.display()
        ))
    }
}

/// A key of a multi-module detector, stacked over its modules, with its coordinates.
fn extract_detector(
    a: &Args,
    dc: &DataCollection,
    kind: Option<&str>,
    key: Option<&String>,
) -> Result<String, String> {
    // `--detector TYPE` leaves TYPE to the positionals (the value needs '=').
    if let Some(k) = key.filter(|k| DetectorType::from_name(k).is_some()) {
        return Err(format!(
            "{k:?} is a detector type, not a key: write --detector={k}"
        ));
    }
    let (name, kind) = match kind {
        Some(t) => {
            let kind = DetectorType::from_name(t).ok_or_else(|| {
                format!(
                    "--detector: unknown type {t:?} (AGIPD1M, AGIPD500K, DSSC1M, LPD1M, \
                     LPDSolo or JUNGFRAU)"
                )
            })?;
            (
                kind.find_detector_name(dc).map_err(|e| e.to_string())?,
                kind,
            )
        }
        None => identify_single_detector(dc, None).map_err(|e| e.to_string())?,
    };
    if a.n_modules.is_some() && kind != DetectorType::Jungfrau {
        return Err(format!(
            "--n-modules applies to JUNGFRAU only: {} has {} modules",
            kind.class_name(),
            kind.n_modules()
        ));
    }
    let opts = DetectorOptions {
        detector_name: Some(name),
        min_modules: a.min_modules,
        n_modules: a.n_modules,
        parallel_gain: a.parallel_gain,
        ..DetectorOptions::default()
    };
    let mut det = MultiModDetector::new(kind, dc, &opts).map_err(|e| e.to_string())?;
    for w in det.warnings() {
        eprintln!("warning: {w}");
    }
    if let Some(t) = &a.trains {
        let sel = parse_trains(t, a.by_index)?;
        det = det.select_trains(&sel).map_err(|e| e.to_string())?;
    }
    let key_name = key.map_or(kind.main_data_key(), String::as_str);
    let mut mk = det.key(key_name).map_err(|e| e.to_string())?;
    if let Some(p) = &a.pulses {
        mk = mk
            .select_pulses(parse_pulses(p)?)
            .map_err(|e| e.to_string())?;
    }
    if let Some(r) = &a.roi {
        let roi: Roi = r.parse().map_err(|e| format!("--roi: {e}"))?;
        mk = mk
            .select_roi(roi)
            .map_err(|e| format!("--roi {r:?}: {e}"))?;
    }
    let fill = match &a.fill_value {
        Some(v) => Some(
            FillValue::parse(v).ok_or_else(|| format!("--fill-value: {v:?} is not a number"))?,
        ),
        None => None,
    };
    let astype = match a.astype.as_deref() {
        Some("float32") => DType::Float(4),
        Some("float64") => DType::Float(8),
        _ => mk.dtype().map_err(|e| e.to_string())?,
    };
    let arr = mk
        .ndarray_bytes_as(&astype, fill, a.module_gaps)
        .map_err(|e| e.to_string())?;
    let descr = arr
        .dtype
        .npy_descr()
        .ok_or_else(|| format!("dtype {} cannot be written as .npy", arr.dtype.numpy_name()))?;
    let mut outputs = StagedOutputs::new(&a.out)?;
    outputs.write("data.npy", &descr, &arr.shape, &arr.data)?;
    let u64_bytes = |v: &[u64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let tids = mk.train_id_coordinates();
    outputs.write("train_ids.npy", "<u8", &[tids.len()], &u64_bytes(&tids))?;
    if kind.is_xtdf() && key_name.starts_with("image.") {
        let p = mk.pulse_id_coordinates().map_err(|e| e.to_string())?;
        outputs.write("pulse_ids.npy", "<u8", &[p.len()], &u64_bytes(&p))?;
        let c = mk.cell_id_coordinates().map_err(|e| e.to_string())?;
        outputs.write("cell_ids.npy", "<u8", &[c.len()], &u64_bytes(&c))?;
    }
    // The module number of each index of the first axis: with gaps, every module slot.
    let mods: Vec<u64> = if a.module_gaps {
        let first = det.kind.modnos_start_at();
        (first..first + det.n_modules).map(|m| m as u64).collect()
    } else {
        mk.modules().into_iter().map(|m| m as u64).collect()
    };
    outputs.write("modules.npy", "<u8", &[mods.len()], &u64_bytes(&mods))?;
    let (ashape, avail) = mk
        .data_availability(a.module_gaps)
        .map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = avail.iter().map(|&b| u8::from(b)).collect();
    outputs.write("availability.npy", "|b1", &ashape, &bytes)?;
    let written = outputs.commit()?;
    if a.json {
        let mut summary = serde_json::json!({
            "detector": det.detector_name,
            "type": kind.class_name(),
            "key": key_name,
            "dtype": arr.dtype.numpy_name(),
            "shape": arr.shape,
            "modules": mods,
            "trains": det.train_ids().len(),
        });
        if let Some(m) = summary.as_object_mut() {
            // The paths under "files" ("modules" is taken by the numbers); data and train
            // IDs also at the top, where the single-key summary has them.
            for name in ["data", "train_ids"] {
                if let Some(p) = written.get(name) {
                    m.insert(name.into(), p.clone());
                }
            }
            m.insert("files".into(), written.into());
        }
        return Ok(summary.to_string());
    }
    Ok(format!(
        "{} {}: dtype {}, shape {:?} -> {}",
        det.detector_name,
        key_name,
        arr.dtype.numpy_name(),
        arr.shape,
        a.out.display()
    ))
}

/// The `.npy` files of a stacked extraction, each written as `NAME.partial` in the output
/// directory and all renamed into place once every one is complete and Ctrl-C has not come.
/// Dropped before that, it removes its `.partial` files and the directories it made: a
/// failure or Ctrl-C leaves no truncated file, and an earlier extraction's files stay as they
/// were instead of being mixed with new ones.
struct StagedOutputs {
    dir: PathBuf,
    /// Directories made for the output, innermost first.
    created_dirs: Vec<PathBuf>,
    /// (`.partial` path, final path) of each file written.
    staged: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

/// Bytes written between two looks at the Ctrl-C flag.
const WRITE_STEP: usize = 8 << 20;

impl StagedOutputs {
    fn new(dir: &Path) -> Result<StagedOutputs, String> {
        let created_dirs: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        let mut outputs = StagedOutputs {
            dir: dir.to_path_buf(),
            created_dirs,
            staged: Vec::new(),
            committed: false,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("output directory {}: {e}", dir.display()))?;
        // (Dropped on an error, it removes what create_dir_all made before failing.)
        outputs.created_dirs.retain(|d| d.is_dir());
        Ok(outputs)
    }

    /// Writes `NAME.partial`: an array of `descr` and `shape` holding `data` (little-endian).
    fn write(
        &mut self,
        name: &str,
        descr: &str,
        shape: &[usize],
        data: &[u8],
    ) -> Result<(), String> {
        use std::io::Write;
        let path = self.dir.join(name);
        let partial = self.dir.join(format!("{name}.partial"));
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let f = std::fs::File::create(&partial).map_err(err)?;
        self.staged.push((partial, path.clone()));
        let mut w = std::io::BufWriter::new(f);
        w.write_all(&npy::header(descr, shape)).map_err(err)?;
        for step in data.chunks(WRITE_STEP) {
            if euxfel::interrupted() {
                return Err(euxfel::Error::Interrupted.to_string());
            }
            w.write_all(step).map_err(err)?;
        }
        w.into_inner()
            .map_err(|e| err(e.into_error()))?
            .sync_all()
            .map_err(err)
    }

    /// Renames every file into place, and removes the coordinates of an earlier extraction
    /// that this one has not (pulse and cell IDs of a per-train key): they would label data
    /// they do not belong to. Returns the final paths by name without `.npy`.
    fn commit(mut self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        if euxfel::interrupted() {
            return Err(euxfel::Error::Interrupted.to_string());
        }
        let staged = std::mem::take(&mut self.staged);
        let mut written = serde_json::Map::new();
        for (i, (partial, path)) in staged.iter().enumerate() {
            if let Err(e) = std::fs::rename(partial, path) {
                // The ones not renamed yet are removed on drop.
                self.staged = staged[i..].to_vec();
                return Err(format!("{}: {e}", path.display()));
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let stem = name
                .unwrap_or_default()
                .trim_end_matches(".npy")
                .to_string();
            written.insert(stem, path_str(path).into());
        }
        for name in ["pulse_ids", "cell_ids"] {
            let stale = self.dir.join(format!("{name}.npy"));
            if !written.contains_key(name) && stale.is_file() {
                std::fs::remove_file(&stale).map_err(|e| format!("{}: {e}", stale.display()))?;
            }
        }
        self.committed = true;
        Ok(written)
    }
}

impl Drop for StagedOutputs {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for (partial, _) in &self.staged {
            let _ = std::fs::remove_file(partial);
        }
        for d in &self.created_dirs {
            // Only removes empty ones: files someone else put there meanwhile stay.
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn parse_pulses(s: &str) -> Result<PulseSelection, String> {
    let bad = || format!("--pulses: cannot parse {s:?}");
    let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
    let num = |v: &str| v.trim().parse::<u64>().map_err(|_| bad());
    let p = if rest.contains(':') {
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let opt = |i: usize, d: u64| -> Result<u64, String> {
            match parts.get(i) {
                Some(v) if !v.is_empty() => num(v),
                _ => Ok(d),
            }
        };
        Pulses::Slice {
            start: opt(0, 0)?,
            stop: opt(1, euxfel_components::MAX_PULSES)?,
            step: opt(2, 1)?,
        }
    } else {
        Pulses::List(rest.split(',').map(num).collect::<Result<_, _>>()?)
    };
    match kind {
        "index" => Ok(PulseSelection::ByIndex(p)),
        "id" => Ok(PulseSelection::ById(p)),
        _ => Err(bad()),
    }
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        eprintln!("{w}");
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn main() -> ExitCode {
    let a = Args::parse();
    // Extractions poll for Ctrl-C and SIGTERM between bounded steps of their reads and writes.
    if let Err(e) = euxfel::catch_interrupt() {
        eprintln!("xfel-extract: Ctrl-C and SIGTERM will end the process at once: {e}");
    }
    match run(&a) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => match euxfel::stop_signal() {
            // Whatever failed after a signal failed because of it; the outputs are removed.
            Some(sig) => {
                eprintln!("xfel-extract: {}", sig.verb());
                ExitCode::from(sig.exit_code())
            }
            None => {
                eprintln!("xfel-extract: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
