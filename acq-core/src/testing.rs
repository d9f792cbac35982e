//! An in-memory [`Detector`] for tests of the engine and of code built on it (feature `testing`).
//!
//! It allocates nothing. Frames complete on each [`poll`](Detector::poll) (`frames_per_poll`) or
//! by [`TestDetector::complete`]; their content is a pure function of (frame, channel, bin), see
//! [`mca_word`] and [`scaler_word`]. It models the SDK's circular buffer: a frame older than
//! `frames_complete - buffer_frames` has been overwritten, and reading it fails with an overrun
//! error. Frames may also complete during each MCA read (`frames_per_read_frame`), as when the
//! detector outruns the copy; like the shim, the read is then refused when even its last frame
//! was overwritten meanwhile. Faults can be injected into any call.
//!
//! With a buffer of at most [`MAX_TRACKED_BUFFER`] frames, acknowledgements are kept per slot as
//! on the SDK, and the frames overwritten before they were released are recorded as ranges
//! ([`TestDetector::overwritten`]): the record the engine's lost ranges must equal.

use heapless::{String, Vec};

use crate::detector::{
    AcqParams, Detector, DetectorError, DetectorInfo, DetectorState, ErrorClass, Progress,
    ERR_FLAG_CIRC_OVERRUN,
};
use crate::engine::{LostRange, MAX_LOST_RANGES};

/// MCA word of `(frame, chan, bin)`.
pub fn mca_word(frame: u64, chan: u32, bin: u32) -> u32 {
    (frame as u32)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(chan.wrapping_mul(40_503))
        .wrapping_add(bin)
}

/// Sum of [`mca_word`] over bins `low..=high` of `(frame, chan)`.
pub fn roi_sum(frame: u64, chan: u32, [low, high]: [u32; 2]) -> u64 {
    (low..=high)
        .map(|bin| u64::from(mca_word(frame, chan, bin)))
        .sum()
}

/// Scaler `scaler` of `(frame, chan)`.
pub fn scaler_word(frame: u64, chan: u32, scaler: u32) -> u32 {
    (frame as u32)
        .wrapping_mul(9)
        .wrapping_add(chan * 100 + scaler)
}

/// The call a fault is injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Configure,
    Arm,
    SoftTrigger,
    Poll,
    ReadMca,
    ReadScalers,
    Release,
    Stop,
}

/// An error of the test detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestError {
    pub code: i32,
    pub name: &'static str,
    pub message: String<64>,
    pub class: ErrorClass,
}

impl TestError {
    fn new(code: i32, name: &'static str, message: &str, class: ErrorClass) -> Self {
        let mut text = String::new();
        for ch in message.chars() {
            if text.push(ch).is_err() {
                break;
            }
        }
        TestError {
            code,
            name,
            message: text,
            class,
        }
    }
}

impl DetectorError for TestError {
    fn code(&self) -> i32 {
        self.code
    }
    fn name(&self) -> &str {
        self.name
    }
    fn message(&self) -> &str {
        &self.message
    }
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// The largest SDK buffer whose acknowledgements are tracked per slot.
pub const MAX_TRACKED_BUFFER: usize = 4096;

/// A fault to inject: the `nth` call (0-based) of `call` fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    pub call: Call,
    pub nth: u64,
    pub code: i32,
}

/// See the module documentation.
#[derive(Debug)]
pub struct TestDetector {
    info: DetectorInfo,
    params: Option<AcqParams>,
    state: DetectorState,
    /// Frames `[0, frames_complete)` exist.
    frames_complete: u64,
    /// Frames completed automatically on each poll while running.
    pub frames_per_poll: u64,
    /// Frames released so far (releases must be in order).
    released: u64,
    /// Frames overwritten before they were released, since arm.
    overruns: u64,
    /// Frames completed during each read call, per frame it reads.
    pub frames_per_read_frame: u64,
    /// Per slot: the frame in it was released (buffers up to `MAX_TRACKED_BUFFER` frames).
    released_slots: [u64; MAX_TRACKED_BUFFER / 64],
    overwritten: Vec<LostRange, MAX_LOST_RANGES>,
    fault: Option<InjectedFault>,
    calls: [u64; 8],
    /// One software ROI, the same bins `[low, high]` for every channel.
    roi: Option<[u32; 2]>,
}

