//! [`AcqFileWriter`]: writes Xspress3 frames into the NeXus layout of [`super::layout`].
//!
//! Frames arrive in batches straight from ring memory (or a receiver's message buffers). A batch
//! that is one whole `data` chunk, aligned to a chunk boundary, goes to disk with one HDF5 direct
//! chunk write from that memory; anything else goes through an ordinary hyperslab write, still
//! without a copy. `data` grows by one resize per batch, never per frame.
//!
//! The per-frame columns (the nine scalers de-interleaved, the derived dead-time correction and
//! output count rate, frame numbers, timestamps) collect in buffers sized once at creation and are
//! written one whole column chunk at a time, and at every flush: a batch then costs two HDF5 calls
//! instead of thirty, and after a flush every dataset has the same length.
//!
//! A failure leaves what was written readable: the file is flushed every `flush_interval` (and
//! SWMR readers can follow it with `--swmr`), and the drop record and final attributes are written
//! by [`AcqFileWriter::finish`], which reopens each file without SWMR to do so. Each file is built
//! under a hidden staging name and renamed once readers can open it, so a kill at any moment never
//! leaves an unreadable file under the acquisition's name.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use acq_core::deadtime::{channel_scalers, dead_time, output_count_rate};
use acq_core::detector::{AcqParams, Recording};
use acq_core::engine::LostRange;
use acq_core::geometry::{FrameMeta, Geometry, Scaler, N_SCALERS};
use hdf5::{Dataset, File, Group, H5Type};
use ndarray::{ArrayView, ArrayView2, ArrayView3};

use super::layout::{self, chunk_frames};
use super::nexus;
use super::roi::Roi;
use h5util::attrs::{set_scalar, set_str};

/// Where and how files are written.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub dir: PathBuf,
    /// Base name, relative to `dir` (checked by [`layout::check_name`]).
    pub name: String,
    /// Start a new file after this many frames (`NAME_00000.h5`, ...); `None`: one file.
    pub frames_per_file: Option<u64>,
    pub overwrite: bool,
    /// Write with SWMR so readers can follow the file live.
    pub swmr: bool,
    pub flush_interval: Duration,
}

/// Facts about the acquisition, written as attributes of the detector group.
#[derive(Clone, Debug, PartialEq)]
pub struct AcqDescription {
    /// Channels and recorded bins per frame.
    pub geometry: Geometry,
    /// The detector bins the recorded bins are made of (`--bins`, `--rebin`).
    pub recording: Recording,
    pub params: AcqParams,
    pub clock_hz: f64,
    /// One per channel.
    pub event_widths: Vec<u32>,
    /// Per channel `[low0, high0, low1, high1]`.
    pub windows: Vec<[u32; 4]>,
    /// Per channel AllGood threshold.
    pub good_thresholds: Vec<u32>,
    /// Software regions of interest, summed per frame and channel from the full spectra by the
    /// detector backend (the sums come with each batch).
    pub rois: Vec<Roi>,
    /// "simulated SDK" or "libxspress3".
    pub backend: String,
    /// Who wrote the file, e.g. "xsp3-acquire 0.1.0".
    pub software: String,
}

