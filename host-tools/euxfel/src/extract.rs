//! One key to NumPy files (`xfel-extract`): `data.npy` with the selected data (first
//! axis = entries) and `train_ids.npy` with one train ID per entry.

use std::path::{Path, PathBuf};

use super::dtype::DType;
use super::error::{Error, Result};
use super::interrupt;
use super::key_data::KeyData;
use super::npy;

/// The files [`extract_key`] wrote.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub data: PathBuf,
    pub train_ids: PathBuf,
}

/// Write `kd` to `out/data.npy` and its train IDs to `out/train_ids.npy` (`out` is
/// created if missing). Fixed-size data (numbers, fixed strings, structured
/// compounds) is streamed from the files to the output, memory bounded; strings
/// become a fixed-width unicode array (`numpy.load` needs no pickle). On failure or
/// Ctrl-C nothing of this call is left behind: neither file, nor the directory if
/// this call created it.
pub fn extract_key(kd: &KeyData, out: &Path) -> Result<Extracted> {
    let created = !out.exists();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let files = Extracted {
        data: out.join("data.npy"),
        train_ids: out.join("train_ids.npy"),
    };
    let r = write_both(kd, &files);
    if r.is_err() {
        let _ = std::fs::remove_file(&files.data);
        let _ = std::fs::remove_file(&files.train_ids);
        if created {
            // Only removes it if empty: files someone else put there stay.
            let _ = std::fs::remove_dir(out);
        }
    }
    r.map(|()| files)
}

/// The train IDs first, then the data: each file is written under a temporary name and
/// renamed into place once complete, and the files of an earlier extract go first, so a run
/// killed between the two renames (SIGKILL) leaves `train_ids.npy` without a `data.npy`,
/// never a new file beside an old one.
fn write_both(kd: &KeyData, files: &Extracted) -> Result<()> {
    let shape = kd.shape();
    let tids = kd.train_id_coordinates()?;
    remove_if_present(&files.data)?;
    remove_if_present(&files.train_ids)?;
    npy::write_u64(&files.train_ids, &tids)?;
    interrupt::check()?;
    if kd.dtype == DType::VlenStr {
        let s = kd.read_strings()?;
        interrupt::check()?;
        npy::write_strings(&files.data, &shape, &s)?;
    } else {
        let descr = kd.dtype.npy_descr().ok_or_else(|| Error::UnsupportedType {
            path: kd.files.first().map(|f| f.path.clone()).unwrap_or_default(),
            object: kd.hdf5_data_path(),
            dtype: format!("{} (no .npy form)", kd.dtype.numpy_name()),
        })?;
        let len = kd.nbytes().ok_or_else(|| Error::TooLarge {
            object: format!("{} {}", kd.source, kd.key),
            what: "data size",
            size: format!("{:?}", shape),
        })?;
        npy::write_streamed(&files.data, &descr, &shape, len, |write| {
            kd.for_each_block(write)
        })?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