impl TestDetector {
    /// A detector with `n_channels` x `n_bins` frames and an SDK buffer of `buffer_frames`.
    pub fn new(n_channels: u32, n_bins: u32, buffer_frames: u64) -> Self {
        let mut event_widths = Vec::new();
        for chan in 0..n_channels.min(crate::geometry::MAX_CHANNELS as u32) {
            // Capacity is MAX_CHANNELS, so this push cannot fail.
            let _ = event_widths.push(5 + chan % 4);
        }
        TestDetector {
            info: DetectorInfo {
                n_channels,
                n_bins,
                n_scalers: 9,
                clock_hz: 80e6,
                buffer_frames,
                generation: 0,
                revision: 0,
                event_widths,
            },
            params: None,
            state: DetectorState::Idle,
            frames_complete: 0,
            frames_per_poll: 0,
            released: 0,
            overruns: 0,
            frames_per_read_frame: 0,
            released_slots: [0; MAX_TRACKED_BUFFER / 64],
            overwritten: Vec::new(),
            fault: None,
            calls: [0; 8],
            roi: None,
        }
    }

    /// Sums bins `[low, high]` of every channel as one ROI from now on (`None`: no ROI).
    pub fn set_roi(&mut self, roi: Option<[u32; 2]>) {
        self.roi = roi;
    }

    /// Makes the next `n` frames complete (capped at the configured frame count).
    pub fn complete(&mut self, n: u64) {
        if self.state != DetectorState::Running && self.state != DetectorState::Armed {
            return;
        }
        let intact_before = self.oldest_intact().max(self.released);
        let complete_before = self.frames_complete;
        self.frames_complete += n;
        if let Some(p) = self.params {
            if p.n_frames > 0 && self.frames_complete >= p.n_frames {
                self.frames_complete = p.n_frames;
                self.state = DetectorState::Done;
            } else {
                self.state = DetectorState::Running;
            }
        }
        if !self.tracks_slots() {
            // Like the SDK's counter: frames overwritten before release, accumulated (releases
            // taken as in order).
            self.overruns += self.oldest_intact().saturating_sub(intact_before);
            return;
        }
        let buffer = self.info.buffer_frames;
        for frame in complete_before..self.frames_complete {
            if frame >= buffer {
                let previous = frame - buffer;
                if !self.slot_released(previous) {
                    self.overruns += 1;
                    self.record_overwritten(previous);
                }
            }
            self.set_slot_released(frame, false);
        }
    }

    /// Frames overwritten before they were released, as ranges (buffers of at most
    /// [`MAX_TRACKED_BUFFER`] frames; empty otherwise). Ranges beyond the capacity are dropped.
    pub fn overwritten(&self) -> &[LostRange] {
        &self.overwritten
    }

    fn tracks_slots(&self) -> bool {
        self.info.buffer_frames > 0 && self.info.buffer_frames <= MAX_TRACKED_BUFFER as u64
    }

    fn slot_bit(&self, frame: u64) -> (usize, u64) {
        let slot = (frame % self.info.buffer_frames) as usize;
        (slot / 64, 1 << (slot % 64))
    }

    fn slot_released(&self, frame: u64) -> bool {
        let (word, bit) = self.slot_bit(frame);
        self.released_slots[word] & bit != 0
    }

    fn set_slot_released(&mut self, frame: u64, released: bool) {
        let (word, bit) = self.slot_bit(frame);
        if released {
            self.released_slots[word] |= bit;
        } else {
            self.released_slots[word] &= !bit;
        }
    }

    fn record_overwritten(&mut self, frame: u64) {
        if let Some(last) = self.overwritten.last_mut() {
            if last.first + last.count == frame {
                last.count += 1;
                return;
            }
        }
        // Beyond the capacity ranges are dropped (documented on `overwritten`).
        let _ = self.overwritten.push(LostRange {
            first: frame,
            count: 1,
        });
    }

