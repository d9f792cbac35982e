//! A small pure-Rust reader of the HDF5 structures EuXFEL files use for their
//! metadata and index, walked straight from the memory-mapped bytes.
//!
//! Supported: superblock v0/v1 with 8-byte offsets and lengths, version-1 object
//! headers (with continuation blocks), "old-style" groups (symbol table: v1 B-tree
//! of SNOD nodes + local heap), hard and soft links in them, dataspace v1/v2,
//! fixed-point / float / fixed string / variable-length string datatypes, layout
//! message v3 (compact, contiguous, chunked with a v1 B-tree chunk index), and
//! variable-length strings in global heap collections. This is what h5py and the
//! EuXFEL DAQ write with the default (earliest) library version bounds.
//!
//! Anything else (v2/v3 superblocks, v2 object headers, link messages, filters,
//! other chunk indexes, big-endian data) returns [`RawError::Unsupported`] and the
//! caller falls back to libhdf5. Corrupt input returns [`RawError::Corrupt`]: every
//! read is bounds-checked against the mapped length, and every walk is bounded, so
//! no input can make this code panic, loop forever or read outside the map.

use std::cell::Cell;
use std::collections::HashMap;

/// Why the raw reader could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawError {
    /// A structure this reader does not handle; use libhdf5.
    Unsupported(String),
    /// The bytes are inconsistent or point outside the file.
    Corrupt(String),
    /// The object does not exist.
    NotFound(String),
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawError::Unsupported(m) => write!(f, "unsupported: {m}"),
            RawError::Corrupt(m) => write!(f, "{m}"),
            RawError::NotFound(p) => write!(f, "{p} not found"),
        }
    }
}

type R<T> = Result<T, RawError>;

fn corrupt<T>(m: impl Into<String>) -> R<T> {
    Err(RawError::Corrupt(m.into()))
}
fn unsupported<T>(m: impl Into<String>) -> R<T> {
    Err(RawError::Unsupported(m.into()))
}

/// The 8-byte HDF5 signature, at offset 0, 512, 1024, 2048, ... of a file.
pub(crate) const HDF5_SIGNATURE: [u8; 8] = [0x89, b'H', b'D', b'F', b'\r', b'\n', 0x1a, b'\n'];

const UNDEF: u64 = u64::MAX;
/// Bound on nodes visited in one B-tree walk (corrupt cyclic trees).
const MAX_NODES: usize = 1 << 20;

/// Element type of a dataset, as far as this reader understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawType {
    /// Integer: size in bytes, signed.
    Int {
        size: usize,
        signed: bool,
    },
    Float {
        size: usize,
    },
    FixedString {
        size: usize,
    },
    VlenString,
}

/// Where a dataset's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawLayout {
    Compact(Vec<u8>),
    /// Contiguous at an address (UNDEF = not allocated), size in bytes.
    Contiguous {
        addr: u64,
        size: u64,
    },
    /// Chunked: chunk dims (without the element-size dim), B-tree address.
    Chunked {
        chunk: Vec<u64>,
        btree: u64,
    },
}

/// A dataset's header information.
#[derive(Debug, Clone)]
pub struct RawDataset {
    pub shape: Vec<u64>,
    pub dtype: RawType,
    pub layout: RawLayout,
    pub filtered: bool,
}

/// A run of a dataset's bytes: in the map, or zeros (unallocated storage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Bytes(&'a [u8]),
    Zeros(u64),
}

impl Piece<'_> {
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Zeros(n) => *n as usize,
        }
    }
}

/// What a group member is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Hard(u64),
    Soft(String),
}

/// Asks the byte source to start reading a range the walk will need soon.
pub(crate) trait Prefetch {
    /// Start reading `len` bytes at file offset `offset`; returns at once.
    fn prefetch(&self, offset: u64, len: u64);

    /// The walk is about to read `len` bytes at file offset `offset`.
    fn accessed(&self, offset: u64, len: u64);
}

/// Bytes asked for at each top-level group found outside the file's head: libhdf5
/// writes a group created late (METADATA in EuXFEL files) with its members' headers,
/// small data and string heap next to it, which the walk then reads page by page.
const TOP_GROUP_PREFETCH: u64 = 48 << 10;

/// A parsed file: the bytes and the root group's object header address.
pub struct RawFile<'a> {
    b: &'a [u8],
    root: u64,
    base: u64,
    prefetch: Option<&'a dyn Prefetch>,
    /// The root group's members were prefetched (a walk lists the root many times).
    top_prefetched: Cell<bool>,
}

