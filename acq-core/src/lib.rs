//! The embedded-style heart of the Xspress3 acquisition process.
//!
//! `#![no_std]` and no `alloc`: every buffer comes from the caller, at configure time, and nothing
//! is allocated afterwards. Waiting is a parameter ([`wait::Wait`]), and so is the clock
//! ([`engine::Clock`]), so the same code runs in the rack-server process and on a core without an
//! OS.
//!
//! - [`geometry`]: frame shape and the byte layout of a frame;
//! - [`ring`]: [`FrameRing`](ring::FrameRing), the zero-copy ring of preallocated frames;
//! - [`detector`]: the [`Detector`](detector::Detector) trait the SDK shim implements;
//! - [`engine`]: [`Acquisition`](engine::Acquisition), the state machine moving frames from a
//!   detector into the ring;
//! - [`deadtime`]: dead-time correction and count-rate maths.
#![cfg_attr(not(any(test, loom)), no_std)]

#[cfg(all(feature = "std", not(any(test, loom))))]
extern crate std;

pub mod deadtime;
pub mod detector;
pub mod engine;
pub mod geometry;
pub mod ring;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wait;
