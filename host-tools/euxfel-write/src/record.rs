//! Trains held in memory (received from a stream such as the Karabo Bridge) appended one by
//! one to a EuXFEL run of one file, format 1.3, `RAW-R<run>-DA01-S00000.h5`.
//!
//! - A source whose keys all end in `.value` or `.timestamp` is CONTROL (one row per train,
//!   index `INDEX/<source>`, its first values also in `RUN/<source>`); any other is
//!   INSTRUMENT, one entry per train in each index group (the key's first component), the
//!   entry being the value as received. EuXFEL readers split an INSTRUMENT source name at its
//!   `:` (device and output channel): a name without one is stored as `<name>:output`
//!   ([`RecordSummary::renamed`]).
//! - The first train a source appears in fixes its keys, their types and entry shapes; a later
//!   train of that source that differs is left out for that source and reported
//!   ([`Appended::refused`]), so that every index stays consistent with its data.
//! - Rows are buffered up to one chunk per key and written as whole chunks (large entries
//!   straight from the caller's bytes). The file is written under a temporary name and only
//!   [`Recorder::finish`] writes INDEX and METADATA and renames it into place: an interrupted
//!   recording that reaches `finish` (a signal handled by the caller) is a complete run of
//!   the trains appended so far; one that does not leaves nothing under the final name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, Datatype, Extent, Group, SimpleExtents};

use crate::error::{h5, io, Error, Result};
use crate::output::Output;
use crate::write::ensure_group;
use crate::xspress3::{write_1d, write_metadata};

/// Bytes aimed at per chunk: small values are buffered this far before a chunk is written.
const CHUNK_BYTES: usize = 256 << 10;
/// Most rows in one chunk.
const MAX_CHUNK_ROWS: usize = 1024;
/// Rows per chunk of a string key.
const TEXT_CHUNK_ROWS: usize = 64;

/// An element type that can be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    Bool,
    /// Signed integer of 1, 2, 4 or 8 bytes.
    Int(usize),
    /// Unsigned integer of 1, 2, 4 or 8 bytes.
    UInt(usize),
    /// Float of 4 or 8 bytes.
    Float(usize),
    /// Fixed-length byte string of n bytes (numpy `|Sn`).
    Bytes(usize),
}

impl Element {
    /// Bytes per element.
    pub fn size(&self) -> usize {
        match *self {
            Element::Bool => 1,
            Element::Int(n) | Element::UInt(n) | Element::Float(n) | Element::Bytes(n) => n,
        }
    }

    fn descriptor(&self) -> Option<TypeDescriptor> {
        let int = |n| {
            Some(match n {
                1 => IntSize::U1,
                2 => IntSize::U2,
                4 => IntSize::U4,
                8 => IntSize::U8,
                _ => return None,
            })
        };
        Some(match *self {
            Element::Bool => TypeDescriptor::Boolean,
            Element::Int(n) => TypeDescriptor::Integer(int(n)?),
            Element::UInt(n) => TypeDescriptor::Unsigned(int(n)?),
            Element::Float(4) => TypeDescriptor::Float(FloatSize::U4),
            Element::Float(8) => TypeDescriptor::Float(FloatSize::U8),
            Element::Float(_) => return None,
            Element::Bytes(n) if n > 0 => TypeDescriptor::FixedAscii(n),
            Element::Bytes(_) => return None,
        })
    }
}

/// One value of a source in one train.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// Little-endian, C-contiguous elements of `shape` (empty for a scalar).
    Raw {
        element: Element,
        shape: &'a [usize],
        bytes: &'a [u8],
    },
    /// A variable-length string.
    Text(&'a str),
}

/// One source's values in one train, keys as EXtra-data names them (`a.b.value`, `data.x`).
#[derive(Debug, Clone)]
pub struct SourceData<'a> {
    pub name: &'a str,
    pub keys: Vec<(&'a str, Cell<'a>)>,
}

/// Where the run goes.
#[derive(Debug, Clone, Default)]
pub struct RecordOptions {
    pub proposal: u32,
    pub run: u32,
    /// Replace an existing file of the same name.
    pub overwrite: bool,
}

/// What [`Recorder::append`] did with one train.
#[derive(Debug, Default)]
pub struct Appended {
    /// Sources left out of this train: name and why.
    pub refused: Vec<(String, String)>,
}

