//! The embedded-style heart of the Xspress3 acquisition process.
//!
//! `#![no_std]` and no `alloc`: every buffer comes from the caller, at configure time, and nothing
//! is allocated afterwards. The crate holds
//! - [`geometry`]: frame shape and the byte layout of a frame,
//! - [`detector`]: the [`Detector`](detector::Detector) trait the SDK shim implements.
#![cfg_attr(not(any(test, loom)), no_std)]

pub mod detector;
pub mod geometry;
