//! The one read-only memory map of a file, shared by the pure-Rust reader
//! ([`crate::rawh5`]) and the libhdf5 handle's bulk reads ([`crate::h5`]).

use std::ops::Range;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::{Advice, Mmap};

use super::error::Error;
use super::rawh5::{Prefetch, RawError, RawFile, HDF5_SIGNATURE};
use super::read_plan::ReadPlan;

/// Bytes at the start of a file asked for in one read when it is opened: the
/// superblock, the root group and, in files written by libhdf5 with default
/// settings, the groups and index dataset headers created first (24 KiB of the
/// 340-file benchmark run's module files are read there, 6 page faults).
const HEAD_PREFETCH: usize = 32 << 10;

/// A file mapped read-only; clones share the map.
#[derive(Clone)]
pub(crate) struct FileMap(Arc<Mapped>);

struct Mapped {
    map: Mmap,
    /// The file's st_mtime when it was mapped (as Python gives it).
    mtime: f64,
    /// Ranges asked for at open from a [`ReadPlan`] (empty: the generic prefetch).
    planned: Vec<Range<u64>>,
    /// The metadata walk's accesses are recorded to make a plan (until
    /// [`FileMap::finish_recording`]).
    recording: AtomicBool,
    /// The accesses `(offset, len)` recorded.
    accessed: Mutex<Vec<(u64, u64)>>,
}

/// How the reads of a file's metadata are prefetched when it is mapped.
#[derive(Clone, Copy)]
pub(crate) enum MetadataReads<'a> {
    /// The head of the file, then the neighbourhood of each top-level group.
    Generic,
    /// As `Generic`, and the walk's accesses are recorded to make a plan.
    Record,
    /// The ranges of a plan made from another file of the same aggregator; the
    /// generic prefetch covers only top-level groups the plan missed.
    Planned(&'a ReadPlan),
}

impl FileMap {
    /// Map a file read-only. An empty file is not HDF5 (and cannot be mapped).
    pub fn open(path: &Path) -> Result<FileMap, Error> {
        Self::open_with(path, MetadataReads::Generic)
    }

