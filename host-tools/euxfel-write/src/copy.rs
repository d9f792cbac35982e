//! Copying a key's data: the output dataset is created like the first source dataset
//! (datatype, chunking, filters, fill value; first dimension unlimited), then each segment is
//! copied chunk by chunk as stored bytes where source and output chunks line up (same chunk
//! shape spanning whole rows, same filters and type, both offsets on chunk boundaries) and
//! that saves work (filtered chunks: no decompression and recompression; large chunks), and
//! through a bounded buffer otherwise.
//!
//! Through the buffer, rows of unfiltered little-endian numbers are read from the source
//! file's memory map (euxfel's reader: one walk of the chunk index, then plain copies)
//! instead of one libhdf5 read per chunk, and rows of consecutive segments are gathered so
//! that one libhdf5 write covers up to [`GATHER_BYTES`] of the output (a module of the
//! 340-file benchmark run: 20 segments of 1000 one-frame chunks each, 20 writes instead of
//! 20 reads and 20 writes that each walk 1000 chunks).

use std::path::{Path, PathBuf};

use hdf5::dataset::FillValue;
use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Extent, Group, SimpleExtents};

use crate::error::{h5, Error, Result};
use crate::output::Stop;
use crate::write::SegmentSource;
use euxfel::DataSpan;

/// Rows moved through memory at once by libhdf5 reads and writes are capped at about this
/// many bytes.
const BLOCK_BYTES: u64 = 16 << 20;

/// Rows read from the map are gathered for one write in a buffer of about this size: small
/// enough to stay in the CPU cache and to be allocated (and page-faulted) once for the
/// whole copy, large enough that a libhdf5 write covers many small chunks.
const GATHER_BYTES: u64 = 1 << 20;

/// Unfiltered chunks smaller than this are copied through memory: one call per chunk costs
/// more than libhdf5 moving many of them in one read and one write (a module of the 340-file
/// benchmark run, 512-byte chunks: 0.33 s CPU chunk by chunk, 0.24 s through memory).
const DIRECT_MIN_UNFILTERED_CHUNK_BYTES: u64 = 64 << 10;

/// Chunk size (bytes) aimed at when the source dataset is not chunked.
const AUTO_CHUNK_BYTES: u64 = 1 << 20;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CopyStats {
    pub direct_chunks: u64,
    pub rows_through_memory: u64,
    /// Of `rows_through_memory`, those read from the source files' maps.
    pub rows_from_map: u64,
    pub bytes: u64,
}

/// Buffers reused from key to key of a copy: touched (page-faulted) once, not once per key.
#[derive(Default)]
pub(crate) struct CopyBuffers {
    /// Rows gathered for one write ([`Gather`]).
    gather: Vec<u8>,
    /// One stored chunk, or a block of rows read by libhdf5.
    block: Vec<u8>,
}

