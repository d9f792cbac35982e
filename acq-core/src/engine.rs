//! The acquisition engine: a state machine that moves frames from a [`Detector`] into a
//! [`FrameRing`](crate::ring::FrameRing) through its [`Producer`].
//!
//! States: `Idle -> Configured -> Armed -> Running -> Done | Fault`. An action that is not valid
//! in the current state returns [`EngineError::InvalidTransition`]; nothing panics.
//!
//! [`Acquisition::step`] does one unit of work: poll the detector, grant up to one batch of ring
//! slots, read MCA and scalers straight into them (the one copy the SDK API forces), stamp the
//! metadata, commit, and release the frames back to the SDK. Three things can go wrong on the way
//! and each is counted, never silent:
//! - the SDK overwrote frames before we read them (its circular buffer is `buffer_frames` deep):
//!   they are recorded as lost frame ranges and the next frame read carries
//!   [`FrameMeta::LOST_BEFORE`]. Frames the SDK overwrote *while* a batch was copied are
//!   dropped frame by frame after the copy (a poll tells which), and the intact rest of the
//!   batch is kept and released at once. Near the SDK's write position a batch is copied newest
//!   piece first, a poll after each piece, so even a copy slower than the detector keeps the
//!   newest part of each batch: an engine that fell a whole buffer behind catches up, and the
//!   frames recorded lost are exactly those the SDK overwrote before they were released (none
//!   given up on a guess of how far the SDK would run, which cost frames still intact when the
//!   detector stopped);
//! - the ring is full: we stop reading and let the SDK's buffer absorb the backlog
//!   ([`StepOutcome::RingFull`], and the ring counts the episode);
//! - the detector fails: the engine goes to `Fault`, keeping the code, its name and the message.
//!   Frames the detector completed before the failure are still in its buffer:
//!   [`Acquisition::salvage`] moves them into the ring, so a fault costs only the frames it
//!   prevented, never the ones already taken.

use heapless::{String, Vec};

use crate::detector::{
    AcqParams, Detector, DetectorError, DetectorState, ErrorClass, Progress, ERR_FLAG_CIRC_OVERRUN,
    ERR_FLAG_CIRC_OVERRUN_SCALERS,
};
use crate::geometry::{FrameMeta, Geometry, GeometryError};
use crate::ring::{Producer, SlotParts};
use crate::wait::Wait;

/// Lost frame ranges kept per acquisition; further ranges are only counted.
pub const MAX_LOST_RANGES: usize = 64;

/// Pieces a batch is copied in near the SDK's write position (see `copy_intact`).
const NEAR_EDGE_PIECES: usize = 8;

/// SDK error flags that mean "frames were overwritten": counted as losses, not faults.
const OVERRUN_FLAGS: u32 = ERR_FLAG_CIRC_OVERRUN | ERR_FLAG_CIRC_OVERRUN_SCALERS;

/// A source of timestamps in nanoseconds (wall clock on a host, a timer on a microcontroller).
pub trait Clock {
    fn now_ns(&self) -> u64;
}

impl<F: Fn() -> u64> Clock for F {
    fn now_ns(&self) -> u64 {
        self()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineState {
    Idle,
    Configured,
    Armed,
    Running,
    Done,
    Fault,
}

/// What the caller asked the engine to do (for error messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Configure,
    Arm,
    SoftTrigger,
    Step,
}

/// Frames `[first, first + count)` that never reached the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LostRange {
    pub first: u64,
    pub count: u64,
}

/// A detector failure as the engine recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The call that failed, e.g. `"read_mca"`.
    pub operation: &'static str,
    pub code: i32,
    pub name: String<32>,
    pub message: String<256>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    InvalidTransition {
        from: EngineState,
        action: Action,
    },
    /// The detector reports a frame shape the engine cannot handle.
    Geometry(GeometryError),
    /// The ring was built for another frame shape than the detector's.
    RingGeometry {
        ring: Geometry,
        detector: Geometry,
    },
    /// The detector failed in `operation` with `code`; the engine is now in `Fault` and
    /// [`Acquisition::fault`] has the code's name and the message.
    Detector {
        operation: &'static str,
        code: i32,
    },
    /// The engine is in `Fault`; configure again to recover.
    Faulted,
}

