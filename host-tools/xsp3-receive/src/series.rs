//! One series as the receiver follows it: `msg_number` gaps, missing frame numbers, images
//! discarded, and at its end the drop record written into its files.

use std::time::{Duration, Instant};

use acq_core::engine::LostRange;
use acq_core::geometry::{FrameMeta, Geometry, N_SCALERS};
use xspress3::protocol::{ImageHeader, SeriesEnd};
use xspress3::DropRecord;

use crate::report::{Event, FileSummary, SeriesSummary};
use crate::sink::{annotate, FileSink};

/// Lost ranges kept per series; more are counted in `lost_ranges_overflow`.
const MAX_LOST_RANGES: usize = 4096;
/// Error lines reported per series (and outside series); the rest are only counted.
pub(crate) const MAX_REPORTED_ERRORS: usize = 20;

/// What became of an image, for the receiver's totals.
pub(crate) enum ImageOutcome {
    /// Counted as received (whether or not it reached a file); its payload size.
    Received { bytes: u64 },
    /// Its shapes disagree with the series' header: a malformed message.
    Malformed,
    /// Not used (refused header, out of order), already counted in the series.
    Discarded,
}

pub(crate) struct Series {
    pub(crate) summary: SeriesSummary,
    /// `None` when the header was refused: its images are discarded.
    geometry: Option<Geometry>,
    n_frames: u64,
    sink: Option<FileSink>,
    next_msg: u64,
    prev_frame: Option<u64>,
    /// Frame-number spans `[first, end)` missing between received frames.
    spans: Vec<(u64, u64)>,
    spans_overflow: u64,
    frames_backwards: u64,
    /// A write failed: the sink is closed and later images are discarded.
    write_failed: bool,
    reported: usize,
    started: Instant,
    /// For rate reports.
    last_frames: u64,
    /// Acknowledged PUSH (`summary.acknowledged`): other receivers may take part of the stream,
    /// so `msg_number` and frame gaps are theirs; the sender's `series_end` accounts for losses.
    shared: bool,
    /// Acknowledged PUSH, series not written: message numbers taken, to acknowledge.
    taken: Vec<[u64; 2]>,
}

impl Series {
    /// A series opened by a header; `geometry` is `None` if the header was refused, `sink` is
    /// `None` if nothing is written.
    pub(crate) fn new(
        summary: SeriesSummary,
        geometry: Option<Geometry>,
        n_frames: u64,
        sink: Option<FileSink>,
    ) -> Series {
        Series {
            summary,
            geometry,
            n_frames,
            sink,
            next_msg: 0,
            prev_frame: None,
            spans: Vec::new(),
            spans_overflow: 0,
            frames_backwards: 0,
            write_failed: false,
            reported: 0,
            started: Instant::now(),
            last_frames: 0,
            shared: false,
            taken: Vec::new(),
        }
    }

    /// Makes this an acknowledged series that may share its stream with other receivers,
    /// joined at message `joined_at` (0 from the start).
    pub(crate) fn share(&mut self, joined_at: u64) {
        self.shared = true;
        self.summary.acknowledged = true;
        // Gaps seen before the join was confirmed (the header came on the data socket first)
        // were other receivers' messages too; the sender's `series_end` accounts for losses.
        self.summary.msg_gaps = 0;
        self.summary.msg_missing = 0;
        self.spans.clear();
        self.spans_overflow = 0;
        self.next_msg = self.next_msg.max(joined_at);
        if joined_at > 0 {
            self.summary.joined_at_msg = Some(joined_at);
        }
    }

    /// Acknowledged PUSH: the message numbers now safe (written and flushed, or taken when the
    /// series is not written) that were not acknowledged yet.
    pub(crate) fn take_acks(&mut self) -> Vec<[u64; 2]> {
        let mut acks = std::mem::take(&mut self.taken);
        if let Some(sink) = self.sink.as_mut() {
            acks.extend(sink.take_flushed_msgs());
        }
        acks
    }

