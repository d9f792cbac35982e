//! Builds the C shim and generates its Rust bindings.
//!
//! Default: `c/x3s.c` over our own SDK declarations (`c/xsp3_api.h`) with the simulated SDK
//! (`c/xsp3_sim.c`) linked in. With `XSPRESS3_SDK_DIR` set, `x3s.c` is compiled against the
//! vendor's `xspress3.h` and linked with its `libxspress3`, and the simulator is left out. Two
//! layouts of that directory are accepted (see [`SdkLayout::find`]): `include/` + `lib/`, and the
//! flat layout of the EPICS module (`xspress3Support/*.h`, `xspress3Support/os/linux-x86_64/`).
//!
//! The vendor headers are included as system headers (`-isystem`: some generations redefine a
//! macro between two of their own files) with `linux` defined (their Linux branch depends on it,
//! and `-std=c11` does not define it). The `xsp3_close` prototype (one or two parameters) is found
//! by trial compilation against the header; `X3S_XSP3_CLOSE_ARGS=1|2` overrides it.
//!
//! Every C file is compiled with `-Wall -Wextra -Werror`. In the default build the shim is also
//! compiled (not linked) against a one-parameter `xsp3_close` declaration, so both forms are
//! proven to build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const C_FILES: &[&str] = &[
    "c/x3s.h",
    "c/x3s.c",
    "c/x3s_frame_addr.h",
    "c/xsp3_api.h",
    "c/xsp3_sim.h",
    "c/xsp3_sim.c",
    "c/x3s_sim_content.h",
    "c/x3s_sim_content.c",
];

fn base_build() -> cc::Build {
    let mut b = cc::Build::new();
    b.include("c")
        .std("c11")
        // Optimised even in debug builds: the simulator must never be a benchmark's or a test's
        // bottleneck. Debug info follows the profile.
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .flag("-Wall")
        .flag("-Wextra")
        .flag("-Werror")
        .flag("-pthread");
    b
}

/// Where the vendor's header and libraries are.
struct SdkLayout {
    include: PathBuf,
    lib: PathBuf,
}

impl SdkLayout {
    /// Accepts, in this order: `DIR/include/xspress3.h` with libraries in `DIR/lib`; the EPICS
    /// module's flat layout, `DIR/xspress3.h` with libraries in `DIR/os/linux-x86_64` (DIR being
    /// `xspress3Support`), or `DIR/lib`, or DIR itself; and `DIR/xspress3Support/...` (DIR being
    /// the EPICS module's top).
    fn find(dir: &Path) -> Result<SdkLayout, String> {
        if dir.join("include/xspress3.h").is_file() {
            return Ok(SdkLayout {
                include: dir.join("include"),
                lib: dir.join("lib"),
            });
        }
        for top in [dir.to_path_buf(), dir.join("xspress3Support")] {
            if top.join("xspress3.h").is_file() {
                let lib = [top.join("os/linux-x86_64"), top.join("lib"), top.clone()]
                    .into_iter()
                    .find(|l| has_lib(l, "xspress3"))
                    .unwrap_or_else(|| top.join("os/linux-x86_64"));
                return Ok(SdkLayout { include: top, lib });
            }
        }
        Err(format!(
            "XSPRESS3_SDK_DIR={}: no xspress3.h in include/, in the directory itself or in \
             xspress3Support/ (expected include/ + lib/, or the EPICS module's xspress3Support/ \
             with os/linux-x86_64/)",
            dir.display()
        ))
    }
}

fn has_lib(dir: &Path, name: &str) -> bool {
    lib_file(dir, name, "so").is_some() || lib_file(dir, name, "a").is_some()
}

/// `lib<name>.<ext>` in dir, if it exists.
fn lib_file(dir: &Path, name: &str, ext: &str) -> Option<PathBuf> {
    let p = dir.join(format!("lib{name}.{ext}"));
    p.exists().then_some(p)
}

/// The file name of a versioned `lib<name>.so.*` in dir, if there is one.
fn versioned_so(dir: &Path, name: &str) -> Option<String> {
    let prefix = format!("lib{name}.so.");
    let mut names: Vec<String> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    names.pop()
}

/// Compiles `source` with the vendor build's flags; true when it compiles cleanly.
fn compiles(vendor: &cc::Build, name: &str, source: &str) -> bool {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let file = out.join(format!("{name}.c"));
    fs::write(&file, source).expect("cannot write a probe source to OUT_DIR");
    let mut b = vendor.clone();
    b.file(&file).cargo_metadata(false).cargo_warnings(false);
    b.try_compile(name).is_ok()
}

/// The number of parameters of the header's `xsp3_close` prototype, by trial compilation (the
/// header's comments, macros and enums cannot fool it).
fn detect_close_args(vendor: &cc::Build, include: &Path) -> String {
    if let Ok(v) = env::var("X3S_XSP3_CLOSE_ARGS") {
        return v;
    }
    let probe = |args: &str| {
        format!(
            "#define _DEFAULT_SOURCE\n#include <xspress3.h>\n\
             int x3s_probe_close(void);\nint x3s_probe_close(void) {{ return xsp3_close({args}); }}\n"
        )
    };
    if compiles(vendor, "x3s_probe_close2", &probe("0, (Xsp3Unlink)2")) {
        "2".into()
    } else if compiles(vendor, "x3s_probe_close1", &probe("0")) {
        "1".into()
    } else {
        panic!(
            "{}: xsp3_close is declared with neither (int path) nor (int path, Xsp3Unlink); \
             set X3S_XSP3_CLOSE_ARGS=1 or 2 (or check that the header compiles with \
             -std=c11 -Dlinux)",
            include.join("xspress3.h").display()
        )
    }
}

