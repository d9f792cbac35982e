//! Acknowledged PUSH: the back channel on which receivers report what they have taken, so the
//! sender knows, frame by frame, what reached a receiver's file (as Odin's frame receiver and
//! processors exchange buffer releases).
//!
//! Beside its PUSH socket the sender binds a ROUTER on the
//! [`ack_endpoint`](xspress3::protocol::ack_endpoint) of the data endpoint.
//! A receiver connects a DEALER there and sends, as one-part JSON messages:
//! - `{"htype": "hello"}` when it starts and then every
//!   [`HELLO_PERIOD`](xspress3::protocol::HELLO_PERIOD) while no series runs:
//!   the sender answers a receiver it has not seen in this series with
//!   `{"htype": "join", "next_msg_number": k}` and, while a series runs, its `header`; so a
//!   receiver started mid-series knows where it joined and writes the rest into a new file;
//! - `{"htype": "ack", "msgs": [[first, count], ...]}`: image messages (by `msg_number`) it has
//!   written.
//!
//! The sender sends `header` and `series_end` on the back channel to every receiver it knows, as
//! PUSH gives each message to one receiver only. `series_end` waits until every image message
//! is acknowledged, or until acknowledgements stopped coming for [`ACK_STALL`]; it then lists
//! the frames that were sent and never acknowledged (a receiver died with them queued). A plain
//! PULL client never says hello and is served exactly as without the back channel.

use std::time::{Duration, Instant};

use crate::sender::StreamError;
use xspress3::protocol::BackChannel;

/// At the end of a series, the sender stops waiting for acknowledgements after none came for
/// this long (counted from the end of the series at the earliest: a receiver flushes its file
/// before it acknowledges).
pub const ACK_STALL: Duration = Duration::from_secs(5);

/// Sorted, merged `[first, end)` ranges of message numbers.
#[derive(Debug, Default)]
struct MsgSet {
    ranges: Vec<[u64; 2]>,
}

impl MsgSet {
    fn insert(&mut self, first: u64, count: u64) {
        if count == 0 {
            return;
        }
        let (start, end) = (first, first.saturating_add(count));
        // Ranges that touch or overlap [start, end) merge into one.
        let lo = self.ranges.partition_point(|r| r[1] < start);
        let hi = self.ranges.partition_point(|r| r[0] <= end);
        if lo == hi {
            self.ranges.insert(lo, [start, end]);
            return;
        }
        let merged = [
            start.min(self.ranges[lo][0]),
            end.max(self.ranges[hi - 1][1]),
        ];
        self.ranges.splice(lo..hi, [merged]);
    }

    fn covers(&self, end: u64) -> bool {
        end == 0
            || self
                .ranges
                .first()
                .is_some_and(|r| r[0] == 0 && r[1] >= end)
    }

    /// Ranges of `[0, end)` not in the set.
    fn missing(&self, end: u64) -> Vec<[u64; 2]> {
        let mut out = Vec::new();
        let mut at = 0;
        for r in &self.ranges {
            if r[0] >= end {
                break;
            }
            if r[0] > at {
                out.push([at, r[0]]);
            }
            at = at.max(r[1]);
        }
        if at < end {
            out.push([at, end]);
        }
        out
    }
}

/// The sender's side of the back channel; see the module documentation.
pub struct AckChannel {
    socket: zmq::Socket,
    endpoint: String,
    /// Receivers that said hello in this series (ROUTER identities), and the image messages
    /// each acknowledged.
    receivers: Vec<Vec<u8>>,
    acked_by: Vec<u64>,
    /// The current series' header, for receivers that join while it runs.
    header: Option<Vec<u8>>,
    acked: MsgSet,
    last_ack: Instant,
    /// `[first_msg, first_frame, count]`: which frame each image message carried.
    runs: Vec<[u64; 3]>,
}

