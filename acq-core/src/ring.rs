//! `FrameRing`: a zero-copy ring of preallocated frames, one producer and `C` consumers.
//!
//! # Memory
//! The ring owns no memory. The caller lends it four regions ([`SlotMemory`]) at start-up: MCA
//! words, scaler words, ROI sums (none when the geometry has no ROIs) and [`FrameMeta`] records
//! for `slots` frames. They can come from a
//! `static` ([`StaticFrameStorage`], const-constructible) or from a buffer allocated once. The MCA
//! of consecutive slots is contiguous, and `slots` is a multiple of the write batch, so a batch of
//! `batch` frames starting at a batch boundary is one `&[u32]` that never straddles the wrap.
//!
//! # Protocol
//! Positions are frame sequence numbers (u64, never wrapping in practice); slot = position % slots.
//! - `head` is the number of frames committed. Only the producer writes it.
//! - Each consumer has a `cursor`: its position (the next frame it reads) shifted left by one,
//!   and in bit 0 a *reading* flag that a lossy consumer sets while it holds a read grant.
//!   Frames `[position, head)` are readable by it; the producer may write frames
//!   `[head, min(position) + slots)`.
//! - A **lossless** consumer's position only moves when it releases: the producer waits for it.
//! - A **lossy** consumer can be moved forward by the producer with a compare-and-swap when it
//!   is not reading; the frames it skips are added to its `dropped` counter. While it reads, the
//!   flag makes the CAS fail and the producer treats it as lossless, so slot memory is never
//!   written while anybody holds a reference into it.
//!
//! The memory orderings are written next to each atomic operation. The algorithm is checked by
//! the loom models in `tests/loom.rs` (producer + two consumers, wrap-around, lossy skip).

use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::geometry::{FrameMeta, Geometry};
use crate::sync::{AtomicBool, AtomicU64, CachePadded, Ordering};
use crate::wait::Wait;

/// Largest number of consumers a ring supports.
pub const MAX_CONSUMERS: usize = 8;

/// What happens when a consumer falls behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The producer never overtakes it (file writer, lossless stream).
    Lossless,
    /// The producer moves it forward and counts what it skipped (live monitor).
    Lossy,
}

/// Size of the ring: `slots` frames, written and read in batches of up to `batch` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    pub slots: usize,
    pub batch: usize,
}

/// Why a ring could not be built or split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// `batch` is 0, or `slots` is not a positive multiple of `batch`.
    Batch { slots: usize, batch: usize },
    /// A memory region is smaller than the ring needs (`what` is "mca", "scalers", "rois" or
    /// "meta").
    StorageTooSmall {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// [`FrameRing::split`] was already called.
    AlreadySplit,
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::Batch { slots, batch } => write!(
                f,
                "ring of {slots} slots cannot hold batches of {batch} frames: slots must be a positive multiple of the batch"
            ),
            RingError::StorageTooSmall { what, needed, got } => write!(
                f,
                "{what} storage holds {got} elements, the ring needs {needed}"
            ),
            RingError::AlreadySplit => write!(f, "the ring was already split into endpoints"),
        }
    }
}

/// The memory a ring works in, lent by the caller.
#[derive(Debug)]
pub struct SlotMemory<'a> {
    pub mca: &'a mut [u32],
    pub scalers: &'a mut [u32],
    /// ROI sums, `[frame][roi][chan]`; empty when the geometry has no ROIs.
    pub rois: &'a mut [u64],
    pub meta: &'a mut [FrameMeta],
}

/// Element counts a ring of `slots` frames of `geometry` needs, for callers that allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotMemorySize {
    pub mca_words: usize,
    pub scaler_words: usize,
    pub roi_words: usize,
    pub meta_records: usize,
}

impl SlotMemorySize {
    pub const fn new(geometry: Geometry, slots: usize) -> Self {
        SlotMemorySize {
            mca_words: geometry.mca_words() * slots,
            scaler_words: geometry.scaler_words() * slots,
            roi_words: geometry.roi_words() * slots,
            meta_records: slots,
        }
    }
}

