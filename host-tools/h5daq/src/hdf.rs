//! HDF5 operations of the DAQ writer: file creation with the job layout, appends, attributes.
//!
//! Layout: `/<group>/time` (float64, `(n,)`) and `/<group>/<dataset>` (`(n, *shape)`), all
//! chunked with an unlimited first axis and fletcher32 (except variable-length strings, which
//! HDF5 cannot checksum), optionally shuffle + deflate. Files use
//! the HDF5 1.10 format (superblock v3), which SWMR needs and HDF5 >= 1.10 readers open.

use std::path::Path;

use hdf5::types::{TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, Extent, Extents, File, Group, Location, SimpleExtents};
use ndarray::{ArrayViewD, IxDyn};

use super::column::{with_column, Column, Dtype, Elem};
use super::error::DaqError;
use super::job::{AttrValue, DatasetSpec, Drained};

/// Largest chunk the writer creates; the chunk length is reduced for large entries.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;

/// Dataset creation settings shared by all jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filters {
    /// deflate (gzip) level 1-9; `None` for no compression.
    pub deflate: Option<u8>,
    /// Byte shuffle before deflate.
    pub shuffle: bool,
}

/// What the writer needs to know about one job.
#[derive(Debug, Clone)]
pub struct JobLayout {
    pub group: String,
    pub datasets: Vec<DatasetSpec>,
    pub chunk_length: usize,
    pub attrs: Vec<(String, AttrValue)>,
}

impl JobLayout {
    /// Chunk rows for a dataset whose entries have `entry_bytes` bytes.
    pub fn chunk_rows(&self, entry_bytes: usize) -> usize {
        let cap = (MAX_CHUNK_BYTES / entry_bytes.max(1)).max(1);
        self.chunk_length.clamp(1, cap)
    }
    /// Chunk rows of the `time` dataset (the reference: at least 16).
    pub fn time_chunk_rows(&self) -> usize {
        self.chunk_length.max(16)
    }
    /// Bytes of the largest chunk of this job.
    pub fn max_chunk_bytes(&self) -> usize {
        let t = self.time_chunk_rows() * 8;
        self.datasets
            .iter()
            .map(|d| {
                let e = d.entry_len() * d.dtype.size();
                self.chunk_rows(e) * e
            })
            .fold(t, usize::max)
    }
}

/// The file type of a dataset of `dtype`: little-endian numbers as on the writing hosts,
/// fixed-length strings NUL-padded, strings UTF-8 (what h5py writes for `S<n>` with
/// `string_dtype('utf-8', n)` and for `string_dtype()`).
fn type_descriptor(dtype: Dtype) -> TypeDescriptor {
    use hdf5::types::{FloatSize, IntSize};
    match dtype {
        Dtype::F64 => TypeDescriptor::Float(FloatSize::U8),
        Dtype::F32 => TypeDescriptor::Float(FloatSize::U4),
        Dtype::I64 => TypeDescriptor::Integer(IntSize::U8),
        Dtype::I32 => TypeDescriptor::Integer(IntSize::U4),
        Dtype::I16 => TypeDescriptor::Integer(IntSize::U2),
        Dtype::I8 => TypeDescriptor::Integer(IntSize::U1),
        Dtype::U64 => TypeDescriptor::Unsigned(IntSize::U8),
        Dtype::U32 => TypeDescriptor::Unsigned(IntSize::U4),
        Dtype::U16 => TypeDescriptor::Unsigned(IntSize::U2),
        Dtype::U8 => TypeDescriptor::Unsigned(IntSize::U1),
        Dtype::FixedStr(n) => TypeDescriptor::FixedUnicode(n),
        Dtype::Str => TypeDescriptor::VarLenUnicode,
    }
}

