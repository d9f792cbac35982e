//! The Karabo Bridge of European XFEL (ZeroMQ + msgpack, protocols 2.2 and 1.0): serving EuXFEL
//! runs and files as EXtra-data's `karabo-bridge-serve-files` / `karabo-bridge-serve-run` do
//! (binary `xfel-serve`), and receiving and inspecting bridge streams (binary `xfel-bridge`).
//! See docs/karabo-bridge.md.
//!
//! - [`protocol`]: the wire format both ways; decoding checks every declared size.
//! - [`train`]: a train as the bridge carries it.
//! - [`files`]: trains of a [`euxfel::DataCollection`] as EXtra-data's `serve_data` makes them;
//!   [`append`] stacks detector modules (`--append-detector-modules`).
//! - [`serve`]: the server socket and its loop; [`client`]: the receiving side.
//! - [`record`]: received trains written as a EuXFEL run (euxfel-write's recorder).

#[cfg(feature = "files")]
pub mod append;
pub mod client;
pub mod dtype;
#[cfg(feature = "files")]
pub mod files;
pub mod protocol;
#[cfg(feature = "files")]
pub mod record;
#[cfg(feature = "files")]
pub mod serve;
pub mod train;
