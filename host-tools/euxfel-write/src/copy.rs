//! Copying a key's data: the output dataset is created like the first source dataset
//! (datatype, chunking, filters, fill value; first dimension unlimited), then each segment is
//! copied chunk by chunk as stored bytes where source and output chunks line up (same chunk
//! shape spanning whole rows, same filters and type, both offsets on chunk boundaries) and
//! that saves work (filtered chunks: no decompression and recompression; large chunks), and
//! through a bounded buffer otherwise.

use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Extent, Group, SimpleExtents};

use crate::error::{h5, Error, Result};
use crate::output::Stop;
use crate::write::SegmentSource;

/// Rows moved through memory at once are capped at about this many bytes.
const BLOCK_BYTES: u64 = 16 << 20;

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
    pub bytes: u64,
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
    let mut buf = Vec::new();
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
        let at = Place {
            out_path,
            object,
            stop,
        };
        copy_segment(seg, &dst, total, row_bytes, &mut buf, &mut stats, &at)?;
    }
    Ok(stats)
}

/// The output's rows per chunk if `seg` can be copied as stored chunks into `dst`.
fn direct_chunk_rows(src: &Dataset, dst: &Dataset) -> Option<u64> {
    let (sc, dc) = (src.chunk()?, dst.chunk()?);
    let shape = dst.shape();
    let whole_rows = sc.get(1..) == shape.get(1..);
    let dtype = src.dtype().ok()?;
    let filters = src.filters();
    let chunk_bytes = sc
        .iter()
        .fold(dtype.size() as u64, |a, &d| a.saturating_mul(d as u64));
    let same = sc == dc
        && whole_rows
        && filters == dst.filters()
        && dtype == dst.dtype().ok()?
        && stored_in_chunks(&dtype.to_descriptor().ok()?);
    let worth_it = !filters.is_empty() || chunk_bytes >= DIRECT_MIN_UNFILTERED_CHUNK_BYTES;
    (same && worth_it).then(|| sc[0] as u64).filter(|&c| c > 0)
}

/// Whether `src` has no storage allocated at all (no chunk, or contiguous space never written)
/// and the same fill value as `dst`, so its rows already read the same from `dst`.
fn never_written(src: &Dataset, dst: &Dataset) -> hdf5::Result<bool> {
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
}

fn copy_segment(
    seg: &SegmentSource,
    dst: &Dataset,
    total: u64,
    row_bytes: u64,
    buf: &mut Vec<u8>,
    stats: &mut CopyStats,
    at: &Place,
) -> Result<()> {
    let ndim = dst.ndim();
    let (mut s, mut d, end) = (seg.src_first, seg.dst_first, seg.dst_first + seg.rows);
    if never_written(&seg.ds, dst).map_err(h5(&seg.path, at.object))? {
        // Every row reads as the fill value, which the output shares: writing it would only
        // allocate storage (EXtra-data's legacy AGIPD example: 8 GB of zeros from 480 kB).
        return Ok(());
    }
    if let Some(c) = direct_chunk_rows(&seg.ds, dst) {
        if s % c == 0 && d % c == 0 {
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
    // The rest through memory, in blocks ending on the output's chunk boundaries so no
    // output chunk is compressed twice.
    let c = dst
        .chunk()
        .and_then(|c| c.first().copied())
        .unwrap_or(1)
        .max(1) as u64;
    let block = (BLOCK_BYTES / row_bytes.max(1)).max(1).div_ceil(c) * c;
    while d < end {
        let next_boundary = (d / c + 1) * c;
        let block_end = if d % c == 0 { d + block } else { next_boundary }.min(end);
        let n = block_end - d;
        at.stop.check()?;
        h5util::copy_rows(&seg.ds, s, dst, d, n, buf).map_err(h5(&seg.path, at.object))?;
        stats.rows_through_memory += n;
        stats.bytes += n * row_bytes;
        s += n;
        d += n;
    }
    Ok(())
}