/// What a recording wrote.
#[derive(Debug, Clone)]
pub struct RecordSummary {
    pub path: PathBuf,
    pub trains: usize,
    pub first_train: u64,
    pub last_train: u64,
    pub control_sources: usize,
    pub instrument_sources: usize,
    /// Sources stored under another name: (received, stored).
    pub renamed: Vec<(String, String)>,
}

/// A key's type and entry shape.
#[derive(Debug, Clone, PartialEq)]
enum Layout {
    Raw(Element, Vec<usize>),
    Text,
}

impl Layout {
    fn of(cell: &Cell) -> Layout {
        match cell {
            Cell::Raw { element, shape, .. } => Layout::Raw(*element, shape.to_vec()),
            Cell::Text(_) => Layout::Text,
        }
    }
}

/// One key's dataset and the rows not written yet.
struct KeyWriter {
    key: String,
    ds: Dataset,
    layout: Layout,
    /// Rows appended (written or pending).
    rows: u64,
    chunk_rows: usize,
    entry_bytes: usize,
    /// Rows of the chunk being filled (raw keys with several rows per chunk).
    pending: Vec<u8>,
    /// The first row, for RUN (CONTROL keys only).
    first: Option<Vec<u8>>,
    first_text: Option<String>,
}

impl KeyWriter {
    fn create(
        g: &Group,
        name: &str,
        key: &str,
        cell: &Cell,
        keep_first: bool,
    ) -> hdf5::Result<Self> {
        let layout = Layout::of(cell);
        let (ds, chunk_rows, entry_bytes) = match &layout {
            Layout::Raw(element, shape) => {
                // check_keys has refused entries without a length.
                let entry_bytes = entry_len(*element, shape)
                    .ok_or_else(|| hdf5::Error::from("entry too large for one chunk"))?;
                let chunk_rows = (CHUNK_BYTES / entry_bytes.max(1)).clamp(1, MAX_CHUNK_ROWS);
                (
                    create_rows(g, name, *element, shape, chunk_rows)?,
                    chunk_rows,
                    entry_bytes,
                )
            }
            Layout::Text => {
                let ds = g
                    .new_dataset::<VarLenUnicode>()
                    .chunk(TEXT_CHUNK_ROWS)
                    .shape(SimpleExtents::resizable([0]))
                    .create(name)?;
                (ds, TEXT_CHUNK_ROWS, 0)
            }
        };
        Ok(KeyWriter {
            key: key.to_string(),
            ds,
            layout,
            rows: 0,
            chunk_rows,
            entry_bytes,
            pending: Vec::new(),
            first: keep_first.then(Vec::new),
            first_text: None,
        })
    }

    fn extent(&self, rows: u64) -> Vec<usize> {
        let mut dims = vec![rows as usize];
        if let Layout::Raw(_, shape) = &self.layout {
            dims.extend(shape);
        }
        dims
    }

    /// Writes the chunk that starts at row `start` from `bytes` (padded to a whole chunk).
    fn write_chunk(&self, start: u64, bytes: &[u8]) -> hdf5::Result<()> {
        self.ds.resize(self.extent(self.rows))?;
        if self.entry_bytes == 0 {
            return Ok(());
        }
        let mut offset = vec![start; self.ds.ndim()];
        offset[1..].iter_mut().for_each(|o| *o = 0);
        h5util::write_chunk(&self.ds, &offset, 0, bytes)
    }

    fn append(&mut self, cell: &Cell) -> hdf5::Result<()> {
        match *cell {
            Cell::Raw { bytes, .. } => {
                if let Some(first) = self.first.as_mut().filter(|f| f.is_empty()) {
                    first.extend_from_slice(bytes);
                }
                self.rows += 1;
                if self.chunk_rows == 1 {
                    return self.write_chunk(self.rows - 1, bytes);
                }
                self.pending.extend_from_slice(bytes);
                if self.pending.len() == self.chunk_rows * self.entry_bytes {
                    self.flush()?;
                }
                Ok(())
            }
            Cell::Text(text) => {
                if self.first.is_some() && self.first_text.is_none() {
                    self.first_text = Some(text.to_string());
                }
                let v: VarLenUnicode = text
                    .parse()
                    .map_err(|e| hdf5::Error::from(format!("{e}")))?;
                self.rows += 1;
                self.ds.resize(self.extent(self.rows))?;
                let row = self.rows as usize - 1;
                self.ds.write_slice(&[v], row..row + 1)
            }
        }
    }

