//! Xspress3 acquisitions (`xsp3-acquire` files, one or a rollover set) as a EuXFEL run
//! directory of one file, format 1.3:
//!
//! - INSTRUMENT source `<device>:daqOutput`, index group `data`: every per-frame dataset of
//!   the acquisition's detector group (spectra as `data.spectra`, the nine scalers, dead-time
//!   correction and saturation, output count rate, frame number, timestamp, and whatever else
//!   is there per frame, such as ROI sums), plus `data.trainId`; one entry per frame.
//! - CONTROL source `<device>`: the acquisition parameters (the detector group's attributes
//!   and `event_width`), one value per train, with the train's first frame time as timestamp;
//!   the same values once in `RUN/<device>`, with `classId = "Xspress3"`.
//!
//! Frames map to trains by the first rule that applies: the acquisition's own `train_id`
//! dataset (u64 per frame) when it has one; else `--frames-per-train N`:
//! `first_train + (frame_number - first frame_number) / N` (N = 1 by default: one train per
//! frame; frames lost in acquisition leave their trains out).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, Extent, H5Type, SimpleExtents};

use crate::error::{h5, io, Error, Result};
use crate::output::{Output, Stop};
use crate::write::ensure_group;

/// How to convert.
#[derive(Debug, Clone)]
pub struct Xspress3Options {
    /// Karabo-style device name of the detector (sources `<device>` and `<device>:daqOutput`).
    pub device: String,
    pub proposal: u32,
    pub run: u32,
    /// Train ID of the first frame (when the acquisition has no `train_id` dataset).
    pub first_train: u64,
    /// Frames per train (when the acquisition has no `train_id` dataset); at least 1.
    pub frames_per_train: u64,
    pub overwrite: bool,
    /// When set, the conversion stops before the next dataset part and fails with
    /// [`Error::Interrupted`], leaving no output file and no partial file.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for Xspress3Options {
    fn default() -> Self {
        Xspress3Options {
            device: "XSPRESS3/DET/XSP3".into(),
            proposal: 0,
            run: 1,
            first_train: 1,
            frames_per_train: 1,
            overwrite: false,
            stop: None,
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct Xspress3Summary {
    pub path: PathBuf,
    pub frames: u64,
    pub trains: usize,
    /// Per-frame keys written (without `trainId`).
    pub keys: Vec<String>,
    /// Whether train IDs came from the acquisition's `train_id` dataset.
    pub train_ids_from_timing: bool,
    /// Partial files of this output left by earlier conversions killed outright, removed.
    pub stale_partials_removed: Vec<PathBuf>,
}

/// The acquisition's datasets that are not per frame.
const NOT_PER_FRAME: [&str; 2] = [
    xspress3::layout::EVENT_WIDTH,
    xspress3::layout::LOST_FRAME_RANGES,
];
/// Attributes that describe one part of a rollover set, not the acquisition.
const PER_PART_ATTRS: [&str; 3] = ["frames_in_file", "file_index", "NX_class"];
/// The timing dataset: one train ID per frame.
const TRAIN_ID: &str = "train_id";

fn key_name(dataset: &str) -> String {
    if dataset == xspress3::layout::DATA {
        "spectra".into()
    } else {
        dataset.into()
    }
}

/// One part of the acquisition, open.
struct Part {
    path: PathBuf,
    det: hdf5::Group,
    frames: u64,
}

fn open_part(path: &Path) -> Result<Part> {
    let f = hdf5::File::open(path).map_err(h5(path, "/"))?;
    let det = f
        .group(xspress3::layout::DETECTOR)
        .map_err(h5(path, xspress3::layout::DETECTOR))?;
    let fnum = det
        .dataset(xspress3::layout::FRAME_NUMBER)
        .map_err(h5(path, xspress3::layout::FRAME_NUMBER))?;
    let frames = fnum.shape().first().copied().unwrap_or(0) as u64;
    Ok(Part {
        path: path.to_path_buf(),
        det,
        frames,
    })
}

fn read_u64(part: &Part, name: &str) -> Result<Vec<u64>> {
    part.det
        .dataset(name)
        .and_then(|d| d.read_raw::<u64>())
        .map_err(h5(&part.path, name))
}

/// Converts the acquisition `parts` (in frame order) into `out_dir`.
pub fn convert_xspress3(
    parts: &[PathBuf],
    out_dir: &Path,
    opts: &Xspress3Options,
) -> Result<Xspress3Summary> {
    if opts.frames_per_train == 0 {
        return Err(Error::Xspress3 {
            path: out_dir.into(),
            msg: "--frames-per-train must be at least 1".into(),
        });
    }
    let parts: Vec<Part> = parts.iter().map(|p| open_part(p)).collect::<Result<_>>()?;
    let first = parts.first().ok_or_else(|| Error::Xspress3 {
        path: out_dir.into(),
        msg: "no acquisition file given".into(),
    })?;
    // Per-frame datasets: those of the first part with one row per frame.
    let mut frame_datasets = Vec::new();
    for name in first
        .det
        .member_names()
        .map_err(h5(&first.path, "detector"))?
    {
        let Ok(ds) = first.det.dataset(&name) else {
            continue;
        };
        if NOT_PER_FRAME.contains(&name.as_str()) || name == TRAIN_ID {
            continue;
        }
        if ds.shape().first().copied() == Some(first.frames as usize) {
            frame_datasets.push(name);
        }
    }
    frame_datasets.sort();
    // Train of every frame.
    let timing = first.det.link_exists(TRAIN_ID);
    let mut tids = Vec::new();
    let mut stamps = Vec::new();
    let mut fn0 = None;
    for p in &parts {
        let fnum = read_u64(p, xspress3::layout::FRAME_NUMBER)?;
        stamps.extend(read_u64(p, xspress3::layout::TIMESTAMP)?);
        if timing {
            tids.extend(read_u64(p, TRAIN_ID)?);
        } else {
            for f in fnum {
                let f0 = *fn0.get_or_insert(f);
                let t = f
                    .checked_sub(f0)
                    .map(|d| opts.first_train + d / opts.frames_per_train)
                    .ok_or_else(|| Error::Xspress3 {
                        path: p.path.clone(),
                        msg: format!("frame_number {f} is before the first frame {f0}"),
                    })?;
                tids.push(t);
            }
        }
    }
    if let Some(i) = tids.windows(2).position(|w| w[1] < w[0]) {
        return Err(Error::Xspress3 {
            path: first.path.clone(),
            msg: format!(
                "train IDs go backwards at frame {} ({} after {})",
                i + 1,
                tids[i + 1],
                tids[i]
            ),
        });
    }
    if tids.contains(&0) {
        return Err(Error::Xspress3 {
            path: first.path.clone(),
            msg: "train ID 0 is not allowed (0 marks padding in INDEX/trainId)".into(),
        });
    }
    let mut trains: BTreeMap<u64, (u64, u64)> = BTreeMap::new(); // tid -> (count, timestamp)
    for (&t, &s) in tids.iter().zip(&stamps) {
        trains.entry(t).or_insert((0, s)).0 += 1;
    }
    let train_ids: Vec<u64> = trains.keys().copied().collect();
    let counts: Vec<u64> = trains.values().map(|v| v.0).collect();
    let train_stamps: Vec<u64> = trains.values().map(|v| v.1).collect();
    let total: u64 = parts.iter().map(|p| p.frames).sum();

    // The run directory and its one file.
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let name = format!("RAW-R{:04}-DA01-S00000.h5", opts.run);
    let out = Output::start(&out_dir.join(&name), opts.overwrite)?;
    let stop = Stop::new(&opts.stop, &out.final_path);
    let written = (|| {
        let file = hdf5::File::create(&out.tmp).map_err(h5(&out.tmp, "/"))?;
        let w = |obj: &str| h5(&out.tmp, obj);
        let instrument = format!("{}:daqOutput", opts.device);
        // INDEX.
        let index = file.create_group("INDEX").map_err(w("INDEX"))?;
        write_1d(&index, "trainId", &train_ids).map_err(w("INDEX/trainId"))?;
        write_1d(&index, "timestamp", &train_stamps).map_err(w("INDEX/timestamp"))?;
        write_1d(&index, "flag", &vec![1i32; train_ids.len()]).map_err(w("INDEX/flag"))?;
        write_1d(&index, "origin", &vec![-1i32; train_ids.len()]).map_err(w("INDEX/origin"))?;
        let firsts: Vec<u64> = counts
            .iter()
            .scan(0u64, |a, &c| {
                let f = *a;
                *a += c;
                Some(f)
            })
            .collect();
        let ig = ensure_group(&file, &format!("INDEX/{instrument}/data")).map_err(w("INDEX"))?;
        write_1d(&ig, "first", &firsts).map_err(w("INDEX"))?;
        write_1d(&ig, "count", &counts).map_err(w("INDEX"))?;
        let ig = ensure_group(&file, &format!("INDEX/{}", opts.device)).map_err(w("INDEX"))?;
        write_1d(
            &ig,
            "first",
            &(0..train_ids.len() as u64).collect::<Vec<_>>(),
        )
        .map_err(w("INDEX"))?;
        write_1d(&ig, "count", &vec![1u64; train_ids.len()]).map_err(w("INDEX"))?;
        // INSTRUMENT: every per-frame dataset, part after part.
        let data = ensure_group(&file, &format!("INSTRUMENT/{instrument}/data"))
            .map_err(w("INSTRUMENT"))?;
        write_1d(&data, "trainId", &tids).map_err(w("trainId"))?;
        let mut buf = Vec::new();
        for ds_name in &frame_datasets {
            let src0 = first
                .det
                .dataset(ds_name)
                .map_err(h5(&first.path, ds_name))?;
            let dst =
                create_rows_like(&data, &key_name(ds_name), &src0, total).map_err(w(ds_name))?;
            let mut row = 0u64;
            for p in &parts {
                stop.check()?;
                let src = p.det.dataset(ds_name).map_err(h5(&p.path, ds_name))?;
                if src.shape().first().copied() != Some(p.frames as usize) {
                    return Err(Error::Xspress3 {
                        path: p.path.clone(),
                        msg: format!("{ds_name} has not one row per frame"),
                    });
                }
                h5util::copy_rows(&src, 0, &dst, row, p.frames, &mut buf)
                    .map_err(h5(&p.path, ds_name))?;
                row += p.frames;
            }
        }
        // CONTROL and RUN: the acquisition parameters.
        let values = parameters(first)?;
        let ctrl =
            ensure_group(&file, &format!("CONTROL/{}", opts.device)).map_err(w("CONTROL"))?;
        let run = ensure_group(&file, &format!("RUN/{}", opts.device)).map_err(w("RUN"))?;
        let n = train_ids.len();
        for (key, v) in &values {
            let kc = ctrl.create_group(key).map_err(w(key))?;
            v.write(&kc, n).map_err(w(key))?;
            write_1d(&kc, "timestamp", &train_stamps).map_err(w(key))?;
            let kr = run.create_group(key).map_err(w(key))?;
            v.write(&kr, 1).map_err(w(key))?;
            write_1d(&kr, "timestamp", &train_stamps[..1.min(n)]).map_err(w(key))?;
        }
        let class = run.create_group("classId").map_err(w("classId"))?;
        Param::Str("Xspress3".into())
            .write(&class, 1)
            .map_err(w("classId"))?;
        write_1d(&class, "timestamp", &train_stamps[..1.min(n)]).map_err(w("classId"))?;
        let mut ids = vec![
            format!("CONTROL/{}", opts.device),
            format!("INSTRUMENT/{instrument}/data"),
        ];
        ids.sort();
        write_metadata(
            &file,
            &out.tmp,
            &ids,
            opts.proposal,
            opts.run,
            "Xspress3 acquisition",
        )?;
        file.close().map_err(w("/"))?;
        Ok(())
    })();
    written.map_err(|e| out.explain(e))?;
    stop.check()?;
    let stale_partials_removed = out.stale_removed.clone();
    let path = out.commit()?;
    Ok(Xspress3Summary {
        path,
        frames: total,
        trains: train_ids.len(),
        keys: frame_datasets
            .iter()
            .map(|n| format!("data.{}", key_name(n)))
            .collect(),
        train_ids_from_timing: timing,
        stale_partials_removed,
    })
}

/// METADATA in format 1.3 (data source IDs `ids`, sorted, as `SECTION/NAME[/GROUP]`) and the
/// file's `writer` attribute.
pub(crate) fn write_metadata(
    file: &hdf5::File,
    path: &Path,
    ids: &[String],
    proposal: u32,
    run: u32,
    run_type: &str,
) -> Result<()> {
    let w = |obj: &str| h5(path, obj);
    let md = file.create_group("METADATA").map_err(w("METADATA"))?;
    let now = utc_stamp();
    for (k, v) in [
        ("dataFormatVersion", "1.3"),
        ("creationDate", now.as_str()),
        ("updateDate", now.as_str()),
        (
            "daqLibrary",
            concat!("euxfel_write ", env!("CARGO_PKG_VERSION")),
        ),
        ("karaboFramework", "none"),
        ("runType", run_type),
        ("sample", ""),
    ] {
        Param::Str(v.into()).write_value(&md, k, 1).map_err(w(k))?;
    }
    for (k, v) in [
        ("proposalNumber", proposal),
        ("runNumber", run),
        ("sequenceNumber", 0),
    ] {
        write_1d(&md, k, &[v]).map_err(w(k))?;
    }
    let ds = md.create_group("dataSources").map_err(w("dataSources"))?;
    let split = |i: usize| -> Vec<String> {
        ids.iter()
            .map(|s| {
                let (a, b) = s.split_once('/').unwrap_or((s, ""));
                [a, b][i].to_string()
            })
            .collect()
    };
    for (k, v) in [
        ("dataSourceId", ids.to_vec()),
        ("root", split(0)),
        ("deviceId", split(1)),
    ] {
        let v: Vec<VarLenUnicode> = v
            .iter()
            .map(|s| {
                s.parse().map_err(|_| Error::NotAscii {
                    what: "source name",
                    value: s.clone(),
                })
            })
            .collect::<Result<_>>()?;
        write_1d(&ds, k, &v).map_err(w(k))?;
    }
    h5util::attrs::set_str(
        file,
        "writer",
        concat!("euxfel_write ", env!("CARGO_PKG_VERSION")),
    )
    .map_err(w("/"))
}

pub(crate) fn write_1d<T: H5Type>(g: &hdf5::Group, name: &str, v: &[T]) -> hdf5::Result<Dataset> {
    g.new_dataset_builder().with_data(v).create(name)
}

/// A dataset of `rows` rows shaped, typed and chunked like `src`'s rows (first dimension
/// unlimited).
fn create_rows_like(
    g: &hdf5::Group,
    name: &str,
    src: &Dataset,
    rows: u64,
) -> hdf5::Result<Dataset> {
    let shape = src.shape();
    let entry = shape.get(1..).unwrap_or(&[]);
    let mut extents = vec![Extent::resizable(rows as usize)];
    extents.extend(entry.iter().map(|&d| Extent::fixed(d)));
    let mut chunk = src
        .chunk()
        .unwrap_or_else(|| vec![1024.min(rows.max(1) as usize)]);
    chunk.truncate(1);
    chunk.extend(entry.iter().map(|&d| d.max(1)));
    g.new_dataset_builder()
        .empty_as(&src.dtype()?)
        .chunk(chunk)
        .shape(SimpleExtents::from_vec(extents))
        .create(name)
}

/// One acquisition parameter, with its shape (empty for a scalar).
enum Param {
    U64(Vec<u64>, Vec<usize>),
    U32(Vec<u32>, Vec<usize>),
    U8(Vec<u8>, Vec<usize>),
    I64(Vec<i64>, Vec<usize>),
    F64(Vec<f64>, Vec<usize>),
    Str(String),
}

impl Param {
    /// `value` with `n` identical rows.
    fn write(&self, g: &hdf5::Group, n: usize) -> hdf5::Result<()> {
        self.write_value(g, "value", n)
    }

    fn write_value(&self, g: &hdf5::Group, name: &str, n: usize) -> hdf5::Result<()> {
        fn rows<T: H5Type + Clone>(
            g: &hdf5::Group,
            name: &str,
            v: &[T],
            shape: &[usize],
            n: usize,
        ) -> hdf5::Result<()> {
            let mut full = vec![n];
            full.extend(shape);
            let data: Vec<T> = (0..n).flat_map(|_| v.iter().cloned()).collect();
            g.new_dataset::<T>()
                .shape(full)
                .create(name)?
                .write_raw(&data)
        }
        match self {
            Param::U64(v, s) => rows(g, name, v, s, n),
            Param::U32(v, s) => rows(g, name, v, s, n),
            Param::U8(v, s) => rows(g, name, v, s, n),
            Param::I64(v, s) => rows(g, name, v, s, n),
            Param::F64(v, s) => rows(g, name, v, s, n),
            Param::Str(s) => {
                let v: VarLenUnicode = s.parse().map_err(|e| hdf5::Error::from(format!("{e}")))?;
                rows(g, name, &[v], &[], n)
            }
        }
    }
}

/// The detector group's attributes (minus per-part ones) and `event_width`.
fn parameters(part: &Part) -> Result<BTreeMap<String, Param>> {
    let mut out = BTreeMap::new();
    let names = part.det.attr_names().map_err(h5(&part.path, "detector"))?;
    for name in names {
        if PER_PART_ATTRS.contains(&name.as_str()) {
            continue;
        }
        let a = part.det.attr(&name).map_err(h5(&part.path, &name))?;
        let shape = a.shape();
        let td = a
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(h5(&part.path, &name))?;
        let e = h5(&part.path, &name);
        let p = match td {
            TypeDescriptor::Unsigned(hdf5::types::IntSize::U8) => {
                Param::U64(a.read_raw().map_err(e)?, shape)
            }
            TypeDescriptor::Unsigned(hdf5::types::IntSize::U4) => {
                Param::U32(a.read_raw().map_err(e)?, shape)
            }
            TypeDescriptor::Unsigned(_) | TypeDescriptor::Boolean => {
                Param::U8(a.read_raw().map_err(e)?, shape)
            }
            TypeDescriptor::Integer(_) => Param::I64(a.read_raw().map_err(e)?, shape),
            TypeDescriptor::Float(_) => Param::F64(a.read_raw().map_err(e)?, shape),
            TypeDescriptor::VarLenUnicode => Param::Str(
                a.read_scalar::<VarLenUnicode>()
                    .map_err(e)?
                    .as_str()
                    .to_string(),
            ),
            TypeDescriptor::VarLenAscii => Param::Str(
                a.read_scalar::<hdf5::types::VarLenAscii>()
                    .map_err(e)?
                    .as_str()
                    .to_string(),
            ),
            // Types without a EuXFEL counterpart here are left out.
            _ => continue,
        };
        out.insert(name, p);
    }
    let ew = part
        .det
        .dataset(xspress3::layout::EVENT_WIDTH)
        .and_then(|d| Ok((d.read_raw::<u32>()?, d.shape())))
        .map_err(h5(&part.path, xspress3::layout::EVENT_WIDTH))?;
    out.insert(xspress3::layout::EVENT_WIDTH.into(), Param::U32(ew.0, ew.1));
    Ok(out)
}

/// Now as `YYYYmmddTHHMMSSZ` (the DAQ's METADATA date form).
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