impl<'a> RawFile<'a> {
    /// Parse the superblock. With `prefetch`, the first listing of the root group
    /// asks for the neighbourhood of each top-level group before the walk goes there.
    pub(crate) fn new(b: &'a [u8], prefetch: Option<&'a dyn Prefetch>) -> R<RawFile<'a>> {
        let mut off = 0usize;
        loop {
            if off + 8 > b.len() {
                return corrupt("no HDF5 signature");
            }
            if b[off..off + 8] == HDF5_SIGNATURE {
                break;
            }
            off = if off == 0 { 512 } else { off * 2 };
        }
        let sb = &b[off..];
        let ver = *sb
            .get(8)
            .ok_or_else(|| RawError::Corrupt("short superblock".into()))?;
        if ver > 1 {
            return unsupported(format!("superblock version {ver}"));
        }
        if sb.get(13) != Some(&8) || sb.get(14) != Some(&8) {
            return unsupported("offset/length size other than 8");
        }
        let mut p = 24;
        if ver == 1 {
            p += 4;
        }
        let f = RawFile::bare(b, 0);
        let base = f.u64_at((off + p) as u64)?;
        // End-of-file address: a shorter file is truncated (libhdf5 refuses it too).
        let eof = f.u64_at((off + p + 16) as u64)?;
        if eof != UNDEF && base.saturating_add(eof) > b.len() as u64 {
            return corrupt(format!(
                "truncated file: {} bytes, superblock says {}",
                b.len(),
                base.saturating_add(eof)
            ));
        }
        // root group symbol table entry after base, free-space, EOF, driver addresses
        let entry = off + p + 32;
        let root = f.u64_at(entry as u64 + 8)?;
        Ok(RawFile {
            root,
            prefetch,
            ..RawFile::bare(b, base)
        })
    }

    /// A reader of `b` with addresses relative to `base`, no root and no prefetch.
    fn bare(b: &'a [u8], base: u64) -> RawFile<'a> {
        RawFile {
            b,
            root: 0,
            base,
            prefetch: None,
            top_prefetched: Cell::new(false),
        }
    }

    fn slice(&self, addr: u64, len: u64) -> R<&'a [u8]> {
        let a = addr
            .checked_add(self.base)
            .ok_or_else(|| RawError::Corrupt("address overflow".into()))?;
        let end = a
            .checked_add(len)
            .ok_or_else(|| RawError::Corrupt("length overflow".into()))?;
        if end > self.b.len() as u64 {
            return corrupt(format!(
                "data at {a} + {len} bytes is outside the file ({} bytes)",
                self.b.len()
            ));
        }
        if let Some(p) = self.prefetch {
            p.accessed(a, len);
        }
        Ok(&self.b[a as usize..end as usize])
    }

    fn u64_at(&self, addr: u64) -> R<u64> {
        let s = self.slice(addr, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    /// The messages of a v1 object header: (type, data).
    fn messages(&self, addr: u64) -> R<Vec<(u16, &'a [u8])>> {
        let h = self.slice(addr, 16)?;
        if h[0] != 1 {
            if self.slice(addr, 4)? == b"OHDR" {
                return unsupported("version 2 object header");
            }
            return corrupt(format!("bad object header version {} at {addr}", h[0]));
        }
        let nmsg = u16::from_le_bytes([h[2], h[3]]) as usize;
        let size = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as u64;
        let mut blocks = vec![(addr + 16, size)];
        let mut out = Vec::new();
        let mut bi = 0;
        while bi < blocks.len() {
            if bi > 64 || out.len() > nmsg + 64 {
                return corrupt("too many object header continuation blocks");
            }
            let (start, len) = blocks[bi];
            let blk = self.slice(start, len)?;
            let mut p = 0usize;
            while p + 8 <= blk.len() {
                let t = u16::from_le_bytes([blk[p], blk[p + 1]]);
                let sz = u16::from_le_bytes([blk[p + 2], blk[p + 3]]) as usize;
                let d0 = p + 8;
                let d1 = d0 + sz;
                if d1 > blk.len() {
                    return corrupt(format!(
                        "object header message overruns its block at {start}"
                    ));
                }
                let data = &blk[d0..d1];
                if t == 0x10 {
                    if data.len() < 16 {
                        return corrupt("short continuation message");
                    }
                    let a = u64::from_le_bytes(data[0..8].try_into().unwrap_or([0; 8]));
                    let l = u64::from_le_bytes(data[8..16].try_into().unwrap_or([0; 8]));
                    blocks.push((a, l));
                } else if t != 0 {
                    out.push((t, data));
                }
                p = d1.div_ceil(8) * 8;
            }
            bi += 1;
        }
        Ok(out)
    }

    /// Members of a group: name -> link.
    pub fn members(&self, group_addr: u64) -> R<HashMap<String, Link>> {
        let msgs = self.messages(group_addr)?;
        let st = msgs.iter().find(|(t, _)| *t == 0x11);
        let Some((_, st)) = st else {
            if msgs.iter().any(|(t, _)| *t == 0x06 || *t == 0x02) {
                return unsupported("new-style (link message) group");
            }
            return corrupt(format!("object at {group_addr} is not a group"));
        };
        if st.len() < 16 {
            return corrupt("short symbol table message");
        }
        let btree = u64::from_le_bytes(st[0..8].try_into().unwrap_or([0; 8]));
        let heap = u64::from_le_bytes(st[8..16].try_into().unwrap_or([0; 8]));
        // Local heap.
        let hh = self.slice(heap, 32)?;
        if &hh[0..4] != b"HEAP" {
            return corrupt(format!("bad local heap signature at {heap}"));
        }
        let heap_size = u64::from_le_bytes(hh[8..16].try_into().unwrap_or([0; 8]));
        let heap_data = u64::from_le_bytes(hh[24..32].try_into().unwrap_or([0; 8]));
        let hdata = self.slice(heap_data, heap_size)?;
        let name_at = |off: u64| -> R<String> {
            let s = hdata
                .get(off as usize..)
                .ok_or_else(|| RawError::Corrupt("name offset outside local heap".into()))?;
            let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
            Ok(String::from_utf8_lossy(&s[..end]).into_owned())
        };
        let mut out = HashMap::new();
        // Group B-tree keys are 8-byte heap offsets; each leaf entry points at a symbol node.
        self.walk_btree_v1(btree, 0, 8, |_key, snod| {
            let sh = self.slice(snod, 8)?;
            if &sh[0..4] != b"SNOD" {
                return corrupt(format!("bad symbol node at {snod}"));
            }
            let n = u16::from_le_bytes([sh[6], sh[7]]) as u64;
            let ents = self.slice(snod + 8, n * 40)?;
            for e in ents.chunks_exact(40) {
                let name_off = u64::from_le_bytes(e[0..8].try_into().unwrap_or([0; 8]));
                let obj = u64::from_le_bytes(e[8..16].try_into().unwrap_or([0; 8]));
                let cache = u32::from_le_bytes(e[16..20].try_into().unwrap_or([0; 4]));
                let name = name_at(name_off)?;
                let link = if cache == 2 {
                    let voff = u32::from_le_bytes(e[24..28].try_into().unwrap_or([0; 4]));
                    Link::Soft(name_at(voff as u64)?)
                } else {
                    Link::Hard(obj)
                };
                out.insert(name, link);
            }
            Ok(())
        })?;
        if group_addr == self.root && !self.top_prefetched.replace(true) {
            if let Some(p) = self.prefetch {
                for link in out.values() {
                    if let Link::Hard(a) = link {
                        if let Some(at) = a.checked_add(self.base) {
                            p.prefetch(at, TOP_GROUP_PREFETCH);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Resolve a '/'-separated path to an object address, following soft links.
    pub fn resolve(&self, path: &str) -> R<u64> {
        self.resolve_depth(path, 0)
    }

    fn resolve_depth(&self, path: &str, depth: usize) -> R<u64> {
        if depth > 16 {
            return corrupt("too many soft link levels");
        }
        let mut cur = self.root;
        let mut walked = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let m = self.members(cur)?;
            match m.get(part) {
                Some(Link::Hard(a)) => cur = *a,
                Some(Link::Soft(t)) => {
                    let target = if t.starts_with('/') {
                        t.clone()
                    } else {
                        format!("{walked}/{t}")
                    };
                    cur = self.resolve_depth(&target, depth + 1)?;
                }
                None => return Err(RawError::NotFound(path.to_string())),
            }
            walked.push('/');
            walked.push_str(part);
        }
        Ok(cur)
    }

    /// The link named by the last component of `path` (not followed).
    pub fn link(&self, path: &str) -> R<Link> {
        let (parent, leaf) = path
            .trim_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", path));
        let g = self.resolve(parent)?;
        self.members(g)?
            .remove(leaf)
            .ok_or_else(|| RawError::NotFound(path.to_string()))
    }

    /// Dataset header of the object at `path`.
    pub fn dataset(&self, path: &str) -> R<RawDataset> {
        let addr = self.resolve(path)?;
        let msgs = self.messages(addr)?;
        let mut shape = None;
        let mut dtype = None;
        let mut layout = None;
        let mut filtered = false;
        for (t, d) in &msgs {
            match t {
                0x01 => shape = Some(parse_dataspace(d)?),
                0x03 => dtype = Some(parse_datatype(d)?),
                0x08 => layout = Some(parse_layout(d)?),
                0x0B => filtered = true,
                // The data is in other files, which this walk does not read.
                0x07 => return unsupported(format!("{path}: external raw data files")),
                _ => {}
            }
        }
        match (shape, dtype, layout) {
            (Some(shape), Some(dtype), Some(layout)) => Ok(RawDataset {
                shape,
                dtype,
                layout,
                filtered,
            }),
            _ => corrupt(format!(
                "{path}: not a dataset (missing dataspace, datatype or layout)"
            )),
        }
    }

    /// Raw bytes of the first `n_rows` rows of a dataset (`row_bytes` each); unallocated
    /// chunks read as zeros. Filtered data is unsupported.
    pub fn read_rows(&self, ds: &RawDataset, n_rows: u64, row_bytes: u64) -> R<Vec<u8>> {
        if ds.filtered {
            return unsupported("filtered dataset");
        }
        let rows = ds.shape.first().copied().unwrap_or(1);
        let n_rows = n_rows.min(rows);
        let total = n_rows
            .checked_mul(row_bytes)
            .ok_or_else(|| RawError::Corrupt("size overflow".into()))?;
        if total > self.b.len() as u64 {
            return corrupt(format!(
                "{total} bytes requested from a {}-byte file",
                self.b.len()
            ));
        }
        let mut out = vec![0u8; total as usize];
        match &ds.layout {
            RawLayout::Compact(d) => {
                let n = (total as usize).min(d.len());
                out[..n].copy_from_slice(&d[..n]);
            }
            RawLayout::Contiguous { addr, .. } => {
                if *addr != UNDEF && total > 0 {
                    out.copy_from_slice(self.slice(*addr, total)?);
                }
            }
            RawLayout::Chunked { chunk, btree } => {
                if chunk.len() != ds.shape.len() || chunk.is_empty() {
                    return corrupt("chunk rank differs from dataset rank");
                }
                if chunk[1..] != ds.shape[1..] {
                    return unsupported("chunks not spanning the trailing dimensions");
                }
                let crows = chunk[0];
                if crows == 0 {
                    return corrupt("zero chunk size");
                }
                if *btree == UNDEF {
                    return Ok(out);
                }
                for (row0, addr, size) in self.chunk_list(*btree, chunk.len())? {
                    if row0 >= n_rows {
                        continue;
                    }
                    let nr = crows.min(n_rows - row0);
                    let nb = nr * row_bytes;
                    if nb > size {
                        return corrupt(format!("chunk at {addr} holds {size} bytes, need {nb}"));
                    }
                    let src = self.slice(addr, nb)?;
                    let o = (row0 * row_bytes) as usize;
                    out.get_mut(o..o + nb as usize)
                        .ok_or_else(|| RawError::Corrupt("chunk offset outside dataset".into()))?
                        .copy_from_slice(src);
                }
            }
        }
        Ok(out)
    }

    /// Copy rows `[start, start + count)` of an unfiltered fixed-size dataset into
    /// `out` (`row_bytes` per row) straight from the map. Unallocated chunks read as
    /// zeros (the default fill value of the files handled here).
    pub fn read_row_range(
        &self,
        ds: &RawDataset,
        start: u64,
        count: u64,
        row_bytes: u64,
        out: &mut [u8],
    ) -> R<()> {
        if out.len() as u64 != count.saturating_mul(row_bytes) {
            return corrupt("buffer size does not match the rows");
        }
        let (mut at, out_len) = (0usize, out.len());
        self.visit_row_range(ds, start, count, row_bytes, &mut |piece| {
            let n = piece.len();
            let dst = out
                .get_mut(at..at + n)
                .ok_or_else(|| RawError::Corrupt("rows longer than the buffer".into()))?;
            match piece {
                Piece::Bytes(b) => crate::key_data::spans::copy_rows(dst, b, out_len),
                Piece::Zeros(_) => dst.fill(0),
            }
            at += n;
            Ok(())
        })
    }

    /// Hand rows `[start, start + count)` of an unfiltered fixed-size dataset to
    /// `f` in order, as slices of the map (no copy) and runs of zeros for
    /// unallocated chunks. The pieces add up to `count * row_bytes` bytes.
    pub fn visit_row_range(
        &self,
        ds: &RawDataset,
        start: u64,
        count: u64,
        row_bytes: u64,
        f: &mut dyn FnMut(Piece<'_>) -> R<()>,
    ) -> R<()> {
        if ds.filtered {
            return unsupported("filtered dataset");
        }
        match ds.dtype {
            RawType::Int { .. } | RawType::Float { .. } | RawType::FixedString { .. } => {}
            RawType::VlenString => return unsupported("variable-length strings"),
        }
        let rows = ds.shape.first().copied().unwrap_or(0);
        let end = start
            .checked_add(count)
            .ok_or_else(|| RawError::Corrupt("row range overflow".into()))?;
        if end > rows {
            return corrupt(format!(
                "rows {start}..{end} outside the dataset ({rows} rows)"
            ));
        }
        let total = count
            .checked_mul(row_bytes)
            .ok_or_else(|| RawError::Corrupt("size overflow".into()))?;
        if total == 0 {
            return Ok(());
        }
        match &ds.layout {
            RawLayout::Compact(d) => {
                let a = start.saturating_mul(row_bytes) as usize;
                let src = d
                    .get(a..a.saturating_add(total as usize))
                    .ok_or_else(|| RawError::Corrupt("compact data too short".into()))?;
                f(Piece::Bytes(src))
            }
            RawLayout::Contiguous { addr, .. } => {
                if *addr == UNDEF {
                    f(Piece::Zeros(total))
                } else {
                    let off = addr
                        .checked_add(start.saturating_mul(row_bytes))
                        .ok_or_else(|| RawError::Corrupt("address overflow".into()))?;
                    f(Piece::Bytes(self.slice(off, total)?))
                }
            }
            RawLayout::Chunked { chunk, btree } => {
                if chunk.len() != ds.shape.len() || chunk.is_empty() {
                    return corrupt("chunk rank differs from dataset rank");
                }
                if chunk[1..] != ds.shape[1..] {
                    return unsupported("chunks not spanning the trailing dimensions");
                }
                let crows = chunk[0];
                if crows == 0 {
                    return corrupt("zero chunk size");
                }
                if *btree == UNDEF {
                    return f(Piece::Zeros(total));
                }
                let mut chunks: Vec<(u64, u64, u64)> = self
                    .chunk_list(*btree, chunk.len())?
                    .into_iter()
                    .filter(|&(row0, _, _)| row0 < end && row0.saturating_add(crows) > start)
                    .collect();
                chunks.sort_unstable_by_key(|c| c.0);
                // Rows not covered by an allocated chunk read as zeros.
                let mut covered = start;
                for (row0, addr, size) in chunks {
                    let lo = row0.max(start);
                    let hi = row0.saturating_add(crows).min(end);
                    if lo < covered {
                        return corrupt("overlapping chunks");
                    }
                    let in_chunk = (lo - row0) * row_bytes;
                    let nb = (hi - lo) * row_bytes;
                    if in_chunk + nb > size {
                        return corrupt(format!("chunk at {addr} holds {size} bytes"));
                    }
                    if lo > covered {
                        f(Piece::Zeros((lo - covered) * row_bytes))?;
                    }
                    f(Piece::Bytes(self.slice(addr + in_chunk, nb)?))?;
                    covered = hi;
                }
                if covered < end {
                    f(Piece::Zeros((end - covered) * row_bytes))?;
                }
                Ok(())
            }
        }
    }

    /// Leaves of a chunk B-tree: (first row, address, stored size).
    fn chunk_list(&self, root: u64, rank: usize) -> R<Vec<(u64, u64, u64)>> {
        // Chunk keys: size (4), filter mask (4), then rank + 1 offsets of 8 bytes.
        let key_len = 8 + 8 * (rank as u64 + 1);
        let mut out = Vec::new();
        self.walk_btree_v1(root, 1, key_len, |key, chunk| {
            let size = u32::from_le_bytes(key[0..4].try_into().unwrap_or([0; 4])) as u64;
            let mask = u32::from_le_bytes(key[4..8].try_into().unwrap_or([0; 4]));
            let row0 = u64::from_le_bytes(key[8..16].try_into().unwrap_or([0; 8]));
            if mask != 0 {
                return unsupported("chunk with filter mask");
            }
            out.push((row0, chunk, size));
            Ok(())
        })?;
        Ok(out)
    }

    /// Walks a version-1 B-tree (`node_type` 0: group, 1: chunk) whose keys are `key_len`
    /// bytes, following internal nodes and calling `leaf(key, child)` for every entry of a leaf
    /// node. Bounded against corrupt files: at most `MAX_NODES` nodes, 64 levels, and every node
    /// read through the bounds-checked `slice`.
    fn walk_btree_v1(
        &self,
        root: u64,
        node_type: u8,
        key_len: u64,
        mut leaf: impl FnMut(&[u8], u64) -> R<()>,
    ) -> R<()> {
        let what = if node_type == 0 { "group" } else { "chunk" };
        let mut stack = vec![(root, 0usize)];
        let mut visited = 0usize;
        while let Some((node, depth)) = stack.pop() {
            visited += 1;
            if visited > MAX_NODES || depth > 64 {
                return corrupt(format!("{what} B-tree too large or cyclic"));
            }
            let hdr = self.slice(node, 24)?;
            if &hdr[0..4] != b"TREE" || hdr[4] != node_type {
                return corrupt(format!("bad {what} B-tree node at {node}"));
            }
            let level = hdr[5];
            let used = u16::from_le_bytes([hdr[6], hdr[7]]) as u64;
            // Keys and children interleaved: key0 child0 key1 child1 ... key[used].
            let body = self.slice(node + 24, used * (key_len + 8) + key_len)?;
            for i in 0..used {
                let k = (i * (key_len + 8)) as usize;
                let c = k + key_len as usize;
                let child = u64::from_le_bytes(body[c..c + 8].try_into().unwrap_or([0; 8]));
                if level > 0 {
                    stack.push((child, depth + 1));
                } else {
                    leaf(&body[k..c], child)?;
                }
            }
        }
        Ok(())
    }

    /// Read a 1-D integer dataset (first `n` values) as u64 (sign-extended for signed).
    pub fn read_ints(&self, path: &str, n: Option<u64>) -> R<Vec<u64>> {
        let ds = self.dataset(path)?;
        if ds.shape.len() != 1 {
            return corrupt(format!("{path}: expected 1-D, got {:?}", ds.shape));
        }
        let RawType::Int { size, signed } = ds.dtype else {
            return unsupported(format!("{path}: not an integer dataset"));
        };
        let rows = n.unwrap_or(ds.shape[0]).min(ds.shape[0]);
        let bytes = self.read_rows(&ds, rows, size as u64)?;
        Ok(bytes
            .chunks_exact(size)
            .map(|c| {
                let mut a = [0u8; 8];
                a[..size].copy_from_slice(c);
                if signed && c[size - 1] & 0x80 != 0 {
                    for x in a.iter_mut().skip(size) {
                        *x = 0xff;
                    }
                }
                u64::from_le_bytes(a)
            })
            .collect())
    }

    /// Read a 1-D string dataset (vlen or fixed).
    pub fn read_strings(&self, path: &str) -> R<Vec<String>> {
        let ds = self.dataset(path)?;
        let rows = match ds.shape.len() {
            0 => 1,
            1 => ds.shape[0],
            _ => return unsupported(format!("{path}: {}-D strings", ds.shape.len())),
        };
        match ds.dtype {
            RawType::FixedString { size } => {
                let b = self.read_rows(&ds, rows, size as u64)?;
                Ok(b.chunks_exact(size.max(1))
                    .map(|c| {
                        let e = c.iter().position(|&x| x == 0).unwrap_or(c.len());
                        String::from_utf8_lossy(&c[..e]).into_owned()
                    })
                    .collect())
            }
            RawType::VlenString => {
                let b = self.read_rows(&ds, rows, 16)?;
                let mut heaps: HashMap<u64, HashMap<u16, (u64, u64)>> = HashMap::new();
                let mut out = Vec::with_capacity(rows as usize);
                for e in b.chunks_exact(16) {
                    let len = u32::from_le_bytes(e[0..4].try_into().unwrap_or([0; 4])) as u64;
                    let coll = u64::from_le_bytes(e[4..12].try_into().unwrap_or([0; 8]));
                    let idx = u32::from_le_bytes(e[12..16].try_into().unwrap_or([0; 4]));
                    if len == 0 || coll == 0 || coll == UNDEF {
                        out.push(String::new());
                        continue;
                    }
                    let objs = match heaps.entry(coll) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(self.global_heap(coll)?)
                        }
                    };
                    let &(addr, size) = objs.get(&(idx as u16)).ok_or_else(|| {
                        RawError::Corrupt(format!("global heap object {idx} not in {coll}"))
                    })?;
                    let data = self.slice(addr, size.min(len))?;
                    let end = data.iter().position(|&x| x == 0).unwrap_or(data.len());
                    out.push(String::from_utf8_lossy(&data[..end]).into_owned());
                }
                Ok(out)
            }
            _ => unsupported(format!("{path}: not a string dataset")),
        }
    }

    /// Objects of a global heap collection: index -> (data address, size).
    fn global_heap(&self, addr: u64) -> R<HashMap<u16, (u64, u64)>> {
        let h = self.slice(addr, 16)?;
        if &h[0..4] != b"GCOL" {
            return corrupt(format!("bad global heap signature at {addr}"));
        }
        let size = u64::from_le_bytes(h[8..16].try_into().unwrap_or([0; 8]));
        let body = self.slice(addr, size)?;
        let mut p = 16usize;
        let mut out = HashMap::new();
        while p + 16 <= body.len() {
            let idx = u16::from_le_bytes([body[p], body[p + 1]]);
            let osz = u64::from_le_bytes(body[p + 8..p + 16].try_into().unwrap_or([0; 8]));
            if idx == 0 {
                break;
            }
            if (p as u64 + 16).saturating_add(osz) > body.len() as u64 {
                return corrupt(format!(
                    "global heap object {idx} overruns its collection at {addr}"
                ));
            }
            out.insert(idx, (addr + p as u64 + 16, osz));
            let adv = 16u64
                .checked_add(osz.div_ceil(8) * 8)
                .ok_or_else(|| RawError::Corrupt("global heap object size overflow".into()))?;
            p = p
                .checked_add(adv as usize)
                .ok_or_else(|| RawError::Corrupt("global heap overflow".into()))?;
        }
        Ok(out)
    }
}

/// Check variable-length data references (16 bytes each: length, global heap
/// collection address, object index) against the file `b` before libhdf5 follows
/// them: each non-null reference must name an object of a well-formed collection
/// inside the file, at least as long as the reference says. libhdf5 1.10 reads
/// them unchecked (a corrupt one crashes it in `H5HG_read`).
pub(crate) fn check_vlen_refs(b: &[u8], refs: &[u8]) -> R<()> {
    let mut off = 0usize;
    while b.get(off..off + 8) != Some(&HDF5_SIGNATURE[..]) {
        if off + 8 > b.len() {
            return corrupt("no HDF5 signature");
        }
        off = if off == 0 { 512 } else { off * 2 };
    }
    let byte = |i: usize| {
        b.get(off + i)
            .copied()
            .ok_or_else(|| RawError::Corrupt("short superblock".into()))
    };
    let probe = RawFile::bare(b, 0);
    // Offsets and lengths of 8 bytes (the 16-byte references assume it); base address.
    let base = match byte(8)? {
        v @ (0 | 1) => {
            if byte(13)? != 8 || byte(14)? != 8 {
                return unsupported("offset/length size other than 8");
            }
            probe.u64_at((off + if v == 1 { 28 } else { 24 }) as u64)?
        }
        2 | 3 => {
            if byte(9)? != 8 || byte(10)? != 8 {
                return unsupported("offset/length size other than 8");
            }
            probe.u64_at((off + 12) as u64)?
        }
        v => return unsupported(format!("superblock version {v}")),
    };
    let f = RawFile::bare(b, base);
    let mut heaps: HashMap<u64, HashMap<u16, (u64, u64)>> = HashMap::new();
    for e in refs.chunks_exact(16) {
        let len = u32::from_le_bytes(e[0..4].try_into().unwrap_or([0; 4])) as u64;
        let coll = u64::from_le_bytes(e[4..12].try_into().unwrap_or([0; 8]));
        let idx = u32::from_le_bytes(e[12..16].try_into().unwrap_or([0; 4]));
        if coll == 0 || coll == UNDEF {
            continue;
        }
        let objs = match heaps.entry(coll) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(f.global_heap(coll)?),
        };
        let &(addr, size) = u16::try_from(idx)
            .ok()
            .and_then(|i| objs.get(&i))
            .ok_or_else(|| {
                RawError::Corrupt(format!(
                    "global heap object {idx} not in the collection at {coll}"
                ))
            })?;
        if len > size {
            return corrupt(format!(
                "string of {len} bytes in a global heap object of {size}"
            ));
        }
        f.slice(addr, size)?;
    }
    Ok(())
}

fn le_u64(d: &[u8], at: usize) -> R<u64> {
    d.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| RawError::Corrupt("short message".into()))
}

fn parse_dataspace(d: &[u8]) -> R<Vec<u64>> {
    let ver = *d
        .first()
        .ok_or_else(|| RawError::Corrupt("empty dataspace".into()))?;
    let rank = *d
        .get(1)
        .ok_or_else(|| RawError::Corrupt("short dataspace".into()))? as usize;
    let start = match ver {
        1 => 8,
        2 => 4,
        v => return unsupported(format!("dataspace version {v}")),
    };
    if ver == 2 && d.get(3) == Some(&2) {
        return Ok(vec![0]); // null dataspace
    }
    (0..rank).map(|i| le_u64(d, start + i * 8)).collect()
}

fn parse_datatype(d: &[u8]) -> R<RawType> {
    if d.len() < 8 {
        return corrupt("short datatype");
    }
    let class = d[0] & 0x0f;
    let bits0 = d[1];
    let size = u32::from_le_bytes([d[4], d[5], d[6], d[7]]) as usize;
    match class {
        0 => {
            if bits0 & 1 != 0 {
                return unsupported("big-endian integer");
            }
            if ![1, 2, 4, 8].contains(&size) {
                return unsupported(format!("integer of {size} bytes"));
            }
            Ok(RawType::Int {
                size,
                signed: bits0 & 0x08 != 0,
            })
        }
        1 => {
            if bits0 & 1 != 0 || bits0 & 0x40 != 0 {
                return unsupported("non-little-endian float");
            }
            Ok(RawType::Float { size })
        }
        3 => Ok(RawType::FixedString { size }),
        9 => {
            if bits0 & 0x0f == 1 {
                Ok(RawType::VlenString)
            } else {
                unsupported("variable-length sequence")
            }
        }
        c => unsupported(format!("datatype class {c}")),
    }
}

fn parse_layout(d: &[u8]) -> R<RawLayout> {
    let ver = *d
        .first()
        .ok_or_else(|| RawError::Corrupt("empty layout".into()))?;
    if ver != 3 {
        return unsupported(format!("layout message version {ver}"));
    }
    match d.get(1) {
        Some(0) => {
            let n = d
                .get(2..4)
                .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
                .ok_or_else(|| RawError::Corrupt("short compact layout".into()))?;
            let data = d
                .get(4..4 + n)
                .ok_or_else(|| RawError::Corrupt("short compact data".into()))?;
            Ok(RawLayout::Compact(data.to_vec()))
        }
        Some(1) => Ok(RawLayout::Contiguous {
            addr: le_u64(d, 2)?,
            size: le_u64(d, 10)?,
        }),
        Some(2) => {
            let dims = *d
                .get(2)
                .ok_or_else(|| RawError::Corrupt("short chunked layout".into()))?
                as usize;
            let btree = le_u64(d, 3)?;
            if dims < 2 {
                return corrupt("chunked layout with rank 0");
            }
            let mut chunk = Vec::with_capacity(dims - 1);
            for i in 0..dims - 1 {
                let o = 11 + i * 4;
                let s = d
                    .get(o..o + 4)
                    .ok_or_else(|| RawError::Corrupt("short chunk dims".into()))?;
                chunk.push(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64);
            }
            Ok(RawLayout::Chunked { chunk, btree })
        }
        Some(c) => unsupported(format!("layout class {c}")),
        None => corrupt("short layout"),
    }
}

#[cfg(test)]
mod tests;