impl core::fmt::Display for EngineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EngineError::InvalidTransition { from, action } => {
                write!(f, "cannot {action:?} while {from:?}")
            }
            EngineError::Geometry(e) => write!(f, "detector geometry: {e}"),
            EngineError::RingGeometry { ring, detector } => write!(
                f,
                "ring frames are {}x{} but the detector delivers {}x{}",
                ring.n_channels(),
                ring.n_bins(),
                detector.n_channels(),
                detector.n_bins()
            ),
            EngineError::Detector { operation, code } => {
                write!(f, "detector {operation} failed with code {code}")
            }
            EngineError::Faulted => write!(f, "the acquisition is in Fault; configure again"),
        }
    }
}

/// What one [`Acquisition::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// This many frames went into the ring.
    Moved(usize),
    /// This many frames were found overwritten in the SDK buffer and counted lost.
    Lost(u64),
    /// No new frames yet.
    Idle,
    /// Frames wait in the SDK but the ring has no free slot.
    RingFull,
    /// Every frame of the acquisition was moved or counted lost.
    Done,
}

/// Counters of the current (or last) acquisition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames the detector completed, as last polled.
    pub frames_complete: u64,
    /// Frames moved into the ring.
    pub frames_read: u64,
    /// Frames lost before we could read them.
    pub frames_lost: u64,
    pub lost_ranges: Vec<LostRange, MAX_LOST_RANGES>,
    /// Lost ranges that did not fit in `lost_ranges` (their frames are still in `frames_lost`).
    pub lost_ranges_overflow: u64,
    /// Overruns the SDK itself reported.
    pub sdk_overruns: u64,
    /// Every SDK error flag seen during the acquisition, OR-ed.
    pub sdk_err_flags: u32,
    /// Steps that found the ring full.
    pub ring_full_steps: u64,
}

impl EngineStats {
    fn record_lost(&mut self, first: u64, count: u64) {
        if count == 0 {
            return;
        }
        self.frames_lost += count;
        if let Some(last) = self.lost_ranges.last_mut() {
            if last.first + last.count == first {
                last.count += count;
                return;
            }
        }
        if self.lost_ranges.push(LostRange { first, count }).is_err() {
            self.lost_ranges_overflow += 1;
        }
    }
}

/// The engine. Owns the detector; borrows the ring's producer for each step, so one engine can
/// feed a new ring per acquisition.
pub struct Acquisition<D: Detector, K: Clock> {
    detector: D,
    clock: K,
    geometry: Geometry,
    /// Frames the SDK buffer holds before it overwrites (u64::MAX when unknown).
    buffer_frames: u64,
    batch: usize,
    state: EngineState,
    params: Option<AcqParams>,
    next_frame: u64,
    lost_before_next: bool,
    stop_requested: bool,
    stats: EngineStats,
    fault: Option<Fault>,
    /// Frames per salvage read after a fault during an acquisition; 0: nothing left to salvage.
    salvage_batch: usize,
}

impl<D: Detector, K: Clock> Acquisition<D, K> {
    /// An idle engine over `detector`, reading at most `batch` frames per step.
    pub fn new(detector: D, clock: K, batch: usize) -> Result<Self, EngineError> {
        let geometry = Self::geometry_of(&detector)?;
        let buffer_frames = match detector.info().buffer_frames {
            0 => u64::MAX,
            n => n,
        };
        Ok(Acquisition {
            detector,
            clock,
            geometry,
            buffer_frames,
            batch: batch.max(1),
            state: EngineState::Idle,
            params: None,
            next_frame: 0,
            lost_before_next: false,
            stop_requested: false,
            stats: EngineStats::default(),
            fault: None,
            salvage_batch: 0,
        })
    }

