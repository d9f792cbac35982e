//! Virtual datasets: one mapping per segment, from rows of a source file's dataset to rows
//! of the output, with source files named relative to the output's directory (libhdf5
//! resolves a relative source name against the virtual file's own directory, so a run
//! directory and its overview file can move together).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use euxfel::FileAccess;
use hdf5::{Dataset, Group, Hyperslab, Selection, SliceOrIndex};

use crate::error::{h5, Error, Result};
use crate::output::relative_to;

/// Rows `src_first .. src_first + rows` of the dataset (of `shape`) in file `path` go to
/// `dst_first ..` of the virtual dataset.
pub(crate) struct MappedSegment {
    pub path: PathBuf,
    pub shape: Vec<usize>,
    pub src_first: u64,
    pub rows: u64,
    pub dst_first: u64,
}

/// Sorted basenames of a source's files (the `source_files` attribute).
pub(crate) fn source_file_names(files: &[Arc<FileAccess>]) -> Vec<String> {
    let mut v: Vec<String> = files.iter().map(|f| f.filename()).collect();
    v.sort();
    v
}

fn rows(start: u64, n: u64, entry: &[usize]) -> Selection {
    let mut h = vec![SliceOrIndex::from(start as usize..(start + n) as usize)];
    h.extend(entry.iter().map(|&d| SliceOrIndex::from(0..d)));
    Selection::from(Hyperslab::from(h))
}

/// Creates `parent/name` as a virtual dataset of `total` rows mapping every segment; with no
/// segments it is a virtual dataset without mappings (reads give the fill value), as
/// EXtra-data writes empty keys. Returns the number of mappings.
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_segments(
    parent: &Group,
    name: &str,
    first: &(PathBuf, Dataset),
    segments: &[MappedSegment],
    total: u64,
    out_dir: &Path,
    out_path: &Path,
    object: &str,
) -> Result<u64> {
    let (first_path, src0) = first;
    let entry: Vec<usize> = src0
        .shape()
        .get(1..)
        .map(<[usize]>::to_vec)
        .unwrap_or_default();
    let dtype = src0.dtype().map_err(h5(first_path, object))?;
    let mut shape = vec![total as usize];
    shape.extend(&entry);
    let src_path = format!("/{}", object.trim_start_matches('/'));
    let mut mappings = Vec::with_capacity(segments.len());
    for seg in segments {
        let sshape = seg.shape.clone();
        if sshape.get(1..) != Some(&entry[..]) {
            return Err(Error::ShapeMismatch {
                path: seg.path.clone(),
                object: object.into(),
                expected: entry.clone(),
                found: sshape.get(1..).map(<[usize]>::to_vec).unwrap_or_default(),
            });
        }
        let file_name = relative_to(&seg.path, out_dir)
            .to_string_lossy()
            .into_owned();
        mappings.push((
            file_name,
            sshape,
            rows(seg.src_first, seg.rows, &entry),
            rows(seg.dst_first, seg.rows, &entry),
        ));
    }
    let builder = parent.new_dataset_builder().with_dcpl(|p| {
        if mappings.is_empty() {
            p.layout(hdf5::plist::dataset_create::Layout::Virtual);
        }
        for (file, sshape, ssel, dsel) in &mappings {
            p.virtual_map(
                file,
                &src_path,
                sshape.clone(),
                ssel.clone(),
                shape.clone(),
                dsel.clone(),
            );
        }
        p
    });
    builder
        .empty_as(&dtype)
        .shape(shape.clone())
        .create(name)
        .map_err(h5(out_path, object))?;
    Ok(mappings.len() as u64)
}