fn file_builder(chunk_cache_bytes: usize) -> hdf5::FileBuilder {
    let mut b = File::with_options();
    b.with_fapl(|p| {
        p.libver_bounds(
            hdf5::file::LibraryVersion::V110,
            hdf5::file::LibraryVersion::V110,
        )
        .chunk_cache(521, chunk_cache_bytes.max(1 << 20), 0.75)
    });
    b
}

/// Opens an existing DAQ file for appending.
pub fn open_rw(path: &Path, chunk_cache_bytes: usize) -> Result<File, DaqError> {
    file_builder(chunk_cache_bytes)
        .open_rw(path)
        .map_err(DaqError::hdf5(format!(
            "{}: open for writing",
            path.display()
        )))
}

/// Creates a new DAQ file (fails if it exists) with the root attributes and every job's group
/// and empty datasets.
pub fn create(
    path: &Path,
    jobs: &[JobLayout],
    filters: Filters,
    root_attrs: &[(String, AttrValue)],
    chunk_cache_bytes: usize,
) -> Result<File, DaqError> {
    let ctx = |what: &str| format!("{}: {what}", path.display());
    let file = file_builder(chunk_cache_bytes)
        .create_excl(path)
        .map_err(DaqError::hdf5(ctx("create")))?;
    for (k, v) in root_attrs {
        set_attr(&file, k, v).map_err(DaqError::hdf5(ctx(&format!("attribute {k}"))))?;
    }
    for job in jobs {
        let g = file
            .create_group(&job.group)
            .map_err(DaqError::hdf5(ctx(&format!("create group /{}", job.group))))?;
        for (k, v) in &job.attrs {
            set_attr(&g, k, v).map_err(DaqError::hdf5(ctx(&format!(
                "attribute /{}@{k}",
                job.group
            ))))?;
        }
        create_dataset(&g, "time", Dtype::F64, &[], job.time_chunk_rows(), filters)
            .map_err(DaqError::hdf5(ctx(&format!("create /{}/time", job.group))))?;
        for d in &job.datasets {
            let rows = job.chunk_rows(d.entry_len() * d.dtype.size());
            let ds = create_dataset(&g, &d.name, d.dtype, &d.shape, rows, filters).map_err(
                DaqError::hdf5(ctx(&format!("create /{}/{}", job.group, d.name))),
            )?;
            if let Some(u) = &d.unit {
                set_attr(&ds, "units", &AttrValue::Str(u.clone())).map_err(DaqError::hdf5(ctx(
                    &format!("attribute /{}/{}@units", job.group, d.name),
                )))?;
            }
        }
    }
    Ok(file)
}

fn create_dataset(
    g: &Group,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    chunk_rows: usize,
    filters: Filters,
) -> hdf5::Result<Dataset> {
    let mut ext = vec![Extent::resizable(0)];
    ext.extend(shape.iter().map(|&n| Extent::fixed(n)));
    let mut chunk = vec![chunk_rows];
    chunk.extend_from_slice(shape);
    let mut b = g
        .new_dataset_builder()
        .empty_as(type_descriptor(dtype))
        .chunk(chunk);
    // HDF5 cannot checksum variable-length data ("not suitable for filters").
    if dtype != Dtype::Str {
        b = b.fletcher32();
    }
    if let Some(level) = filters.deflate {
        if filters.shuffle {
            b = b.shuffle();
        }
        b = b.deflate(level);
    }
    b.shape(Extents::Simple(SimpleExtents::from_vec(ext)))
        .create(name)
}

/// Writes (creating or replacing) an attribute.
pub(crate) fn set_attr(loc: &Location, name: &str, value: &AttrValue) -> hdf5::Result<()> {
    if loc.attr_names()?.iter().any(|n| n == name) {
        loc.delete_attr(name)?;
    }
    match value {
        AttrValue::Str(s) => {
            let v: VarLenUnicode = s
                .replace('\0', "")
                .parse()
                .map_err(|e| hdf5::Error::from(format!("attribute {name}: {e}")))?;
            loc.new_attr::<VarLenUnicode>()
                .create(name)?
                .write_scalar(&v)
        }
        AttrValue::Int(v) => loc.new_attr::<i64>().create(name)?.write_scalar(v),
        AttrValue::Float(v) => loc.new_attr::<f64>().create(name)?.write_scalar(v),
        AttrValue::Bool(v) => loc.new_attr::<bool>().create(name)?.write_scalar(v),
    }
}

