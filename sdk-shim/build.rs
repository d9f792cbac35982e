//! Builds the C shim and generates its Rust bindings.
//!
//! Default: `c/x3s.c` over our own SDK declarations (`c/xsp3_api.h`) with the simulated SDK
//! (`c/xsp3_sim.c`) linked in. With `XSPRESS3_SDK_DIR` set, `x3s.c` is compiled against the
//! vendor's `$XSPRESS3_SDK_DIR/include/xspress3.h`, linked with `libxspress3` from
//! `$XSPRESS3_SDK_DIR/lib`, and the simulator is left out.
//!
//! Every C file is compiled with `-Wall -Wextra -Werror`. The shim is also compiled (not linked)
//! in its other SDK-version variant (one-argument `xsp3_close`, three-argument
//! `xsp3_scaler_check_progress_details`), so both variants are proven to build.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const C_FILES: &[&str] = &[
    "c/x3s.h",
    "c/x3s.c",
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

/// Reads the vendor header to pick the SDK-version variants, unless overridden.
fn vendor_variants(header: &Path) -> (String, String) {
    let text = fs::read_to_string(header).unwrap_or_else(|e| {
        panic!(
            "XSPRESS3_SDK_DIR is set but {} cannot be read: {e}",
            header.display()
        )
    });
    let close = env::var("X3S_XSP3_CLOSE_ARGS").unwrap_or_else(|_| {
        if text.contains("Xsp3UnlinkAll") {
            "2"
        } else {
            "1"
        }
        .to_string()
    });
    let progress = env::var("X3S_XSP3_PROGRESS_ARGS").unwrap_or_else(|_| {
        if text.contains("furthest_frame") {
            "4"
        } else {
            "3"
        }
        .to_string()
    });
    (close, progress)
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
        "X3S_XSP3_PROGRESS_ARGS",
    ] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo::rustc-check-cfg=cfg(x3s_real_sdk)");

    let sdk_dir = env::var_os("XSPRESS3_SDK_DIR").map(PathBuf::from);
    let mut shim = base_build();
    shim.file("c/x3s.c").file("c/x3s_sim_content.c");

    match &sdk_dir {
        Some(dir) => {
            let include = dir.join("include");
            let lib = dir.join("lib");
            let (close, progress) = vendor_variants(&include.join("xspress3.h"));
            shim.include(&include)
                .define("X3S_USE_VENDOR_SDK", None)
                .define("X3S_XSP3_CLOSE_ARGS", close.as_str())
                .define("X3S_XSP3_PROGRESS_ARGS", progress.as_str());
            shim.compile("x3s");
            println!("cargo:rustc-link-search=native={}", lib.display());
            let kind = if env::var_os("XSPRESS3_SDK_STATIC").is_some() {
                "static"
            } else {
                "dylib"
            };
            println!("cargo:rustc-link-lib={kind}=xspress3");
            let has_img_mod = ["libimg_mod.so", "libimg_mod.a"]
                .iter()
                .any(|f| lib.join(f).exists());
            if has_img_mod {
                println!("cargo:rustc-link-lib={kind}=img_mod");
            }
            println!("cargo:rustc-cfg=x3s_real_sdk");
        }
        None => {
            shim.define("X3S_WITH_SIM", None).file("c/xsp3_sim.c");
            shim.compile("x3s");
            // The other SDK-version variant: compiled to prove it builds, never linked.
            base_build()
                .define("X3S_WITH_SIM", None)
                .define("X3S_XSP3_CLOSE_ARGS", "1")
                .define("X3S_XSP3_PROGRESS_ARGS", "3")
                .file("c/x3s.c")
                .file("c/xsp3_sim.c")
                .cargo_metadata(false)
                .compile("x3s_variant_check");
        }
    }
    println!("cargo:rustc-link-lib=dylib=pthread");
    println!("cargo:rustc-link-lib=dylib=m");
    if sdk_dir.is_some() {
        println!("cargo:rustc-link-lib=dylib=rt");
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