impl AckChannel {
    /// Binds the ROUTER at `endpoint`.
    pub fn bind(ctx: &zmq::Context, endpoint: String) -> Result<Self, StreamError> {
        let err = |what: &'static str| {
            let endpoint = endpoint.clone();
            move |source| StreamError::Zmq {
                endpoint,
                what,
                source,
            }
        };
        let socket = ctx.socket(zmq::ROUTER).map_err(err("create"))?;
        socket.set_linger(0).map_err(err("set linger"))?;
        socket.bind(&endpoint).map_err(err("bind"))?;
        Ok(AckChannel {
            socket,
            endpoint,
            receivers: Vec::new(),
            acked_by: Vec::new(),
            header: None,
            acked: MsgSet::default(),
            last_ack: Instant::now(),
            runs: Vec::new(),
        })
    }

    fn zmq_err(&self, what: &'static str) -> impl FnOnce(zmq::Error) -> StreamError {
        let endpoint = self.endpoint.clone();
        move |source| StreamError::Zmq {
            endpoint,
            what,
            source,
        }
    }

    /// True once a receiver takes part: the series then ends with an acknowledgement account.
    pub fn in_use(&self) -> bool {
        !self.receivers.is_empty()
    }

    /// Handles every waiting hello and ack, without blocking. `next_msg` is the number the
    /// next image message will get.
    pub fn service(&mut self, next_msg: u64) -> Result<(), StreamError> {
        while self
            .socket
            .poll(zmq::POLLIN, 0)
            .map_err(self.zmq_err("poll"))?
            > 0
        {
            let parts = self
                .socket
                .recv_multipart(0)
                .map_err(self.zmq_err("receive"))?;
            let [identity, body] = parts.as_slice() else {
                continue; // not from a DEALER speaking this protocol
            };
            match serde_json::from_slice::<BackChannel>(body) {
                Ok(BackChannel::Hello) if !self.receivers.contains(identity) => {
                    self.receivers.push(identity.clone());
                    self.acked_by.push(0);
                    let join = BackChannel::Join {
                        next_msg_number: next_msg,
                    };
                    self.send_to(identity, &serde_json::to_vec(&join).unwrap_or_default())?;
                    if let Some(header) = self.header.clone() {
                        self.send_to(identity, &header)?;
                    }
                }
                Ok(BackChannel::Hello) | Ok(BackChannel::Join { .. }) => {}
                Ok(BackChannel::Ack { msgs }) => {
                    let index = match self.receivers.iter().position(|r| r == identity) {
                        Some(i) => i,
                        None => {
                            self.receivers.push(identity.clone());
                            self.acked_by.push(0);
                            self.receivers.len() - 1
                        }
                    };
                    for [first, count] in msgs {
                        self.acked.insert(first, count);
                        self.acked_by[index] += count;
                    }
                    self.last_ack = Instant::now();
                }
                // A peer that speaks something else is ignored, as on every socket we serve.
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn send_to(&self, identity: &[u8], body: &[u8]) -> Result<(), StreamError> {
        self.socket
            .send_multipart([identity, body], zmq::DONTWAIT)
            .or_else(|e| match e {
                // A receiver that went away (or whose queue is full) misses it; it is not ours
                // to wait for.
                zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN => Ok(()),
                e => Err(self.zmq_err("send")(e)),
            })
    }

    /// Sends `json` to every receiver that said hello.
    fn broadcast(&self, json: &[u8]) -> Result<(), StreamError> {
        for identity in &self.receivers {
            self.send_to(identity, json)?;
        }
        Ok(())
    }

    /// A series starts: its header goes to every receiver now and to each one that joins.
    pub fn start_series(&mut self, header: &[u8]) -> Result<(), StreamError> {
        self.header = Some(header.to_vec());
        self.last_ack = Instant::now();
        self.broadcast(header)
    }

    /// Image message `msg` carried frame `frame`.
    pub fn record_sent(&mut self, msg: u64, frame: u64) {
        if let Some(last) = self.runs.last_mut() {
            if last[0] + last[2] == msg && last[1] + last[2] == frame {
                last[2] += 1;
                return;
            }
        }
        self.runs.push([msg, frame, 1]);
    }

    /// The last image message went out: the acknowledgement stall is counted from now at the
    /// earliest.
    pub fn begin_settling(&mut self) {
        self.last_ack = Instant::now();
    }

    /// Whether the series can end: every message below `end` acknowledged, no receiver, or no
    /// acknowledgement for [`ACK_STALL`].
    pub fn settled(&self, end: u64) -> bool {
        !self.in_use() || self.acked.covers(end) || self.last_ack.elapsed() >= ACK_STALL
    }

    /// Frames sent in messages below `end` that no receiver acknowledged, as `[first, count]`
    /// frame ranges, and their number.
    pub fn unacked_frames(&self, end: u64) -> (Vec<[u64; 2]>, u64) {
        let mut ranges: Vec<[u64; 2]> = Vec::new();
        let mut total = 0;
        for [m0, m1] in self.acked.missing(end) {
            for &[first_msg, first_frame, count] in &self.runs {
                let (lo, hi) = (m0.max(first_msg), m1.min(first_msg + count));
                if lo >= hi {
                    continue;
                }
                let frame = first_frame + (lo - first_msg);
                let n = hi - lo;
                total += n;
                match ranges.last_mut() {
                    Some(last) if last[0] + last[1] == frame => last[1] += n,
                    _ => ranges.push([frame, n]),
                }
            }
        }
        (ranges, total)
    }

    /// Image messages acknowledged by each receiver, in the order they said hello.
    pub fn acked_by_receiver(&self) -> &[u64] {
        &self.acked_by
    }

    /// The series ended: `series_end` to every receiver.
    pub fn end_series(&mut self, series_end: &[u8]) -> Result<(), StreamError> {
        self.header = None;
        self.broadcast(series_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_sets_merge_and_report_what_is_missing() {
        let mut s = MsgSet::default();
        for (first, count) in [(10, 5), (0, 3), (3, 2), (20, 1), (14, 3)] {
            s.insert(first, count);
        }
        assert_eq!(s.ranges, [[0, 5], [10, 17], [20, 21]]);
        assert_eq!(s.missing(25), [[5, 10], [17, 20], [21, 25]]);
        assert!(!s.covers(6));
        s.insert(5, 5);
        assert!(s.covers(17));
        assert_eq!(s.missing(3), Vec::<[u64; 2]>::new());
    }
}
