//! Acknowledged PUSH against the real sender, with receivers written here from the protocol
//! (docs/protocol.md, "Acknowledged PUSH"): a receiver that dies with unacknowledged frames, one
//! that joins mid-series, and two that share a stream.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::BIN;
use serde_json::Value;
use test_support::{free_port, wait_exit, Guard};

/// A data endpoint whose back channel (the next port) is free too.
fn endpoint_pair() -> String {
    loop {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return format!("tcp://127.0.0.1:{port}");
        }
    }
}

fn back_channel(data: &str) -> String {
    xspress3::protocol::ack_endpoint(data).expect("tcp endpoint")
}

/// A receiver speaking the acknowledged protocol: hello on the back channel, images on PULL.
struct Receiver {
    _ctx: zmq::Context,
    dealer: zmq::Socket,
    pull: zmq::Socket,
    /// Frame numbers written (here: received and kept), by message number.
    frames: Vec<(u64, u64)>,
    series_end: Option<Value>,
}

impl Receiver {
    fn connect(data: &str) -> Receiver {
        let ctx = zmq::Context::new();
        let dealer = ctx.socket(zmq::DEALER).unwrap();
        dealer.set_linger(0).unwrap();
        dealer.set_rcvtimeo(20_000).unwrap();
        dealer.connect(&back_channel(data)).unwrap();
        dealer.send(r#"{"htype":"hello"}"#, 0).unwrap();
        let join: Value = serde_json::from_slice(&dealer.recv_bytes(0).expect("join")).unwrap();
        assert_eq!(join["htype"], "join", "{join}");
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.set_linger(0).unwrap();
        pull.set_rcvhwm(50).unwrap();
        pull.set_rcvtimeo(100).unwrap();
        pull.connect(data).unwrap();
        Receiver {
            _ctx: ctx,
            dealer,
            pull,
            frames: Vec::new(),
            series_end: None,
        }
    }

    /// Takes images (acknowledging them when `ack`) until `limit` were taken or the series ended.
    fn take(&mut self, limit: usize, ack: bool) {
        let start = self.frames.len();
        while self.frames.len() - start < limit && self.series_end.is_none() {
            if let Ok(parts) = self.pull.recv_multipart(0) {
                let h: Value = serde_json::from_slice(&parts[0]).unwrap();
                if h["htype"] == "image" {
                    let msg = h["msg_number"].as_u64().unwrap();
                    self.frames.push((msg, h["frame"].as_u64().unwrap()));
                    if ack {
                        let ack = format!(r#"{{"htype":"ack","msgs":[[{msg},1]]}}"#);
                        self.dealer.send(ack.as_bytes(), 0).unwrap();
                    }
                }
            }
            while let Ok(bytes) = self.dealer.recv_bytes(zmq::DONTWAIT) {
                let h: Value = serde_json::from_slice(&bytes).unwrap();
                if h["htype"] == "series_end" {
                    self.series_end = Some(h);
                }
            }
        }
    }
}

fn sender(data: &str, frames: &str) -> Guard {
    Guard(
        Command::new(BIN)
            .args([
                "run",
                "-q",
                "--json",
                "--frames",
                frames,
                "--exposure",
                "1ms",
            ])
            .args(["--stream", data, "--stream-hwm", "20"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn summary_of(child: &mut Guard) -> Value {
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    serde_json::from_str(&stdout).unwrap()
}

/// Frames listed as `[first, count]` ranges.
fn frames_in(ranges: &Value) -> Vec<u64> {
    ranges
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let (first, count) = (r[0].as_u64().unwrap(), r[1].as_u64().unwrap());
            first..first + count
        })
        .collect()
}

#[test]
fn a_receiver_killed_mid_series_costs_exactly_the_frames_it_never_acknowledged() {
    let data = endpoint_pair();
    let mut child = sender(&data, "1500");
    let mut first = Receiver::connect(&data);
    first.take(300, true);
    first.take(100, false);
    let acked_by_first: BTreeSet<u64> = first.frames[..300].iter().map(|f| f.1).collect();
    drop(first); // killed, with frames taken but not acknowledged and more queued for it
    std::thread::sleep(Duration::from_millis(300));
    let mut second = Receiver::connect(&data);
    second.take(usize::MAX, true);
    let end = second
        .series_end
        .clone()
        .expect("series_end on the back channel");
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(60)).code(),
        Some(4)
    );
    let summary = summary_of(&mut child);
    let unacked: BTreeSet<u64> = frames_in(&end["unacked_ranges"]).into_iter().collect();
    assert_eq!(
        end["frames_unacked"].as_u64().unwrap(),
        unacked.len() as u64
    );
    assert_eq!(
        summary["stream_unacked"], end["frames_unacked"],
        "{summary}"
    );
    assert!(
        unacked.len() >= 100,
        "at least the frames taken unacknowledged"
    );
    let acked_by_second: BTreeSet<u64> = second.frames.iter().map(|f| f.1).collect();
    // The first receiver's frames, the second's and the recorded gap: every frame, once.
    assert!(acked_by_first.is_disjoint(&acked_by_second));
    assert!(acked_by_first.is_disjoint(&unacked));
    assert!(acked_by_second.is_disjoint(&unacked));
    let all: BTreeSet<u64> = acked_by_first
        .iter()
        .chain(&acked_by_second)
        .chain(&unacked)
        .copied()
        .collect();
    assert_eq!(all, (0..1500).collect(), "{summary}");
}

#[test]
fn two_acknowledging_receivers_share_a_stream_without_loss_or_duplicates() {
    let data = endpoint_pair();
    let mut child = sender(&data, "1000");
    let mut a = Receiver::connect(&data);
    let mut b = Receiver::connect(&data);
    let reader = std::thread::spawn(move || {
        b.take(usize::MAX, true);
        b
    });
    a.take(usize::MAX, true);
    let b = reader.join().unwrap();
    assert_eq!(
        wait_exit(&mut child.0, Duration::from_secs(60)).code(),
        Some(0)
    );
    let summary = summary_of(&mut child);
    assert_eq!(summary["stream_unacked"], 0, "{summary}");
    assert!(
        !a.frames.is_empty() && !b.frames.is_empty(),
        "both took part"
    );
    let mut all: Vec<u64> = a.frames.iter().chain(&b.frames).map(|f| f.1).collect();
    all.sort();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "every frame exactly once"
    );
    for r in [&a, &b] {
        assert_eq!(r.series_end.as_ref().unwrap()["frames_unacked"], 0);
    }
}
