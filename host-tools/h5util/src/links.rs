//! Soft links.

/// If `path` in `file` is a soft link, the path it points to (`None` for anything else,
/// including a missing path or a target longer than 1 MiB).
pub fn soft_link_target(file: &hdf5::File, path: &str) -> Option<String> {
    #[allow(deprecated)]
    use hdf5_sys::h5l::{H5L_info1_t, H5L_type_t, H5Lget_info1, H5Lget_val};
    if !link_exists(file, path) {
        return None;
    }
    let cpath = std::ffi::CString::new(path).ok()?;
    let fid = file.id();
    hdf5::sync::sync(|| {
        // SAFETY: `fid` is a valid open file id for the borrowed file; `cpath` is a
        // NUL-terminated string that lives through the calls; `info` is written by
        // H5Lget_info before being read (checked by its return value), and the value buffer
        // has the size H5Lget_info reported.
        unsafe {
            let mut info = std::mem::MaybeUninit::<H5L_info1_t>::uninit();
            #[allow(deprecated)]
            if H5Lget_info1(
                fid,
                cpath.as_ptr(),
                info.as_mut_ptr(),
                hdf5_sys::h5p::H5P_DEFAULT,
            ) < 0
            {
                return None;
            }
            let mut info = info.assume_init();
            if info.type_ != H5L_type_t::H5L_TYPE_SOFT {
                return None;
            }
            let size = *info.u.val_size();
            if size == 0 || size > 1 << 20 {
                return None;
            }
            let mut buf = vec![0u8; size];
            if H5Lget_val(
                fid,
                cpath.as_ptr(),
                buf.as_mut_ptr().cast(),
                size,
                hdf5_sys::h5p::H5P_DEFAULT,
            ) < 0
            {
                return None;
            }
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            Some(String::from_utf8_lossy(&buf[..end]).into_owned())
        }
    })
}

/// Whether every component of `path` exists (libhdf5's own check fails on a missing
/// intermediate group).
fn link_exists(file: &hdf5::File, path: &str) -> bool {
    let mut prefix = String::new();
    for part in path.trim_matches('/').split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if !file.link_exists(&prefix) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_links_resolve_and_other_paths_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let f = hdf5::File::create(dir.path().join("l.h5")).unwrap();
        f.create_group("real").unwrap();
        f.link_soft("/real", "alias").unwrap();
        assert_eq!(soft_link_target(&f, "alias").as_deref(), Some("/real"));
        assert_eq!(soft_link_target(&f, "real"), None);
        assert_eq!(soft_link_target(&f, "missing"), None);
        assert_eq!(soft_link_target(&f, "missing/deeper"), None);
    }
}
