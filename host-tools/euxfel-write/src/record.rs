//! Trains held in memory (received from a stream such as the Karabo Bridge) appended one by
//! one to a EuXFEL run, format 1.3, in sequence files `RAW-R<run>-DA01-S<nnnnn>.h5` of at most
//! [`RecordOptions::trains_per_file`] trains each.
//!
//! - A source whose keys all end in `.value` or `.timestamp` is CONTROL (one row per train,
//!   index `INDEX/<source>`, its first values also in `RUN/<source>`); any other is
//!   INSTRUMENT, one entry per train in each index group (the key's first component), the
//!   entry being the value as received. EuXFEL readers split an INSTRUMENT source name at its
//!   `:` (device and output channel): a name without one is stored as `<name>:output`
//!   ([`RecordSummary::renamed`]).
//! - The first train a source appears in fixes its keys, their types and entry shapes for the
//!   whole run; a later train of that source that differs is left out for that source and
//!   reported ([`Appended::refused`]), so that every index stays consistent with its data.
//! - Rows are buffered up to one chunk per key and written as whole chunks (large entries
//!   straight from the caller's bytes). Each sequence file is written under a temporary name;
//!   INDEX and METADATA are written and the file renamed into place when it holds its
//!   trains (or at [`Recorder::finish`]), so a sequence file under its final name is always
//!   complete. An interrupted recording that reaches `finish` (a signal handled by the caller)
//!   is a complete run of the trains appended so far; one that does not keeps the sequence
//!   files finished before and leaves nothing of the one being written under a final name.
//! - A write error (a full disk) ends the recording: the file being written is finished with
//!   the trains appended before the one that failed if libhdf5 can, else removed; the sequence
//!   files before it stay. [`RecordSummary`] says which trains are in files and which were lost.

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
/// Room kept for what libhdf5 writes besides rows and index (object headers, chunk indexes,
/// METADATA) when checking that a sequence file can still be finished.
const FINISH_MARGIN_BYTES: u64 = 128 << 10;
/// Index bytes per train: INDEX/trainId, timestamp, flag, origin; and per index group.
const INDEX_BYTES_PER_TRAIN: u64 = 24;
const INDEX_BYTES_PER_GROUP_TRAIN: u64 = 16;

/// Rows per chunk of a key of `entry_bytes` in a file of at most `max_rows` rows.
fn chunk_rows_for(entry_bytes: usize, max_rows: Option<usize>) -> usize {
    (CHUNK_BYTES / entry_bytes.max(1)).clamp(
        1,
        max_rows.unwrap_or(MAX_CHUNK_ROWS).clamp(1, MAX_CHUNK_ROWS),
    )
}

/// Bytes writing `cell` may take beyond the chunks already counted: a whole chunk for a key of
/// a new source, its own bytes for an entry written straight (one row a chunk) or a string.
fn cell_bytes(cell: &Cell, new: bool, max_rows: Option<usize>) -> u64 {
    match cell {
        Cell::Raw { bytes, .. } if new => {
            (bytes.len() * chunk_rows_for(bytes.len(), max_rows)) as u64
        }
        Cell::Raw { bytes, .. } => bytes.len() as u64,
        Cell::Text(t) => t.len() as u64 + 16,
    }
}

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
    /// Replace existing sequence files of the run (else an existing one is an error).
    pub overwrite: bool,
    /// Trains per sequence file; `None` (or 0): one file.
    pub trains_per_file: Option<usize>,
}

/// What [`Recorder::append`] did with one train.
#[derive(Debug, Default)]
pub struct Appended {
    /// Sources left out of this train: name and why.
    pub refused: Vec<(String, String)>,
}

/// A complete sequence file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFile {
    pub path: PathBuf,
    pub trains: usize,
    pub first_train: u64,
    pub last_train: u64,
}

