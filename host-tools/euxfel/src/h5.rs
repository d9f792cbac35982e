//! HDF5 access through libhdf5 (hdf5-metno): it locates objects; bulk bytes of
//! index and data datasets are read from the file's memory map (shared with the
//! pure-Rust reader, see [`FileMap`]) when the layout allows it
//! (contiguous, or chunked without filters), with every offset + length checked
//! against the file length first. Everything else takes libhdf5's own read path.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use hdf5::dataset::Layout;
use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, File, Group};

use super::dtype::DType;
use super::error::{Error, Result};
use super::file_map::FileMap;
use super::rawh5;

/// One open HDF5 file: the libhdf5 handle and the file's read-only map.
pub(crate) struct H5File {
    pub path: PathBuf,
    pub h5: File,
    map: FileMap,
    /// String datasets whose global heap references were checked already: the map is
    /// read-only, so one check per dataset is enough (checking every reference and parsing
    /// the heap on each per-train read made reading a run's strings quadratic).
    vlen_checked: Mutex<HashSet<String>>,
}

/// Where the bytes of a 1-D or N-D dataset are, if they can be read in place.
enum Placement {
    /// Contiguous at this file offset.
    Contiguous(u64),
    /// Chunked without filters: (first row of chunk, rows per chunk, file address, stored size).
    Chunks(Vec<(u64, u64, u64, u64)>),
}

