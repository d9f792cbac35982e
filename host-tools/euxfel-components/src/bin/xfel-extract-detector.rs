//! xfel-extract-detector: write one key of a multi-module detector, stacked over all
//! modules (selected trains and pulses), as NumPy `.npy` files with its coordinates.
//!
//! `OUT/data.npy` has shape `(modules, frames or trains, ...)`; `train_ids.npy`,
//! `pulse_ids.npy` and `cell_ids.npy` (per-pulse keys) label the second axis;
//! `modules.npy` the first; `availability.npy` is true where a module has data.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use euxfel::{npy, DataCollection, OpenOptions, TrainSelection};
use euxfel_components::{
    identify_single_detector, DetectorOptions, DetectorType, FillValue, MultiModDetector,
    PulseSelection, Pulses,
};

#[derive(Parser, Debug)]
#[command(
    name = "xfel-extract-detector",
    about = "Write a multi-module detector key, stacked over modules, as .npy files",
    after_help = "Exit codes: 0 written, 1 error, 2 bad arguments."
)]
struct Args {
    /// Run directory.
    run: PathBuf,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Detector type (AGIPD1M, AGIPD500K, DSSC1M, LPD1M, LPDSolo, JUNGFRAU); found in the
    /// data if not given.
    #[arg(long)]
    detector: Option<String>,
    /// Key, by default the detector's main key (image.data or data.adc).
    #[arg(long)]
    key: Option<String>,
    /// Keep trains where at least N modules have data.
    #[arg(long, default_value_t = 1)]
    min_modules: usize,
    /// Trains by position, 'A:B' (Python slice, either may be empty).
    #[arg(long)]
    trains: Option<String>,
    /// Pulses within each train: 'index:A:B[:STEP]', 'index:I,J,K', 'id:A:B[:STEP]' or
    /// 'id:I,J,K'.
    #[arg(long)]
    pulses: Option<String>,
    /// Value for missing modules and frames (default NaN for floats, 0 for integers).
    #[arg(long)]
    fill_value: Option<String>,
    /// Leave room for every module of the detector, missing ones filled.
    #[arg(long)]
    module_gaps: bool,
    /// Number of JUNGFRAU modules.
    #[arg(long)]
    n_modules: Option<usize>,
}

fn parse_pulses(s: &str) -> Result<PulseSelection, String> {
    let bad = || format!("--pulses: cannot parse {s:?}");
    let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
    let num = |v: &str| v.trim().parse::<u64>().map_err(|_| bad());
    let p = if rest.contains(':') {
        let parts: Vec<&str> = rest.split(':').collect();
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

fn run(a: &Args) -> Result<String, String> {
    let dc =
        DataCollection::open_run(&a.run, &OpenOptions::default()).map_err(|e| e.to_string())?;
    let (name, kind) = match &a.detector {
        Some(t) => {
            let kind =
                DetectorType::from_name(t).ok_or_else(|| format!("unknown detector type {t:?}"))?;
            (
                kind.find_detector_name(&dc).map_err(|e| e.to_string())?,
                kind,
            )
        }
        None => identify_single_detector(&dc, None).map_err(|e| e.to_string())?,
    };
    let opts = DetectorOptions {
        detector_name: Some(name),
        min_modules: a.min_modules,
        n_modules: a.n_modules,
        ..DetectorOptions::default()
    };
    let mut det = MultiModDetector::new(kind, &dc, &opts).map_err(|e| e.to_string())?;
    for w in det.warnings() {
        eprintln!("warning: {w}");
    }
    if let Some(t) = &a.trains {
        let (s, e) = t.split_once(':').ok_or("--trains: expected A:B")?;
        let p = |v: &str| -> Result<Option<i64>, String> {
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse().map(Some).map_err(|_| format!("--trains: {v:?}"))
            }
        };
        det = det
            .select_trains(&TrainSelection::IndexRange(p(s)?, p(e)?, None))
            .map_err(|e| e.to_string())?;
    }
    let key_name = a
        .key
        .clone()
        .unwrap_or_else(|| kind.main_data_key().to_string());
    let mut key = det.key(&key_name).map_err(|e| e.to_string())?;
    if let Some(p) = &a.pulses {
        key = key
            .select_pulses(parse_pulses(p)?)
            .map_err(|e| e.to_string())?;
    }
    let fill = match &a.fill_value {
        Some(v) => Some(
            FillValue::parse(v).ok_or_else(|| format!("--fill-value: {v:?} is not a number"))?,
        ),
        None => None,
    };
    let arr = key
        .ndarray_bytes(fill, a.module_gaps)
        .map_err(|e| e.to_string())?;
    let e = |e: euxfel::Error| e.to_string();
    std::fs::create_dir_all(&a.out).map_err(|err| format!("{}: {err}", a.out.display()))?;
    let descr = arr
        .dtype
        .npy_descr()
        .ok_or_else(|| format!("dtype {} cannot be written as .npy", arr.dtype.numpy_name()))?;
    npy::write_raw(&a.out.join("data.npy"), &descr, &arr.shape, &arr.data).map_err(e)?;
    npy::write_u64(&a.out.join("train_ids.npy"), &key.train_id_coordinates()).map_err(e)?;
    if kind.is_xtdf() && key_name.starts_with("image.") {
        let p = key.pulse_id_coordinates().map_err(|e| e.to_string())?;
        npy::write_u64(&a.out.join("pulse_ids.npy"), &p).map_err(e)?;
        let c = key.cell_id_coordinates().map_err(|e| e.to_string())?;
        npy::write_u64(&a.out.join("cell_ids.npy"), &c).map_err(e)?;
    }
    let mods: Vec<u64> = key.modules().into_iter().map(|m| m as u64).collect();
    npy::write_u64(&a.out.join("modules.npy"), &mods).map_err(e)?;
    let (ashape, avail) = key
        .data_availability(a.module_gaps)
        .map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = avail.iter().map(|&b| u8::from(b)).collect();
    npy::write_raw(&a.out.join("availability.npy"), "|b1", &ashape, &bytes).map_err(e)?;
    Ok(format!(
        "{} {}: dtype {}, shape {:?} -> {}",
        det.detector_name,
        key_name,
        arr.dtype.numpy_name(),
        arr.shape,
        path_str(&a.out)
    ))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(&a) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xfel-extract-detector: {e}");
            ExitCode::FAILURE
        }
    }
}
