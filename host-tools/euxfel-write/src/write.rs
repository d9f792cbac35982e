//! The writer shared by [`crate::write`], [`crate::write_virtual`] and the overview file:
//! the same layout as EXtra-data's `FileWriter` / `VirtualFileWriter` (INDEX with trainId,
//! timestamp, flag and regenerated first/count; METADATA with sorted source lists; RUN
//! copied per source), with the data either copied or mapped virtually.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::SystemTime;

use euxfel::{DataCollection, FileAccess, Section};
use hdf5::types::{VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, Group};

use crate::copy::{copy_segments, CopyBuffers, CopyStats};
use crate::error::{h5, io, Error, Result};
use crate::output::{Output, Stop};
use crate::plan::{Plan, SourcePlan};
use crate::vds::{map_segments, source_file_names, MappedSegment};

/// How the data reaches the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A real copy (EXtra-data's `write`).
    Copy,
    /// Virtual datasets into the source files (EXtra-data's `write_virtual`).
    Virtual,
}

/// Copies whose sources' files add up to at most this many bytes are staged in memory
/// (see [`WriteOptions::stage_max_bytes`]).
pub const DEFAULT_STAGE_MAX_BYTES: u64 = 64 << 20;

/// Memory of a staged copy grows in steps of this size.
const STAGE_INCREMENT_BYTES: usize = 4 << 20;

/// Options of a write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Replace an existing output file.
    pub overwrite: bool,
    /// When set (by a signal handler, say), the write stops at the next chunk or dataset and
    /// fails with [`Error::Interrupted`], leaving no output and no partial file.
    pub stop: Option<Arc<AtomicBool>>,
    /// A copy whose source files add up to at most this many bytes is built in memory and
    /// written to its (partial) file in one go when complete, instead of one small write
    /// per chunk; its partial file stays empty until then. 0: never.
    pub stage_max_bytes: u64,
}

impl Default for WriteOptions {
    fn default() -> WriteOptions {
        WriteOptions {
            overwrite: false,
            stop: None,
            stage_max_bytes: DEFAULT_STAGE_MAX_BYTES,
        }
    }
}

/// Progress after each dataset.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub datasets_done: usize,
    pub datasets_total: usize,
    /// Bytes moved so far (stored bytes for direct chunk copies, memory bytes otherwise).
    pub bytes: u64,
}

/// What a write did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub path: PathBuf,
    pub sources: usize,
    pub datasets: usize,
    pub trains: usize,
    /// Entries (rows) written or mapped over all datasets.
    pub rows: u64,
    /// Chunks copied as stored bytes (no decompression).
    pub direct_chunks: u64,
    /// Rows copied through memory (unaligned runs, differing filters, strings).
    pub rows_through_memory: u64,
    /// Of `rows_through_memory`, those read from the source files' memory maps (unfiltered
    /// little-endian numbers) rather than through libhdf5.
    pub rows_from_map: u64,
    /// Bytes moved (see [`Progress::bytes`]).
    pub bytes: u64,
    /// Virtual dataset mappings.
    pub virtual_mappings: u64,
    /// Partial files of this output left by earlier writes killed outright, removed.
    pub stale_partials_removed: Vec<PathBuf>,
    /// The copy was built in memory and written out at the end
    /// ([`WriteOptions::stage_max_bytes`]).
    pub staged: bool,
}

/// Extra content of a virtual overview file.
pub(crate) struct OverviewExtra {
    /// Basenames and sizes of the run's files.
    pub names: Vec<String>,
    pub sizes: Vec<u64>,
}

/// Keys that `write_virtual` copies rather than maps: small per-frame indexes that readers
/// scan whole (as EXtra-data's `VirtualFileWriter.copy_keys`).
const VIRTUAL_COPY_KEYS: [&str; 2] = ["image.pulseId", "image.cellId"];