impl H5File {
    /// Open a file with libhdf5, after checking for the HDF5 signature in its map
    /// (for a clear error on files that are not HDF5).
    pub fn open(path: &Path, map: FileMap) -> Result<H5File> {
        if !map.has_hdf5_signature() {
            return Err(Error::NotHdf5 {
                path: path.into(),
                msg: "no HDF5 signature".into(),
            });
        }
        let h5 = if path.to_str().is_some() {
            File::open(path)
        } else {
            // hdf5-metno takes UTF-8 names only: a name that is not is opened through
            // its descriptor's /proc path (libhdf5 opens its own descriptor from it,
            // so this one may close afterwards).
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            File::open(format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&f)
            ))
        }
        .map_err(|e| Error::NotHdf5 {
            path: path.into(),
            msg: e.to_string(),
        })?;
        Ok(H5File {
            path: path.into(),
            h5,
            map,
            vlen_checked: Mutex::default(),
        })
    }

    pub fn dataset(&self, name: &str) -> Result<Dataset> {
        self.h5
            .dataset(name)
            .map_err(|e| Error::structure(&self.path, format!("{name}: {e}")))
    }

    pub fn group(&self, name: &str) -> Result<Group> {
        self.h5
            .group(name)
            .map_err(|e| Error::structure(&self.path, format!("{name}: {e}")))
    }

    pub fn has(&self, name: &str) -> bool {
        // link_exists does not accept intermediate missing groups gracefully in
        // every version; check component by component.
        let mut cur = String::new();
        for part in name.trim_matches('/').split('/') {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            if !self.h5.link_exists(&cur) {
                return false;
            }
        }
        true
    }

    /// Checked view of `len` bytes at `offset` in the map.
    pub fn bytes(&self, object: &str, offset: u64, len: u64) -> Result<&[u8]> {
        self.map
            .bytes(offset, len)
            .ok_or_else(|| Error::OutOfBounds {
                path: self.path.clone(),
                object: object.into(),
                offset,
                len,
                file_len: self.map.len(),
            })
    }

    /// Where a dataset's raw bytes are, if they can be read from the map:
    /// little-endian fixed-size numeric type, no filters, allocated.
    fn placement(&self, ds: &Dataset) -> Option<Placement> {
        // A dataset reached through an external link lives in another file: its
        // offsets are not offsets in this file's map.
        if ds.filename() != self.h5.filename() {
            return None;
        }
        let dt = ds.dtype().ok()?;
        if dt.byte_order() == hdf5::datatype::ByteOrder::BigEndian {
            return None;
        }
        // A compound's members may differ in byte order: its stored bytes are used only
        // if they already are the layout a read gives.
        if matches!(dt.to_descriptor(), Ok(TypeDescriptor::Compound(_)))
            && !h5util::stored_layout_is_native(ds).unwrap_or(false)
        {
            return None;
        }
        if !ds.filters().is_empty() {
            return None;
        }
        if let Some(off) = ds.offset() {
            return Some(Placement::Contiguous(off));
        }
        if !ds.is_chunked() {
            return None;
        }
        // Unallocated chunks read as the fill value; only handle a zero fill.
        match ds.fill_value() {
            Ok(None) => {}
            Ok(Some(v)) => {
                if v.to_string() != "0" && v.to_string() != "0.0" {
                    return None;
                }
            }
            Err(_) => return None,
        }
        let chunk = ds.chunk()?;
        let shape = ds.shape();
        // Only chunks that span the full extent of every dimension but the first.
        if chunk.is_empty() || chunk.len() != shape.len() {
            return None;
        }
        for d in 1..shape.len() {
            if chunk[d] != shape[d] {
                return None;
            }
        }
        let n = ds.num_chunks()?;
        let mut chunks = Vec::with_capacity(n);
        for i in 0..n {
            let ci = ds.chunk_info(i)?;
            if ci.filter_mask != 0 {
                return None;
            }
            chunks.push((ci.offset[0], chunk[0] as u64, ci.addr, ci.size));
        }
        Some(Placement::Chunks(chunks))
    }

    /// Read rows `[start, start+count)` of a fixed-size numeric dataset into `out`
    /// (raw little-endian bytes, `row_bytes` per row). Uses the map when the
    /// layout allows it, else one HDF5 hyperslab read.
    pub fn read_rows_raw(
        &self,
        ds: &Dataset,
        object: &str,
        start: u64,
        count: u64,
        row_bytes: usize,
        out: &mut [u8],
    ) -> Result<()> {
        let needed = count.saturating_mul(row_bytes as u64);
        if out.len() as u64 != needed {
            return Err(Error::BufferSize {
                object: object.into(),
                got: out.len(),
                needed,
            });
        }
        if count == 0 {
            return Ok(());
        }
        let rows = ds.shape().first().copied().unwrap_or(0) as u64;
        let end = start.saturating_add(count);
        if end > rows {
            return Err(Error::IndexOutsideData {
                path: self.path.clone(),
                object: object.into(),
                start,
                end,
                rows,
            });
        }
        match self.placement(ds) {
            Some(Placement::Contiguous(off)) => {
                let b = self.bytes(
                    object,
                    off + start * row_bytes as u64,
                    count * row_bytes as u64,
                )?;
                out.copy_from_slice(b);
                Ok(())
            }
            Some(Placement::Chunks(chunks)) => {
                out.fill(0);
                let end = start + count;
                for (c0, crows, addr, size) in chunks {
                    let c1 = c0 + crows;
                    if c1 <= start || c0 >= end {
                        continue;
                    }
                    let lo = c0.max(start);
                    let hi = c1.min(end).min(rows);
                    if hi <= lo {
                        continue;
                    }
                    let in_chunk = (lo - c0) * row_bytes as u64;
                    let nb = (hi - lo) * row_bytes as u64;
                    if in_chunk + nb > size {
                        return Err(Error::structure(
                            &self.path,
                            format!(
                                "{object}: chunk at {addr} has {size} bytes, expected at least {}",
                                in_chunk + nb
                            ),
                        ));
                    }
                    let b = self.bytes(object, addr + in_chunk, nb)?;
                    let o = ((lo - start) * row_bytes as u64) as usize;
                    out[o..o + nb as usize].copy_from_slice(b);
                }
                Ok(())
            }
            None => read_rows_hdf5(ds, &self.path, object, start, count, out),
        }
    }

    /// Read the first `n` values (or all if `n` is None) of a 1-D integer dataset as u64.
    pub fn read_u64(&self, name: &str, n: Option<usize>) -> Result<Vec<u64>> {
        let ds = self.dataset(name)?;
        let shape = ds.shape();
        if shape.len() != 1 {
            return Err(Error::structure(
                &self.path,
                format!("{name}: expected a 1-D dataset, got shape {shape:?}"),
            ));
        }
        let len = n.map_or(shape[0], |n| n.min(shape[0]));
        self.check_claim(&ds, name, len, 8)?;
        let dt = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| Error::h5(&self.path, name, e))?;
        match DType::from_descriptor(&dt) {
            DType::UInt(8) | DType::Int(8) => {
                let mut buf = zeroed_bytes(len * 8, name)?;
                self.read_rows_raw(&ds, name, 0, len as u64, 8, &mut buf)?;
                Ok(le_u64s(&buf))
            }
            DType::UInt(_) | DType::Int(_) | DType::Bool => {
                let v: Vec<i64> = if len == shape[0] {
                    ds.read_raw::<i64>()
                } else {
                    ds.read_slice_1d::<i64, _>(0..len).map(|a| a.to_vec())
                }
                .map_err(|e| Error::h5(&self.path, name, e))?;
                Ok(v.into_iter().map(|x| x as u64).collect())
            }
            other => Err(Error::UnsupportedType {
                path: self.path.clone(),
                object: name.into(),
                dtype: other.numpy_name(),
            }),
        }
    }

    /// Refuse a read of `n` elements of `size` bytes that claims more than the file
    /// can hold (a corrupt or absurdly resized dataset): an unfiltered dataset's data
    /// is in the file, a compressed one expands at most ~1000x (deflate's limit).
    /// Checked before libhdf5 or this code allocates anything for the read.
    fn check_claim(&self, ds: &Dataset, object: &str, n: usize, size: usize) -> Result<()> {
        let file_len = self.map.len();
        let limit = if ds.filters().is_empty() {
            file_len
        } else {
            file_len.saturating_mul(1100)
        };
        match n.checked_mul(size) {
            Some(b) if b as u64 <= limit => Ok(()),
            _ => Err(Error::TooLarge {
                object: format!("{}: {object}", self.path.display()),
                what: "dataset (more than the file holds)",
                size: format!("{n} elements of {size} bytes, file of {file_len} bytes"),
            }),
        }
    }

    /// Before libhdf5 follows the global heap references of a variable-length
    /// string dataset (`n` elements), check them against the file: a corrupt one
    /// crashes libhdf5 1.10 (`H5HG_read`). The references are found without libhdf5
    /// reading them: contiguous or unfiltered chunked storage from libhdf5's
    /// addresses, compact storage from the map walk's parse of the object header.
    /// Where they cannot be found that way (compressed chunks; compact storage in
    /// object headers the walk does not parse) the dataset is refused, never handed
    /// to libhdf5 unchecked.
    fn check_vlen_refs(&self, ds: &Dataset, object: &str, n: usize) -> Result<()> {
        if ds.filename() != self.h5.filename() {
            return Ok(());
        }
        let checked = || {
            self.vlen_checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if checked().contains(object) {
            return Ok(());
        }
        let bad = |m: String| {
            Error::structure(
                &self.path,
                format!("{object}: corrupt variable-length string reference: {m}"),
            )
        };
        let unchecked = |storage: &str| {
            Error::structure(
                &self.path,
                format!(
                    "{object}: variable-length strings in {storage} cannot be checked before \
                     libhdf5 reads them (a corrupt reference crashes it); not read"
                ),
            )
        };
        let compact;
        let refs: Vec<&[u8]> = match ds.layout() {
            // Nothing stored: libhdf5 follows no reference.
            _ if n == 0 || ds.storage_size() == 0 => Vec::new(),
            Layout::Contiguous => match ds.offset() {
                Some(off) => vec![self.bytes(object, off, (n as u64).saturating_mul(16))?],
                None => return Err(unchecked("external storage")),
            },
            Layout::Chunked if !ds.filters().is_empty() => {
                return Err(unchecked("compressed (filtered) storage"))
            }
            Layout::Chunked => {
                let mut v = Vec::new();
                for i in 0..ds.num_chunks().unwrap_or(0) {
                    if let Some(c) = ds.chunk_info(i) {
                        v.push(self.bytes(object, c.addr, c.size)?);
                    }
                }
                v
            }
            Layout::Compact => {
                // The data is inside the object header, which the map walk parses
                // (version-1 headers).
                let raw = self
                    .map
                    .raw()
                    .and_then(|f| f.dataset(object))
                    .map_err(|_| unchecked("compact storage of this object header version"))?;
                compact = match raw.layout {
                    rawh5::RawLayout::Compact(d) => d,
                    _ => return Err(unchecked("storage the map walk sees differently")),
                };
                if compact.len() < n.saturating_mul(16) {
                    return Err(bad(format!(
                        "compact data of {} bytes for {n} references",
                        compact.len()
                    )));
                }
                vec![compact.as_slice()]
            }
            _ => return Err(unchecked("virtual storage")),
        };
        for r in refs {
            rawh5::check_vlen_refs(self.map.all(), r).map_err(|e| bad(e.to_string()))?;
        }
        checked().insert(object.to_owned());
        Ok(())
    }

    /// Read a 1-D (or scalar) string dataset as Strings (bytes decoded as UTF-8, lossy).
    pub fn read_strings(&self, name: &str) -> Result<Vec<String>> {
        let ds = self.dataset(name)?;
        read_strings_ds(self, &ds, name, None)
    }
}