/// What a recording wrote.
#[derive(Debug)]
pub struct RecordSummary {
    /// The complete sequence files, in order.
    pub files: Vec<RecordedFile>,
    /// Trains in those files.
    pub trains: usize,
    /// Trains appended that are in no file: those of a sequence file that could not be
    /// finished after a write error (the train whose write failed is the caller's to count).
    pub lost_trains: Vec<u64>,
    /// The write error finishing the last sequence file in [`Recorder::finish`], if there was
    /// one (an error of [`Recorder::append`] was returned there).
    pub error: Option<Error>,
    /// Bytes free on the output's file system when the first write error came (HDF5's
    /// messages do not say that a write failed for want of space).
    pub free_at_error: Option<u64>,
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
    /// `max_rows`: rows the dataset will hold at most (a sequence file's trains), so that a
    /// file of few trains is not padded out to whole chunks of many.
    fn create(
        g: &Group,
        name: &str,
        key: &str,
        layout: &Layout,
        keep_first: bool,
        max_rows: Option<usize>,
    ) -> hdf5::Result<Self> {
        let layout = layout.clone();
        let (ds, chunk_rows, entry_bytes) = match &layout {
            Layout::Raw(element, shape) => {
                // check_keys has refused entries without a length.
                let entry_bytes = entry_len(*element, shape)
                    .ok_or_else(|| hdf5::Error::from("entry too large for one chunk"))?;
                let chunk_rows = chunk_rows_for(entry_bytes, max_rows);
                (
                    create_rows(g, name, *element, shape, chunk_rows)?,
                    chunk_rows,
                    entry_bytes,
                )
            }
            Layout::Text => {
                let ds = g
                    .new_dataset::<VarLenUnicode>()
                    .chunk(
                        max_rows
                            .unwrap_or(TEXT_CHUNK_ROWS)
                            .clamp(1, TEXT_CHUNK_ROWS),
                    )
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

    /// Writes the pending rows as one (padded) chunk. If the write fails they stay pending.
    fn flush(&mut self) -> hdf5::Result<()> {
        if self.pending.is_empty() && self.entry_bytes > 0 {
            return Ok(());
        }
        let pending_len = self.pending.len();
        let pending_rows = (pending_len / self.entry_bytes.max(1)) as u64;
        let start = self.rows - pending_rows;
        self.pending.resize(self.chunk_rows * self.entry_bytes, 0);
        let chunk = std::mem::take(&mut self.pending);
        let r = self.write_chunk(start, &chunk);
        self.pending = chunk;
        match r {
            Ok(()) => self.pending.clear(),
            Err(_) => self.pending.truncate(pending_len),
        }
        r
    }

    /// Forgets the rows after the first `rows` (those of a train whose write failed): the
    /// pending ones are dropped, written ones are cut off by [`KeyWriter::finish_rows`].
    fn roll_back(&mut self, rows: u64) {
        if rows >= self.rows {
            return;
        }
        let pending_rows = (self.pending.len() / self.entry_bytes.max(1)) as u64;
        let written = self.rows - pending_rows;
        let keep = rows.saturating_sub(written) as usize * self.entry_bytes;
        self.pending.truncate(keep);
        self.rows = rows;
    }

    /// Writes the pending rows and sets the dataset's extent to the rows appended.
    fn finish_rows(&mut self) -> hdf5::Result<()> {
        self.flush()?;
        self.ds.resize(self.extent(self.rows))
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

/// A source as its first train fixed it, for the whole run.
struct SourceLayout {
    control: bool,
    /// The name in the files.
    stored: String,
    /// Keys in name order and their layouts.
    keys: Vec<(String, Layout)>,
}

impl SourceLayout {
    fn of(name: &str, keys: &[(&str, Cell)]) -> SourceLayout {
        let control = is_control(keys);
        SourceLayout {
            control,
            stored: if control || name.contains(':') {
                name.to_string()
            } else {
                format!("{name}:output")
            },
            keys: keys
                .iter()
                .map(|(k, c)| (k.to_string(), Layout::of(c)))
                .collect(),
        }
    }

    /// Why `keys` (sorted) differ from this layout, if they do.
    fn difference(&self, keys: &[(&str, Cell)]) -> Option<String> {
        let same = self.keys.len() == keys.len()
            && self
                .keys
                .iter()
                .zip(keys)
                .all(|((kl, l), (k, c))| kl == k && *l == Layout::of(c));
        if same {
            return None;
        }
        Some(
            keys.iter()
                .find(|(k, c)| {
                    !self
                        .keys
                        .iter()
                        .any(|(kl, l)| kl == k && *l == Layout::of(c))
                })
                .map_or("keys missing".to_string(), |(k, c)| {
                    format!("{k}: {:?} differs from the first train", Layout::of(c))
                }),
        )
    }

    fn group_of<'a>(&self, key: &'a str) -> &'a str {
        if self.control {
            ""
        } else {
            index_group(key)
        }
    }
}

/// A source's datasets in one sequence file.
struct SourceWriter {
    /// Keys in the order of its [`SourceLayout`].
    keys: Vec<KeyWriter>,
    /// Per index group (CONTROL: the one group ""), the entry count of every train of the file.
    counts: BTreeMap<String, Vec<u64>>,
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

/// The sequence file being written.
struct SeqFile {
    /// Trains it takes at most (`None`: no limit).
    max_trains: Option<usize>,
    out: Output,
    file: hdf5::File,
    sources: BTreeMap<String, SourceWriter>,
    train_ids: Vec<u64>,
    timestamps: Vec<u64>,
}

impl SeqFile {
    fn create(path: &Path, opts: &RecordOptions) -> Result<SeqFile> {
        let out = Output::start(path, opts.overwrite)?;
        let file = hdf5::File::create(&out.tmp).map_err(h5(&out.tmp, "/"))?;
        Ok(SeqFile {
            max_trains: opts.trains_per_file.filter(|&n| n > 0),
            out,
            file,
            sources: BTreeMap::new(),
            train_ids: Vec::new(),
            timestamps: Vec::new(),
        })
    }

    /// The datasets of a source seen first in this file (with `trains` trains before it).
    fn new_source(
        &self,
        layout: &SourceLayout,
        trains: usize,
        max_rows: Option<usize>,
    ) -> Result<SourceWriter> {
        let path = &self.out.tmp;
        let section = if layout.control {
            "CONTROL"
        } else {
            "INSTRUMENT"
        };
        let base = format!("{section}/{}", layout.stored);
        let g = ensure_group(&self.file, &base).map_err(h5(path, &base))?;
        let mut w = SourceWriter {
            keys: Vec::new(),
            counts: BTreeMap::new(),
        };
        for (key, l) in &layout.keys {
            let ds_name = key.replace('.', "/");
            let kw = match KeyWriter::create(&g, &ds_name, key, l, layout.control, max_rows) {
                Ok(kw) => kw,
                Err(e) => {
                    // A source group without its INDEX would make readers refuse the file if
                    // it is finished after this error. If this fails too, so will finishing.
                    drop(g);
                    let _ = self.file.unlink(&base);
                    return Err(h5(path, &format!("{base}/{ds_name}"))(e));
                }
            };
            w.counts
                .entry(layout.group_of(key).to_string())
                .or_insert_with(|| vec![0; trains]);
            w.keys.push(kw);
        }
        if w.counts.is_empty() {
            w.counts.insert(String::new(), vec![0; trains]);
        }
        Ok(w)
    }

    /// Bytes the file may still take with this train, until it is finished: the chunk each
    /// buffered key is filling (written whole), what this train writes straight, the index and
    /// a margin. An upper bound, not an exact count.
    fn bytes_needed(&self, sources: &[(&str, Vec<(&str, Cell)>)]) -> u64 {
        let trains = self.train_ids.len() as u64 + 1;
        let mut groups = 0;
        let mut need = FINISH_MARGIN_BYTES + INDEX_BYTES_PER_TRAIN * trains;
        for w in self.sources.values() {
            groups += w.counts.len() as u64;
            need += w
                .keys
                .iter()
                .filter(|kw| kw.chunk_rows > 1)
                .map(|kw| (kw.chunk_rows * kw.entry_bytes) as u64)
                .sum::<u64>();
        }
        for (name, keys) in sources {
            let written = self.sources.get(*name);
            groups += u64::from(written.is_none()) * keys.len().max(1) as u64;
            for (i, (_, cell)) in keys.iter().enumerate() {
                let buffered = written
                    .and_then(|w| w.keys.get(i))
                    .is_some_and(|kw| kw.chunk_rows > 1 && kw.entry_bytes > 0);
                if !buffered {
                    need += cell_bytes(cell, written.is_none(), self.max_trains);
                }
            }
        }
        need + INDEX_BYTES_PER_GROUP_TRAIN * groups * trains
    }

    /// Appends the sources' values of one train (checked against their layouts), if the file
    /// system has room for it and for finishing the file after it (else
    /// [`Error::SpaceLow`], nothing written). On an error the rows of this train are forgotten
    /// again, so the file still holds its earlier trains.
    fn append(
        &mut self,
        train_id: u64,
        timestamp: u64,
        sources: &[(&str, Vec<(&str, Cell)>)],
        layouts: &BTreeMap<String, SourceLayout>,
    ) -> Result<()> {
        let needed = self.bytes_needed(sources);
        if let Some(available) = self.out.available_bytes().filter(|&a| a < needed) {
            return Err(Error::SpaceLow {
                dir: self.out.dir().to_path_buf(),
                available,
                needed,
            });
        }
        let n_before = self.train_ids.len();
        let written = self.append_rows(sources, layouts, n_before);
        if let Err(e) = written {
            self.roll_back(n_before);
            return Err(e);
        }
        for w in self.sources.values_mut() {
            for counts in w.counts.values_mut() {
                if counts.len() == n_before {
                    counts.push(0);
                }
            }
        }
        self.train_ids.push(train_id);
        self.timestamps.push(timestamp);
        Ok(())
    }

    fn append_rows(
        &mut self,
        sources: &[(&str, Vec<(&str, Cell)>)],
        layouts: &BTreeMap<String, SourceLayout>,
        n_before: usize,
    ) -> Result<()> {
        let path = self.out.tmp.clone();
        for (name, keys) in sources {
            let Some(layout) = layouts.get(*name) else {
                continue;
            };
            if !self.sources.contains_key(*name) {
                let w = self.new_source(layout, n_before, self.max_trains)?;
                self.sources.insert(name.to_string(), w);
            }
            let Some(w) = self.sources.get_mut(*name) else {
                continue;
            };
            for (kw, (_, cell)) in w.keys.iter_mut().zip(keys) {
                kw.append(cell).map_err(h5(&path, &kw.key))?;
            }
            for counts in w.counts.values_mut() {
                counts.push(1);
            }
        }
        Ok(())
    }

    /// Back to the first `trains` trains: counts cut there, each key's rows to their sum.
    fn roll_back(&mut self, trains: usize) {
        for w in self.sources.values_mut() {
            for counts in w.counts.values_mut() {
                counts.truncate(trains);
            }
            // CONTROL sources have the one group "".
            let control = w.counts.contains_key("");
            for kw in w.keys.iter_mut() {
                let group = if control { "" } else { index_group(&kw.key) };
                let rows = w.counts.get(group).map_or(0, |c| c.iter().sum());
                kw.roll_back(rows);
            }
        }
    }

    /// Writes the pending rows, INDEX, RUN and METADATA and renames the file into place; on an
    /// error the partial file is removed.
    fn finish(
        mut self,
        layouts: &BTreeMap<String, SourceLayout>,
        opts: &RecordOptions,
    ) -> Result<RecordedFile> {
        let (Some(&first_train), Some(&last_train)) =
            (self.train_ids.first(), self.train_ids.last())
        else {
            return Err(Error::NoTrains);
        };
        // (Error::NoSpace is not used: its "nothing was written" is not true of a recording.)
        self.write_end(layouts, opts)?;
        let n = self.train_ids.len();
        drop(self.sources);
        self.file.close().map_err(h5(&self.out.tmp, "/"))?;
        let path = self.out.commit()?;
        Ok(RecordedFile {
            path,
            trains: n,
            first_train,
            last_train,
        })
    }

    /// The end of a file: pending rows, INDEX, RUN and METADATA.
    fn write_end(
        &mut self,
        layouts: &BTreeMap<String, SourceLayout>,
        opts: &RecordOptions,
    ) -> Result<()> {
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
            for (source, src) in self.sources.iter_mut() {
                let Some(layout) = layouts.get(source) else {
                    continue;
                };
                let name = &layout.stored;
                for kw in src.keys.iter_mut() {
                    kw.finish_rows().map_err(w(&kw.key))?;
                }
                for (group, counts) in &src.counts {
                    let ipath = if layout.control {
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
                    ids.push(if layout.control {
                        format!("CONTROL/{name}")
                    } else {
                        format!("INSTRUMENT/{name}/{group}")
                    });
                }
                if layout.control {
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
                opts.proposal,
                opts.run,
                "recorded stream",
            )?;
        }
        Ok(())
    }
}

/// `RAW-R<run>-DA01-S<seq>.h5`.
fn sequence_name(run: u32, seq: usize) -> String {
    format!("RAW-R{run:04}-DA01-S{seq:05}.h5")
}

/// A run being recorded.
pub struct Recorder {
    dir: PathBuf,
    opts: RecordOptions,
    layouts: BTreeMap<String, SourceLayout>,
    /// The sequence file being written (none before the first train after a full one, and
    /// after a write error).
    current: Option<SeqFile>,
    files: Vec<RecordedFile>,
    lost_trains: Vec<u64>,
    /// A write error ended the recording.
    ended: bool,
    /// Bytes free on the output's file system when a write failed.
    free_at_error: Option<u64>,
    last_train: Option<u64>,
}

impl Recorder {
    /// Starts `<dir>/RAW-R<run>-DA01-S00000.h5` (under a temporary name), creating `dir`. An
    /// existing sequence file of the run is an error unless `overwrite`, which removes them
    /// all first: a recording that ends early (killed) must not leave its files mixed with
    /// later sequence files of an earlier one, which readers would take as one run.
    pub fn create(dir: &Path, opts: &RecordOptions) -> Result<Recorder> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for existing in sequence_files(dir, opts.run)? {
            if !opts.overwrite {
                return Err(Error::Exists(existing));
            }
            std::fs::remove_file(&existing).map_err(io(&existing))?;
        }
        let first = SeqFile::create(&dir.join(sequence_name(opts.run, 0)), opts)?;
        Ok(Recorder {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            layouts: BTreeMap::new(),
            current: Some(first),
            files: Vec::new(),
            lost_trains: Vec::new(),
            ended: false,
            free_at_error: None,
            last_train: None,
        })
    }

    /// Trains appended so far (in files, being written or lost).
    pub fn trains(&self) -> usize {
        self.files.iter().map(|f| f.trains).sum::<usize>()
            + self.current.as_ref().map_or(0, |c| c.train_ids.len())
            + self.lost_trains.len()
    }

    /// Appends one train: `train_id` above every earlier one and not 0 (else
    /// [`Error::TrainOrder`], nothing written), `timestamp` (ns since the epoch) for
    /// INDEX/timestamp, and the sources' values. A write error ends the recording: the file
    /// being written is finished without this train (or removed if that fails too), the error
    /// is returned, and later calls return [`Error::RecordingEnded`].
    pub fn append(
        &mut self,
        train_id: u64,
        timestamp: u64,
        sources: &[SourceData],
    ) -> Result<Appended> {
        if self.ended {
            return Err(Error::RecordingEnded);
        }
        if train_id == 0 || self.last_train.is_some_and(|l| train_id <= l) {
            return Err(Error::TrainOrder {
                train_id,
                last: self.last_train,
            });
        }
        let mut appended = Appended::default();
        let mut accepted: Vec<(&str, Vec<(&str, Cell)>)> = Vec::new();
        let mut new_layouts = Vec::new();
        for src in sources {
            let mut keys = src.keys.clone();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            let why = if let Some(why) = check_keys(&keys) {
                Some(why)
            } else if accepted.iter().any(|(n, _)| *n == src.name) {
                Some("source appears twice".into())
            } else {
                match self.layouts.get(src.name) {
                    Some(layout) => layout.difference(&keys),
                    None => {
                        new_layouts.push((src.name, SourceLayout::of(src.name, &keys)));
                        None
                    }
                }
            };
            match why {
                Some(why) => appended.refused.push((src.name.to_string(), why)),
                None => accepted.push((src.name, keys)),
            }
        }
        let current = match self.current.take() {
            Some(c) => c,
            None => {
                let seq = self.files.len();
                match SeqFile::create(
                    &self.dir.join(sequence_name(self.opts.run, seq)),
                    &self.opts,
                ) {
                    Ok(c) => c,
                    Err(e) => return Err(self.fail(e)),
                }
            }
        };
        // Sources new in this train are fixed by it even if its write fails: their datasets
        // may be in the file already, and are then indexed (with no entries) when it is
        // finished.
        for (name, layout) in new_layouts {
            self.layouts.insert(name.to_string(), layout);
        }
        let current = self.current.insert(current);
        if let Err(e) = current.append(train_id, timestamp, &accepted, &self.layouts) {
            return Err(self.fail(e));
        }
        self.last_train = Some(train_id);
        let full = self
            .opts
            .trains_per_file
            .filter(|&n| n > 0)
            .is_some_and(|n| current.train_ids.len() >= n);
        if full {
            if let Some(c) = self.current.take() {
                self.finish_file(c)?;
            }
        }
        Ok(appended)
    }

    /// Finishes a sequence file; on an error its trains are lost and the recording ends.
    fn finish_file(&mut self, file: SeqFile) -> Result<()> {
        let trains = file.train_ids.clone();
        // Measured while the file still takes its room (it is removed if it cannot be finished).
        let free = file.out.available_bytes();
        match file.finish(&self.layouts, &self.opts) {
            Ok(f) => {
                self.files.push(f);
                Ok(())
            }
            Err(e) => {
                self.lost_trains.extend(trains);
                self.ended = true;
                if self.free_at_error.is_none() {
                    self.free_at_error = free;
                }
                Err(e)
            }
        }
    }

    /// Ends the recording after write error `e`: the file being written is finished with the
    /// trains it holds (or removed, its trains lost). Returns `e`.
    fn fail(&mut self, e: Error) -> Error {
        self.free_at_error = self.current.as_ref().and_then(|c| c.out.available_bytes());
        if let Some(c) = self.current.take() {
            if !c.train_ids.is_empty() {
                // The error that ended the recording is the one to report.
                let _ = self.finish_file(c);
            }
        }
        self.ended = true;
        e
    }

    /// Finishes the sequence file being written and says what the recording wrote (with the
    /// error finishing it, if there is one, in [`RecordSummary::error`]). [`Error::NoTrains`]
    /// (and nothing written) when no train was appended and no write failed.
    pub fn finish(mut self) -> Result<RecordSummary> {
        let mut error = None;
        if let Some(c) = self.current.take() {
            if !c.train_ids.is_empty() {
                error = self.finish_file(c).err();
            }
        }
        if !self.ended && self.files.is_empty() {
            return Err(Error::NoTrains);
        }
        let control_sources = self.layouts.values().filter(|s| s.control).count();
        let renamed = self
            .layouts
            .iter()
            .filter(|(name, s)| **name != s.stored)
            .map(|(name, s)| (name.clone(), s.stored.clone()))
            .collect();
        Ok(RecordSummary {
            trains: self.files.iter().map(|f| f.trains).sum(),
            files: self.files,
            lost_trains: self.lost_trains,
            error,
            free_at_error: self.free_at_error,
            control_sources,
            instrument_sources: self.layouts.len() - control_sources,
            renamed,
        })
    }
}

/// The sequence files of run `run` in `dir` (`RAW-R<run>-DA01-S<5 digits>.h5`), sorted.
fn sequence_files(dir: &Path, run: u32) -> Result<Vec<PathBuf>> {
    let prefix = format!("RAW-R{run:04}-DA01-S");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let is_sequence = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".h5"))
            .is_some_and(|seq| seq.len() == 5 && seq.bytes().all(|b| b.is_ascii_digit()));
        if is_sequence {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}