/// Writes the selection `dc` to `path`.
pub(crate) fn write_collection(
    dc: &DataCollection,
    path: &Path,
    mode: Mode,
    opts: &WriteOptions,
    extra: Option<OverviewExtra>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Summary> {
    let plan = Plan::new(dc)?;
    let before = snapshot(&plan.files)?;
    let staged = mode == Mode::Copy
        && opts.stage_max_bytes > 0
        && copy_size_bound(&plan, &before) <= opts.stage_max_bytes;
    let out = Output::start(path, opts.overwrite)?;
    let stop = Stop::new(&opts.stop, &out.final_path);
    let written = (|| {
        let file = if staged {
            // The core driver keeps the whole file in memory (grown 4 MiB at a time) and
            // writes it out once when the file is closed.
            hdf5::File::with_options()
                .with_fapl(|p| p.core_options(STAGE_INCREMENT_BYTES, true))
                .create(&out.tmp)
        } else {
            hdf5::File::create(&out.tmp)
        }
        .map_err(h5(&out.tmp, "/"))?;
        let mut w = Writer {
            file: &file,
            path: &out.tmp,
            dir: out.dir().to_path_buf(),
            mode,
            stop,
            sources: HashMap::new(),
            buffers: CopyBuffers::default(),
            summary: Summary::default(),
        };
        w.write(&plan, extra, progress)?;
        let summary = w.summary;
        file.close().map_err(h5(&out.tmp, "/"))?;
        Ok(summary)
    })();
    let mut summary = written.map_err(|e| out.explain(e))?;
    // A file that changed under us may have been read half old, half new.
    let after = snapshot(&plan.files)?;
    for ((p, b), (_, a)) in before.iter().zip(&after) {
        if a != b {
            return Err(Error::SourceChanged {
                path: p.clone(),
                before_size: b.0,
                after_size: a.0,
            });
        }
    }
    stop.check()?;
    summary.staged = staged;
    summary.stale_partials_removed = out.stale_removed.clone();
    summary.path = out.commit()?;
    Ok(summary)
}

type Stat = (u64, Option<SystemTime>);

/// A bound on the size of a copy of `plan`: the total size of the files of its sources (a
/// copy holds at most their data, chunk for chunk, and less metadata).
fn copy_size_bound(plan: &Plan, sizes: &[(PathBuf, Stat)]) -> u64 {
    let used: HashSet<&Path> = plan
        .sources
        .iter()
        .flat_map(|s| &s.files)
        .map(|f| f.path.as_path())
        .collect();
    sizes
        .iter()
        .filter(|(p, _)| used.contains(p.as_path()))
        .fold(0u64, |a, (_, (len, _))| a.saturating_add(*len))
}

fn snapshot(files: &[Arc<FileAccess>]) -> Result<Vec<(PathBuf, Stat)>> {
    files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(&f.path).map_err(io(&f.path))?;
            Ok((f.path.clone(), (m.len(), m.modified().ok())))
        })
        .collect()
}

struct Writer<'a> {
    file: &'a hdf5::File,
    path: &'a Path,
    dir: PathBuf,
    mode: Mode,
    stop: Stop<'a>,
    /// Source files opened with libhdf5, by path.
    sources: HashMap<PathBuf, hdf5::File>,
    buffers: CopyBuffers,
    summary: Summary,
}

