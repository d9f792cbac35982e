//! libhdf5 calls that the `hdf5` crate does not wrap, in one place.
//!
//! Every direct `hdf5-sys` call of the workspace lives here, behind a safe function whose
//! `unsafe` block states the invariant that makes it sound, and every call is made under the
//! `hdf5` crate's global library lock ([`hdf5::sync::sync`]), as the crate's own calls are.
//!
//! - [`attrs`]: attributes written as h5py writes them, replacing an existing one.
//! - [`write_chunk`]: `H5Dwrite_chunk`, one whole pre-filtered chunk straight from memory;
//!   [`write_chunks`]: a run of them along the first dimension in one call.
//! - [`read_rows_native`]: a hyperslab of leading-dimension rows into a caller buffer, in the
//!   dataset's native memory type (compounds keep the file's member offsets, as h5py's
//!   structured dtypes do); [`stored_layout_is_native`]: whether the stored bytes already are.
//! - [`write_rows_native`]: the same from bytes, for types known only at run time
//!   (fixed-length strings of a configured size).
//! - [`soft_link_target`]: where a soft link points.
//! - [`add_virtual_mapping`]: a virtual dataset mapping with its hyperslabs kept as given.
//! - [`read_chunk`], [`copy_rows`], [`copy_object`]: stored chunks as bytes, rows of any
//!   type between files, whole objects between files (used by the EuXFEL writer);
//!   [`chunk_allocated`]: whether one chunk has storage.

pub mod attrs;
mod chunk;
mod copy;
mod links;
mod read;
mod rows;
mod vds;
mod write;

pub use chunk::{write_chunk, write_chunks};
pub use copy::{chunk_allocated, copy_object, copy_rows, read_chunk};
pub use links::soft_link_target;
pub use read::{read_rows_native, stored_layout_is_native, ReadError};
pub use vds::{add_virtual_mapping, VdsError, VirtualMapping};
pub use write::write_rows_native;

/// libhdf5's reason for the call that just failed, from its error stack, as h5py words it: ": "
/// then the outermost description and, in parentheses, the innermost (where the cause is), or
/// "" when the stack is empty. Call it under the library lock, right after the failed call.
pub(crate) fn library_reason() -> String {
    let Some(stack) = hdf5::Error::query().ok().and_then(|e| e.stack()) else {
        return String::new();
    };
    match (stack.first(), stack.last()) {
        (Some(top), Some(inner)) if top.desc() != inner.desc() => {
            format!(": {} ({})", top.desc(), inner.desc())
        }
        (Some(top), _) => format!(": {}", top.desc()),
        _ => String::new(),
    }
}