    pub fn inject(&mut self, fault: InjectedFault) {
        self.fault = Some(fault);
    }

    pub fn frames_released(&self) -> u64 {
        self.released
    }

    fn oldest_intact(&self) -> u64 {
        self.frames_complete.saturating_sub(self.info.buffer_frames)
    }

    fn enter(&mut self, call: Call) -> Result<(), TestError> {
        let count = &mut self.calls[call as usize];
        let nth = *count;
        *count += 1;
        match self.fault {
            Some(f) if f.call == call && f.nth == nth => Err(TestError::new(
                f.code,
                "XSP3_ERROR",
                "injected fault",
                ErrorClass::Fatal,
            )),
            _ => Ok(()),
        }
    }

    /// After a copy, like the shim: refused when even its last frame was overwritten during it.
    fn recheck(&self, first: u64, n: u32) -> Result<(), TestError> {
        if n > 0 && first + u64::from(n) - 1 < self.oldest_intact() {
            return Err(TestError::new(
                -104,
                "X3S_E_OVERRUN",
                "frames overwritten during the copy",
                ErrorClass::Overrun,
            ));
        }
        Ok(())
    }

    fn check_range(
        &self,
        first: u64,
        n: u32,
        dst_len: usize,
        per_frame: usize,
    ) -> Result<(), TestError> {
        if first + n as u64 > self.frames_complete {
            return Err(TestError::new(
                -103,
                "X3S_E_NOT_READY",
                "frame not complete",
                ErrorClass::Fatal,
            ));
        }
        if first < self.oldest_intact() {
            return Err(TestError::new(
                -104,
                "X3S_E_OVERRUN",
                "frame overwritten",
                ErrorClass::Overrun,
            ));
        }
        if dst_len < n as usize * per_frame {
            return Err(TestError::new(
                -102,
                "X3S_E_BUFSIZE",
                "buffer too small",
                ErrorClass::Fatal,
            ));
        }
        Ok(())
    }
}

impl Detector for TestDetector {
    type Error = TestError;

    fn info(&self) -> &DetectorInfo {
        &self.info
    }

    fn configure(&mut self, params: &AcqParams) -> Result<(), TestError> {
        self.enter(Call::Configure)?;
        if params.exposure_ticks == 0 {
            return Err(TestError::new(
                -6,
                "XSP3_RANGE_CHECK",
                "exposure of 0 ticks",
                ErrorClass::Fatal,
            ));
        }
        self.params = Some(*params);
        self.state = DetectorState::Idle;
        Ok(())
    }

    fn arm(&mut self) -> Result<(), TestError> {
        self.enter(Call::Arm)?;
        if self.params.is_none() {
            return Err(TestError::new(
                -100,
                "X3S_E_STATE",
                "not configured",
                ErrorClass::Fatal,
            ));
        }
        self.frames_complete = 0;
        self.released = 0;
        self.overruns = 0;
        self.released_slots = [0; MAX_TRACKED_BUFFER / 64];
        self.overwritten.clear();
        self.state = DetectorState::Armed;
        Ok(())
    }

    fn soft_trigger(&mut self) -> Result<(), TestError> {
        self.enter(Call::SoftTrigger)?;
        self.complete(1);
        Ok(())
    }

    fn poll(&mut self) -> Result<Progress, TestError> {
        self.enter(Call::Poll)?;
        if self.frames_per_poll > 0 {
            self.complete(self.frames_per_poll);
        }
        let overrun_count = self.overruns;
        Ok(Progress {
            frames_complete: self.frames_complete,
            err_flags: if overrun_count > 0 {
                ERR_FLAG_CIRC_OVERRUN
            } else {
                0
            },
            overrun_count,
            state: self.state,
        })
    }

