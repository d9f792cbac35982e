//! HDF5 access: libhdf5 (through hdf5-metno) locates objects; bulk bytes of
//! index and data datasets are read from a read-only memory map of the file when
//! the layout allows it (contiguous, or chunked without filters), with every
//! offset + length checked against the file length first. Everything else takes
//! the safe libhdf5 path.

use std::fs::File as StdFile;
use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, File, Group};
use memmap2::Mmap;

use super::error::{Error, Result};

/// The 8-byte HDF5 signature.
const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

/// A numpy-like description of a dataset's element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DType {
    Bool,
    Int(usize),
    UInt(usize),
    Float(usize),
    /// Variable-length string (numpy `object` in h5py).
    VlenStr,
    /// Fixed-length byte string of n bytes (numpy `|Sn`).
    FixedStr(usize),
    /// Anything else (compound, arrays, references...), with a description.
    Other(String),
}

impl DType {
    /// The name numpy prints for this dtype (`str(np.dtype)`).
    pub fn numpy_name(&self) -> String {
        match self {
            DType::Bool => "bool".into(),
            DType::Int(n) => format!("int{}", n * 8),
            DType::UInt(n) => format!("uint{}", n * 8),
            DType::Float(n) => format!("float{}", n * 8),
            DType::VlenStr => "object".into(),
            DType::FixedStr(n) => format!("|S{n}"),
            DType::Other(s) => s.clone(),
        }
    }
    /// numpy array-protocol type string for numeric types (`<u2`, `<f4`, `|b1`).
    pub fn npy_descr(&self) -> Option<String> {
        Some(match self {
            DType::Bool => "|b1".into(),
            DType::Int(1) => "|i1".into(),
            DType::UInt(1) => "|u1".into(),
            DType::Int(n) => format!("<i{n}"),
            DType::UInt(n) => format!("<u{n}"),
            DType::Float(n) => format!("<f{n}"),
            DType::FixedStr(n) => format!("|S{n}"),
            _ => return None,
        })
    }
    /// Size of one element in bytes for fixed-size numeric types.
    pub fn item_size(&self) -> Option<usize> {
        match self {
            DType::Bool => Some(1),
            DType::Int(n) | DType::UInt(n) | DType::Float(n) | DType::FixedStr(n) => Some(*n),
            _ => None,
        }
    }
    pub fn is_string(&self) -> bool {
        matches!(self, DType::VlenStr | DType::FixedStr(_))
    }
    pub(crate) fn from_descriptor(d: &TypeDescriptor) -> DType {
        fn isz(s: &IntSize) -> usize {
            match s {
                IntSize::U1 => 1,
                IntSize::U2 => 2,
                IntSize::U4 => 4,
                IntSize::U8 => 8,
            }
        }
        match d {
            TypeDescriptor::Boolean => DType::Bool,
            TypeDescriptor::Integer(s) => DType::Int(isz(s)),
            TypeDescriptor::Unsigned(s) => DType::UInt(isz(s)),
            TypeDescriptor::Float(FloatSize::U4) => DType::Float(4),
            TypeDescriptor::Float(FloatSize::U8) => DType::Float(8),
            TypeDescriptor::VarLenAscii | TypeDescriptor::VarLenUnicode => DType::VlenStr,
            TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => DType::FixedStr(*n),
            TypeDescriptor::Compound(c) => DType::Other(compound_repr(c)),
            other => DType::Other(format!("{other}")),
        }
    }
}

/// numpy's protocol string of a field type (`<f8`, `|u1`, `O`, `|S10`).
fn field_descr(t: &TypeDescriptor) -> String {
    match DType::from_descriptor(t) {
        DType::VlenStr => "O".into(),
        DType::Other(s) => s,
        d => d.npy_descr().unwrap_or_else(|| d.numpy_name()),
    }
}

/// `str(np.dtype)` of a structured dtype as h5py builds it: the list form when the
/// fields are packed in order, else the dict form with offsets and itemsize.
fn compound_repr(c: &hdf5::types::CompoundType) -> String {
    let mut fields: Vec<&hdf5::types::CompoundField> = c.fields.iter().collect();
    fields.sort_by_key(|f| f.index);
    let mut packed = true;
    let mut off = 0usize;
    for f in &fields {
        if f.offset != off {
            packed = false;
        }
        off = f.offset + f.ty.size();
    }
    if off != c.size {
        packed = false;
    }
    if packed {
        let parts: Vec<String> = fields
            .iter()
            .map(|f| format!("('{}', '{}')", f.name, field_descr(&f.ty)))
            .collect();
        format!("[{}]", parts.join(", "))
    } else {
        let names: Vec<String> = fields.iter().map(|f| format!("'{}'", f.name)).collect();
        let formats: Vec<String> = fields
            .iter()
            .map(|f| format!("'{}'", field_descr(&f.ty)))
            .collect();
        let offsets: Vec<String> = fields.iter().map(|f| f.offset.to_string()).collect();
        format!(
            "{{'names': [{}], 'formats': [{}], 'offsets': [{}], 'itemsize': {}}}",
            names.join(", "),
            formats.join(", "),
            offsets.join(", "),
            c.size
        )
    }
}

