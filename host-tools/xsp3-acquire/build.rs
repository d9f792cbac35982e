//! Links this package's programs non-PIE when the shim was built against a static-only vendor SDK
//! whose objects are not position-independent (sdk-shim's build script says so with
//! `DEP_X3S_NO_PIE=1`; see the README's real-SDK section).

fn main() {
    println!("cargo:rerun-if-env-changed=XSPRESS3_SDK_DIR");
    if std::env::var("DEP_X3S_NO_PIE").as_deref() == Ok("1") {
        println!("cargo:rustc-link-arg=-no-pie");
    }
}