/// Creates `parent/name` with `total` rows like `first` and copies every segment into it,
/// checking `stop` before every chunk or block.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_segments(
    parent: &Group,
    name: &str,
    first: &(PathBuf, Dataset),
    segments: &[SegmentSource],
    total: u64,
    out_path: &Path,
    object: &str,
    stop: Stop,
    buffers: &mut CopyBuffers,
) -> Result<CopyStats> {
    let (first_path, src0) = first;
    let shape0 = src0.shape();
    let entry: Vec<usize> = shape0.get(1..).map(<[usize]>::to_vec).unwrap_or_default();
    let dtype = src0.dtype().map_err(h5(first_path, object))?;
    let row_bytes = (dtype.size() as u64).saturating_mul(entry.iter().map(|&d| d as u64).product());
    // The builder computes its own chunk shape unless given one, so it always gets one.
    let (dcpl, chunk) = match (src0.is_chunked(), src0.chunk()) {
        (true, Some(chunk)) => (src0.dcpl().map_err(h5(first_path, object))?, chunk),
        _ => {
            let rows = (AUTO_CHUNK_BYTES / row_bytes.max(1)).clamp(1, total.max(1));
            let mut chunk = vec![rows as usize];
            chunk.extend(entry.iter().map(|&d| d.max(1)));
            let mut builder = hdf5::plist::DatasetCreateBuilder::new();
            builder.chunk(chunk.clone());
            // Kept so rows never written in the source read the same from the output.
            if let Some(fill) = src0.fill_value().map_err(h5(first_path, object))? {
                builder.fill_value(fill);
            }
            let plist = builder.finish().map_err(h5(first_path, object))?;
            (plist, chunk)
        }
    };
    let mut extents = vec![Extent::resizable(total as usize)];
    extents.extend(entry.iter().map(|&d| Extent::fixed(d)));
    let dst = parent
        .new_dataset_builder()
        .set_dcpl(&dcpl)
        .chunk(chunk)
        .empty_as(&dtype)
        .shape(SimpleExtents::from_vec(extents))
        .create(name)
        .map_err(h5(out_path, object))?;
    let mut stats = CopyStats::default();
    let layout = Layout::of(&dst).map_err(h5(out_path, object))?;
    let chunk_rows = layout
        .chunk
        .as_ref()
        .and_then(|c| c.first().copied())
        .unwrap_or(1)
        .max(1) as u64;
    let direct = layout.filters.is_empty()
        && layout
            .chunk
            .as_ref()
            .is_some_and(|c| c.get(1..) == layout.shape.get(1..));
    let at = Place {
        out_path,
        object,
        stop,
        layout: &layout,
    };
    let mut gather = Gather::new(row_bytes, chunk_rows, direct, &mut buffers.gather);
    let buf = &mut buffers.block;
    for seg in segments {
        let shape = seg.ds.shape();
        if shape.get(1..) != Some(&entry[..]) {
            return Err(Error::ShapeMismatch {
                path: seg.path.clone(),
                object: object.into(),
                expected: entry.clone(),
                found: shape.get(1..).map(<[usize]>::to_vec).unwrap_or_default(),
            });
        }
        copy_segment(seg, &dst, total, &mut gather, buf, &mut stats, &at)?;
    }
    gather.flush(&dst, &mut stats, &at)?;
    Ok(stats)
}

/// The creation properties that decide how a dataset's rows are copied, queried once (each
/// query of the `hdf5` crate copies the dataset's creation property list).
struct Layout {
    chunk: Option<Vec<usize>>,
    filters: Vec<hdf5::filters::Filter>,
    dtype: hdf5::Datatype,
    /// The library's default fill value (zeros).
    default_fill: bool,
    shape: Vec<usize>,
}

impl Layout {
    fn of(ds: &Dataset) -> hdf5::Result<Layout> {
        let dcpl = ds.dcpl()?;
        Ok(Layout {
            chunk: dcpl.chunk(),
            filters: dcpl.filters(),
            dtype: ds.dtype()?,
            default_fill: dcpl.fill_value_defined() == FillValue::Default,
            shape: ds.shape(),
        })
    }
}

/// The output's rows per chunk if a source dataset (`src`) can be copied as stored chunks
/// into the output (`dst`).
fn direct_chunk_rows(src: &Layout, dst: &Layout) -> Option<u64> {
    let (sc, dc) = (src.chunk.as_ref()?, dst.chunk.as_ref()?);
    let whole_rows = sc.get(1..) == dst.shape.get(1..);
    let chunk_bytes = sc
        .iter()
        .fold(src.dtype.size() as u64, |a, &d| a.saturating_mul(d as u64));
    let same = sc == dc
        && whole_rows
        && src.filters == dst.filters
        && src.dtype == dst.dtype
        && stored_in_chunks(&src.dtype.to_descriptor().ok()?);
    let worth_it = !src.filters.is_empty() || chunk_bytes >= DIRECT_MIN_UNFILTERED_CHUNK_BYTES;
    (same && worth_it)
        .then(|| sc.first().copied().unwrap_or(0) as u64)
        .filter(|&c| c > 0)
}

/// Whether `src` has no storage allocated at all (no chunk, or contiguous space never written)
/// and the same fill value as `dst`, so its rows already read the same from `dst`. `row` is
/// the segment's first row: if its chunk exists (one index lookup), the answer is no without
/// the storage size, which walks every chunk.
fn never_written(src: &Dataset, layout: &Layout, dst: &Dataset, row: u64) -> hdf5::Result<bool> {
    if let Some(chunk) = &layout.chunk {
        let c = chunk.first().copied().unwrap_or(1).max(1) as u64;
        let mut offset = vec![0u64; chunk.len()];
        if let Some(first) = offset.first_mut() {
            *first = row / c * c;
        }
        if h5util::chunk_allocated(src, &offset)? {
            return Ok(false);
        }
    }
    Ok(src.storage_size() == 0 && src.fill_value()? == dst.fill_value()?)
}