/// Strings read from a string dataset.
pub type StrData = Vec<String>;

/// One open HDF5 file: the libhdf5 handle and a read-only map of its bytes.
pub(crate) struct H5File {
    pub path: PathBuf,
    pub h5: File,
    map: Option<Mmap>,
    /// Length of the file when it was opened and mapped.
    pub len: u64,
}

/// Where the bytes of a 1-D or N-D dataset are, if they can be read in place.
enum Placement {
    /// Contiguous at this file offset.
    Contiguous(u64),
    /// Chunked without filters: (first row of chunk, rows per chunk, file address, stored size).
    Chunks(Vec<(u64, u64, u64, u64)>),
}

impl H5File {
    /// Open a file: check the signature (for a clear error on non-HDF5 files),
    /// open it with libhdf5 and map it read-only.
    pub fn open(path: &Path) -> Result<H5File> {
        let f = StdFile::open(path).map_err(|e| Error::io(path, e))?;
        let meta = f.metadata().map_err(|e| Error::io(path, e))?;
        let len = meta.len();
        if len == 0 {
            return Err(Error::NotHdf5 {
                path: path.into(),
                msg: "file is empty".into(),
            });
        }
        let map = if len >= 8 {
            // SAFETY: the map is read-only and private to this process. The files
            // are closed run files; a concurrent truncation would raise SIGBUS on
            // access, so every access first checks offset + length against `len`
            // (the length at open) and the length is re-checked at the end of the
            // mapped region by the OS. Data files being written are out of scope
            // (EXtra-data makes the same assumption: files do not change while open).
            unsafe { Mmap::map(&f) }.ok()
        } else {
            None
        };
        // The superblock signature is at 0, 512, 1024, 2048, ... .
        if let Some(m) = &map {
            let mut found = false;
            let mut off = 0usize;
            while off + 8 <= m.len() {
                if m[off..off + 8] == HDF5_SIGNATURE {
                    found = true;
                    break;
                }
                off = if off == 0 { 512 } else { off * 2 };
            }
            if !found {
                return Err(Error::NotHdf5 {
                    path: path.into(),
                    msg: "no HDF5 signature".into(),
                });
            }
        } else if len < 8 {
            return Err(Error::NotHdf5 {
                path: path.into(),
                msg: format!("file is too short ({len} bytes)"),
            });
        }
        let h5 = File::open(path).map_err(|e| Error::NotHdf5 {
            path: path.into(),
            msg: e.to_string(),
        })?;
        Ok(H5File {
            path: path.into(),
            h5,
            map,
            len,
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
        let oob = || Error::OutOfBounds {
            path: self.path.clone(),
            object: object.into(),
            offset,
            len,
            file_len: self.len,
        };
        let end = offset.checked_add(len).ok_or_else(oob)?;
        let map = match &self.map {
            Some(m) => m,
            None => return Err(oob()),
        };
        if end > self.len || end > map.len() as u64 {
            return Err(oob());
        }
        Ok(&map[offset as usize..end as usize])
    }

    /// Where a dataset's raw bytes are, if they can be read from the map:
    /// little-endian fixed-size numeric type, no filters, allocated.
    fn placement(&self, ds: &Dataset) -> Option<Placement> {
        self.map.as_ref()?;
        let dt = ds.dtype().ok()?;
        if dt.byte_order() == hdf5::datatype::ByteOrder::BigEndian {
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
        let need = (count as usize)
            .checked_mul(row_bytes)
            .ok_or_else(|| Error::Invalid(format!("{object}: read size overflows")))?;
        if out.len() != need {
            return Err(Error::Invalid(format!(
                "{object}: buffer of {} bytes for {count} rows of {row_bytes} bytes",
                out.len()
            )));
        }
        if count == 0 {
            return Ok(());
        }
        let shape = ds.shape();
        let nrows = shape.first().copied().unwrap_or(0) as u64;
        if start.checked_add(count).is_none_or(|e| e > nrows) {
            return Err(Error::structure(
                &self.path,
                format!(
                    "{object}: index refers to rows {start}..{} outside the dataset ({nrows} rows)",
                    start.saturating_add(count)
                ),
            ));
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
                    let hi = c1.min(end).min(nrows);
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
            None => self.read_rows_hdf5(ds, object, start, count, out),
        }
    }

    /// The HDF5 path: a hyperslab read into a native-typed memory buffer.
    fn read_rows_hdf5(
        &self,
        ds: &Dataset,
        object: &str,
        start: u64,
        count: u64,
        out: &mut [u8],
    ) -> Result<()> {
        h5util::read_rows_native(ds, start, count, out)
            .map_err(|e| Error::h5(&self.path, object, e.to_string()))
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
        let dt = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| Error::h5(&self.path, name, e))?;
        match DType::from_descriptor(&dt) {
            DType::UInt(8) | DType::Int(8) => {
                let mut buf = vec![0u8; len * 8];
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

    /// Read the first `n` values of a 1-D integer dataset as i64.
    pub fn read_i64(&self, name: &str, n: usize) -> Result<Vec<i64>> {
        let ds = self.dataset(name)?;
        let shape = ds.shape();
        if shape.len() != 1 {
            return Err(Error::structure(
                &self.path,
                format!("{name}: expected a 1-D dataset, got shape {shape:?}"),
            ));
        }
        let len = n.min(shape[0]);
        ds.read_slice_1d::<i64, _>(0..len)
            .map(|a| a.to_vec())
            .map_err(|e| Error::h5(&self.path, name, e))
    }

    /// Read a 1-D (or scalar) string dataset as Strings (bytes decoded as UTF-8, lossy).
    pub fn read_strings(&self, name: &str) -> Result<Vec<String>> {
        let ds = self.dataset(name)?;
        read_strings_ds(&ds, &self.path, name, None)
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
    ds: &Dataset,
    path: &Path,
    name: &str,
    range: Option<(usize, usize)>,
) -> Result<Vec<String>> {
    use hdf5::types::{FixedAscii, FixedUnicode, VarLenAscii, VarLenUnicode};
    let desc = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| Error::h5(path, name, e))?;
    let shape = ds.shape();
    let total: usize = shape.iter().product();
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
    match desc {
        TypeDescriptor::VarLenAscii => rd!(VarLenAscii, |s: &VarLenAscii| String::from_utf8_lossy(
            s.as_bytes()
        )
        .into_owned()),
        TypeDescriptor::VarLenUnicode => {
            rd!(VarLenUnicode, |s: &VarLenUnicode| s.as_str().to_owned())
        }
        TypeDescriptor::FixedAscii(n) => read_fixed(ds, path, name, n, lo, hi, total, &shape)
            .or_else(|_| {
                rd!(FixedAscii<1024>, |s: &FixedAscii<1024>| {
                    String::from_utf8_lossy(s.as_bytes()).into_owned()
                })
            }),
        TypeDescriptor::FixedUnicode(n) => read_fixed(ds, path, name, n, lo, hi, total, &shape)
            .or_else(|_| {
                rd!(FixedUnicode<1024>, |s: &FixedUnicode<1024>| s
                    .as_str()
                    .to_owned())
            }),
        other => Err(Error::UnsupportedType {
            path: path.into(),
            object: name.into(),
            dtype: format!("{other} (expected strings)"),
        }),
    }
}

/// Fixed-length strings through a raw byte read (NUL-padded).
#[allow(clippy::too_many_arguments)]
fn read_fixed(
    ds: &Dataset,
    path: &Path,
    name: &str,
    n: usize,
    lo: usize,
    hi: usize,
    _total: usize,
    shape: &[usize],
) -> Result<Vec<String>> {
    let per: usize = shape.iter().skip(1).product();
    let rows = hi.saturating_sub(lo);
    let mut buf = vec![0u8; rows * per * n];
    if shape.is_empty() {
        return Err(Error::Invalid(format!("{name}: scalar fixed string")));
    }
    // Reuse the HDF5 hyperslab reader: the native type of a fixed string is itself.
    let tmp = H5FileRef { path };
    tmp.read(ds, name, lo as u64, rows as u64, &mut buf)?;
    Ok(buf
        .chunks_exact(n.max(1))
        .map(|c| {
            let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
            String::from_utf8_lossy(&c[..end]).into_owned()
        })
        .collect())
}

/// Minimal helper to call the hyperslab read without a mapped file.
struct H5FileRef<'a> {
    path: &'a Path,
}

impl H5FileRef<'_> {
    fn read(
        &self,
        ds: &Dataset,
        object: &str,
        start: u64,
        count: u64,
        out: &mut [u8],
    ) -> Result<()> {
        let f = H5File {
            path: self.path.into(),
            h5: ds.file().map_err(|e| Error::h5(self.path, object, e))?,
            map: None,
            len: 0,
        };
        f.read_rows_hdf5(ds, object, start, count, out)
    }
}