/// Frames that did not reach the file, by stage. Written into every file at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropRecord {
    /// Frames the SDK overwrote before they were read (engine), or missing from the stream
    /// (receiver).
    pub frames_lost: u64,
    pub lost_ranges: Vec<LostRange>,
    /// Lost ranges that were counted but not listed.
    pub lost_ranges_overflow: u64,
    /// Overruns the SDK reported itself.
    pub sdk_overruns: u64,
    /// Gaps in the stream's message numbers (receiver only).
    pub stream_gaps: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {what}: {source}")]
    Hdf5 {
        path: PathBuf,
        what: String,
        #[source]
        source: hdf5::Error,
    },
    #[error("{path} exists; pass --overwrite to replace it")]
    Exists { path: PathBuf },
    #[error("cannot remove the earlier part {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot name the new file {to} (built as {from}): {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("batch of {frames} frames has {got} {what} words, expected {expected}")]
    BatchShape {
        frames: usize,
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{0}")]
    Name(#[from] layout::NameError),
    #[error(
        "disk full: {free} bytes free in {dir}, the writer keeps {reserve} in reserve to close \
         its files cleanly; stopped after {frames} frames"
    )]
    DiskFull {
        dir: PathBuf,
        free: u64,
        reserve: u64,
        frames: u64,
    },
    #[error("cannot check free space in {dir}: {source}")]
    FreeSpace {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct OpenFile {
    path: PathBuf,
    file: File,
    /// Frames in `data`.
    rows: u64,
    /// Frames in the column datasets (`rows` minus the frames waiting in `Scratch`).
    column_rows: u64,
    data: Dataset,
    scalers: Vec<Dataset>,
    dtc: Dataset,
    saturated: Dataset,
    ocr: Dataset,
    frame_number: Dataset,
    timestamp: Dataset,
    /// Per ROI: the sums and the dead-time-corrected sums.
    rois: Vec<(Dataset, Dataset)>,
}

/// Per-frame columns not yet written: at most one column chunk plus one batch, allocated once.
struct Scratch {
    scalers: Vec<Vec<u32>>,
    dtc: Vec<f64>,
    saturated: Vec<u8>,
    ocr: Vec<f64>,
    frame_number: Vec<u64>,
    timestamp: Vec<u64>,
    /// Per ROI: sums and dead-time-corrected sums, `[frame][chan]`.
    rois: Vec<(Vec<u64>, Vec<f64>)>,
}

/// See the module documentation.
pub struct AcqFileWriter {
    config: OutputConfig,
    desc: AcqDescription,
    chunk: usize,
    /// Rows per chunk of the column datasets (a multiple of `chunk`).
    column_chunk: usize,
    current: Option<OpenFile>,
    next_index: u32,
    finished_files: Vec<(PathBuf, u64)>,
    frames_written: u64,
    frames_flushed: u64,
    last_flush: Instant,
    /// When the writer was created: every part's NXentry `start_time`.
    started: SystemTime,
    scratch: Scratch,
    /// Bytes kept free on the output filesystem: HDF5 cannot close a file consistently once
    /// the disk is full, so the writer stops before that.
    reserve_bytes: u64,
    /// The first write error, recorded in the files at the end.
    error: Option<String>,
    /// A failure of the source (detector, or the sender of a stream) and the first frame it
    /// cost, recorded in the files at the end.
    acquisition_error: Option<(String, u64)>,
}

fn h5err(path: &Path, what: impl Into<String>) -> impl FnOnce(hdf5::Error) -> WriteError {
    let path = path.to_path_buf();
    let what = what.into();
    move |source| WriteError::Hdf5 { path, what, source }
}

impl AcqFileWriter {
    /// Checks the name, creates the output directory and the first file.
    ///
    /// Every file the acquisition may write is checked first: without `overwrite`, an existing
    /// file of the name, or any existing rollover part it may reach (`NAME_NNNNN.h5` below
    /// `ceil(frames / frames_per_file)`, any index when the frame count is unbounded), refuses the
    /// start. With `overwrite`, parts of an earlier acquisition of the name are removed, so no
    /// stale later part survives a shorter run.
    pub fn create(config: OutputConfig, desc: AcqDescription) -> Result<Self, WriteError> {
        layout::check_name(&config.name)?;
        claim_parts(&config, desc.params.n_frames)?;
        let chunk = chunk_frames(desc.geometry);
        let column_chunk = chunk.max(1024);
        let nch = desc.geometry.n_channels();
        let rows = column_chunk + chunk;
        let cap = rows * nch;
        let desc_rois = desc.rois.len();
        let mut writer = AcqFileWriter {
            config,
            desc,
            chunk,
            column_chunk,
            current: None,
            next_index: 0,
            finished_files: Vec::new(),
            frames_written: 0,
            frames_flushed: 0,
            last_flush: Instant::now(),
            started: SystemTime::now(),
            scratch: Scratch {
                scalers: (0..N_SCALERS).map(|_| Vec::with_capacity(cap)).collect(),
                dtc: Vec::with_capacity(cap),
                saturated: Vec::with_capacity(cap),
                ocr: Vec::with_capacity(cap),
                frame_number: Vec::with_capacity(rows),
                timestamp: Vec::with_capacity(rows),
                rois: (0..desc_rois)
                    .map(|_| (Vec::with_capacity(cap), Vec::with_capacity(cap)))
                    .collect(),
            },
            reserve_bytes: 0,
            error: None,
            acquisition_error: None,
        };
        let columns = N_SCALERS * 4 + 8 + 8 + 1 + 8 + 8;
        let batch_bytes = chunk * (writer.desc.geometry.mca_words() * 4 + nch * columns);
        writer.reserve_bytes = 2 * batch_bytes as u64 + (1 << 20);
        writer.open_next()?;
        Ok(writer)
    }

    /// The acquisition the files describe.
    pub fn description(&self) -> &AcqDescription {
        &self.desc
    }

    /// Frames per `data` chunk; batches of this size, aligned, are written as whole chunks.
    pub fn chunk_frames(&self) -> usize {
        self.chunk
    }

    pub fn frames_written(&self) -> u64 {
        self.frames_written
    }

    /// Frames written and flushed to disk: what a crash cannot take away.
    pub fn frames_flushed(&self) -> u64 {
        self.frames_flushed
    }

    /// The files so far, the current one last.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.finished_files
            .iter()
            .map(|(p, _)| p.clone())
            .chain(self.current.iter().map(|f| f.path.clone()))
            .collect()
    }

    fn path_for(&self, index: u32) -> Result<PathBuf, WriteError> {
        let part = self.config.frames_per_file.map(|_| index);
        Ok(layout::confine(
            &self.config.dir,
            &layout::file_name(&self.config.name, part),
        )?)
    }

    fn open_next(&mut self) -> Result<(), WriteError> {
        let path = self.path_for(self.next_index)?;
        self.next_index += 1;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| WriteError::Dir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        if !self.config.overwrite && path.exists() {
            return Err(WriteError::Exists { path });
        }
        let mut builder = File::with_options();
        if self.config.swmr {
            // SWMR needs the 1.10 format. Without SWMR the default (oldest) format is kept: its
            // superblock has no "open for writing" flag, so a file flushed before a crash opens
            // as it is.
            builder.with_fapl(|p| {
                p.libver_bounds(
                    hdf5::file::LibraryVersion::V110,
                    hdf5::file::LibraryVersion::V110,
                )
            });
        }
        // The file is built under a hidden staging name and gets its own name only once its
        // layout is on disk and, with SWMR, SWMR writing has started: a process killed meanwhile
        // leaves a `.NAME.h5.creating`, never a file of the acquisition's name that no reader can
        // open (a truncated file, or a superblock marked "open for writing" but not for SWMR,
        // which SWMR readers refuse as well as plain ones).
        let staging = staging_path(&path);
        let file = builder
            .create(&staging)
            .map_err(h5err(&staging, "create"))?;
        let open = self.build_layout(file, &path).and_then(|open| {
            if self.config.swmr {
                open.file
                    .start_swmr()
                    .map_err(h5err(&path, "start SWMR writing"))?;
            } else {
                open.file.flush().map_err(h5err(&path, "flush"))?;
            }
            publish(&staging, &path, self.config.overwrite)?;
            Ok(open)
        });
        if open.is_err() {
            // Best effort: the error being returned matters more than the staging file.
            let _ = std::fs::remove_file(&staging);
        }
        self.current = Some(open?);
        Ok(())
    }

    fn build_layout(&self, file: File, path: &Path) -> Result<OpenFile, WriteError> {
        let g = self.desc.geometry;
        let (nch, nbins) = (g.n_channels(), g.n_bins());
        let err = |what: &str| h5err(path, what.to_string());
        let entry = file
            .create_group(layout::ENTRY)
            .map_err(err("create /entry"))?;
        set_str(&entry, "NX_class", "NXentry").map_err(err("/entry attributes"))?;
        let instrument = file
            .create_group(layout::INSTRUMENT)
            .map_err(err("create instrument group"))?;
        set_str(&instrument, "NX_class", "NXinstrument").map_err(err("instrument attributes"))?;
        let det = file
            .create_group(layout::DETECTOR)
            .map_err(err("create detector group"))?;
        self.describe(&det).map_err(err("detector attributes"))?;

        let chunk = self.chunk;
        let row_chunk = self.column_chunk;
        let data = extensible::<u32>(&det, layout::DATA, &[nch, nbins], chunk)
            .map_err(err("create data"))?;
        set_str(&data, "units", "counts").map_err(err("data attributes"))?;
        set_str(&data, "interpretation", "spectrum").map_err(err("data attributes"))?;
        let scalers = Scaler::ALL
            .iter()
            .map(|&s| {
                let ds = extensible::<u32>(&det, s.name(), &[nch], row_chunk)?;
                set_str(&ds, "units", &nexus::scaler_units(s, self.desc.clock_hz))?;
                Ok(ds)
            })
            .collect::<hdf5::Result<Vec<_>>>()
            .map_err(err("create scaler datasets"))?;
        let dtc = extensible::<f64>(&det, layout::DEAD_TIME_CORRECTION, &[nch], row_chunk)
            .map_err(err("create dead_time_correction"))?;
        set_str(
            &dtc,
            "formula",
            "time / (time - (all_events * (event_width + 1) + reset_ticks)); NaN where dead_time_saturated",
        )
        .map_err(err("dead_time_correction attributes"))?;
        let saturated = extensible::<u8>(&det, layout::DEAD_TIME_SATURATED, &[nch], row_chunk)
            .map_err(err("create dead_time_saturated"))?;
        let ocr = extensible::<f64>(&det, layout::OUTPUT_COUNT_RATE, &[nch], row_chunk)
            .map_err(err("create output_count_rate"))?;
        set_str(&ocr, "units", "counts/s").map_err(err("output_count_rate attributes"))?;
        set_str(&ocr, "formula", "all_good * clock_hz / total_ticks")
            .map_err(err("output_count_rate attributes"))?;
        let frame_number = extensible::<u64>(&det, layout::FRAME_NUMBER, &[], row_chunk)
            .map_err(err("create frame_number"))?;
        let timestamp = extensible::<u64>(&det, layout::TIMESTAMP, &[], row_chunk)
            .map_err(err("create timestamp"))?;
        set_str(&timestamp, "units", "ns").map_err(err("timestamp attributes"))?;
        set_str(&timestamp, "epoch", "1970-01-01T00:00:00Z")
            .map_err(err("timestamp attributes"))?;
        let width = det
            .new_dataset_builder()
            .with_data(&self.desc.event_widths)
            .create(layout::EVENT_WIDTH)
            .map_err(err("create event_width"))?;
        set_str(&width, "units", &nexus::tick_units(self.desc.clock_hz))
            .map_err(err("event_width attributes"))?;
        let count_time = det
            .new_dataset::<f64>()
            .create(layout::COUNT_TIME)
            .and_then(|ds| {
                ds.write_scalar(
                    &(f64::from(self.desc.params.exposure_ticks) / self.desc.clock_hz),
                )?;
                Ok(ds)
            })
            .map_err(err("create count_time"))?;
        set_str(&count_time, "units", "s").map_err(err("count_time attributes"))?;
        let bins: Vec<u32> = (0..nbins as u32)
            .map(|i| self.desc.recording.detector_bin(i))
            .collect();
        nexus::write_plottable(&file, &entry, nch, &bins, self.started)
            .map_err(err("NXdata group and default attributes"))?;
        let rois = self
            .desc
            .rois
            .iter()
            .map(|roi| {
                let sums = extensible::<u64>(&det, &roi.dataset(), &[nch], row_chunk)?;
                set_str(&sums, "units", "counts")?;
                // Per channel [low, high]; -1, -1 where the ROI has no range.
                let ranges: Vec<i64> = roi
                    .ranges
                    .iter()
                    .flat_map(|r| r.map_or([-1, -1], |[l, h]| [i64::from(l), i64::from(h)]))
                    .collect();
                sums.new_attr::<i64>()
                    .shape((nch, 2))
                    .create("ranges")?
                    .write_raw(&ranges)?;
                let dtc = extensible::<f64>(&det, &roi.dtc_dataset(), &[nch], row_chunk)?;
                set_str(&dtc, "units", "counts")?;
                set_str(
                    &dtc,
                    "formula",
                    &format!("{} * dead_time_correction", roi.dataset()),
                )?;
                Ok((sums, dtc))
            })
            .collect::<hdf5::Result<Vec<_>>>()
            .map_err(err("create ROI datasets"))?;
        Ok(OpenFile {
            path: path.to_path_buf(),
            file,
            rows: 0,
            column_rows: 0,
            data,
            scalers,
            dtc,
            saturated,
            ocr,
            frame_number,
            timestamp,
            rois,
        })
    }

    fn describe(&self, det: &Group) -> hdf5::Result<()> {
        let d = &self.desc;
        set_str(det, "NX_class", "NXdetector")?;
        set_str(det, "description", "Quantum Detectors Xspress3")?;
        set_str(det, "backend", &d.backend)?;
        set_str(det, "software", &d.software)?;
        set_scalar(det, "n_channels", d.geometry.n_channels() as u32)?;
        set_scalar(det, "n_bins", d.geometry.n_bins() as u32)?;
        set_scalar(det, "first_bin", d.recording.first_bin)?;
        set_scalar(det, "rebin", d.recording.rebin)?;
        set_scalar(det, "clock_hz", d.clock_hz)?;
        set_scalar(det, "exposure_ticks", d.params.exposure_ticks)?;
        set_scalar(
            det,
            "exposure_time",
            d.params.exposure_ticks as f64 / d.clock_hz,
        )?;
        set_scalar(det, "frames_requested", d.params.n_frames)?;
        set_str(det, "trigger_mode", d.params.trigger.name())?;
        set_scalar(det, "gap_ns", d.params.gap.nanos())?;
        set_scalar(det, "debounce_ticks", u32::from(d.params.debounce_ticks))?;
        set_scalar(det, "invert_f0", u32::from(d.params.invert_f0))?;
        set_scalar(det, "invert_veto", u32::from(d.params.invert_veto))?;
        set_scalar(det, "chunk_frames", self.chunk as u32)?;
        let windows: Vec<u32> = d.windows.iter().flatten().copied().collect();
        if windows.len() == d.geometry.n_channels() * 4 {
            det.new_attr::<u32>()
                .shape((d.geometry.n_channels(), 4))
                .create("windows")?
                .write_raw(&windows)?;
        }
        if d.good_thresholds.len() == d.geometry.n_channels() {
            det.new_attr::<u32>()
                .shape(d.good_thresholds.len())
                .create("good_thresholds")?
                .write_raw(&d.good_thresholds)?;
        }
        Ok(())
    }

    /// Writes a batch: `meta.len()` frames whose MCA (`[frame][chan][bin]`), scalers
    /// (`[frame][chan][scaler]`) and ROI sums (`[frame][roi][chan]`, in the description's ROI
    /// order; empty without ROIs) are given. Splits it across files at rollover.
    pub fn write_batch(
        &mut self,
        mca: &[u32],
        scalers: &[u32],
        rois: &[u64],
        meta: &[FrameMeta],
    ) -> Result<(), WriteError> {
        let result = self.write_batch_inner(mca, scalers, rois, meta);
        if let Err(e) = &result {
            self.error.get_or_insert_with(|| e.to_string());
        }
        result
    }

    /// ROI sums per frame.
    fn roi_words(&self) -> usize {
        self.desc.rois.len() * self.desc.geometry.n_channels()
    }

    fn write_batch_inner(
        &mut self,
        mca: &[u32],
        scalers: &[u32],
        rois: &[u64],
        meta: &[FrameMeta],
    ) -> Result<(), WriteError> {
        let n = meta.len();
        let g = self.desc.geometry;
        let rw = self.roi_words();
        check_len(n, "MCA", mca.len(), n * g.mca_words())?;
        check_len(n, "scaler", scalers.len(), n * g.scaler_words())?;
        check_len(n, "ROI", rois.len(), n * rw)?;
        self.check_free_space()?;
        let mut done = 0;
        while done < n {
            let room = match self.config.frames_per_file {
                Some(limit) => {
                    let rows = self.current.as_ref().map_or(0, |f| f.rows);
                    if rows >= limit {
                        self.roll_over()?;
                        continue;
                    }
                    (limit - rows) as usize
                }
                None => usize::MAX,
            };
            let take = room.min(n - done).min(self.chunk);
            self.write_part(
                &mca[done * g.mca_words()..(done + take) * g.mca_words()],
                &scalers[done * g.scaler_words()..(done + take) * g.scaler_words()],
                &rois[done * rw..(done + take) * rw],
                &meta[done..done + take],
            )?;
            done += take;
        }
        if self.last_flush.elapsed() >= self.config.flush_interval {
            self.flush()?;
        }
        Ok(())
    }

    fn write_part(
        &mut self,
        mca: &[u32],
        scalers: &[u32],
        rois: &[u64],
        meta: &[FrameMeta],
    ) -> Result<(), WriteError> {
        let n = meta.len();
        let g = self.desc.geometry;
        let chunk = self.chunk;
        let Some(f) = self.current.as_mut() else {
            return Ok(());
        };
        let start = f.rows as usize;
        if let Err(e) = write_data(f, mca, n, chunk, (g.n_channels(), g.n_bins())) {
            // Take back the rows of the failed batch so readers never see half-written frames.
            let _ = f.data.resize((start, g.n_channels(), g.n_bins()));
            return Err(e);
        }
        f.rows += n as u64;
        self.frames_written += n as u64;
        self.derive(scalers, meta);
        self.derive_rois(rois, n);
        if self.scratch.frame_number.len() >= self.column_chunk {
            self.write_columns()?;
        }
        Ok(())
    }

    /// Writes the buffered per-frame columns to the current file.
    fn write_columns(&mut self) -> Result<(), WriteError> {
        let Some(f) = self.current.as_mut() else {
            return Ok(());
        };
        let s = &mut self.scratch;
        let n = s.frame_number.len();
        if n == 0 {
            return Ok(());
        }
        let nch = self.desc.geometry.n_channels();
        let start = f.column_rows as usize;
        let end = start + n;
        let err = |what: &str| h5err(&f.path, what.to_string());
        for (ds, column) in f.scalers.iter().zip(&s.scalers) {
            append_rows(ds, start, column, nch).map_err(err("write scalers"))?;
        }
        append_rows(&f.dtc, start, &s.dtc, nch).map_err(err("write dead_time_correction"))?;
        append_rows(&f.saturated, start, &s.saturated, nch)
            .map_err(err("write dead_time_saturated"))?;
        append_rows(&f.ocr, start, &s.ocr, nch).map_err(err("write output_count_rate"))?;
        for (ds, column, what) in [
            (&f.frame_number, &s.frame_number, "write frame_number"),
            (&f.timestamp, &s.timestamp, "write timestamp"),
        ] {
            ds.resize(end).map_err(err(what))?;
            ds.write_slice(column, start..end).map_err(err(what))?;
        }
        for ((sums_ds, dtc_ds), (sums, dtc)) in f.rois.iter().zip(s.rois.iter_mut()) {
            append_rows(sums_ds, start, sums, nch).map_err(err("write ROI sums"))?;
            append_rows(dtc_ds, start, dtc, nch)
                .map_err(err("write ROI dead-time-corrected sums"))?;
            sums.clear();
            dtc.clear();
        }
        f.column_rows = end as u64;
        for column in s.scalers.iter_mut() {
            column.clear();
        }
        s.dtc.clear();
        s.saturated.clear();
        s.ocr.clear();
        s.frame_number.clear();
        s.timestamp.clear();
        Ok(())
    }

    /// Refuses to write when the output filesystem is nearly full (see `reserve_bytes`).
    fn check_free_space(&self) -> Result<(), WriteError> {
        let dir = &self.config.dir;
        let st = rustix::fs::statvfs(dir).map_err(|e| WriteError::FreeSpace {
            dir: dir.clone(),
            source: e.into(),
        })?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < self.reserve_bytes {
            return Err(WriteError::DiskFull {
                dir: dir.clone(),
                free,
                reserve: self.reserve_bytes,
                frames: self.frames_written,
            });
        }
        Ok(())
    }

    /// Appends the columns of a part to the buffers.
    fn derive(&mut self, scalers: &[u32], meta: &[FrameMeta]) {
        let nch = self.desc.geometry.n_channels();
        let s = &mut self.scratch;
        for (i, m) in meta.iter().enumerate() {
            s.frame_number.push(m.frame_number);
            s.timestamp.push(m.timestamp_ns);
            let frame = &scalers[i * nch * N_SCALERS..(i + 1) * nch * N_SCALERS];
            for chan in 0..nch {
                let Some(sc) = channel_scalers(frame, chan) else {
                    continue;
                };
                for (column, &value) in s.scalers.iter_mut().zip(sc.iter()) {
                    column.push(value);
                }
                let width = self.desc.event_widths.get(chan).copied().unwrap_or(0);
                match dead_time(sc, width) {
                    Ok(dt) => {
                        s.dtc.push(dt.correction);
                        s.saturated.push(0);
                    }
                    Err(_) => {
                        s.dtc.push(f64::NAN);
                        s.saturated.push(1);
                    }
                }
                s.ocr
                    .push(output_count_rate(sc, self.desc.clock_hz).unwrap_or(f64::NAN));
            }
        }
    }

    /// Appends the ROI sums of a part (`[frame][roi][chan]`) and their dead-time-corrected
    /// values (after `derive`, whose corrections they use).
    fn derive_rois(&mut self, rois: &[u64], n: usize) {
        let nch = self.desc.geometry.n_channels();
        let rw = self.roi_words();
        let s = &mut self.scratch;
        let first = s.dtc.len() - n * nch;
        for (index, (sums, dtc)) in s.rois.iter_mut().enumerate() {
            for i in 0..n {
                let frame = &rois[i * rw + index * nch..i * rw + (index + 1) * nch];
                sums.extend_from_slice(frame);
                for (chan, &sum) in frame.iter().enumerate() {
                    dtc.push(sum as f64 * s.dtc[first + i * nch + chan]);
                }
            }
        }
    }

    /// Flushes the current file: everything written so far survives a crash.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.write_columns()?;
        if let Some(f) = &self.current {
            f.file.flush().map_err(h5err(&f.path, "flush"))?;
        }
        self.frames_flushed = self.frames_written;
        self.last_flush = Instant::now();
        Ok(())
    }

    fn roll_over(&mut self) -> Result<(), WriteError> {
        self.write_columns()?;
        if let Some(f) = self.current.take() {
            f.file.flush().map_err(h5err(&f.path, "flush"))?;
            self.finished_files.push((f.path, f.rows));
        }
        self.frames_flushed = self.frames_written;
        self.open_next()
    }

    /// Records that the source of the frames failed: `message`, and `frame`, the first frame the
    /// failure cost. The files get `acquisition_error`, `acquisition_error_frame` and
    /// `complete = 0`. The first failure recorded is kept.
    pub fn record_acquisition_error(&mut self, message: &str, frame: u64) {
        if self.acquisition_error.is_none() {
            self.acquisition_error = Some((message.to_string(), frame));
        }
    }

    /// Closes the current file and writes the final attributes and the drop record into every
    /// file of the acquisition. Returns the files with their frame counts.
    pub fn finish(mut self, drops: &DropRecord) -> Result<Vec<(PathBuf, u64)>, WriteError> {
        self.write_columns()?;
        if let Some(f) = self.current.take() {
            let OpenFile {
                path, file, rows, ..
            } = f;
            file.flush().map_err(h5err(&path, "flush"))?;
            file.close().map_err(h5err(&path, "close"))?;
            self.finished_files.push((path, rows));
        }
        let total = self.frames_written;
        let n_files = self.finished_files.len();
        let ended = SystemTime::now();
        for (index, (path, rows)) in self.finished_files.iter().enumerate() {
            let file = File::open_rw(path).map_err(h5err(path, "reopen to finish"))?;
            let det = file
                .group(layout::DETECTOR)
                .map_err(h5err(path, "open detector group"))?;
            let end = FinalRecord {
                drops,
                rows: *rows,
                total,
                index,
                n_files,
                error: self.error.as_deref(),
                acquisition_error: self
                    .acquisition_error
                    .as_ref()
                    .map(|(m, f)| (m.as_str(), *f)),
            };
            write_final(&det, &end).map_err(h5err(path, "write final attributes"))?;
            let entry = file
                .group(layout::ENTRY)
                .map_err(h5err(path, "open entry group"))?;
            nexus::set_time(&entry, layout::END_TIME, ended)
                .map_err(h5err(path, "write end_time"))?;
            file.close().map_err(h5err(path, "close"))?;
        }
        Ok(self.finished_files)
    }
}