    fn read_mca(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), TestError> {
        self.enter(Call::ReadMca)?;
        let (nch, nbins) = (self.info.n_channels, self.info.n_bins);
        self.check_range(first, n, dst.len(), (nch * nbins) as usize)?;
        let mut words = dst.iter_mut();
        for frame in first..first + n as u64 {
            for chan in 0..nch {
                for bin in 0..nbins {
                    if let Some(w) = words.next() {
                        *w = mca_word(frame, chan, bin);
                    }
                }
            }
        }
        self.complete(u64::from(n) * self.frames_per_read_frame);
        self.recheck(first, n)
    }

    fn n_rois(&self) -> u32 {
        u32::from(self.roi.is_some())
    }

    fn read_mca_rois(
        &mut self,
        first: u64,
        n: u32,
        mca: &mut [u32],
        rois: &mut [u64],
    ) -> Result<(), TestError> {
        self.read_mca(first, n, mca)?;
        let Some(range) = self.roi else {
            return Ok(());
        };
        let nch = self.info.n_channels;
        self.check_range(first, n, rois.len(), nch as usize)?;
        let mut words = rois.iter_mut();
        for frame in first..first + n as u64 {
            for chan in 0..nch {
                if let Some(w) = words.next() {
                    *w = roi_sum(frame, chan, range);
                }
            }
        }
        Ok(())
    }

    fn read_scalers(&mut self, first: u64, n: u32, dst: &mut [u32]) -> Result<(), TestError> {
        self.enter(Call::ReadScalers)?;
        let nch = self.info.n_channels;
        self.check_range(first, n, dst.len(), nch as usize * 9)?;
        let mut words = dst.iter_mut();
        for frame in first..first + n as u64 {
            for chan in 0..nch {
                for scaler in 0..9 {
                    if let Some(w) = words.next() {
                        *w = scaler_word(frame, chan, scaler);
                    }
                }
            }
        }
        Ok(())
    }

    fn release(&mut self, first: u64, n: u32) -> Result<(), TestError> {
        self.enter(Call::Release)?;
        if first + n as u64 > self.frames_complete {
            return Err(TestError::new(
                -101,
                "X3S_E_ARG",
                "release beyond progress",
                ErrorClass::Fatal,
            ));
        }
        self.released = self.released.max(first + n as u64);
        if self.tracks_slots() {
            let oldest = self.oldest_intact();
            for frame in first.max(oldest)..first + n as u64 {
                self.set_slot_released(frame, true);
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), TestError> {
        self.enter(Call::Stop)?;
        if matches!(self.state, DetectorState::Armed | DetectorState::Running) {
            self.state = DetectorState::Done;
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
pub use self::counting::CountingAllocator;

#[cfg(feature = "std")]
mod counting {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::alloc::{GlobalAlloc, Layout, System};

    static ARMED: AtomicBool = AtomicBool::new(false);
    static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    /// A global allocator that counts allocations while armed, to prove a hot path allocates
    /// nothing. Install it in a test binary of its own (so no other test allocates meanwhile):
    /// `#[global_allocator] static A: CountingAllocator = CountingAllocator;`
    pub struct CountingAllocator;

    impl CountingAllocator {
        /// Starts counting from zero.
        pub fn arm() {
            ALLOCATIONS.store(0, Ordering::SeqCst);
            ARMED.store(true, Ordering::SeqCst);
        }

        /// Stops counting; returns the allocations since `arm`.
        pub fn disarm() -> u64 {
            ARMED.store(false, Ordering::SeqCst);
            ALLOCATIONS.load(Ordering::SeqCst)
        }

        /// Proves the instrument: one boxed value while armed must count as one allocation.
        /// Returns what it counted.
        pub fn self_test() -> u64 {
            Self::arm();
            let probe = core::hint::black_box(std::boxed::Box::new(7u64));
            let counted = Self::disarm();
            drop(probe);
            counted
        }
    }

    // SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
    // GlobalAlloc contract; counting only touches atomics and never allocates.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if ARMED.load(Ordering::Relaxed) {
                ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: the caller upholds `alloc`'s contract, which we forward.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` through this allocator with this `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if ARMED.load(Ordering::Relaxed) {
                ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            }
            // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}