    /// Map a file read-only, with the given prefetch of its metadata.
    pub fn open_with(path: &Path, reads: MetadataReads<'_>) -> Result<FileMap, Error> {
        let f = open_for_reading(path).map_err(|e| {
            // A socket cannot be opened at all (ENXIO): say what it is instead.
            match std::fs::metadata(path).ok().and_then(|m| special_file(&m)) {
                Some(kind) => not_regular(path, kind),
                None => Error::io(path, e),
            }
        })?;
        let meta = f.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::io(path, std::io::ErrorKind::IsADirectory.into()));
        }
        if let Some(kind) = special_file(&meta) {
            return Err(not_regular(path, kind));
        }
        let len = meta.len();
        if len == 0 {
            return Err(Error::NotHdf5 {
                path: path.into(),
                msg: "file is empty".into(),
            });
        }
        let planned = match reads {
            MetadataReads::Planned(plan) => plan.ranges_for(len),
            MetadataReads::Generic | MetadataReads::Record => Vec::new(),
        };
        // The reads the walk will need, queued before the map exists (the kernel
        // returns at once and reads them meanwhile). Through the descriptor rather
        // than the map: `posix_fadvise` does not take the process's memory map lock,
        // which every page fault and mmap of the other opening threads also takes.
        if planned.is_empty() {
            // The head of the file in one request rather than page by page as the walk
            // faults: fewer, larger reads cost less per byte (here each request is also
            // an exit of the virtual machine). The walk then asks for the neighbourhood
            // of each top-level group outside the head ([`Prefetch`]). Hints per object
            // (each group member's header, each index chunk) were measured slower: a
            // call per object costs more than the fault it saves at this disk's ~0.15
            // ms latency.
            will_need(&f, 0, HEAD_PREFETCH.min(len as usize) as u64);
        }
        for r in &planned {
            will_need(&f, r.start, r.end - r.start);
        }
        // SAFETY: a read-only private map of a closed run file. Every access goes
        // through bounds-checked slices of the map (`FileMap::bytes`, `RawFile::slice`),
        // so no read goes past the length mapped here. Files are assumed not to be
        // truncated while open, as EXtra-data assumes (a concurrent truncation could
        // raise SIGBUS).
        let m = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
        // Opening reads a few scattered metadata and index pages: without this, each
        // first fault reads the device's whole read-ahead window around it (8 MiB
        // here, the whole of most files). Bulk data reads ask for read-ahead again
        // ([`FileMap::advise_bulk_reads`]). Advisory: a failure changes only speed.
        let _ = m.advise(Advice::Random);
        Ok(FileMap(Arc::new(Mapped {
            map: m,
            mtime: super::file_access::mtime_seconds(&meta),
            planned,
            recording: AtomicBool::new(matches!(reads, MetadataReads::Record)),
            accessed: Mutex::new(Vec::new()),
        })))
    }

    /// The plan made from the accesses recorded since the map was opened with
    /// [`MetadataReads::Record`]; recording stops (`None` if it was not on).
    pub fn finish_recording(&self) -> Option<ReadPlan> {
        if !self.0.recording.swap(false, Ordering::Relaxed) {
            return None;
        }
        let accessed =
            std::mem::take(&mut *self.0.accessed.lock().unwrap_or_else(|e| e.into_inner()));
        Some(ReadPlan::from_accesses(self.len(), &accessed))
    }

    /// Read-ahead for the bulk data reads that follow (a key streamed or read in
    /// runs of rows): sequential access, large read-ahead. Advisory.
    pub fn advise_bulk_reads(&self) {
        let _ = self.0.map.advise(Advice::Sequential);
    }

    /// The file's st_mtime when it was mapped (seconds, as Python's `os.stat`).
    pub fn mtime(&self) -> f64 {
        self.0.mtime
    }

    /// Length of the mapped file in bytes.
    pub fn len(&self) -> u64 {
        self.0.map.len() as u64
    }

    /// `len` bytes at `offset`, if they lie inside the file.
    pub fn bytes(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        self.0.map.get(offset as usize..end as usize)
    }

    /// Drop the pages of `range` (byte offsets in the file) from this process's
    /// resident set once a stream has consumed them, so that streaming a key of any
    /// size keeps the process's memory bounded. The page cache keeps them; a later
    /// access faults the same bytes back in. Advisory: failures are ignored.
    pub fn release(&self, range: std::ops::Range<u64>) {
        let end = range.end.min(self.len());
        if range.start >= end {
            return;
        }
        // SAFETY: the map is a shared, read-only mapping of a file that is not
        // modified while open (the invariant of `FileMap::open`). MADV_DONTNEED on it
        // only removes page table entries: any slice of the map still borrowed
        // elsewhere reads the same file bytes again on its next access (faulted back
        // in from the page cache), so no borrowed memory changes value. The range is
        // inside the map (clamped above; memmap2 aligns its start to the page).
        let _ = unsafe {
            self.0.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start as usize,
                (end - range.start) as usize,
            )
        };
    }

    /// Offset in the file of a slice of this map, `None` if it is not one.
    pub fn offset_of(&self, b: &[u8]) -> Option<u64> {
        let base = self.0.map.as_ptr() as usize;
        let p = b.as_ptr() as usize;
        (p >= base && p + b.len() <= base + self.0.map.len()).then(|| (p - base) as u64)
    }

    /// The whole file.
    pub fn all(&self) -> &[u8] {
        &self.0.map
    }

    /// Whether the HDF5 signature is at 0, 512, 1024, 2048, ... (where libhdf5 looks).
    pub fn has_hdf5_signature(&self) -> bool {
        let mut off = 0u64;
        while let Some(b) = self.bytes(off, 8) {
            if b == HDF5_SIGNATURE {
                return true;
            }
            off = if off == 0 { 512 } else { off * 2 };
        }
        false
    }

    /// The pure-Rust reader over the map (an error if the superblock is one it does
    /// not read, or the file is shorter than the superblock says).
    pub fn raw(&self) -> Result<RawFile<'_>, RawError> {
        RawFile::new(&self.0.map, Some(self))
    }
}

/// Open a file for reading without blocking: opening a FIFO for reading otherwise
/// waits for a writer for ever. Regular files ignore the flag.
pub(crate) fn open_for_reading(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Ask the kernel to read `len` bytes at `offset` of `f` into the page cache
/// (`POSIX_FADV_WILLNEED`: queued, not waited for). Advisory: a failure changes only
/// speed.
fn will_need(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: a system call on a descriptor `f` owns and keeps open for the call,
    // with integer arguments only; it touches no memory of this process.
    let _ = unsafe { libc::posix_fadvise(f.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED) };
}

/// What a file that is neither a regular file nor a directory is.
fn special_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() {
        None
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_socket() {
        Some("a socket")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_block_device() {
        Some("a block device")
    } else {
        Some("an unknown file type")
    }
}

fn not_regular(path: &Path, kind: &str) -> Error {
    Error::NotHdf5 {
        path: path.into(),
        msg: format!("not a regular file ({kind})"),
    }
}

impl Prefetch for FileMap {
    /// `MADV_WILLNEED`: the kernel queues the read and returns. A range starting
    /// where the open already asked for (the head, or a planned range) is left
    /// alone: its object is read there. Advisory: a failure changes only speed.
    fn prefetch(&self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.len());
        let asked = if self.0.planned.is_empty() {
            offset < HEAD_PREFETCH as u64
        } else {
            self.0.planned.iter().any(|r| r.contains(&offset))
        };
        if !asked && offset < end {
            let _ =
                self.0
                    .map
                    .advise_range(Advice::WillNeed, offset as usize, (end - offset) as usize);
        }
    }

    fn accessed(&self, offset: u64, len: u64) {
        if self.0.recording.load(Ordering::Relaxed) {
            if let Ok(mut a) = self.0.accessed.lock() {
                a.push((offset, len));
            }
        }
    }
}
