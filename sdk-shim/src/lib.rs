//! Safe Rust over the x3s C shim (Xspress3 SDK or its simulator).