    /// Acknowledged PUSH, stream idle: has what the file holds flushed now, so it can be
    /// acknowledged.
    pub(crate) fn flush_now(&mut self, ep: &str, events: &mut dyn FnMut(&Event)) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        if let Err(e) = sink.flush_now() {
            self.close_broken_sink(format!("stream {ep}: {e}"), events);
        }
    }

    /// Frames received since the previous call (for rate reports).
    pub(crate) fn frames_since_last_rate(&mut self) -> u64 {
        let new = self.summary.frames_received - self.last_frames;
        self.last_frames = self.summary.frames_received;
        new
    }

    /// Accounts for one image whose payloads (`mca`, `scalers`) were checked against its own
    /// header, and hands it to the file sink.
    pub(crate) fn on_image(
        &mut self,
        header: &ImageHeader,
        mca: &[u8],
        scalers: &[u8],
        ep: &str,
        events: &mut dyn FnMut(&Event),
    ) -> ImageOutcome {
        let Some(g) = self.geometry else {
            // The header was refused: already reported once.
            self.summary.frames_discarded += 1;
            self.next_msg = header.msg_number.saturating_add(1);
            return ImageOutcome::Discarded;
        };
        let (nch, nbins) = (g.n_channels() as u32, g.n_bins() as u32);
        if header.shape != [nch, nbins] || header.scaler_shape != [nch, N_SCALERS as u32] {
            self.summary.frames_discarded += 1;
            self.next_msg = self.next_msg.max(header.msg_number.saturating_add(1));
            let message = format!(
                "stream {ep}: series {}: image msg_number {} (frame {}) has shape {:?} and scaler \
                 shape {:?}, the header says [{nch}, {nbins}] and [{nch}, {N_SCALERS}]; discarded",
                self.summary.index,
                header.msg_number,
                header.frame,
                header.shape,
                header.scaler_shape
            );
            self.fail(message, events);
            return ImageOutcome::Malformed;
        }
        // The file's ROI datasets take the sender's sums: they come from the full spectrum, which
        // the stream does not carry.
        if header.rois.len() != g.n_rois()
            || header.rois.iter().any(|r| r.counts.len() != nch as usize)
        {
            self.summary.frames_discarded += 1;
            self.next_msg = self.next_msg.max(header.msg_number.saturating_add(1));
            let message = format!(
                "stream {ep}: series {}: image msg_number {} (frame {}) has {} ROI values, the \
                 header has {} ROIs of {nch} channels; discarded",
                self.summary.index,
                header.msg_number,
                header.frame,
                header.rois.len(),
                g.n_rois()
            );
            self.fail(message, events);
            return ImageOutcome::Malformed;
        }
        if self.shared {
            // Other receivers take the messages in between; order is still kept per receiver.
            self.next_msg = self.next_msg.max(header.msg_number.saturating_add(1));
        } else if header.msg_number < self.next_msg {
            self.summary.frames_discarded += 1;
            let message = format!(
                "stream {ep}: series {}: image msg_number {} (frame {}) arrived after msg_number {}; \
                 out of order, discarded",
                self.summary.index,
                header.msg_number,
                header.frame,
                self.next_msg - 1
            );
            self.fail(message, events);
            return ImageOutcome::Discarded;
        }
        if !self.shared && header.msg_number > self.next_msg {
            let missing = header.msg_number - self.next_msg;
            self.summary.msg_gaps += 1;
            self.summary.msg_missing = self.summary.msg_missing.saturating_add(missing);
            let message = format!(
                "stream {ep}: series {}: msg_number gap: {} missing before msg_number {} (frame {})",
                self.summary.index, missing, header.msg_number, header.frame
            );
            self.report(message, events);
        }
        self.next_msg = header.msg_number.saturating_add(1);
        let first_expected = self.prev_frame.map_or(0, |p| p.saturating_add(1));
        if header.frame > first_expected && !self.shared {
            self.add_span(first_expected, header.frame);
        } else if header.frame < first_expected {
            self.frames_backwards += 1;
        }
        self.prev_frame = Some(header.frame);
        let bytes = (mca.len() + scalers.len()) as u64;
        self.summary.frames_received += 1;
        self.summary.bytes_received += bytes;
        let received = ImageOutcome::Received { bytes };
        let Some(sink) = self.sink.as_mut() else {
            if self.write_failed {
                self.summary.frames_discarded += 1;
            } else if self.shared {
                self.taken.push([header.msg_number, 1]);
            }
            return received;
        };
        let meta = FrameMeta {
            frame_number: header.frame,
            timestamp_ns: header.timestamp_ns,
            flags: header.flags,
            sdk_err_flags: 0,
        };
        if let Err(e) = sink.push(header.msg_number, mca, scalers, &header.rois, meta) {
            self.summary.frames_discarded += 1;
            self.close_broken_sink(format!("stream {ep}: {e}"), events);
        } else if let Some(failure) = sink.take_failure() {
            let message = format!(
                "stream {ep}: series {}: write error, the rest of the series is discarded: \
                 {failure}",
                self.summary.index
            );
            self.fail(message, events);
        }
        received
    }

    /// Submits a partly filled batch that has waited longer than `interval`, and has the file
    /// flushed.
    pub(crate) fn flush_if_due(
        &mut self,
        interval: Duration,
        ep: &str,
        events: &mut dyn FnMut(&Event),
    ) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        if let Err(e) = sink.flush_if_due(interval) {
            self.close_broken_sink(format!("stream {ep}: {e}"), events);
        }
    }

    /// Writes what is buffered, the drop record and the receiver's attributes (`software`), and
    /// closes the files; returns the series' final account. `end` is the sender's `series_end`;
    /// without it, `note` says why the series ended.
    pub(crate) fn finish(
        mut self,
        end: Option<SeriesEnd>,
        note: Option<String>,
        ep: &str,
        software: &str,
        events: &mut dyn FnMut(&Event),
    ) -> SeriesSummary {
        let mut ranges: Vec<LostRange> = Vec::new();
        let mut overflow = 0u64;
        let mut sdk_overruns = 0;
        let mut stream_gaps = self.summary.msg_gaps;
        let mut end_missing = 0u64;
        let after_last = self.prev_frame.map_or(0, |p| p.saturating_add(1));
        match &end {
            Some(e) => {
                self.summary.series_end_received = true;
                self.summary.frames_lost_upstream = e.frames_lost;
                self.summary.sender_stream_drops = e.stream_drops;
                self.summary.sender_error = e.error.clone();
                self.summary.sender_error_frame = e.error_frame;
                self.summary.sender_frames_unsent = e.frames_unsent;
                self.summary.frames_unacked = e.frames_unacked;
                // Frames the sender names as never delivered or never acknowledged.
                for r in e.unsent_ranges.iter().chain(&e.unacked_ranges) {
                    ranges.push(LostRange {
                        first: r[0],
                        count: r[1],
                    });
                }
                sdk_overruns = e.sdk_overruns;
                overflow = e.lost_ranges_overflow;
                ranges.extend(e.lost_ranges.iter().map(|r| LostRange {
                    first: r[0],
                    count: r[1],
                }));
                if e.frames_sent > self.next_msg && !self.shared {
                    // Image messages lost after the last one received.
                    let missing = e.frames_sent - self.next_msg;
                    self.summary.msg_gaps += 1;
                    self.summary.msg_missing = self.summary.msg_missing.saturating_add(missing);
                    stream_gaps += 1;
                    let message = format!(
                        "stream {ep}: series {}: msg_number gap: the last {missing} image \
                         messages of {} are missing",
                        self.summary.index, e.frames_sent
                    );
                    self.report(message, events);
                    self.add_span(after_last, after_last.saturating_add(missing));
                }
            }
            None => {
                // The missing series_end is a gap in the stream; frames after the last one
                // received are missing if the header promised more.
                stream_gaps += 1;
                if self.n_frames > after_last && !self.shared {
                    end_missing = self.n_frames - after_last;
                    self.add_span(after_last, self.n_frames);
                }
                let message = format!(
                    "stream {ep}: series {}: ended without series_end ({}), {} frames received{}",
                    self.summary.index,
                    note.as_deref().unwrap_or("unknown reason"),
                    self.summary.frames_received,
                    if end_missing > 0 {
                        format!(", {end_missing} of {} missing", self.n_frames)
                    } else {
                        String::new()
                    }
                );
                if !self.summary.interrupted {
                    self.summary.errors.push(message.clone());
                }
                self.report(message, events);
            }
        }
        self.summary.end_note = note;
        if self.frames_backwards > 0 {
            let message = format!(
                "stream {ep}: series {}: frame numbers went backwards {} times",
                self.summary.index, self.frames_backwards
            );
            self.report(message, events);
        }
        if let Some(sink) = &self.sink {
            self.summary.writer_waits = sink.writer_waits;
        }
        match self.sink.take().map(FileSink::close) {
            None => {}
            Some(Err(e)) => {
                self.write_failed = true;
                let message = format!("stream {ep}: series {}: {e}", self.summary.index);
                self.fail(message, events);
            }
            Some(Ok((end, failure))) => {
                if let Some(failure) = failure {
                    let message = format!(
                        "stream {ep}: series {}: write error, the rest of the series is \
                         discarded: {failure}",
                        self.summary.index
                    );
                    self.fail(message, events);
                }
                self.summary.frames_discarded += end.discarded;
                let mut sdk = ranges.clone();
                sdk.sort_by_key(|r| r.first);
                for &(first, end) in &self.spans {
                    carve(first, end, &sdk, &mut ranges);
                }
                ranges.sort_by_key(|r| (r.first, r.count));
                if ranges.len() > MAX_LOST_RANGES {
                    overflow += (ranges.len() - MAX_LOST_RANGES) as u64;
                    ranges.truncate(MAX_LOST_RANGES);
                }
                overflow += self.spans_overflow;
                let frames_lost = self
                    .summary
                    .frames_lost_upstream
                    .saturating_add(self.summary.sender_stream_drops)
                    .saturating_add(self.summary.sender_frames_unsent)
                    .saturating_add(self.summary.frames_unacked)
                    .saturating_add(self.summary.msg_missing)
                    .saturating_add(self.summary.frames_discarded)
                    .saturating_add(end_missing);
                self.summary.frames_lost = frames_lost;
                let drops = DropRecord {
                    frames_lost,
                    lost_ranges: ranges,
                    lost_ranges_overflow: overflow,
                    sdk_overruns,
                    stream_gaps,
                };
                self.summary.frames_written = end.writer.frames_written();
                let mut writer = end.writer;
                if let Some(error) = &self.summary.sender_error {
                    // The sender's failure, with the first frame it cost: the frames after the
                    // last one received if the sender did not say.
                    let frame = self.summary.sender_error_frame.unwrap_or(after_last);
                    writer.record_acquisition_error(error, frame);
                }
                match writer.finish(&drops) {
                    Ok(files) => {
                        for (path, _) in &files {
                            if let Err(e) = annotate(path, software, &self.summary) {
                                let message = format!(
                                    "stream {ep}: {}: receiver attributes: {e}",
                                    path.display()
                                );
                                self.fail(message, events);
                            }
                        }
                        self.summary.files = files
                            .into_iter()
                            .map(|(path, frames)| FileSummary { path, frames })
                            .collect();
                    }
                    Err(e) => {
                        let message = format!("stream {ep}: series {}: {e}", self.summary.index);
                        self.fail(message, events);
                    }
                }
            }
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.summary.elapsed_s = secs;
        self.summary.frames_per_s = self.summary.frames_received as f64 / secs;
        self.summary.mb_per_s = self.summary.bytes_received as f64 / secs / 1e6;
        self.summary
    }

    /// Records an error of the series (the first few are kept) and reports it.
    pub(crate) fn fail(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        if self.summary.errors.len() < MAX_REPORTED_ERRORS {
            self.summary.errors.push(message.clone());
        } else {
            self.summary.errors_not_listed += 1;
        }
        self.report(message, events);
    }

    fn report(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        if self.reported < MAX_REPORTED_ERRORS {
            self.reported += 1;
            events(&Event::Error { message });
        }
    }

    fn add_span(&mut self, first: u64, end: u64) {
        if self.spans.len() < MAX_LOST_RANGES {
            self.spans.push((first, end));
        } else {
            self.spans_overflow += 1;
        }
    }

    /// The writer thread is gone (it can only panic): closes what it left, discards the rest
    /// of the series.
    fn close_broken_sink(&mut self, message: String, events: &mut dyn FnMut(&Event)) {
        self.write_failed = true;
        if let Some(sink) = self.sink.take() {
            drop(sink.close());
        }
        self.fail(message, events);
    }
}