    /// Writes the pending rows as one (padded) chunk.
    fn flush(&mut self) -> hdf5::Result<()> {
        if self.pending.is_empty() && self.entry_bytes > 0 {
            return Ok(());
        }
        let pending_rows = (self.pending.len() / self.entry_bytes.max(1)) as u64;
        let start = self.rows - pending_rows;
        self.pending.resize(self.chunk_rows * self.entry_bytes, 0);
        let chunk = std::mem::take(&mut self.pending);
        let r = self.write_chunk(start, &chunk);
        self.pending = chunk;
        self.pending.clear();
        r
    }

    /// The first row as a one-row dataset `name` in `g` (RUN).
    fn write_first(&self, g: &Group, name: &str) -> hdf5::Result<()> {
        match (&self.layout, &self.first, &self.first_text) {
            (Layout::Raw(element, shape), Some(bytes), _) if !bytes.is_empty() => {
                let ds = create_rows(g, name, *element, shape, 1)?;
                let mut dims = vec![1];
                dims.extend(shape);
                ds.resize(dims)?;
                h5util::write_chunk(&ds, &vec![0u64; ds.ndim()], 0, bytes)
            }
            (Layout::Text, _, Some(text)) => {
                let v: VarLenUnicode = text
                    .parse()
                    .map_err(|e| hdf5::Error::from(format!("{e}")))?;
                g.new_dataset_builder().with_data(&[v]).create(name)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn entry_len(element: Element, shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(element.size(), |a, &d| a.checked_mul(d))
        .filter(|&n| n < u32::MAX as usize)
}

/// A chunked dataset of rows of `shape`, empty and growable.
fn create_rows(
    g: &Group,
    name: &str,
    element: Element,
    shape: &[usize],
    chunk_rows: usize,
) -> hdf5::Result<Dataset> {
    let desc = element
        .descriptor()
        .ok_or_else(|| hdf5::Error::from(format!("no HDF5 type for {element:?}")))?;
    let mut extents = vec![Extent::resizable(0)];
    extents.extend(shape.iter().map(|&d| Extent::fixed(d)));
    let mut chunk = vec![chunk_rows];
    chunk.extend(shape.iter().map(|&d| d.max(1)));
    g.new_dataset_builder()
        .empty_as(&Datatype::from_descriptor(&desc)?)
        .chunk(chunk)
        .shape(SimpleExtents::from_vec(extents))
        .create(name)
}

/// A recorded source.
struct SourceWriter {
    control: bool,
    /// The name in the file.
    stored: String,
    /// Keys in name order, as fixed by the source's first train.
    keys: Vec<KeyWriter>,
    /// Per index group (CONTROL: the one group ""), the entry count of every train.
    counts: BTreeMap<String, Vec<u64>>,
}

impl SourceWriter {
    fn group_of(&self, key: &str) -> String {
        if self.control {
            String::new()
        } else {
            index_group(key).to_string()
        }
    }
}

fn index_group(key: &str) -> &str {
    key.split('.').next().unwrap_or(key)
}

fn is_control(keys: &[(&str, Cell)]) -> bool {
    !keys.is_empty()
        && keys
            .iter()
            .all(|(k, _)| k.ends_with(".value") || k.ends_with(".timestamp"))
}

/// Why a source's keys cannot be recorded as given, if they cannot.
fn check_keys(keys: &[(&str, Cell)]) -> Option<String> {
    for w in keys.windows(2) {
        if w[0].0 == w[1].0 {
            return Some(format!("key {} appears twice", w[0].0));
        }
    }
    for (k, c) in keys {
        if k.is_empty() || k.contains('/') || k.split('.').any(str::is_empty) {
            return Some(format!("key {k:?} is not a EuXFEL key name"));
        }
        if let Cell::Raw {
            element,
            shape,
            bytes,
        } = c
        {
            if element.descriptor().is_none() {
                return Some(format!("{k}: {element:?} cannot be stored"));
            }
            if entry_len(*element, shape) != Some(bytes.len()) {
                return Some(format!(
                    "{k}: {} bytes for shape {shape:?} of {element:?}",
                    bytes.len()
                ));
            }
        }
    }
    None
}

/// A run being recorded.
pub struct Recorder {
    out: Output,
    file: hdf5::File,
    opts: RecordOptions,
    sources: BTreeMap<String, SourceWriter>,
    train_ids: Vec<u64>,
    timestamps: Vec<u64>,
}

impl Recorder {
    /// Starts `<dir>/RAW-R<run>-DA01-S00000.h5` (under a temporary name), creating `dir`.
    pub fn create(dir: &Path, opts: &RecordOptions) -> Result<Recorder> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let name = format!("RAW-R{:04}-DA01-S00000.h5", opts.run);
        let out = Output::start(&dir.join(name), opts.overwrite)?;
        let file = hdf5::File::create(&out.tmp).map_err(h5(&out.tmp, "/"))?;
        Ok(Recorder {
            out,
            file,
            opts: opts.clone(),
            sources: BTreeMap::new(),
            train_ids: Vec::new(),
            timestamps: Vec::new(),
        })
    }

    /// Trains appended so far.
    pub fn trains(&self) -> usize {
        self.train_ids.len()
    }

    /// Appends one train: `train_id` above every earlier one and not 0 (else
    /// [`Error::TrainOrder`], nothing written), `timestamp` (ns since the epoch) for
    /// INDEX/timestamp, and the sources' values. HDF5 failures are fatal for the recording.
    pub fn append(
        &mut self,
        train_id: u64,
        timestamp: u64,
        sources: &[SourceData],
    ) -> Result<Appended> {
        let last = self.train_ids.last().copied();
        if train_id == 0 || last.is_some_and(|l| train_id <= l) {
            return Err(Error::TrainOrder { train_id, last });
        }
        let path = self.out.tmp.clone();
        let n_before = self.train_ids.len();
        let mut appended = Appended::default();
        let mut present = Vec::new();
        for src in sources {
            let mut keys = src.keys.clone();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            if let Some(why) = check_keys(&keys) {
                appended.refused.push((src.name.to_string(), why));
                continue;
            }
            if present.contains(&src.name) {
                appended
                    .refused
                    .push((src.name.to_string(), "source appears twice".into()));
                continue;
            }
            if !self.sources.contains_key(src.name) {
                let w = self.new_source(src.name, &keys, n_before)?;
                self.sources.insert(src.name.to_string(), w);
            }
            let Some(w) = self.sources.get_mut(src.name) else {
                continue;
            };
            let same = w.keys.len() == keys.len()
                && w.keys
                    .iter()
                    .zip(&keys)
                    .all(|(kw, (k, c))| kw.key == *k && kw.layout == Layout::of(c));
            if !same {
                let diff = keys
                    .iter()
                    .find(|(k, c)| {
                        !w.keys
                            .iter()
                            .any(|kw| kw.key == *k && kw.layout == Layout::of(c))
                    })
                    .map_or("keys missing".to_string(), |(k, c)| {
                        format!("{k}: {:?} differs from the first train", Layout::of(c))
                    });
                appended.refused.push((src.name.to_string(), diff));
                continue;
            }
            for (kw, (_, cell)) in w.keys.iter_mut().zip(&keys) {
                kw.append(cell).map_err(h5(&path, &kw.key))?;
            }
            for counts in w.counts.values_mut() {
                counts.push(1);
            }
            present.push(src.name);
        }
        // Sources without data in this train.
        for w in self.sources.values_mut() {
            for counts in w.counts.values_mut() {
                if counts.len() == n_before {
                    counts.push(0);
                }
            }
        }
        self.train_ids.push(train_id);
        self.timestamps.push(timestamp);
        Ok(appended)
    }

    fn new_source(&self, name: &str, keys: &[(&str, Cell)], trains: usize) -> Result<SourceWriter> {
        let path = &self.out.tmp;
        let control = is_control(keys);
        let section = if control { "CONTROL" } else { "INSTRUMENT" };
        let stored = if control || name.contains(':') {
            name.to_string()
        } else {
            format!("{name}:output")
        };
        let base = format!("{section}/{stored}");
        let g = ensure_group(&self.file, &base).map_err(h5(path, &base))?;
        let mut w = SourceWriter {
            control,
            stored,
            keys: Vec::new(),
            counts: BTreeMap::new(),
        };
        for (key, cell) in keys {
            let ds_name = key.replace('.', "/");
            let kw = KeyWriter::create(&g, &ds_name, key, cell, control)
                .map_err(h5(path, &format!("{base}/{ds_name}")))?;
            let group = w.group_of(key);
            w.counts.entry(group).or_insert_with(|| vec![0; trains]);
            w.keys.push(kw);
        }
        if w.counts.is_empty() {
            w.counts.insert(String::new(), vec![0; trains]);
        }
        Ok(w)
    }

    /// Writes the pending rows, INDEX, RUN and METADATA and renames the file into place.
    /// [`Error::NoTrains`] (and nothing written) when no train was appended.
    pub fn finish(mut self) -> Result<RecordSummary> {
        let (Some(&first_train), Some(&last_train)) =
            (self.train_ids.first(), self.train_ids.last())
        else {
            return Err(Error::NoTrains);
        };
        let path = self.out.tmp.clone();
        let w = |obj: &str| h5(&path, obj);
        let n = self.train_ids.len();
        // Every object is closed before the file (end of this block).
        {
            let file = &self.file;
            let index = file.create_group("INDEX").map_err(w("INDEX"))?;
            write_1d(&index, "trainId", &self.train_ids).map_err(w("INDEX/trainId"))?;
            write_1d(&index, "timestamp", &self.timestamps).map_err(w("INDEX/timestamp"))?;
            write_1d(&index, "flag", &vec![1i32; n]).map_err(w("INDEX/flag"))?;
            write_1d(&index, "origin", &vec![-1i32; n]).map_err(w("INDEX/origin"))?;
            let mut ids = Vec::new();
            for src in self.sources.values_mut() {
                let name = &src.stored;
                for kw in src.keys.iter_mut() {
                    kw.flush().map_err(w(&kw.key))?;
                }
                for (group, counts) in &src.counts {
                    let ipath = if src.control {
                        format!("INDEX/{name}")
                    } else {
                        format!("INDEX/{name}/{group}")
                    };
                    let firsts: Vec<u64> = counts
                        .iter()
                        .scan(0u64, |a, &c| {
                            let f = *a;
                            *a += c;
                            Some(f)
                        })
                        .collect();
                    let ig = ensure_group(file, &ipath).map_err(w(&ipath))?;
                    write_1d(&ig, "first", &firsts).map_err(w(&ipath))?;
                    write_1d(&ig, "count", counts).map_err(w(&ipath))?;
                    ids.push(if src.control {
                        format!("CONTROL/{name}")
                    } else {
                        format!("INSTRUMENT/{name}/{group}")
                    });
                }
                if src.control {
                    let base = format!("RUN/{name}");
                    let run = ensure_group(file, &base).map_err(w(&base))?;
                    for kw in &src.keys {
                        let ds_name = kw.key.replace('.', "/");
                        let (parent, leaf) = ds_name.rsplit_once('/').unwrap_or(("", &ds_name));
                        let g = if parent.is_empty() {
                            run.clone()
                        } else {
                            ensure_group(file, &format!("{base}/{parent}")).map_err(w(&kw.key))?
                        };
                        kw.write_first(&g, leaf).map_err(w(&kw.key))?;
                    }
                }
            }
            ids.sort();
            write_metadata(
                file,
                &path,
                &ids,
                self.opts.proposal,
                self.opts.run,
                "recorded stream",
            )?;
        }
        let control_sources = self.sources.values().filter(|s| s.control).count();
        let instrument_sources = self.sources.len() - control_sources;
        let renamed = self
            .sources
            .iter()
            .filter(|(name, s)| **name != s.stored)
            .map(|(name, s)| (name.clone(), s.stored.clone()))
            .collect();
        drop(self.sources);
        self.file.close().map_err(w("/"))?;
        let path = self.out.commit()?;
        Ok(RecordSummary {
            path,
            trains: n,
            first_train,
            last_train,
            control_sources,
            instrument_sources,
            renamed,
        })
    }
}