/// Compiles the shim against the vendor SDK and prints its link lines.
fn build_vendor(dir: &Path) {
    let layout = SdkLayout::find(dir).unwrap_or_else(|e| panic!("{e}"));
    let mut vendor = base_build();
    vendor
        .flag("-isystem")
        .flag(&layout.include)
        .define("linux", "1")
        .define("X3S_USE_VENDOR_SDK", None);
    let close = detect_close_args(&vendor, &layout.include);
    let mut shim = vendor.clone();
    shim.define("X3S_XSP3_CLOSE_ARGS", close.as_str())
        .file("c/x3s.c")
        .file("c/x3s_sim_content.c");
    shim.compile("x3s");

    // libxspress3 leaves libimg_mod's (_os_datmod, _os_link, munlink) and libm's (exp, sqrt)
    // symbols unresolved. A static libxspress3 is linked whenever there is no shared one.
    let lib = &layout.lib;
    let force_static = env::var_os("XSPRESS3_SDK_STATIC").is_some();
    let kind = |name: &str| -> Option<&'static str> {
        match (lib_file(lib, name, "so"), lib_file(lib, name, "a")) {
            (Some(_), Some(_)) if force_static => Some("static"),
            (Some(_), _) => Some("dylib"),
            (None, Some(_)) => Some("static"),
            (None, None) => None,
        }
    };
    println!("cargo:rustc-link-search=native={}", lib.display());
    let Some(k) = kind("xspress3") else {
        panic!(
            "XSPRESS3_SDK_DIR={}: no libxspress3.so or libxspress3.a in {}",
            dir.display(),
            lib.display()
        )
    };
    println!("cargo:rustc-link-lib={k}=xspress3");
    // libxspress3 needs libimg_mod and libm but does not record them (no DT_NEEDED): link both
    // after it. x3s.c references one symbol of each, so --as-needed keeps them (x3s_sdk_needs_*).
    match (kind("img_mod"), versioned_so(lib, "img_mod")) {
        (Some(k), _) => println!("cargo:rustc-link-lib={k}=img_mod"),
        // Some drops ship only libimg_mod.so.1.0.0, without the unversioned name.
        (None, Some(f)) => println!("cargo:rustc-link-lib=dylib:+verbatim={f}"),
        (None, None) => println!(
            "cargo:warning=no libimg_mod.so or libimg_mod.a in {}: libxspress3 needs it \
             (_os_datmod, _os_link), so the link will likely fail",
            lib.display()
        ),
    }
    println!("cargo:rustc-link-lib=dylib=m");
    println!("cargo:rustc-link-lib=dylib=rt");
    // The static libraries of the SDKs that ship no shared ones (2021 to 2023-01) are not
    // position-independent (R_X86_64_32 relocations), so a program linking them cannot be a PIE.
    // This makes this package's own examples and tests non-PIE; other binaries that link the
    // shim statically need `-C link-arg=-no-pie` too (DEP_X3S_NO_PIE=1 tells their build scripts).
    if k == "static" {
        println!("cargo:rustc-link-arg=-no-pie");
        println!("cargo:no_pie=1");
    }
    println!("cargo:rustc-cfg=x3s_real_sdk");
    // What was chosen, for whoever needs to check a build (OUT_DIR/x3s_vendor_sdk.txt).
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let summary = format!(
        "include={}\nlib={}\nxsp3_close_args={close}\nlibxspress3={k}\n",
        layout.include.display(),
        lib.display()
    );
    fs::write(out.join("x3s_vendor_sdk.txt"), summary).expect("cannot write to OUT_DIR");
    println!(
        "cargo:rerun-if-changed={}",
        layout.include.join("xspress3.h").display()
    );
    println!("cargo:rerun-if-changed={}", lib.display());
}

fn main() {
    for f in C_FILES {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    for v in [
        "XSPRESS3_SDK_DIR",
        "XSPRESS3_SDK_STATIC",
        "X3S_XSP3_CLOSE_ARGS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo::rustc-check-cfg=cfg(x3s_real_sdk)");

    let sdk_dir = env::var_os("XSPRESS3_SDK_DIR").map(PathBuf::from);
    match &sdk_dir {
        Some(dir) => build_vendor(dir),
        None => {
            base_build()
                .define("X3S_WITH_SIM", None)
                .file("c/x3s.c")
                .file("c/x3s_sim_content.c")
                .file("c/xsp3_sim.c")
                .compile("x3s");
            // The one-parameter xsp3_close form: compiled to prove it builds, never linked.
            base_build()
                .define("X3S_WITH_SIM", None)
                .define("X3S_XSP3_CLOSE_ARGS", "1")
                .file("c/x3s.c")
                .file("c/xsp3_sim.c")
                .cargo_metadata(false)
                .compile("x3s_variant_check");
        }
    }
    println!("cargo:rustc-link-lib=dylib=pthread");
    if sdk_dir.is_none() {
        println!("cargo:rustc-link-lib=dylib=m");
    }

    let bindings = bindgen::Builder::default()
        .header("c/x3s.h")
        .allowlist_function("x3s_.*")
        .allowlist_type("x3s_.*")
        .allowlist_var("X3S_.*")
        .layout_tests(true)
        .derive_default(true)
        .generate()
        .expect("bindgen could not process c/x3s.h (is libclang-dev installed?)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("x3s_bindings.rs"))
        .expect("cannot write the bindings to OUT_DIR");
}