/// Appends the frames of `[first, end)` not covered by `sdk` (sorted by `first`) to `out`.
fn carve(first: u64, end: u64, sdk: &[LostRange], out: &mut Vec<LostRange>) {
    let mut start = first;
    for r in sdk {
        let r_end = r.first.saturating_add(r.count);
        if r_end <= start {
            continue;
        }
        if r.first >= end {
            break;
        }
        if r.first > start {
            out.push(LostRange {
                first: start,
                count: r.first - start,
            });
        }
        start = start.max(r_end);
        if start >= end {
            return;
        }
    }
    if start < end {
        out.push(LostRange {
            first: start,
            count: end - start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u64, count: u64) -> LostRange {
        LostRange { first, count }
    }

    #[test]
    fn spans_exclude_frames_the_sdk_lost() {
        let sdk = [range(3, 2), range(8, 1)];
        let mut out = Vec::new();
        carve(0, 10, &sdk, &mut out);
        assert_eq!(out, vec![range(0, 3), range(5, 3), range(9, 1)]);
        out.clear();
        carve(3, 5, &sdk, &mut out);
        assert!(out.is_empty(), "fully explained by the SDK: {out:?}");
        out.clear();
        carve(20, 25, &sdk, &mut out);
        assert_eq!(out, vec![range(20, 5)]);
        out.clear();
        carve(u64::MAX - 2, u64::MAX, &[range(u64::MAX - 1, 10)], &mut out);
        assert_eq!(out, vec![range(u64::MAX - 2, 1)]);
    }

    /// Acknowledged PUSH with a sender flat out: the header reached the data socket before the
    /// join was confirmed, so the first images were counted as a plain stream's; once the series
    /// is known to be shared, the gaps seen meanwhile are other receivers' messages.
    #[test]
    fn gaps_before_the_join_is_confirmed_are_not_losses() {
        let geometry = Geometry::new(1, 4).unwrap();
        let mut series = Series::new(SeriesSummary::default(), Some(geometry), 10, None);
        let (mca, scalers) = (vec![0u8; 4 * 4], vec![0u8; N_SCALERS * 4]);
        let mut events = |_: &Event| {};
        for msg in [0, 2, 4] {
            let header = ImageHeader {
                htype: "image".into(),
                frame: msg,
                msg_number: msg,
                shape: [1, 4],
                scaler_shape: [1, N_SCALERS as u32],
                dtype: "uint32".into(),
                compression: "none".into(),
                exptime: 1e-3,
                timestamp_ns: 0,
                flags: 0,
                rois: Vec::new(),
            };
            series.on_image(&header, &mca, &scalers, "test", &mut events);
        }
        assert_eq!(series.summary.msg_missing, 2, "a plain stream's gaps");
        series.share(0);
        assert_eq!(series.summary.msg_missing, 0);
        assert_eq!(series.summary.msg_gaps, 0);
        assert!(series.spans.is_empty());
        assert!(!series.summary.data_lost(), "{:?}", series.summary);
    }
}
