//! Safe Rust over the x3s C shim (Xspress3 SDK or its simulator).
//!
//! Layers, bottom up:
//! - `c/xsp3_api.h`: our declarations of the SDK subset the shim calls;
//! - `c/xsp3_sim.c`: a simulated SDK implementing them (the default backend);
//! - `c/x3s.h`, `c/x3s.c`: the shim's small, stable C API, the only thing bound here;
//! - [`sys`]: the bindgen bindings and all of this crate's `unsafe`;
//! - [`Xspress3`]: a safe [`acq_core::detector::Detector`].
//!
//! Building with `XSPRESS3_SDK_DIR` set compiles the shim against the vendor SDK instead of the
//! simulator (see the crate's build script).

mod device;
pub mod error;
pub mod params;
pub mod record;
pub mod sys;

pub use device::{ProgressDetails, Xspress3};
pub use error::{codes, SettingsError, X3sError};
pub use params::{FrameSettings, OpenParams, ParamError, SimContent, SimParams};

/// Whether this build links the simulated SDK (no `XSPRESS3_SDK_DIR` at build time).
pub const SIMULATED: bool = cfg!(not(x3s_real_sdk));
