//! `lsxfel` links libhdf5 statically, without its S3 and HDFS file drivers.
//!
//! Debian's shared libhdf5 needs libcurl for its read-only S3 driver, and libcurl
//! brings some 30 more libraries (TLS, Kerberos, LDAP, SSH, ...): loading them from a
//! cold page cache read 21 MB and took 70-150 ms here before `main` ran, more than
//! the whole listing of a 340-file run. lsxfel reads files through its own walk and
//! uses libhdf5 only as a fallback, never the S3 or HDFS drivers, so it gets the
//! static archive minus those drivers' objects, with zlib and szip from their
//! static archives too where the system has them: it loads only libc, libm and
//! libgcc_s. The archive's objects override the shared library's definitions (linked
//! as whole-archive), so the shared library is left unused and not loaded.
//!
//! Where no static archive is found next to the shared library that hdf5-sys links
//! (`HDF5_DIR`, else pkg-config, as hdf5-sys looks), lsxfel links libhdf5
//! dynamically like every other binary, with a build warning.
//!
//! lsxfel is also linked without DWARF debug info and symbol table: with the release
//! profile's line tables the file is 27 MB instead of 6, and the 8 MiB read-around of
//! each first page fault in its code reads whatever the file holds (debug sections
//! cost 3-7 MB more per cold start here, the symbol table 1 MB). For profiling, build
//! with `LSXFEL_SYMBOLS=1` in the environment to keep the symbol table.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Binaries linked against the static archive (and without debug info or symbols).
const STATIC_HDF5_BINS: &[&str] = &["lsxfel"];
/// Archive members of the drivers lsxfel never uses; only they need libcurl and libcrypto.
const DROPPED_MEMBERS: &[&str] = &["H5FDros3.o", "H5FDs3comms.o", "H5FDhdfs.o"];
/// Libraries needed only by the dropped members.
const DROPPED_LIBS: &[&str] = &["curl", "crypto", "hdfs", "jvm"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HDF5_DIR");
    println!("cargo:rerun-if-env-changed=LSXFEL_SYMBOLS");
    let strip = if std::env::var_os("LSXFEL_SYMBOLS").is_some() {
        "-Wl,--strip-debug"
    } else {
        "-Wl,--strip-all"
    };
    for bin in STATIC_HDF5_BINS {
        println!("cargo:rustc-link-arg-bin={bin}={strip}");
    }
    match static_hdf5() {
        Ok((archive, libs)) => {
            for bin in STATIC_HDF5_BINS {
                let arg = |a: &str| println!("cargo:rustc-link-arg-bin={bin}={a}");
                arg("-Wl,--whole-archive");
                arg(&archive.to_string_lossy());
                arg("-Wl,--no-whole-archive");
                for l in &libs {
                    arg(l);
                }
            }
        }
        Err(why) => {
            println!("cargo:warning=lsxfel links the shared libhdf5 (slower cold start): {why}")
        }
    }
}

/// The trimmed archive in OUT_DIR and the libraries it needs.
fn static_hdf5() -> Result<(PathBuf, Vec<String>), String> {
    let dir = hdf5_lib_dir()?;
    let src = dir.join("libhdf5.a");
    if !src.is_file() {
        return Err(format!("no {}", src.display()));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?)
        .join("libhdf5_local_drivers.a");
    std::fs::copy(&src, &out).map_err(|e| format!("copy {}: {e}", src.display()))?;
    let ar = std::env::var("AR").unwrap_or_else(|_| "ar".into());
    let members = run(Command::new(&ar).arg("t").arg(&out))?;
    let drop: Vec<&str> = members
        .lines()
        .map(str::trim)
        .filter(|m| DROPPED_MEMBERS.contains(m))
        .collect();
    if !drop.is_empty() {
        run(Command::new(&ar).arg("d").arg(&out).args(&drop))?;
    }
    Ok((out, extra_libs(&dir)))
}

/// The directory of the libhdf5 that hdf5-sys links.
fn hdf5_lib_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("HDF5_DIR") {
        return Ok(Path::new(&d).join("lib"));
    }
    let libs = run(Command::new("pkg-config").args(["--libs", "hdf5"]))?;
    libs.split_whitespace()
        .find_map(|f| f.strip_prefix("-L"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("no -L in `pkg-config --libs hdf5`: {libs}"))
}

/// Compression libraries linked from their static archives where the system has
/// them (each with the libraries it needs after it): each shared library is one
/// more file the loader opens and reads before `main`, 1 ms of a cold start here
/// for these three. libsz.a is libaec's szip interface and calls into libaec.
const STATIC_LIBS: &[(&str, &[&str])] = &[("sz", &["aec"]), ("z", &[])];

/// Linker arguments for the libraries libhdf5 was built against ("Extra
/// libraries" in its libhdf5.settings), less those only the dropped drivers use:
/// `-lNAME`, or the path of a static archive ([`STATIC_LIBS`]). Unused ones are
/// not recorded in the binary (the link is --as-needed).
fn extra_libs(dir: &Path) -> Vec<String> {
    let settings = std::fs::read_to_string(dir.join("libhdf5.settings")).unwrap_or_default();
    let listed = settings
        .lines()
        .find_map(|l| l.trim().strip_prefix("Extra libraries:"))
        .unwrap_or("-lsz -lz -ldl -lm");
    let mut args = Vec::new();
    for l in listed
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("-l"))
        .filter(|l| !DROPPED_LIBS.contains(l))
    {
        let archives: Option<Vec<PathBuf>> = STATIC_LIBS
            .iter()
            .find(|(name, _)| *name == l)
            .and_then(|(name, needs)| {
                std::iter::once(name)
                    .chain(needs.iter())
                    .map(|n| static_archive(n))
                    .collect()
            });
        match archives {
            Some(paths) => args.extend(paths.iter().map(|p| p.to_string_lossy().into_owned())),
            None => args.push(format!("-l{l}")),
        }
    }
    args
}

/// The static archive `libNAME.a` the C compiler would link, if there is one.
fn static_archive(name: &str) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = run(Command::new(cc).arg(format!("-print-file-name=lib{name}.a"))).ok()?;
    let path = PathBuf::from(out.trim());
    // Without one, cc prints the bare name back.
    (path.is_absolute() && path.is_file()).then_some(path)
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
