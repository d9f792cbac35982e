//! Writer of NumPy `.npy` files (format version 1.0), readable with `numpy.load`.

use std::io::Write;
use std::path::Path;

use super::display::shape_repr;
use super::error::{Error, Result};
use super::interrupt;

/// Bytes written between two checks for Ctrl-C.
const WRITE_STEP: usize = 8 << 20;

/// The header for an array of `descr` and `shape`, C order. `descr` is a protocol type
/// string (`<u2`) or the list form of a structured dtype (`[('x', '<f8'), ...]`), which
/// the header holds as a Python list, not a string. Format 1.0, or 2.0 when the header
/// does not fit 1.0's 16-bit length (a structured dtype with very many fields).
pub fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let descr = if descr.starts_with('[') {
        descr.to_string()
    } else {
        format!("'{descr}'")
    };
    let dict = format!(
        "{{'descr': {descr}, 'fortran_order': False, 'shape': {}, }}",
        shape_repr(shape)
    );
    // magic(6) + version(2) + len(2 or 4) + dict + padding + '\n' is a multiple of 64.
    let v1 = 10 + dict.len() + 1 + 63 <= usize::from(u16::MAX);
    let prefix = if v1 { 10 } else { 12 };
    let base = prefix + dict.len() + 1;
    let pad = (64 - base % 64) % 64;
    let mut h = Vec::with_capacity(base + pad);
    h.extend_from_slice(b"\x93NUMPY");
    let hlen = dict.len() + pad + 1;
    if v1 {
        h.extend_from_slice(&[1, 0]);
        h.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        h.extend_from_slice(&[2, 0]);
        h.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    h.extend_from_slice(dict.as_bytes());
    h.extend(std::iter::repeat_n(b' ', pad));
    h.push(b'\n');
    h
}

/// Write raw little-endian data of `descr` and `shape` to `path` (under a temporary name,
/// as [`write_streamed`]).
pub fn write_raw(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    write_streamed(path, descr, shape, data.len() as u64, |write| write(data))
}

/// Write an array of `data_len` bytes whose data comes in pieces: `produce` hands
/// each piece to the writer it is given. Written under a temporary name renamed to
/// `path` once complete, so a failed or interrupted write leaves no truncated `.npy`
/// behind.
pub fn write_streamed(
    path: &Path,
    descr: &str,
    shape: &[usize],
    data_len: u64,
    produce: impl FnOnce(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut written = 0u64;
    let r = w
        .write_all(&header(descr, shape))
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|_| {
            produce(&mut |piece: &[u8]| {
                // A piece can be a whole dataset's map: written in bounded steps so that
                // Ctrl-C is noticed within one of them.
                for part in piece.chunks(WRITE_STEP) {
                    interrupt::check()?;
                    w.write_all(part).map_err(|e| Error::io(&tmp, e))?;
                    written += part.len() as u64;
                }
                Ok(())
            })
        })
        .and_then(|_| w.flush().map_err(|e| Error::io(&tmp, e)));
    let r = r.and_then(|_| {
        if written == data_len {
            Ok(())
        } else {
            Err(Error::BufferSize {
                object: path.display().to_string(),
                got: written as usize,
                needed: data_len,
            })
        }
    });
    match r {
        Ok(()) => std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Write strings as a fixed-width unicode array (`<U{n}`, UTF-32LE), which
/// `numpy.load` opens without pickle.
pub fn write_strings(path: &Path, shape: &[usize], strings: &[String]) -> Result<()> {
    let width = strings
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut data = Vec::with_capacity(strings.len() * width * 4);
    for s in strings {
        let mut n = 0;
        for c in s.chars() {
            data.extend_from_slice(&(c as u32).to_le_bytes());
            n += 1;
        }
        for _ in n..width {
            data.extend_from_slice(&0u32.to_le_bytes());
        }
    }
    write_raw(path, &format!("<U{width}"), shape, &data)
}

/// Write u64 values as a 1-D `<u8` array.
pub fn write_u64(path: &Path, values: &[u64]) -> Result<()> {
    let mut data = Vec::with_capacity(values.len() * 8);
    for v in values {
        data.extend_from_slice(&v.to_le_bytes());
    }
    write_raw(path, "<u8", &[values.len()], &data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_is_aligned() {
        for shape in [&[][..], &[3][..], &[480, 1000][..]] {
            let h = super::header("<f4", shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(*h.last().unwrap_or(&0), b'\n');
        }
    }
}
