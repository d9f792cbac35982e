//! A detector far faster than the copy (100 kHz against the simulated SDK): the frames the run
//! reports lost are the frames the simulator overwrote before they were released, and nothing
//! the detector left intact is given up.

mod common;

use std::process::{Command, Stdio};

use common::BIN;
use serde_json::Value;

#[test]
fn frames_lost_are_the_frames_the_sdk_overwrote() {
    let (total, sdk_buffer) = (15_000u64, 4096u64);
    let out = Command::new(BIN)
        .args([
            "run",
            "-q",
            "--json",
            "--frames",
            "15000",
            "--exposure",
            "10us",
        ])
        .args(["--sim", "content=pattern", "--sdk-buffer", "4096"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "data lost");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lost = summary["frames_lost"].as_u64().unwrap();
    let overruns = summary["sdk_overruns"].as_u64().unwrap();
    assert!(lost > 0, "the detector outran the copy: {summary}");
    // The simulator counts a frame it overwrote in the microseconds between the poll that
    // vouched for the frame's copy and its release; the engine delivered that frame. Never the
    // other way round: before, frames skipped on a guess were counted lost though intact.
    assert!(
        lost <= overruns && overruns - lost <= 8,
        "lost {lost}, SDK overruns {overruns}: {summary}"
    );
    assert_eq!(
        summary["frames_acquired"].as_u64().unwrap() + lost,
        total,
        "{summary}"
    );
    // The last buffer's worth of frames is never overwritten: all of it is read.
    let ranges: Vec<[u64; 2]> = serde_json::from_value(summary["lost_ranges"].clone()).unwrap();
    // Fewer than MAX_LOST_RANGES ranges at this length: every one is listed.
    assert_eq!(summary["lost_ranges_overflow"], 0, "{summary}");
    assert_eq!(ranges.iter().map(|r| r[1]).sum::<u64>(), lost);
    assert!(
        ranges.iter().all(|r| r[0] + r[1] <= total - sdk_buffer),
        "{ranges:?}"
    );
}