/// Writes an unsigned 64-bit attribute (file ids).
pub(crate) fn set_attr_u64(loc: &Location, name: &str, value: u64) -> hdf5::Result<()> {
    if loc.attr_names()?.iter().any(|n| n == name) {
        loc.delete_attr(name)?;
    }
    loc.new_attr::<u64>().create(name)?.write_scalar(&value)
}

/// Rows stored for `job`: the shortest of `/<group>/time` and the job's datasets (they are equal
/// unless a write was cut short without its rollback).
pub(crate) fn rows_in(file: &File, job: &JobLayout) -> Result<usize, DaqError> {
    let fname = file.filename();
    let ctx = |what: &str| format!("{fname}: /{}/{what}", job.group);
    let g = file
        .group(&job.group)
        .map_err(DaqError::hdf5(ctx("open group")))?;
    let mut n = usize::MAX;
    for name in std::iter::once("time").chain(job.datasets.iter().map(|d| d.name.as_str())) {
        let ds = g.dataset(name).map_err(DaqError::hdf5(ctx(name)))?;
        n = n.min(ds.shape().first().copied().unwrap_or(0));
    }
    Ok(n)
}

/// Shrinks `/<group>/time` and every dataset of `job` to `rows` rows (the rollback of a failed
/// append: the file then holds what it held before).
pub(crate) fn truncate(file: &File, job: &JobLayout, rows: usize) -> Result<(), DaqError> {
    let fname = file.filename();
    let ctx = |what: &str| format!("{fname}: /{}/{what}: roll back to {rows} rows", job.group);
    let g = file
        .group(&job.group)
        .map_err(DaqError::hdf5(ctx("open group")))?;
    let mut first_error = None;
    let entries = std::iter::once(("time", &[][..])).chain(
        job.datasets
            .iter()
            .map(|d| (d.name.as_str(), d.shape.as_slice())),
    );
    for (name, shape) in entries {
        let res = g.dataset(name).and_then(|ds| {
            if ds.shape().first().copied().unwrap_or(0) == rows {
                return Ok(());
            }
            let mut dims = vec![rows];
            dims.extend_from_slice(shape);
            ds.resize(dims)
        });
        if let Err(e) = res {
            first_error.get_or_insert(DaqError::Hdf5 {
                context: ctx(name),
                source: e,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Appends drained rows to `/<group>/time` and each dataset, after the rows already stored
/// ([`rows_in`]). If any part fails, every dataset of the job is shrunk back, so the file holds
/// what it held before (the error is the append's; a failed rollback is logged).
pub fn append(file: &File, job: &JobLayout, rows: &Drained) -> Result<(), DaqError> {
    let k = rows.rows();
    if k == 0 {
        return Ok(());
    }
    let fname = file.filename();
    for (spec, col) in job.datasets.iter().zip(&rows.columns) {
        if col.len() != k * spec.entry_len() {
            return Err(DaqError::RowShape {
                file: fname.clone(),
                group: job.group.clone(),
                dataset: spec.name.clone(),
                elements: col.len(),
                rows: k,
                shape: spec.shape.clone(),
            });
        }
    }
    let n = rows_in(file, job)?;
    let res = append_at(file, job, rows, n);
    if res.is_err() {
        if let Err(e) = truncate(file, job, n) {
            crate::log::daq_log!(Error, "{e}");
        }
    }
    res
}

fn append_at(file: &File, job: &JobLayout, rows: &Drained, n: usize) -> Result<(), DaqError> {
    let fname = file.filename();
    let ctx = |what: &str| format!("{fname}: /{}/{what}", job.group);
    let g = file
        .group(&job.group)
        .map_err(DaqError::hdf5(ctx("open group")))?;
    let time = g
        .dataset("time")
        .map_err(DaqError::hdf5(ctx("time: open")))?;
    append_slice(&time, n, &[], &rows.time).map_err(DaqError::hdf5(ctx("time: append")))?;
    for (spec, col) in job.datasets.iter().zip(&rows.columns) {
        let ds = g
            .dataset(&spec.name)
            .map_err(DaqError::hdf5(ctx(&spec.name)))?;
        append_column(&ds, n, &spec.shape, col)
            .map_err(DaqError::hdf5(ctx(&format!("{}: append", spec.name))))?;
    }
    Ok(())
}

fn append_column(ds: &Dataset, n: usize, shape: &[usize], col: &Column) -> hdf5::Result<()> {
    with_column!(col, v => append_slice(ds, n, shape, v), t => append_text(ds, n, shape, t))
}

/// Appends the rows of a string column after row `n` (extent grown first, as for numbers).
fn append_text(ds: &Dataset, n: usize, shape: &[usize], col: &Column) -> hdf5::Result<()> {
    let entry: usize = shape.iter().product();
    let k = col.len() / entry.max(1);
    let mut full = vec![n + k];
    full.extend_from_slice(shape);
    ds.resize(full)?;
    match col {
        // NUL-padded bytes are the file's own representation: written as they are.
        Column::FixedStr(_, bytes) => h5util::write_rows_native(ds, n as u64, k as u64, bytes)
            .map_err(|e| hdf5::Error::from(e.to_string())),
        Column::Str(v) => {
            // Strings with a NUL never reach a column (push_text refuses them).
            let texts = v
                .iter()
                .map(|s| s.parse::<VarLenUnicode>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| hdf5::Error::from(format!("string: {e}")))?;
            write_rows(ds, n, shape, &texts)
        }
        // Only string columns come here (append_column).
        _ => Ok(()),
    }
}

/// HDF5's Fletcher-32 (H5_checksum_fletcher32): 16-bit big-endian words, sums reduced every
/// 360 words; an odd trailing byte counts as the high byte of a word. The C code adds in
/// wrapping `uint32_t`; each 360-word block is computed here in closed form in u64 (sum1 + S,
/// sum2 + n * sum1 + sum((n - i) * w_i)) and truncated, which gives the same u32 values and lets
/// the compiler vectorise the block.
pub(crate) fn fletcher32(data: &[u8]) -> u32 {
    fn fold(x: u32) -> u32 {
        (x & 0xffff) + (x >> 16)
    }
    let (mut sum1, mut sum2) = (0u32, 0u32);
    let mut blocks = data.chunks_exact(2 * 360);
    let mut block = |b: &[u8]| {
        let n = (b.len() / 2) as u64;
        let (s, t) = if b.len() == 2 * 360 {
            full_block_sums(b)
        } else {
            let (mut s, mut t) = (0u64, 0u64);
            for (i, w) in b.chunks_exact(2).enumerate() {
                let w = u64::from(u16::from_be_bytes([w[0], w[1]]));
                s += w;
                t += (n - i as u64) * w;
            }
            (s, t)
        };
        let s1 = u64::from(sum1);
        sum2 = (u64::from(sum2) + n * s1 + t) as u32;
        sum1 = (s1 + s) as u32;
        sum1 = fold(sum1);
        sum2 = fold(sum2);
    };
    for b in blocks.by_ref() {
        block(b);
    }
    let rest = blocks.remainder();
    let even = rest.len() & !1;
    if even > 0 {
        block(&rest[..even]);
    }
    if rest.len() % 2 == 1 {
        sum1 = sum1.wrapping_add(u32::from(rest[even]) << 8);
        sum2 = sum2.wrapping_add(sum1);
        sum1 = fold(sum1);
        sum2 = fold(sum2);
    }
    sum1 = fold(sum1);
    sum2 = fold(sum2);
    (sum2 << 16) | sum1
}

/// `(S, T)` of a whole 360-word block: S = sum(w_i), T = sum((360 - i) * w_i), with adds only,
/// so the compiler vectorises it: 8 lanes (word i = 8m + j in lane j, m = 0..45) each keep
/// A_j = sum_m w and B_j = sum_m (45 - m) * w (B adds A after every step); then
/// 360 - i = 8 * (45 - m) - j gives T = 8 * sum(B_j) - sum(j * A_j). Per lane A < 2^25 and
/// B < 2^27 (45 * 46 / 2 * 65535), so u32 lanes do not overflow.
fn full_block_sums(b: &[u8]) -> (u64, u64) {
    let (mut a, mut bs) = ([0u32; 8], [0u32; 8]);
    for step in b.chunks_exact(16) {
        for j in 0..8 {
            a[j] += u32::from(u16::from_be_bytes([step[2 * j], step[2 * j + 1]]));
            bs[j] += a[j];
        }
    }
    let s: u64 = a.iter().map(|&x| u64::from(x)).sum();
    let weighted: u64 = (0u64..).zip(a).map(|(j, x)| j * u64::from(x)).sum();
    let t = 8 * bs.iter().map(|&x| u64::from(x)).sum::<u64>() - weighted;
    (s, t)
}

/// The C algorithm word by word (wrapping u32), to check [`fletcher32`] against.
#[cfg(test)]
fn fletcher32_reference(data: &[u8]) -> u32 {
    let (mut sum1, mut sum2) = (0u32, 0u32);
    let mut words = data.chunks_exact(2);
    loop {
        let mut n = 0;
        for w in words.by_ref().take(360) {
            sum1 = sum1.wrapping_add((u32::from(w[0]) << 8) | u32::from(w[1]));
            sum2 = sum2.wrapping_add(sum1);
            n += 1;
        }
        if n == 0 {
            break;
        }
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    if let [last] = words.remainder() {
        sum1 = sum1.wrapping_add(u32::from(*last) << 8);
        sum2 = sum2.wrapping_add(sum1);
        sum1 = (sum1 & 0xffff) + (sum1 >> 16);
        sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    }
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
    (sum2 << 16) | sum1
}

/// The chunk length of `ds` when its whole chunks can be written directly: the only filter is
/// fletcher32 (no compression), chunks span whole entries, and the host is little-endian (the
/// file types are the native little-endian types, so the bytes need no conversion).
fn direct_chunk_rows(ds: &Dataset, shape: &[usize]) -> Option<usize> {
    if !cfg!(target_endian = "little") {
        return None;
    }
    let filters = ds.filters();
    if !matches!(filters.as_slice(), [hdf5::filters::Filter::Fletcher32]) {
        return None;
    }
    let chunk = ds.chunk()?;
    (chunk.len() == shape.len() + 1 && chunk[1..] == *shape)
        .then(|| chunk[0])
        .filter(|c| *c > 0)
}

/// Writes whole chunk `first_row / rows` of `ds` from `data` (exactly one chunk of elements)
/// with its fletcher32 checksum, bypassing the filter pipeline and the chunk cache.
fn write_chunk_direct<T: Elem>(
    ds: &Dataset,
    first_row: usize,
    ndim: usize,
    data: &[T],
    buf: &mut Vec<u8>,
) -> hdf5::Result<()> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    buf.clear();
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(&fletcher32(bytes).to_le_bytes());
    let mut offset = vec![0u64; ndim];
    offset[0] = first_row as u64;
    // Filter mask 0: the buffer is what the fletcher32 filter stores (chunk + checksum).
    h5util::write_chunk(ds, &offset, 0, buf)
}

fn append_slice<T: Elem>(ds: &Dataset, n: usize, shape: &[usize], data: &[T]) -> hdf5::Result<()> {
    let entry: usize = shape.iter().product();
    let k = data.len() / entry.max(1);
    let mut full = vec![n + k];
    full.extend_from_slice(shape);
    ds.resize(full)?;
    if let Some(c) = direct_chunk_rows(ds, shape) {
        // Head up to the next chunk boundary and the tail through the normal path (they share
        // chunks with rows written before or after); whole chunks in between directly.
        let end = n + k;
        let head_end = n.div_ceil(c).saturating_mul(c).min(end);
        let whole = (end - head_end) / c;
        if whole > 0 {
            write_rows(ds, n, shape, &data[..(head_end - n) * entry])?;
            let mut buf = Vec::with_capacity(c * entry * std::mem::size_of::<T>() + 4);
            for i in 0..whole {
                let row = head_end + i * c;
                let from = (row - n) * entry;
                write_chunk_direct(
                    ds,
                    row,
                    shape.len() + 1,
                    &data[from..from + c * entry],
                    &mut buf,
                )?;
            }
            let tail = head_end + whole * c;
            return write_rows(ds, tail, shape, &data[(tail - n) * entry..]);
        }
    }
    write_rows(ds, n, shape, data)
}

/// Writes rows `n..` from `data` through the normal path (extent already large enough).
fn write_rows<T: hdf5::H5Type>(
    ds: &Dataset,
    n: usize,
    shape: &[usize],
    data: &[T],
) -> hdf5::Result<()> {
    let entry: usize = shape.iter().product();
    let k = data.len() / entry.max(1);
    if k == 0 {
        return Ok(());
    }
    if shape.is_empty() {
        return ds.write_slice(data, n..n + k);
    }
    let mut dims = vec![k];
    dims.extend_from_slice(shape);
    let view = ArrayViewD::from_shape(IxDyn(&dims), data)
        .map_err(|e| hdf5::Error::from(format!("array shape {dims:?}: {e}")))?;
    let mut sel = vec![hdf5::SliceOrIndex::SliceTo {
        start: n,
        step: 1,
        end: n + k,
        block: 1,
    }];
    sel.extend(shape.iter().map(|&d| hdf5::SliceOrIndex::SliceTo {
        start: 0,
        step: 1,
        end: d,
        block: 1,
    }));
    ds.write_slice(view, hdf5::Hyperslab::from(sel))
}

/// Reads a float64 scalar attribute, `None` when absent or of another type.
pub(crate) fn read_f64_attr(loc: &Location, name: &str) -> Option<f64> {
    loc.attr(name).ok()?.read_scalar::<f64>().ok()
}

/// The largest value of every `/<group>/time` dataset in the file (for recovery).
pub(crate) fn max_time(file: &File) -> hdf5::Result<Option<f64>> {
    let mut best: Option<f64> = None;
    for g in file.groups()? {
        if let Ok(t) = g.dataset("time") {
            let v: Vec<f64> = t.read_raw()?;
            for x in v.into_iter().filter(|x| x.is_finite()) {
                best = Some(best.map_or(x, |b: f64| b.max(x)));
            }
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fletcher32_matches_hdf5() {
        // Values computed by HDF5's H5_checksum_fletcher32 algorithm on these inputs.
        assert_eq!(fletcher32(&[]), 0);
        assert_eq!(fletcher32(&[0x01, 0x02]), 0x0102_0102);
        assert_eq!(fletcher32(&[0x01, 0x02, 0x03]), 0x0504_0402);
        // Block boundaries, odd lengths and the all-0xff worst case (u32 wrap in C).
        let mut x = 0x1234_5678u32;
        let random: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in [1, 2, 719, 720, 721, 1440, 1441, 4999, 5000] {
            assert_eq!(
                fletcher32(&random[..len]),
                fletcher32_reference(&random[..len]),
                "len {len}"
            );
            let ff = vec![0xffu8; len];
            assert_eq!(fletcher32(&ff), fletcher32_reference(&ff), "0xff len {len}");
        }
    }
}