/// Decode little-endian u64s; zero-copy cast when aligned, else an unaligned read.
pub(crate) fn le_u64s(buf: &[u8]) -> Vec<u64> {
    if cfg!(target_endian = "little") {
        if let Ok(s) = bytemuck::try_cast_slice::<u8, u64>(buf) {
            return s.to_vec();
        }
    }
    buf.chunks_exact(8)
        .map(|c| {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            u64::from_le_bytes(a)
        })
        .collect()
}

/// Read strings from a dataset, optionally only rows `range`.
pub(crate) fn read_strings_ds(
    h: &H5File,
    ds: &Dataset,
    name: &str,
    range: Option<(usize, usize)>,
) -> Result<Vec<String>> {
    use hdf5::types::{FixedAscii, FixedUnicode, VarLenAscii, VarLenUnicode};
    let path = h.path.as_path();
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| Error::h5(path, name, e))?;
    let shape = ds.shape();
    let total = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .unwrap_or(usize::MAX);
    // Whole rows are read (the hyperslab or the dataset), whatever the range.
    h.check_claim(ds, name, total, desc.size().max(1))?;
    let (lo, hi) = range.unwrap_or((0, shape.first().copied().unwrap_or(total)));
    let err = |e: hdf5::Error| Error::h5(path, name, e);
    macro_rules! rd {
        ($t:ty, $conv:expr) => {{
            let v: Vec<$t> = if shape.len() <= 1 && range.is_none() {
                ds.read_raw::<$t>().map_err(err)?
            } else if shape.len() == 1 {
                ds.read_slice_1d::<$t, _>(lo..hi).map_err(err)?.to_vec()
            } else {
                let a = ds.read_dyn::<$t>().map_err(err)?;
                let per: usize = shape[1..].iter().product();
                a.iter()
                    .skip(lo * per)
                    .take((hi - lo) * per)
                    .cloned()
                    .collect()
            };
            Ok(v.iter().map($conv).collect())
        }};
    }
    if matches!(
        desc,
        TypeDescriptor::VarLenAscii | TypeDescriptor::VarLenUnicode
    ) {
        h.check_vlen_refs(ds, name, total)?;
    }
    match desc {
        TypeDescriptor::VarLenAscii => rd!(VarLenAscii, |s: &VarLenAscii| String::from_utf8_lossy(
            s.as_bytes()
        )
        .into_owned()),
        // Bytes from a file are not trusted to be UTF-8.
        TypeDescriptor::VarLenUnicode => {
            rd!(VarLenUnicode, |s: &VarLenUnicode| String::from_utf8_lossy(
                s.as_bytes()
            )
            .into_owned())
        }
        TypeDescriptor::FixedAscii(n) => {
            read_fixed(ds, path, name, n, (lo, hi), &shape).or_else(|_| {
                rd!(FixedAscii<1024>, |s: &FixedAscii<1024>| {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                })
            })
        }
        TypeDescriptor::FixedUnicode(n) => {
            read_fixed(ds, path, name, n, (lo, hi), &shape).or_else(|_| {
                rd!(FixedUnicode<1024>, |s: &FixedUnicode<1024>| {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                })
            })
        }
        other => Err(Error::UnsupportedType {
            path: path.into(),
            object: name.into(),
            dtype: format!("{other} (expected strings)"),
        }),
    }
}