/// Whether values of this type live entirely in the chunk (variable-length values live in the
/// file's global heap, and a chunk holds only references into the source file's heap).
fn stored_in_chunks(t: &TypeDescriptor) -> bool {
    match t {
        TypeDescriptor::VarLenArray(_)
        | TypeDescriptor::VarLenAscii
        | TypeDescriptor::VarLenUnicode
        | TypeDescriptor::Reference(_) => false,
        TypeDescriptor::FixedArray(t, _) => stored_in_chunks(t),
        TypeDescriptor::Compound(c) => c.fields.iter().all(|f| stored_in_chunks(&f.ty)),
        _ => true,
    }
}

/// Where a segment is copied to, for errors, and when to stop.
struct Place<'a> {
    out_path: &'a Path,
    object: &'a str,
    stop: Stop<'a>,
    /// The output dataset's creation properties.
    layout: &'a Layout,
}

/// Whether rows of `src` can be read from its file's memory map and written to `dst` as they
/// are: little-endian integers or floats (stored bytes are the native memory layout on this
/// little-endian host), no filters, the same type as `dst`, and unallocated chunks reading as
/// zeros (the map reader's rule: the library default fill value).
fn rows_from_map(src: &Layout, dst: &Layout) -> hdf5::Result<bool> {
    if cfg!(target_endian = "big") || !src.filters.is_empty() {
        return Ok(false);
    }
    let numeric = matches!(
        src.dtype.to_descriptor()?,
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_)
    );
    Ok(numeric
        && src.dtype.byte_order() == hdf5::datatype::ByteOrder::LittleEndian
        && src.dtype == dst.dtype
        && src.default_fill)
}

/// Consecutive output rows waiting in memory for one libhdf5 write. A write ends on an
/// output chunk boundary (or the end of the data) so that no output chunk is written, and
/// compressed, twice; the buffer is reused from write to write.
struct Gather<'a> {
    row_bytes: u64,
    chunk_rows: u64,
    /// Rows per write: about [`GATHER_BYTES`], a whole number of output chunks.
    block_rows: u64,
    /// Whole output chunks are written as they are (`H5Dwrite_chunk`): the output has no
    /// filters and its chunks span whole rows, so a chunk's stored bytes are its rows.
    direct: bool,
    /// First output row of the rows held.
    start: u64,
    rows: u64,
    buf: &'a mut Vec<u8>,
}

impl<'a> Gather<'a> {
    fn new(row_bytes: u64, chunk_rows: u64, direct: bool, buf: &'a mut Vec<u8>) -> Gather<'a> {
        buf.clear();
        let block_rows = (GATHER_BYTES / row_bytes.max(1))
            .max(1)
            .div_ceil(chunk_rows)
            * chunk_rows;
        Gather {
            row_bytes,
            chunk_rows,
            direct,
            block_rows,
            start: 0,
            rows: 0,
            buf,
        }
    }

    /// The output row at which the rows held must be written: a block after a start on a
    /// chunk boundary, else the next boundary.
    fn limit(&self) -> u64 {
        if self.start % self.chunk_rows == 0 {
            self.start + self.block_rows
        } else {
            (self.start / self.chunk_rows + 1) * self.chunk_rows
        }
    }

    /// Reads rows of `seg` from row `s` on, from its file's map, to the output rows `to`,
    /// writing whenever a block is full.
    fn add(
        &mut self,
        seg: &SegmentSource,
        mut s: u64,
        to: std::ops::Range<u64>,
        dst: &Dataset,
        stats: &mut CopyStats,
        at: &Place,
    ) -> Result<()> {
        let (mut d, end) = (to.start, to.end);
        if self.rows > 0 && self.start + self.rows != d {
            self.flush(dst, stats, at)?;
        }
        let span = DataSpan {
            file: seg.file.clone(),
            dataset: format!("/{}", at.object),
            first: seg.src_first,
            train_ids: Vec::new(),
            counts: Vec::new(),
        };
        while d < end {
            if self.rows == 0 {
                self.start = d;
            }
            let k = (self.limit() - d).min(end - d);
            let have = self.buf.len();
            let more = usize::try_from(k * self.row_bytes).map_err(|_| Error::Hdf5 {
                path: seg.path.clone(),
                object: at.object.into(),
                msg: format!("{k} rows of {} bytes", self.row_bytes),
            })?;
            self.buf.resize(have + more, 0);
            span.read_rows(s, k, self.row_bytes as usize, &mut self.buf[have..])?;
            self.rows += k;
            s += k;
            d += k;
            if d == self.limit() {
                self.flush(dst, stats, at)?;
            }
        }
        Ok(())
    }

    /// Writes the rows held, if any.
    fn flush(&mut self, dst: &Dataset, stats: &mut CopyStats, at: &Place) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        at.stop.check()?;
        let (c, rb) = (self.chunk_rows, self.row_bytes as usize);
        let end = self.start + self.rows;
        // Whole output chunks as stored bytes: no selections, no chunk cache.
        let (mut d, mut o) = (self.start, 0usize);
        if self.direct && d % c == 0 {
            let chunks = (end - d) / c;
            let n = chunks as usize * c as usize * rb;
            h5util::write_chunks(dst, d, c, 0, c as usize * rb, &self.buf[..n])
                .map_err(h5(at.out_path, at.object))?;
            d += chunks * c;
            o = n;
        }
        if d < end {
            h5util::write_rows_native(dst, d, end - d, &self.buf[o..])
                .map_err(h5(at.out_path, at.object))?;
        }
        stats.rows_through_memory += self.rows;
        stats.rows_from_map += self.rows;
        stats.bytes += self.buf.len() as u64;
        self.rows = 0;
        self.buf.clear();
        Ok(())
    }
}