/// The hidden name a file of the acquisition is built under: `.NAME.h5.creating` beside it.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".creating");
    path.with_file_name(name)
}

/// Gives the staged file its name; without `overwrite`, never over an existing file.
fn publish(staging: &Path, path: &Path, overwrite: bool) -> Result<(), WriteError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let flags = if overwrite {
        RenameFlags::empty()
    } else {
        RenameFlags::NOREPLACE
    };
    match renameat_with(CWD, staging, CWD, path, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(WriteError::Exists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(WriteError::Rename {
            from: staging.to_path_buf(),
            to: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// See [`AcqFileWriter::create`].
fn claim_parts(config: &OutputConfig, n_frames: u64) -> Result<(), WriteError> {
    let Some(per_file) = config.frames_per_file.filter(|&n| n > 0) else {
        let path = layout::confine(&config.dir, &layout::file_name(&config.name, None))?;
        if !config.overwrite && path.exists() {
            return Err(WriteError::Exists { path });
        }
        return Ok(());
    };
    let reachable = match n_frames {
        0 => u64::MAX,
        n => n.div_ceil(per_file),
    };
    for (index, path) in layout::existing_parts(&config.dir, &config.name) {
        // Confined like the parts that will be written: a planted link is refused, not followed.
        layout::confine(&config.dir, &layout::file_name(&config.name, Some(index)))?;
        if config.overwrite {
            std::fs::remove_file(&path).map_err(|source| WriteError::Remove {
                path: path.clone(),
                source,
            })?;
        } else if u64::from(index) < reachable {
            return Err(WriteError::Exists { path });
        }
    }
    Ok(())
}

fn check_len(
    frames: usize,
    what: &'static str,
    got: usize,
    expected: usize,
) -> Result<(), WriteError> {
    if got == expected {
        Ok(())
    } else {
        Err(WriteError::BatchShape {
            frames,
            what,
            got,
            expected,
        })
    }
}

/// Writes `n` frames of `data` at the file's end: one resize, then one direct chunk write when
/// they are a whole aligned chunk, else a hyperslab write.
fn write_data(
    f: &OpenFile,
    mca: &[u32],
    n: usize,
    chunk: usize,
    (nch, nbins): (usize, usize),
) -> Result<(), WriteError> {
    let start = f.rows as usize;
    let end = start + n;
    let err = |what: &str| h5err(&f.path, what.to_string());
    f.data
        .resize((end, nch, nbins))
        .map_err(err("extend data"))?;
    if n == chunk && start % chunk == 0 {
        write_chunk(&f.data, start, mca).map_err(err("direct chunk write of data"))
    } else {
        let view = ArrayView3::from_shape((n, nch, nbins), mca)
            .map_err(|e| err("data view")(hdf5::Error::from(e.to_string())))?;
        f.data
            .write_slice(view, ndarray::s![start..end, .., ..])
            .map_err(err("write data"))
    }
}

/// What the end of an acquisition records in each of its files.
struct FinalRecord<'a> {
    drops: &'a DropRecord,
    rows: u64,
    total: u64,
    index: usize,
    n_files: usize,
    error: Option<&'a str>,
    acquisition_error: Option<(&'a str, u64)>,
}

fn write_final(det: &Group, end: &FinalRecord<'_>) -> hdf5::Result<()> {
    let drops = end.drops;
    set_scalar(det, "frames_in_file", end.rows)?;
    set_scalar(det, "frames_written_total", end.total)?;
    set_scalar(det, "file_index", end.index as u32)?;
    set_scalar(det, "file_count", end.n_files as u32)?;
    if let Some(e) = end.error {
        set_str(det, "write_error", e)?;
    }
    if let Some((message, frame)) = end.acquisition_error {
        set_str(det, "acquisition_error", message)?;
        set_scalar(det, "acquisition_error_frame", frame)?;
    }
    set_scalar(det, "frames_lost", drops.frames_lost)?;
    set_scalar(det, "lost_ranges_overflow", drops.lost_ranges_overflow)?;
    set_scalar(det, "sdk_overruns", drops.sdk_overruns)?;
    set_scalar(det, "stream_gaps", drops.stream_gaps)?;
    let complete = drops.frames_lost == 0
        && drops.stream_gaps == 0
        && end.error.is_none()
        && end.acquisition_error.is_none();
    set_scalar(det, "complete", complete as u8)?;
    let ranges: Vec<u64> = drops
        .lost_ranges
        .iter()
        .flat_map(|r| [r.first, r.count])
        .collect();
    let ranges = ArrayView2::from_shape((drops.lost_ranges.len(), 2), &ranges)
        .map_err(|e| hdf5::Error::from(e.to_string()))?;
    if det.link_exists(layout::LOST_FRAME_RANGES) {
        det.unlink(layout::LOST_FRAME_RANGES)?;
    }
    det.new_dataset_builder()
        .with_data(ranges)
        .create(layout::LOST_FRAME_RANGES)?;
    Ok(())
}

/// A dataset of `entry` per row with an unlimited first axis and `chunk_rows` rows per chunk.
fn extensible<T: H5Type>(
    group: &Group,
    name: &str,
    entry: &[usize],
    chunk_rows: usize,
) -> hdf5::Result<Dataset> {
    use hdf5::{Extent, Extents, SimpleExtents};
    let mut extents = vec![Extent::resizable(0)];
    extents.extend(entry.iter().map(|&n| Extent::fixed(n)));
    let mut chunk = vec![chunk_rows];
    chunk.extend_from_slice(entry);
    group
        .new_dataset::<T>()
        .chunk(chunk)
        .shape(Extents::Simple(SimpleExtents::from_vec(extents)))
        .create(name)
}

/// Appends `values.len() / width` rows at row `start` of a (N, width) dataset.
fn append_rows<T: H5Type>(
    ds: &Dataset,
    start: usize,
    values: &[T],
    width: usize,
) -> hdf5::Result<()> {
    let rows = values.len() / width;
    ds.resize((start + rows, width))?;
    let view: ArrayView<'_, T, _> = ArrayView2::from_shape((rows, width), values)
        .map_err(|e| hdf5::Error::from(e.to_string()))?;
    ds.write_slice(view, ndarray::s![start..start + rows, ..])
}

/// Writes one whole chunk of `data` at row `start` with `H5Dwrite_chunk`, straight from `words`
/// (`chunk` frames of `[chan][bin]`; the dataset has no filters).
fn write_chunk(ds: &Dataset, start: usize, words: &[u32]) -> hdf5::Result<()> {
    let mut offset = vec![0u64; ds.ndim()];
    offset[0] = start as u64;
    h5util::write_chunk(ds, &offset, 0, bytemuck::cast_slice(words))
}