/// Fixed-length strings (`n` bytes each) of rows `lo..hi` through a raw byte read (NUL-padded).
fn read_fixed(
    ds: &Dataset,
    path: &Path,
    name: &str,
    n: usize,
    (lo, hi): (usize, usize),
    shape: &[usize],
) -> Result<Vec<String>> {
    let per: usize = shape.iter().skip(1).product();
    let rows = hi.saturating_sub(lo);
    let mut buf = zeroed_bytes(rows.saturating_mul(per).saturating_mul(n), name)?;
    if shape.is_empty() {
        return Err(Error::UnsupportedType {
            path: path.into(),
            object: name.into(),
            dtype: format!("scalar |S{n}"),
        });
    }
    // The native type of a fixed string is itself: a hyperslab read gives the bytes.
    read_rows_hdf5(ds, path, name, lo as u64, rows as u64, &mut buf)?;
    Ok(buf
        .chunks_exact(n.max(1))
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect())
}

/// A zeroed buffer of `n` bytes for `object`; failing to allocate is an error.
fn zeroed_bytes(n: usize, object: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::TooLarge {
        object: object.into(),
        what: "allocation",
        size: format!("{n} bytes"),
    })?;
    v.resize(n, 0);
    Ok(v)
}

/// The libhdf5 path: a hyperslab read into a native-typed memory buffer.
fn read_rows_hdf5(
    ds: &Dataset,
    path: &Path,
    object: &str,
    start: u64,
    count: u64,
    out: &mut [u8],
) -> Result<()> {
    h5util::read_rows_native(ds, start, count, out).map_err(|e| Error::h5(path, object, e))
}
