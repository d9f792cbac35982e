//! The simulated SDK's path table is one per process: a test that exhausts it lives in its own
//! test binary (own process), so it cannot starve the tests running beside it in detector.rs.

mod common;

use common::*;
use sdk_shim::Xspress3;

#[test]
fn drop_closes_the_device() {
    // The SDK has 34 paths; opening more than that in sequence only works if each is closed.
    for _ in 0..50 {
        let det = Xspress3::open(&sim_params(1, 4)).unwrap();
        drop(det);
    }
    // Holding them all exhausts the paths: the limit above was real.
    let mut held = Vec::new();
    let err = loop {
        match Xspress3::open(&sim_params(1, 4)) {
            Ok(d) => held.push(d),
            Err(e) => break e,
        }
        assert!(held.len() <= 34);
    };
    assert_eq!(err.name(), "XSP3_INVALID_PATH");
}