    /// Frames of `detector`'s channels and recorded bins.
    fn geometry_of(detector: &D) -> Result<Geometry, EngineError> {
        let bins = detector.recording().recorded_bins();
        Geometry::new(detector.info().n_channels, bins)
            .and_then(|g| g.with_rois(detector.n_rois()))
            .map_err(EngineError::Geometry)
    }

    pub fn state(&self) -> EngineState {
        self.state
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn params(&self) -> Option<&AcqParams> {
        self.params.as_ref()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn fault(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }

    pub fn detector(&self) -> &D {
        &self.detector
    }

    pub fn detector_mut(&mut self) -> &mut D {
        &mut self.detector
    }

    /// Gives the detector back.
    pub fn into_detector(self) -> D {
        self.detector
    }

    /// Stores the next acquisition's parameters. Valid when not armed or running; also the way
    /// out of `Fault`.
    pub fn configure(&mut self, params: &AcqParams) -> Result<(), EngineError> {
        self.require(
            matches!(
                self.state,
                EngineState::Idle
                    | EngineState::Configured
                    | EngineState::Done
                    | EngineState::Fault
            ),
            Action::Configure,
        )?;
        self.fault = None;
        self.salvage_batch = 0;
        // The detector's recording may have changed since the last acquisition.
        self.geometry = Self::geometry_of(&self.detector)?;
        if let Err(e) = self.detector.configure(params) {
            return Err(self.record_fault("configure", &e));
        }
        self.params = Some(*params);
        self.state = EngineState::Configured;
        Ok(())
    }

    /// Starts an acquisition with the configured parameters (again, after `Done`).
    pub fn arm(&mut self) -> Result<(), EngineError> {
        self.require(
            matches!(self.state, EngineState::Configured | EngineState::Done),
            Action::Arm,
        )?;
        self.next_frame = 0;
        self.lost_before_next = false;
        self.stop_requested = false;
        self.stats = EngineStats::default();
        if let Err(e) = self.detector.arm() {
            return Err(self.record_fault("arm", &e));
        }
        self.state = EngineState::Armed;
        Ok(())
    }

    /// One software-triggered frame (software trigger modes only, while armed or running).
    pub fn soft_trigger(&mut self) -> Result<(), EngineError> {
        let software = self
            .params
            .map(|p| p.trigger.is_software())
            .unwrap_or(false);
        self.require(
            software && matches!(self.state, EngineState::Armed | EngineState::Running),
            Action::SoftTrigger,
        )?;
        if let Err(e) = self.detector.soft_trigger() {
            return Err(self.record_fault("soft_trigger", &e));
        }
        Ok(())
    }

    /// Stops the detector. Frames it already completed are still moved by later steps, after
    /// which the engine is `Done`. Harmless in any other state.
    pub fn stop(&mut self) -> Result<(), EngineError> {
        if !matches!(self.state, EngineState::Armed | EngineState::Running) {
            return Ok(());
        }
        self.stop_requested = true;
        if let Err(e) = self.detector.stop() {
            return Err(self.record_fault("stop", &e));
        }
        Ok(())
    }

    /// One unit of work; see the module documentation.
    pub fn step<W: Wait, const C: usize>(
        &mut self,
        producer: &mut Producer<'_, '_, W, C>,
    ) -> Result<StepOutcome, EngineError> {
        match self.state {
            EngineState::Armed | EngineState::Running => {}
            EngineState::Done => return Ok(StepOutcome::Done),
            EngineState::Fault => return Err(EngineError::Faulted),
            from => {
                return Err(EngineError::InvalidTransition {
                    from,
                    action: Action::Step,
                })
            }
        }
        let ring_geometry = producer.geometry();
        if ring_geometry != self.geometry {
            return Err(EngineError::RingGeometry {
                ring: ring_geometry,
                detector: self.geometry,
            });
        }

        let progress = self.poll()?;
        let complete = self.bounded(progress.frames_complete);
        if complete > 0 && self.state == EngineState::Armed {
            self.state = EngineState::Running;
        }

        let lost = self.skip_overwritten(progress.frames_complete);
        if lost > 0 {
            return Ok(StepOutcome::Lost(lost));
        }
        let pending = complete.saturating_sub(self.next_frame);
        if pending == 0 {
            if self.is_finished(&progress) {
                self.state = EngineState::Done;
                return Ok(StepOutcome::Done);
            }
            return Ok(StepOutcome::Idle);
        }

        let want = pending.min(self.batch as u64) as usize;
        let Some(mut grant) = producer.grant(want) else {
            self.stats.ring_full_steps += 1;
            return Ok(StepOutcome::RingFull);
        };
        let n = grant.len();
        let first = self.next_frame;
        let SlotParts {
            mca,
            scalers,
            rois,
            meta,
        } = grant.parts_mut();
        let torn = match self.copy_intact(first, n, progress.frames_complete, mca, scalers, rois)? {
            0 => 0,
            torn => {
                let mca_words = self.geometry.mca_words();
                let scaler_words = self.geometry.scaler_words();
                let roi_words = self.geometry.roi_words();
                mca.copy_within(torn * mca_words..n * mca_words, 0);
                scalers.copy_within(torn * scaler_words..n * scaler_words, 0);
                rois.copy_within(torn * roi_words..n * roi_words, 0);
                self.stats.record_lost(first, torn as u64);
                self.lost_before_next = true;
                torn
            }
        };
        let valid = n - torn;
        let valid_first = first + torn as u64;

        self.stamp(&mut meta[..valid], valid_first, progress.err_flags);
        grant.commit(valid);
        if valid > 0 {
            self.lost_before_next = false;
        }
        self.next_frame = first + n as u64;
        self.stats.frames_read += valid as u64;
        if valid == 0 {
            return Ok(StepOutcome::Lost(torn as u64));
        }
        Ok(StepOutcome::Moved(valid))
    }

    /// Copies frames `[first, first + n)` into `mca` and `scalers`, releases the intact ones back
    /// to the SDK, and returns how many at the front the SDK overwrote before their copy was
    /// vouched for.
    ///
    /// Near the SDK's write position the batch is copied newest piece first, with a poll after
    /// each piece: a piece is intact from the oldest frame that poll still finds in the buffer,
    /// and once a poll finds a piece's start overwritten every older frame is too. So the frames
    /// given up are exactly those the SDK overwrote (never frames still intact, which a guess at
    /// how far the SDK will run during the next read would give up), and a copy slower than the
    /// detector still keeps the newest part of every batch and catches up when the detector is
    /// slower again. Far from the write position the batch is one piece: one read, one poll.
    fn copy_intact(
        &mut self,
        first: u64,
        n: usize,
        complete: u64,
        mca: &mut [u32],
        scalers: &mut [u32],
        rois: &mut [u64],
    ) -> Result<usize, EngineError> {
        let (mca_words, scaler_words) = (self.geometry.mca_words(), self.geometry.scaler_words());
        let roi_words = self.geometry.roi_words();
        let end = first + n as u64;
        let small = (n / NEAR_EDGE_PIECES).max(1);
        // Frames the SDK may still complete before it overwrites `first`.
        let headroom = first
            .saturating_add(self.buffer_frames)
            .saturating_sub(complete);
        let mut piece = if headroom >= 2 * n as u64 { n } else { small };
        let mut oldest = self.oldest_intact(complete);
        // Frames [cursor, end) are copied and vouched for.
        let mut cursor = end;
        while cursor > first {
            let start = cursor.saturating_sub(piece as u64).max(first).max(oldest);
            if start >= cursor {
                break;
            }
            let (k, at) = ((cursor - start) as usize, (start - first) as usize);
            let read = self
                .detector
                .read_mca_rois(
                    start,
                    k as u32,
                    &mut mca[at * mca_words..(at + k) * mca_words],
                    &mut rois[at * roi_words..(at + k) * roi_words],
                )
                .and_then(|()| {
                    self.detector.read_scalers(
                        start,
                        k as u32,
                        &mut scalers[at * scaler_words..(at + k) * scaler_words],
                    )
                });
            let refused = match read {
                Ok(()) => false,
                Err(e) => match e.class() {
                    ErrorClass::Overrun => true,
                    ErrorClass::Fatal => return Err(self.record_fault("read", &e)),
                },
            };
            let complete_now = self.poll()?.frames_complete;
            let after = self.oldest_intact(complete_now);
            if refused {
                piece = small;
                if after > start && after < cursor {
                    // The SDK overwrote the front of the piece: copy its intact rest again.
                    oldest = after;
                    continue;
                }
                // All of the piece is gone, or the backend refused frames a poll still finds:
                // it knows better than this arithmetic, so they are lost.
                break;
            }
            oldest = after;
            let vouched = after.clamp(start, cursor);
            if vouched < cursor {
                // Released at once: the SDK may then reuse the slots without counting an
                // overrun, as the frames are safe in the ring.
                if let Err(e) = self.detector.release(vouched, (cursor - vouched) as u32) {
                    return Err(self.record_fault("release", &e));
                }
            }
            cursor = vouched;
            if after > start {
                break;
            }
        }
        Ok((cursor - first) as usize)
    }

    /// After a detector fault during an acquisition, moves frames the detector completed before
    /// it into the ring, one read per call: `Moved(n)`, `RingFull` (call again once a consumer
    /// released slots) or `Done` when nothing more can be read. Reads start at the next frame and
    /// halve their size whenever the backend refuses them (it refuses frames that never
    /// completed), so what is read is exactly what the backend still vouches for.
    pub fn salvage<W: Wait, const C: usize>(
        &mut self,
        producer: &mut Producer<'_, '_, W, C>,
    ) -> Result<StepOutcome, EngineError> {
        if self.state != EngineState::Fault {
            return Err(EngineError::InvalidTransition {
                from: self.state,
                action: Action::Step,
            });
        }
        let remaining = match self.params.map(|p| p.n_frames) {
            Some(n) if n > 0 => n.saturating_sub(self.next_frame),
            _ => u64::MAX,
        };
        loop {
            let want = (self.salvage_batch as u64).min(remaining) as usize;
            if want == 0 {
                self.salvage_batch = 0;
                return Ok(StepOutcome::Done);
            }
            let Some(mut grant) = producer.grant(want) else {
                return Ok(StepOutcome::RingFull);
            };
            let n = grant.len();
            let first = self.next_frame;
            let SlotParts {
                mca,
                scalers,
                rois,
                meta,
            } = grant.parts_mut();
            let read = self
                .detector
                .read_mca_rois(first, n as u32, mca, rois)
                .and_then(|()| self.detector.read_scalers(first, n as u32, scalers));
            if read.is_err() {
                self.salvage_batch = n / 2;
                continue;
            }
            self.stamp(meta, first, self.stats.sdk_err_flags);
            grant.commit(n);
            self.lost_before_next = false;
            self.next_frame = first + n as u64;
            self.stats.frames_read += n as u64;
            // The detector is stopped; a failing release cannot cost a frame any more.
            let _ = self.detector.release(first, n as u32);
            return Ok(StepOutcome::Moved(n));
        }
    }

    /// The frame the engine reads next: after the end of an acquisition, the first frame it never
    /// moved or counted lost.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// Fills the metadata of frames `first..` that are about to be committed.
    fn stamp(&self, meta: &mut [FrameMeta], first: u64, err_flags: u32) {
        let now = self.clock.now_ns();
        let overrun_flag = if err_flags & OVERRUN_FLAGS != 0 {
            FrameMeta::SDK_OVERRUN
        } else {
            0
        };
        let last_frame = self.params.map(|p| p.n_frames).filter(|&n| n > 0);
        for (i, m) in meta.iter_mut().enumerate() {
            let frame_number = first + i as u64;
            let mut flags = overrun_flag;
            if i == 0 && self.lost_before_next {
                flags |= FrameMeta::LOST_BEFORE;
            }
            if last_frame == Some(frame_number + 1) {
                flags |= FrameMeta::LAST;
            }
            *m = FrameMeta {
                frame_number,
                timestamp_ns: now,
                flags,
                sdk_err_flags: err_flags,
            };
        }
    }

    fn require(&self, allowed: bool, action: Action) -> Result<(), EngineError> {
        if allowed {
            Ok(())
        } else {
            Err(EngineError::InvalidTransition {
                from: self.state,
                action,
            })
        }
    }

    fn poll(&mut self) -> Result<Progress, EngineError> {
        let progress = match self.detector.poll() {
            Ok(p) => p,
            Err(e) => return Err(self.record_fault("poll", &e)),
        };
        self.stats.frames_complete = progress.frames_complete;
        self.stats.sdk_overruns = progress.overrun_count;
        self.stats.sdk_err_flags |= progress.err_flags;
        let fatal_flags = progress.err_flags & !OVERRUN_FLAGS;
        if fatal_flags != 0 || progress.state == DetectorState::Fault {
            let mut message = String::new();
            // 256 bytes always hold this message.
            let _ = core::fmt::write(
                &mut message,
                format_args!("SDK error flags 0x{:x}", progress.err_flags),
            );
            return Err(self.enter_fault(Fault {
                operation: "poll",
                code: -1,
                name: short_string("XSP3_ERROR"),
                message,
            }));
        }
        Ok(progress)
    }

    /// `frames_complete` capped at the configured frame count.
    fn bounded(&self, frames_complete: u64) -> u64 {
        match self.params.map(|p| p.n_frames) {
            Some(n) if n > 0 => frames_complete.min(n),
            _ => frames_complete,
        }
    }

    /// Oldest frame still intact in the SDK buffer when it has completed `frames_complete`.
    fn oldest_intact(&self, frames_complete: u64) -> u64 {
        frames_complete.saturating_sub(self.buffer_frames)
    }

    /// Skips (and records) frames the SDK has already overwritten. Returns how many.
    fn skip_overwritten(&mut self, frames_complete: u64) -> u64 {
        let oldest = self.bounded(self.oldest_intact(frames_complete));
        if oldest <= self.next_frame {
            return 0;
        }
        let lost = oldest - self.next_frame;
        self.stats.record_lost(self.next_frame, lost);
        self.next_frame = oldest;
        self.lost_before_next = true;
        lost
    }

    fn is_finished(&self, progress: &Progress) -> bool {
        let all_read = match self.params.map(|p| p.n_frames) {
            Some(n) if n > 0 => self.next_frame >= n,
            _ => false,
        };
        let detector_done = (self.stop_requested || progress.state == DetectorState::Done)
            && progress.state != DetectorState::Running
            && self.next_frame >= progress.frames_complete;
        all_read || detector_done
    }

    fn record_fault(&mut self, operation: &'static str, error: &D::Error) -> EngineError {
        let mut message = String::new();
        push_truncated(&mut message, error.message());
        self.enter_fault(Fault {
            operation,
            code: error.code(),
            name: short_string(error.name()),
            message,
        })
    }

    fn enter_fault(&mut self, fault: Fault) -> EngineError {
        if matches!(self.state, EngineState::Armed | EngineState::Running) {
            // Best effort: the fault being reported matters more than a failing stop.
            let _ = self.detector.stop();
            self.salvage_batch = self.batch;
        }
        self.state = EngineState::Fault;
        let error = EngineError::Detector {
            operation: fault.operation,
            code: fault.code,
        };
        self.fault = Some(fault);
        error
    }
}

fn short_string(s: &str) -> String<32> {
    let mut out = String::new();
    push_truncated(&mut out, s);
    out
}

/// Appends as much of `s` as fits, cutting at a character boundary.
fn push_truncated<const N: usize>(out: &mut String<N>, s: &str) {
    for ch in s.chars() {
        if out.push(ch).is_err() {
            break;
        }
    }
}