impl Writer<'_> {
    fn write(
        &mut self,
        plan: &Plan,
        extra: Option<OverviewExtra>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<()> {
        let root: &Group = self.file;
        h5util::attrs::set_str(
            root,
            "writer",
            concat!("euxfel_write ", env!("CARGO_PKG_VERSION")),
        )
        .map_err(h5(self.path, "/"))?;
        if let Some(x) = extra {
            self.overview_extra(&x)?;
        }
        let format_1 = match plan.files.first() {
            Some(f) => !matches!(f.format_version()?.as_str(), "0.5" | "0.1"),
            None => true,
        };
        self.write_train_index(plan, format_1)?;
        self.write_metadata(plan, format_1)?;
        self.file
            .create_group("RUN")
            .map_err(h5(self.path, "RUN"))?;
        let total: usize = plan
            .sources
            .iter()
            .flat_map(|s| &s.groups)
            .map(|g| g.keys.len())
            .sum();
        let mut done = 0;
        for sp in &plan.sources {
            self.write_source(sp, &mut |s: &Summary| {
                done += 1;
                progress(&Progress {
                    datasets_done: done,
                    datasets_total: total,
                    bytes: s.bytes,
                })
            })?;
        }
        for (legacy, i) in &plan.legacy {
            let target = &plan.sources[*i];
            for (section, target_path) in [
                ("INSTRUMENT", target.data_path()),
                ("INDEX", format!("INDEX/{}", target.name)),
            ] {
                let link = format!("{section}/{legacy}");
                let (parent, name) = link.rsplit_once('/').unwrap_or(("", &link));
                ensure_group(self.file, parent)
                    .and_then(|g| g.link_soft(&format!("/{target_path}"), name))
                    .map_err(h5(self.path, &link))?;
            }
        }
        self.summary.sources = plan.sources.len();
        self.summary.trains = plan.train_ids.len();
        Ok(())
    }

    fn overview_extra(&self, x: &OverviewExtra) -> Result<()> {
        let obj = ".source_files";
        let g = self.file.create_group(obj).map_err(h5(self.path, obj))?;
        let names = ascii_vec(&x.names, "file name")?;
        g.new_dataset_builder()
            .with_data(&names)
            .create("names")
            .map_err(h5(self.path, obj))?;
        g.new_dataset_builder()
            .with_data(&x.sizes)
            .create("sizes")
            .map_err(h5(self.path, obj))?;
        h5util::attrs::set_scalar(self.file, "virtual_overview_version", 1i64)
            .map_err(h5(self.path, "/"))
    }

    fn write_train_index(&self, plan: &Plan, format_1: bool) -> Result<()> {
        let g = self
            .file
            .create_group("INDEX")
            .map_err(h5(self.path, "INDEX"))?;
        g.new_dataset_builder()
            .with_data(&plan.train_ids)
            .create("trainId")
            .map_err(h5(self.path, "INDEX/trainId"))?;
        if let Some(ts) = &plan.timestamps {
            g.new_dataset_builder()
                .with_data(ts)
                .create("timestamp")
                .map_err(h5(self.path, "INDEX/timestamp"))?;
        }
        if format_1 {
            g.new_dataset_builder()
                .with_data(&plan.flag)
                .create("flag")
                .map_err(h5(self.path, "INDEX/flag"))?;
        }
        Ok(())
    }

    /// METADATA: the first file's single values (single runs), format "1.0" for 1.x input
    /// (as EXtra-data), and the sorted source lists.
    fn write_metadata(&mut self, plan: &Plan, format_1: bool) -> Result<()> {
        let md = self
            .file
            .create_group("METADATA")
            .map_err(h5(self.path, "METADATA"))?;
        let mut ids: Vec<String> = plan.sources.iter().flat_map(|s| s.source_ids()).collect();
        for (legacy, i) in &plan.legacy {
            let target = &plan.sources[*i];
            ids.extend(
                target
                    .source_ids()
                    .iter()
                    .map(|id| id.replacen(&target.name, legacy, 1)),
            );
        }
        ids.sort();
        let lists_group = if format_1 {
            if let (true, Some(f0)) = (plan.is_single_run, plan.files.first()) {
                let src = self.source_file(f0)?;
                let names = src
                    .group("METADATA")
                    .and_then(|g| g.member_names())
                    .map_err(h5(&f0.path, "METADATA"))?;
                for n in names {
                    let p = format!("METADATA/{n}");
                    let is_dataset = src.dataset(&p).is_ok();
                    if is_dataset
                        && !matches!(
                            n.as_str(),
                            "dataFormatVersion" | "dataSourceId" | "deviceId" | "root"
                        )
                    {
                        h5util::copy_object(&src, &p, self.file, &p).map_err(h5(&f0.path, &p))?;
                    }
                }
            }
            let v: VarLenUnicode = "1.0".parse().map_err(|_| Error::NotAscii {
                what: "format version",
                value: "1.0".into(),
            })?;
            md.new_dataset_builder()
                .with_data(&[v])
                .create("dataFormatVersion")
                .map_err(h5(self.path, "METADATA/dataFormatVersion"))?;
            md.create_group("dataSources")
                .map_err(h5(self.path, "METADATA/dataSources"))?
        } else {
            md
        };
        let roots: Vec<String> = ids
            .iter()
            .map(|s| s.split_once('/').map_or(s.as_str(), |x| x.0).to_string())
            .collect();
        let devices: Vec<String> = ids
            .iter()
            .map(|s| s.split_once('/').map_or("", |x| x.1).to_string())
            .collect();
        for (name, values) in [
            ("dataSourceId", &ids),
            ("root", &roots),
            ("deviceId", &devices),
        ] {
            let v = ascii_vec(values, "source name")?;
            lists_group
                .new_dataset::<VarLenAscii>()
                .chunk(v.len().max(1))
                .shape(hdf5::SimpleExtents::resizable([v.len()]))
                .create(name)
                .and_then(|d| d.write(&v))
                .map_err(h5(self.path, name))?;
        }
        Ok(())
    }

    fn source_file(&mut self, f: &FileAccess) -> Result<hdf5::File> {
        if let Some(h) = self.sources.get(&f.path) {
            return Ok(h.clone());
        }
        let h = hdf5::File::open(&f.path).map_err(h5(&f.path, "/"))?;
        self.sources.insert(f.path.clone(), h.clone());
        Ok(h)
    }

    fn write_source(&mut self, sp: &SourcePlan, done: &mut dyn FnMut(&Summary)) -> Result<()> {
        // Sources are written one after the other: libhdf5 handles of files this one does
        // not use are closed, so memory stays bounded over a run of hundreds of files.
        self.sources
            .retain(|p, _| sp.files.iter().any(|f| &f.path == p));
        let data_path = sp.data_path();
        let group = ensure_group(self.file, &data_path).map_err(h5(self.path, &data_path))?;
        if self.mode == Mode::Virtual {
            let names = source_file_names(&sp.files);
            let v: Vec<VarLenUnicode> = names
                .iter()
                .map(|n| {
                    n.parse().map_err(|_| Error::NotAscii {
                        what: "file name",
                        value: n.clone(),
                    })
                })
                .collect::<Result<_>>()?;
            group
                .new_attr::<VarLenUnicode>()
                .shape(v.len())
                .create("source_files")
                .and_then(|a| a.write(&v))
                .map_err(h5(self.path, &data_path))?;
        }
        for g in &sp.groups {
            for key in &g.keys {
                self.stop.check()?;
                let object = format!("{data_path}/{}", key.replace('.', "/"));
                let first = self.first_dataset(sp, &object)?;
                let copy = self.mode == Mode::Copy
                    || (sp.section == Section::Instrument
                        && VIRTUAL_COPY_KEYS.contains(&key.as_str()));
                let (parent, name) = object.rsplit_once('/').unwrap_or(("", &object));
                let parent = ensure_group(self.file, parent).map_err(h5(self.path, parent))?;
                if copy {
                    let sources = self.segment_datasets(g, &object)?;
                    let st: CopyStats = copy_segments(
                        &parent,
                        name,
                        &first,
                        &sources,
                        g.total,
                        self.path,
                        &object,
                        self.stop,
                        &mut self.buffers,
                    )?;
                    self.summary.direct_chunks += st.direct_chunks;
                    self.summary.rows_through_memory += st.rows_through_memory;
                    self.summary.rows_from_map += st.rows_from_map;
                    self.summary.bytes += st.bytes;
                } else {
                    let mapped = mapped_segments(sp, g, key, &object)?;
                    self.summary.virtual_mappings += map_segments(
                        &parent, name, &first, &mapped, g.total, &self.dir, self.path, &object,
                    )?;
                }
                self.summary.datasets += 1;
                self.summary.rows += g.total;
                done(&self.summary);
            }
            let ix = sp.index_path(&g.name);
            let ig = ensure_group(self.file, &ix).map_err(h5(self.path, &ix))?;
            let firsts: Vec<u64> = g
                .counts
                .iter()
                .scan(0u64, |acc, &c| {
                    let f = *acc;
                    *acc += c;
                    Some(f)
                })
                .collect();
            ig.new_dataset_builder()
                .with_data(&firsts)
                .create("first")
                .map_err(h5(self.path, &ix))?;
            ig.new_dataset_builder()
                .with_data(&g.counts)
                .create("count")
                .map_err(h5(self.path, &ix))?;
        }
        // RUN values (control sources; any source that has them).
        let run_path = format!("RUN/{}", sp.name);
        if let Some(f0) = sp.files.first() {
            let src = self.source_file(f0)?;
            if src.group(&run_path).is_ok() {
                h5util::copy_object(&src, &run_path, self.file, &run_path)
                    .map_err(h5(&f0.path, &run_path))?;
            }
        }
        Ok(())
    }

    /// The dataset of `object` in the source's first file holding it (defines dtype,
    /// chunking and filters of the output).
    fn first_dataset(&mut self, sp: &SourcePlan, object: &str) -> Result<(PathBuf, Dataset)> {
        let mut last_err = None;
        for f in &sp.files {
            let h = self.source_file(f)?;
            match h.dataset(object) {
                Ok(d) => return Ok((f.path.clone(), d)),
                Err(e) => last_err = Some(h5(&f.path, object)(e)),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Hdf5 {
            path: self.path.to_path_buf(),
            object: object.into(),
            msg: "no file holds this source".into(),
        }))
    }

    fn segment_datasets(
        &mut self,
        g: &crate::plan::GroupPlan,
        object: &str,
    ) -> Result<Vec<SegmentSource>> {
        let mut out = Vec::with_capacity(g.segments.len());
        for s in &g.segments {
            let h = self.source_file(&s.file)?;
            let ds = h.dataset(object).map_err(h5(&s.file.path, object))?;
            let rows = ds.shape().first().copied().unwrap_or(0) as u64;
            let end = s.src_first.saturating_add(s.rows);
            if end > rows {
                return Err(Error::IndexOutsideData {
                    path: s.file.path.clone(),
                    object: object.into(),
                    start: s.src_first,
                    end,
                    rows,
                });
            }
            out.push(SegmentSource {
                file: s.file.clone(),
                path: s.file.path.clone(),
                ds,
                src_first: s.src_first,
                rows: s.rows,
                dst_first: s.dst_first,
            });
        }
        Ok(out)
    }
}

