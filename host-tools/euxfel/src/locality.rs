//! Where a file's data is on dCache (EXtra-data's `extra_data.locality`): the
//! pseudo-file `<dir>/.(get)(<name>)(locality)` holds `ONLINE`, `NEARLINE`,
//! `ONLINE_AND_NEARLINE` or `UNAVAILABLE`; a file without one is not on dCache
//! (on GPFS, so on disk).

use std::path::Path;

/// Files whose data is only on tape.
pub const ONTAPE: u8 = 2;
/// Files dCache reports unavailable.
pub const UNAVAIL: u8 = 1;
/// Files on disk.
pub const ONDISK: u8 = 4;

/// The locality string of `path` (`NOT_ON_DCACHE` without a pseudo-file); an error
/// other than a missing pseudo-file is returned as it is.
pub fn get_locality(path: &Path) -> std::io::Result<String> {
    let dir = path.parent().unwrap_or(Path::new(""));
    // The name as the OS gives it (not UTF-8 for some files).
    let mut pseudo = std::ffi::OsString::from(".(get)(");
    pseudo.push(path.file_name().unwrap_or_default());
    pseudo.push(")(locality)");
    match std::fs::read_to_string(dir.join(pseudo)) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("NOT_ON_DCACHE".into()),
        Err(e) => Err(e),
    }
}

/// EXtra-data's code of a locality: on disk, on tape, unavailable (0: unknown).
pub fn locality_code(locality: &str) -> u8 {
    match locality {
        "UNAVAILABLE" => UNAVAIL,
        "NEARLINE" => ONTAPE,
        "ONLINE" | "NOT_ON_DCACHE" => ONDISK,
        "ONLINE_AND_NEARLINE" => ONTAPE | ONDISK,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_files_give_the_locality() {
        let td = tempfile::tempdir().expect("tempdir");
        let f = td.path().join("RAW-R0001-DA01-S00000.h5");
        std::fs::write(&f, b"x").expect("write");
        assert_eq!(get_locality(&f).expect("loc"), "NOT_ON_DCACHE");
        std::fs::write(
            td.path().join(".(get)(RAW-R0001-DA01-S00000.h5)(locality)"),
            "NEARLINE\n",
        )
        .expect("write");
        assert_eq!(get_locality(&f).expect("loc"), "NEARLINE");
        assert_eq!(locality_code("NEARLINE"), ONTAPE);
        assert_eq!(locality_code("ONLINE_AND_NEARLINE"), ONTAPE | ONDISK);
        assert_eq!(locality_code("?"), 0);
    }
}