/// Slot memory allocated once on the heap (feature `std`), for hosts that size the ring at
/// configure time.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct SlotBuffers {
    pub mca: std::vec::Vec<u32>,
    pub scalers: std::vec::Vec<u32>,
    pub rois: std::vec::Vec<u64>,
    pub meta: std::vec::Vec<FrameMeta>,
}

#[cfg(feature = "std")]
impl SlotBuffers {
    /// Zeroed memory for `slots` frames of `geometry`.
    pub fn new(geometry: Geometry, slots: usize) -> Self {
        let size = SlotMemorySize::new(geometry, slots);
        SlotBuffers {
            mca: std::vec![0; size.mca_words],
            scalers: std::vec![0; size.scaler_words],
            rois: std::vec![0; size.roi_words],
            meta: std::vec![FrameMeta::default(); size.meta_records],
        }
    }

    /// The buffers lent to a ring.
    pub fn memory(&mut self) -> SlotMemory<'_> {
        SlotMemory {
            mca: &mut self.mca,
            scalers: &mut self.scalers,
            rois: &mut self.rois,
            meta: &mut self.meta,
        }
    }
}

/// Const-constructible storage for a ring in a `static`. The sizes are totals over all slots:
/// `MCA_WORDS >= SLOTS * n_channels * n_bins`, `SCALER_WORDS >= SLOTS * n_channels * 9`. It
/// holds no ROI sums, so it serves geometries without ROIs.
///
/// ```
/// use acq_core::ring::StaticFrameStorage;
/// static STORAGE: StaticFrameStorage<8, { 8 * 2 * 64 }, { 8 * 2 * 9 }> = StaticFrameStorage::new();
/// let memory = STORAGE.take().expect("first take");
/// assert!(STORAGE.take().is_none());
/// assert_eq!(memory.mca.len(), 8 * 2 * 64);
/// ```
pub struct StaticFrameStorage<const SLOTS: usize, const MCA_WORDS: usize, const SCALER_WORDS: usize>
{
    mca: core::cell::UnsafeCell<[u32; MCA_WORDS]>,
    scalers: core::cell::UnsafeCell<[u32; SCALER_WORDS]>,
    meta: core::cell::UnsafeCell<[FrameMeta; SLOTS]>,
    taken: AtomicBool,
}

// SAFETY: the cells are only reached through `take`, which hands out the one `&mut` view at most
// once (guarded by the atomic swap on `taken`), so no two threads can alias the contents.
unsafe impl<const S: usize, const M: usize, const K: usize> Sync for StaticFrameStorage<S, M, K> {}

impl<const SLOTS: usize, const MCA_WORDS: usize, const SCALER_WORDS: usize>
    StaticFrameStorage<SLOTS, MCA_WORDS, SCALER_WORDS>
{
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        const ZERO: FrameMeta = FrameMeta {
            frame_number: 0,
            timestamp_ns: 0,
            flags: 0,
            sdk_err_flags: 0,
        };
        StaticFrameStorage {
            mca: core::cell::UnsafeCell::new([0; MCA_WORDS]),
            scalers: core::cell::UnsafeCell::new([0; SCALER_WORDS]),
            meta: core::cell::UnsafeCell::new([ZERO; SLOTS]),
            taken: AtomicBool::new(false),
        }
    }

    /// The storage as [`SlotMemory`], the first time only; `None` afterwards.
    pub fn take(&'static self) -> Option<SlotMemory<'static>> {
        // AcqRel: the winner of the swap is the only one to touch the cells.
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: the swap above returned false exactly once, so these are the only references
        // ever created to the cells' contents, and they live as long as the static.
        unsafe {
            Some(SlotMemory {
                mca: &mut *self.mca.get(),
                scalers: &mut *self.scalers.get(),
                rois: &mut [],
                meta: &mut *self.meta.get(),
            })
        }
    }
}

#[cfg(not(loom))]
impl<const S: usize, const M: usize, const K: usize> Default for StaticFrameStorage<S, M, K> {
    fn default() -> Self {
        Self::new()
    }
}

struct ConsumerSlot {
    /// `position << 1 | reading`.
    cursor: CachePadded<AtomicU64>,
    dropped: AtomicU64,
    policy: Policy,
}