/// The segments of `key` with their source datasets' shapes, from the index reader (a
/// virtual mapping needs no libhdf5 handle on the source file).
fn mapped_segments(
    sp: &SourcePlan,
    g: &crate::plan::GroupPlan,
    key: &str,
    object: &str,
) -> Result<Vec<MappedSegment>> {
    g.segments
        .iter()
        .map(|s| {
            let (_, shape) = s.file.key_dtype_shape(&sp.name, key)?;
            let rows = shape.first().copied().unwrap_or(0) as u64;
            let end = s.src_first.saturating_add(s.rows);
            if end > rows {
                return Err(Error::IndexOutsideData {
                    path: s.file.path.clone(),
                    object: object.into(),
                    start: s.src_first,
                    end,
                    rows,
                });
            }
            Ok(MappedSegment {
                path: s.file.path.clone(),
                shape,
                src_first: s.src_first,
                rows: s.rows,
                dst_first: s.dst_first,
            })
        })
        .collect()
}

/// One segment with its source dataset open.
pub(crate) struct SegmentSource {
    /// The source file as the index reader knows it (its memory map).
    pub file: Arc<FileAccess>,
    pub path: PathBuf,
    pub ds: Dataset,
    pub src_first: u64,
    pub rows: u64,
    pub dst_first: u64,
}

fn ascii_vec(values: &[String], what: &'static str) -> Result<Vec<VarLenAscii>> {
    values
        .iter()
        .map(|s| {
            VarLenAscii::from_ascii(s).map_err(|_| Error::NotAscii {
                what,
                value: s.clone(),
            })
        })
        .collect()
}

/// The group at `path`, created with its parents where missing.
pub(crate) fn ensure_group(file: &hdf5::File, path: &str) -> hdf5::Result<Group> {
    let mut cur: Group = file.group("/")?;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur = if cur.link_exists(part) {
            cur.group(part)?
        } else {
            cur.create_group(part)?
        };
    }
    Ok(cur)
}