fn copy_segment(
    seg: &SegmentSource,
    dst: &Dataset,
    total: u64,
    gather: &mut Gather<'_>,
    buf: &mut Vec<u8>,
    stats: &mut CopyStats,
    at: &Place,
) -> Result<()> {
    let ndim = at.layout.shape.len();
    let (mut s, mut d, end) = (seg.src_first, seg.dst_first, seg.dst_first + seg.rows);
    let layout = Layout::of(&seg.ds).map_err(h5(&seg.path, at.object))?;
    if never_written(&seg.ds, &layout, dst, s).map_err(h5(&seg.path, at.object))? {
        // Every row reads as the fill value, which the output shares: writing it would only
        // allocate storage (EXtra-data's legacy AGIPD example: 8 GB of zeros from 480 kB).
        return Ok(());
    }
    if let Some(c) = direct_chunk_rows(&layout, at.layout) {
        if s % c == 0 && d % c == 0 {
            gather.flush(dst, stats, at)?;
            let mut offset = vec![0u64; ndim];
            // Whole chunks, and a last partial one when it ends the output (its tail lies
            // beyond the output's extent and is never read).
            while d < end && (d + c <= end || end == total) {
                at.stop.check()?;
                offset[0] = s;
                let stored =
                    h5util::read_chunk(&seg.ds, &offset, buf).map_err(h5(&seg.path, at.object))?;
                if let Some(mask) = stored {
                    offset[0] = d;
                    h5util::write_chunk(dst, &offset, mask, buf)
                        .map_err(h5(at.out_path, at.object))?;
                    stats.direct_chunks += 1;
                    stats.bytes += buf.len() as u64;
                }
                s += c;
                d += c;
            }
        }
    }
    if d == end {
        return Ok(());
    }
    if rows_from_map(&layout, at.layout).map_err(h5(&seg.path, at.object))? {
        return gather.add(seg, s, d..end, dst, stats, at);
    }
    // Other types (strings, big-endian, filtered sources) through libhdf5, in blocks ending
    // on the output's chunk boundaries.
    gather.flush(dst, stats, at)?;
    let c = gather.chunk_rows;
    let block = (BLOCK_BYTES / gather.row_bytes.max(1)).max(1).div_ceil(c) * c;
    while d < end {
        let next_boundary = (d / c + 1) * c;
        let block_end = if d % c == 0 { d + block } else { next_boundary }.min(end);
        let n = block_end - d;
        at.stop.check()?;
        h5util::copy_rows(&seg.ds, s, dst, d, n, buf).map_err(h5(&seg.path, at.object))?;
        stats.rows_through_memory += n;
        stats.bytes += n * gather.row_bytes;
        s += n;
        d += n;
    }
    Ok(())
}