const READING: u64 = 1;

/// Counters of one consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerStats {
    pub policy: Policy,
    /// Next frame this consumer will see: `delivered + dropped`.
    pub position: u64,
    /// Frames handed to it and released.
    pub delivered: u64,
    /// Frames it never saw (lossy consumers only).
    pub dropped: u64,
}

/// A lock-free snapshot of the ring's counters, readable from any thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingStats<const C: usize> {
    pub slots: u64,
    /// Frames committed by the producer.
    pub committed: u64,
    /// Times the producer found the ring full (each episode counts once).
    pub full_events: u64,
    /// Most frames ever waiting for the slowest lossless consumer.
    pub high_water: u64,
    pub consumers: [ConsumerStats; C],
}

impl<const C: usize> RingStats<C> {
    /// Frames committed but not yet released by the slowest lossless consumer: what holds the
    /// producer back. Lossy consumers are left out (the producer skips them when it needs room).
    pub fn fill(&self) -> u64 {
        let oldest = self
            .consumers
            .iter()
            .filter(|c| c.policy == Policy::Lossless)
            .map(|c| c.position)
            .min()
            .unwrap_or(self.committed);
        self.committed.saturating_sub(oldest)
    }
}

/// The ring. Build it with [`FrameRing::new`], then [`split`](FrameRing::split) it once into one
/// [`Producer`] and `C` [`Consumer`]s, which can move to their own threads.
pub struct FrameRing<'a, W: Wait, const C: usize> {
    geometry: Geometry,
    slots: u64,
    batch: usize,
    mca: NonNull<u32>,
    scalers: NonNull<u32>,
    rois: NonNull<u64>,
    meta: NonNull<FrameMeta>,
    head: CachePadded<AtomicU64>,
    consumers: [ConsumerSlot; C],
    closed: AtomicBool,
    split: AtomicBool,
    full_events: AtomicU64,
    high_water: AtomicU64,
    wait: W,
    /// Model-checker shadow of slot contents: loom flags any write to a slot that is not ordered
    /// after every read of it, and reads check they see the frame they were promised.
    #[cfg(loom)]
    shadow: std::vec::Vec<loom::cell::UnsafeCell<u64>>,
    _memory: PhantomData<&'a mut [u32]>,
}

// SAFETY: the raw pointers refer to memory borrowed for 'a; the cursor protocol (module docs)
// guarantees that the producer only writes slots no consumer can read and consumers only read
// committed slots the producer cannot write, so sharing the ring between threads is sound when
// the wait strategy itself is shareable.
unsafe impl<W: Wait + Sync, const C: usize> Sync for FrameRing<'_, W, C> {}
// SAFETY: as above; the ring holds no thread-affine state.
unsafe impl<W: Wait + Send, const C: usize> Send for FrameRing<'_, W, C> {}

impl<'a, W: Wait, const C: usize> FrameRing<'a, W, C> {
    /// Builds a ring over `memory` with one policy per consumer.
    pub fn new(
        geometry: Geometry,
        config: RingConfig,
        policies: [Policy; C],
        memory: SlotMemory<'a>,
        wait: W,
    ) -> Result<Self, RingError> {
        const { assert!(C >= 1 && C <= MAX_CONSUMERS, "a ring has 1 to 8 consumers") };
        let RingConfig { slots, batch } = config;
        if batch == 0 || slots == 0 || slots % batch != 0 {
            return Err(RingError::Batch { slots, batch });
        }
        let need = SlotMemorySize::new(geometry, slots);
        check_len("mca", need.mca_words, memory.mca.len())?;
        check_len("scalers", need.scaler_words, memory.scalers.len())?;
        if need.roi_words > 0 {
            check_len("rois", need.roi_words, memory.rois.len())?;
        }
        check_len("meta", need.meta_records, memory.meta.len())?;
        Ok(FrameRing {
            geometry,
            slots: slots as u64,
            batch,
            // From the whole slices, so the pointers may reach every slot.
            mca: NonNull::from(memory.mca).cast(),
            scalers: NonNull::from(memory.scalers).cast(),
            rois: NonNull::from(memory.rois).cast(),
            meta: NonNull::from(memory.meta).cast(),
            head: CachePadded(AtomicU64::new(0)),
            consumers: policies.map(|policy| ConsumerSlot {
                cursor: CachePadded(AtomicU64::new(0)),
                dropped: AtomicU64::new(0),
                policy,
            }),
            closed: AtomicBool::new(false),
            split: AtomicBool::new(false),
            full_events: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
            wait,
            #[cfg(loom)]
            shadow: (0..slots)
                .map(|_| loom::cell::UnsafeCell::new(u64::MAX))
                .collect(),
            _memory: PhantomData,
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    pub fn slots(&self) -> usize {
        self.slots as usize
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The producer and the consumers, in the order of the policies given to [`FrameRing::new`].
    /// Only the first call succeeds.
    #[allow(clippy::type_complexity)]
    pub fn split(
        &self,
    ) -> Result<(Producer<'_, 'a, W, C>, [Consumer<'_, 'a, W, C>; C]), RingError> {
        // AcqRel: whoever wins the swap owns the endpoints; nothing else is published here.
        if self.split.swap(true, Ordering::AcqRel) {
            return Err(RingError::AlreadySplit);
        }
        let producer = Producer {
            ring: self,
            head: 0,
            limit: self.slots,
            was_full: false,
        };
        let consumers = core::array::from_fn(|index| Consumer {
            ring: self,
            index,
            position: 0,
            head_seen: 0,
        });
        Ok((producer, consumers))
    }

    /// Counters, read without locks. Each value is exact; the set is not one atomic snapshot.
    pub fn stats(&self) -> RingStats<C> {
        // Relaxed everywhere: these are monitoring values and carry no data dependencies.
        RingStats {
            slots: self.slots,
            committed: self.head.load(Ordering::Relaxed),
            full_events: self.full_events.load(Ordering::Relaxed),
            high_water: self.high_water.load(Ordering::Relaxed),
            consumers: core::array::from_fn(|i| {
                let slot = &self.consumers[i];
                let position = slot.cursor.load(Ordering::Relaxed) >> 1;
                let dropped = slot.dropped.load(Ordering::Relaxed);
                ConsumerStats {
                    policy: slot.policy,
                    position,
                    delivered: position.saturating_sub(dropped),
                    dropped,
                }
            }),
        }
    }

    /// Whether the producer has closed the ring (no more frames will come).
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`, so a consumer that sees `closed` also sees
        // the final `head`.
        self.closed.load(Ordering::Acquire)
    }

    fn slot_of(&self, position: u64) -> usize {
        (position % self.slots) as usize
    }

    /// Frames from `position` to the wrap point.
    fn contiguous_from(&self, position: u64) -> u64 {
        self.slots - position % self.slots
    }

    /// Pointers to the first frame at `position` in each region. Creating them is safe; the
    /// callers that turn them into slices state why the access is allowed.
    fn regions(&self, position: u64) -> Regions {
        let slot = self.slot_of(position);
        let g = self.geometry;
        // `wrapping_add` keeps this safe to call; `slot < slots` keeps the result in bounds.
        Regions {
            mca: self.mca.as_ptr().wrapping_add(slot * g.mca_words()),
            scalers: self.scalers.as_ptr().wrapping_add(slot * g.scaler_words()),
            rois: self.rois.as_ptr().wrapping_add(slot * g.roi_words()),
            meta: self.meta.as_ptr().wrapping_add(slot),
        }
    }

    fn close(&self) {
        // Release: a consumer that sees `closed` (Acquire) sees every committed frame.
        self.closed.store(true, Ordering::Release);
        self.wait.notify();
    }
}

/// The first frame at one position in each region.
struct Regions {
    mca: *mut u32,
    scalers: *mut u32,
    rois: *mut u64,
    meta: *mut FrameMeta,
}

fn check_len(what: &'static str, needed: usize, got: usize) -> Result<(), RingError> {
    if got < needed || got == 0 {
        Err(RingError::StorageTooSmall { what, needed, got })
    } else {
        Ok(())
    }
}

/// The writing end. Dropping it closes the ring.
pub struct Producer<'r, 'a, W: Wait, const C: usize> {
    ring: &'r FrameRing<'a, W, C>,
    /// Our copy of `ring.head` (we are its only writer).
    head: u64,
    /// Cached upper bound of writable positions. Consumers only move forward, so a stale value
    /// is conservative; it is recomputed when a grant would pass it.
    limit: u64,
    was_full: bool,
}

impl<'r, 'a, W: Wait, const C: usize> Producer<'r, 'a, W, C> {
    /// Up to `max_frames` contiguous free slots, or `None` when the ring is full (or
    /// `max_frames` is 0). Never blocks.
    pub fn grant(&mut self, max_frames: usize) -> Option<WriteGrant<'_, 'r, 'a, W, C>> {
        let ring = self.ring;
        let want = (max_frames as u64).min(ring.contiguous_from(self.head));
        if want == 0 {
            return None;
        }
        if self.limit < self.head + want {
            self.limit = self.writable_limit(self.head + want);
        }
        let n = want.min(self.limit - self.head);
        if n == 0 {
            if !self.was_full {
                self.was_full = true;
                // Relaxed: a counter for monitoring.
                ring.full_events.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        self.was_full = false;
        #[cfg(loom)]
        for k in 0..n {
            let position = self.head + k;
            // The producer's write access to the slot starts here.
            ring.shadow[ring.slot_of(position)].with_mut(|p| unsafe { *p = position });
        }
        Some(WriteGrant {
            producer: self,
            len: n as usize,
        })
    }

    /// Like [`grant`](Self::grant), but waits while the ring is full. `None` only for
    /// `max_frames == 0`.
    pub fn grant_blocking(&mut self, max_frames: usize) -> Option<WriteGrant<'_, 'r, 'a, W, C>> {
        if max_frames == 0 {
            return None;
        }
        self.wait_for_room();
        self.grant(max_frames)
    }

    /// Waits until at least one slot is free (moving idle lossy consumers as needed).
    pub fn wait_for_room(&mut self) {
        let target = self.head + 1;
        if self.limit < target {
            // Once the limit reaches `target` it stays there: consumers only move forward.
            let this = &*self;
            this.ring
                .wait
                .wait_while(&|| this.writable_limit(target) < target);
            self.limit = self.writable_limit(target);
        }
    }

    /// The frame shape of the ring's slots.
    pub fn geometry(&self) -> Geometry {
        self.ring.geometry
    }

    /// Frames committed so far.
    pub fn committed(&self) -> u64 {
        self.head
    }

    /// Closes the ring: consumers drain what was committed and then see the end.
    pub fn close(self) {
        drop(self);
    }

    /// The highest position that may be written before `target`'s frames would overwrite a frame
    /// some consumer may still read. Moves idle lossy consumers forward so that `target` fits.
    fn writable_limit(&self, target: u64) -> u64 {
        let ring = self.ring;
        let mut limit = u64::MAX;
        for slot in &ring.consumers {
            // Acquire: the consumer released its position with Release after its last read of
            // the slots below it, so our writes into them happen after those reads.
            let mut cursor = slot.cursor.load(Ordering::Acquire);
            let consumer_limit = loop {
                let position = cursor >> 1;
                let movable = slot.policy == Policy::Lossy && cursor & READING == 0;
                if !movable || position + ring.slots >= target {
                    break position + ring.slots;
                }
                let moved_to = target - ring.slots;
                // AcqRel on success: Acquire for the same reason as the load above; Release so
                // the consumer's next Acquire of its cursor also sees the counters we updated.
                // Acquire on failure: we retry with the consumer's newer cursor.
                match slot.cursor.compare_exchange(
                    cursor,
                    moved_to << 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        // Relaxed: a counter; the cursor CAS above orders the skip itself.
                        slot.dropped
                            .fetch_add(moved_to - position, Ordering::Relaxed);
                        break target;
                    }
                    Err(now) => cursor = now,
                }
            };
            limit = limit.min(consumer_limit);
        }
        limit
    }

    fn commit(&mut self, n: usize) {
        let ring = self.ring;
        self.head += n as u64;
        // Release: publishes the slot contents written under the grant to consumers, who read
        // `head` with Acquire.
        ring.head.store(self.head, Ordering::Release);
        let oldest = ring
            .consumers
            .iter()
            .filter(|c| c.policy == Policy::Lossless)
            // Relaxed: only for the high-water statistic.
            .map(|c| c.cursor.load(Ordering::Relaxed) >> 1)
            .min()
            .unwrap_or(self.head);
        let fill = self.head.saturating_sub(oldest);
        // Relaxed: the producer is the only writer; readers want a monitoring value.
        if fill > ring.high_water.load(Ordering::Relaxed) {
            ring.high_water.store(fill, Ordering::Relaxed);
        }
        ring.wait.notify();
    }
}

impl<W: Wait, const C: usize> Drop for Producer<'_, '_, W, C> {
    fn drop(&mut self) {
        self.ring.close();
    }
}

/// The memory of granted slots, in the layouts of [`Geometry`]: MCA `[frame][chan][bin]`,
/// scalers `[frame][chan][scaler]`, ROI sums `[frame][roi][chan]`.
pub struct SlotParts<'g> {
    pub mca: &'g mut [u32],
    pub scalers: &'g mut [u32],
    pub rois: &'g mut [u64],
    pub meta: &'g mut [FrameMeta],
}

/// Slots lent to the producer. Fill them, then [`commit`](WriteGrant::commit) some or all;
/// dropping the grant commits nothing.
pub struct WriteGrant<'g, 'r, 'a, W: Wait, const C: usize> {
    producer: &'g mut Producer<'r, 'a, W, C>,
    len: usize,
}

impl<W: Wait, const C: usize> WriteGrant<'_, '_, '_, W, C> {
    /// Number of frames granted.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ring position (sequence number) of the first granted frame.
    pub fn first_position(&self) -> u64 {
        self.producer.head
    }

    /// The granted frames' MCA, scaler, ROI-sum and metadata memory, all at once.
    pub fn parts_mut(&mut self) -> SlotParts<'_> {
        let ring = self.producer.ring;
        let g = ring.geometry;
        let r = ring.regions(self.producer.head);
        // SAFETY: the grant covers [head, head + len) within one lap (checked in `grant`) and
        // below the writable limit, so no consumer can read these slots until `commit` publishes
        // them; the `&mut self` borrow makes these the only references.
        unsafe {
            SlotParts {
                mca: core::slice::from_raw_parts_mut(r.mca, self.len * g.mca_words()),
                scalers: core::slice::from_raw_parts_mut(r.scalers, self.len * g.scaler_words()),
                rois: core::slice::from_raw_parts_mut(r.rois, self.len * g.roi_words()),
                meta: core::slice::from_raw_parts_mut(r.meta, self.len),
            }
        }
    }

    /// Publishes the first `n` granted frames to the consumers.
    ///
    /// # Panics
    /// If `n` exceeds the grant: that is a bug in the caller, not a condition of the data.
    pub fn commit(self, n: usize) {
        assert!(
            n <= self.len,
            "commit of {n} frames exceeds the grant of {}",
            self.len
        );
        if n > 0 {
            self.producer.commit(n);
        }
    }
}

/// A reading end.
pub struct Consumer<'r, 'a, W: Wait, const C: usize> {
    ring: &'r FrameRing<'a, W, C>,
    index: usize,
    /// Our position; for a lossy consumer only a hint (the producer may move it).
    position: u64,
    /// Last value of `ring.head` we loaded.
    head_seen: u64,
}

impl<'r, 'a, W: Wait, const C: usize> Consumer<'r, 'a, W, C> {
    pub fn policy(&self) -> Policy {
        self.slot().policy
    }

    fn slot(&self) -> &ConsumerSlot {
        &self.ring.consumers[self.index]
    }

    /// Committed frames this consumer has not read yet.
    pub fn available(&self) -> u64 {
        // Cursor first, with Acquire: if the producer moved this (lossy) consumer, its CAS
        // released after its own `head` store, so the `head` we load next is at least the
        // position we were moved to. The other order can pair a stale head with a fresh
        // position and under-report (found by the loom model).
        let position = self.slot().cursor.load(Ordering::Acquire) >> 1;
        // Acquire: pairs with the producer's Release store of `head`.
        let head = self.ring.head.load(Ordering::Acquire);
        head.saturating_sub(position)
    }

    /// True once the producer has closed the ring and this consumer has seen every frame.
    pub fn is_finished(&self) -> bool {
        self.ring.is_closed() && self.available() == 0
    }

    /// Waits until at least `min_frames` are available or the ring is closed. Returns the
    /// number available (fewer than `min_frames`, possibly 0, only when closed).
    pub fn wait_available(&self, min_frames: u64) -> u64 {
        let min_frames = min_frames.max(1);
        loop {
            self.ring
                .wait
                .wait_while(&|| self.available() < min_frames && !self.ring.is_closed());
            // `closed` before counting: once closed, `head` is final and the count exact.
            let closed = self.ring.is_closed();
            let available = self.available();
            // A lossy consumer can be skipped between the wait and the count; wait again
            // unless the ring is closed.
            if available >= min_frames || closed {
                return available;
            }
        }
    }

    /// Up to `max_frames` contiguous committed frames, or `None` when there are none. Never blocks.
    pub fn read(&mut self, max_frames: usize) -> Option<ReadGrant<'_, 'r, 'a, W, C>> {
        if max_frames == 0 {
            return None;
        }
        match self.slot().policy {
            Policy::Lossless => self.read_lossless(max_frames as u64),
            Policy::Lossy => self.read_lossy(max_frames as u64),
        }
    }

    fn read_lossless(&mut self, max_frames: u64) -> Option<ReadGrant<'_, 'r, 'a, W, C>> {
        if self.head_seen - self.position < max_frames {
            // Acquire: pairs with the producer's Release store of `head`, making the slot
            // contents of all frames below it visible. Reloaded only when the cached value
            // cannot satisfy the request.
            self.head_seen = self.ring.head.load(Ordering::Acquire);
        }
        let n = (self.head_seen - self.position)
            .min(max_frames)
            .min(self.ring.contiguous_from(self.position));
        if n == 0 {
            return None;
        }
        Some(self.grant(n))
    }

    fn read_lossy(&mut self, max_frames: u64) -> Option<ReadGrant<'_, 'r, 'a, W, C>> {
        let slot = &self.ring.consumers[self.index];
        // Acquire (here and on CAS failure): see `available`; the `head` loaded after it is at
        // least the position the producer may have moved us to.
        let mut cursor = slot.cursor.load(Ordering::Acquire);
        loop {
            let position = cursor >> 1;
            // Acquire: as in `read_lossless`.
            let head = self.ring.head.load(Ordering::Acquire);
            if head <= position {
                return None;
            }
            // Acquire on success: as above; the set flag stops the producer from moving us (and
            // writing our slots) until we release.
            match slot.cursor.compare_exchange_weak(
                cursor,
                cursor | READING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.position = position;
                    let n = (head - position)
                        .min(max_frames)
                        .min(self.ring.contiguous_from(position));
                    return Some(self.grant(n));
                }
                Err(now) => cursor = now,
            }
        }
    }

    fn grant(&mut self, n: u64) -> ReadGrant<'_, 'r, 'a, W, C> {
        #[cfg(loom)]
        self.check_shadow(n);
        ReadGrant {
            consumer: self,
            len: n as usize,
            released: false,
        }
    }

    /// Lossy consumers only: drops everything but the newest `keep` committed frames, counting
    /// them as dropped. Returns how many were skipped. A live monitor calls this before reading
    /// the latest frame.
    pub fn skip_to_latest(&mut self, keep: u64) -> u64 {
        let slot = &self.ring.consumers[self.index];
        if slot.policy != Policy::Lossy {
            return 0;
        }
        // Acquire (here and on CAS failure): see `available`.
        let mut cursor = slot.cursor.load(Ordering::Acquire);
        loop {
            let position = cursor >> 1;
            // Acquire: see `read_lossless`.
            let head = self.ring.head.load(Ordering::Acquire);
            let target = head.saturating_sub(keep).max(position);
            if target == position {
                return 0;
            }
            // Release: our earlier reads of the skipped slots happen before the producer reuses
            // them (it loads our cursor with Acquire). The producer may be moving us too: retry.
            match slot.cursor.compare_exchange_weak(
                cursor,
                target << 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    // Relaxed: a counter.
                    slot.dropped.fetch_add(target - position, Ordering::Relaxed);
                    self.position = target;
                    self.ring.wait.notify();
                    return target - position;
                }
                Err(now) => cursor = now,
            }
        }
    }

    fn release(&mut self, n: u64) {
        let slot = &self.ring.consumers[self.index];
        #[cfg(loom)]
        self.check_shadow(n);
        self.position += n;
        // Release: our reads of the released slots happen before the producer's next writes to
        // them (it loads the cursor with Acquire). This also clears the lossy READING flag.
        slot.cursor.store(self.position << 1, Ordering::Release);
        self.ring.wait.notify();
    }

    #[cfg(loom)]
    fn check_shadow(&self, n: u64) {
        for k in 0..n {
            let position = self.position + k;
            self.ring.shadow[self.ring.slot_of(position)].with(|p| {
                let seen = unsafe { *p };
                assert_eq!(
                    seen, position,
                    "slot holds frame {seen}, expected {position}"
                );
            });
        }
    }
}

/// Committed frames lent to a consumer. [`release`](ReadGrant::release) hands slots back;
/// dropping the grant releases nothing (but ends a lossy consumer's read).
pub struct ReadGrant<'g, 'r, 'a, W: Wait, const C: usize> {
    consumer: &'g mut Consumer<'r, 'a, W, C>,
    len: usize,
    released: bool,
}

impl<W: Wait, const C: usize> ReadGrant<'_, '_, '_, W, C> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ring position (sequence number) of the first frame.
    pub fn first_position(&self) -> u64 {
        self.consumer.position
    }

    fn pointers(&self) -> Regions {
        self.consumer.ring.regions(self.consumer.position)
    }

    /// MCA of the granted frames, `[frame][chan][bin]`, contiguous.
    pub fn mca(&self) -> &[u32] {
        let words = self.len * self.consumer.ring.geometry.mca_words();
        // SAFETY: frames [position, position + len) are committed (head was loaded with
        // Acquire) and the producer cannot write them before we release: a lossless cursor
        // bounds its limit, a lossy one carries the READING flag. Shared reads by several
        // consumers are fine.
        unsafe { core::slice::from_raw_parts(self.pointers().mca, words) }
    }

    /// Scalers of the granted frames, `[frame][chan][scaler]`.
    pub fn scalers(&self) -> &[u32] {
        let words = self.len * self.consumer.ring.geometry.scaler_words();
        // SAFETY: as in `mca`.
        unsafe { core::slice::from_raw_parts(self.pointers().scalers, words) }
    }

    /// ROI sums of the granted frames, `[frame][roi][chan]` (empty without ROIs).
    pub fn rois(&self) -> &[u64] {
        let words = self.len * self.consumer.ring.geometry.roi_words();
        // SAFETY: as in `mca`.
        unsafe { core::slice::from_raw_parts(self.pointers().rois, words) }
    }

    /// Metadata of the granted frames.
    pub fn meta(&self) -> &[FrameMeta] {
        // SAFETY: as in `mca`.
        unsafe { core::slice::from_raw_parts(self.pointers().meta, self.len) }
    }

    /// Hands the first `n` frames back to the producer.
    ///
    /// # Panics
    /// If `n` exceeds the grant (a bug in the caller).
    pub fn release(mut self, n: usize) {
        assert!(
            n <= self.len,
            "release of {n} frames exceeds the grant of {}",
            self.len
        );
        self.released = true;
        self.consumer.release(n as u64);
    }
}

impl<W: Wait, const C: usize> Drop for ReadGrant<'_, '_, '_, W, C> {
    fn drop(&mut self) {
        // A lossy consumer must clear its READING flag even when it releases nothing.
        if !self.released && self.consumer.slot().policy == Policy::Lossy {
            self.consumer.release(0);
        }
    }
}
