//! Frame geometry and the in-memory layout of one frame.
//!
//! A frame is what the SDK produces for one time frame of all channels:
//! - MCA spectra, `[chan][bin]` u32 (the layout of `xsp3_histogram_read4d` with one aux bin),
//! - scalers, `[chan][scaler]` u32 in SDK order (see [`Scaler`]),
//! - software ROI sums, `[roi][chan]` u64, summed from the full spectrum while it was read,
//! - a [`FrameMeta`] record stamped by the engine.
//!
//! Every part is plain old data, so it can be written to a file or a socket as bytes without a copy.

use bytemuck::{Pod, Zeroable};

/// Number of scalers the SDK reports per channel and frame.
pub const N_SCALERS: usize = 9;
/// Largest channel count the SDK supports (16 cards of 16 channels).
pub const MAX_CHANNELS: u16 = 256;
/// Largest spectrum length (12-bit energy).
pub const MAX_BINS: u16 = 4096;
/// Largest number of software ROIs a frame carries (their sums have a fixed area per slot).
pub const MAX_ROIS: u16 = 32;

/// The nine per-channel scalers, in the order the SDK's `xsp3_scaler_read` returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Scaler {
    /// Live time of the frame, in clock ticks (80 MHz on Xspress3).
    Time = 0,
    /// Ticks spent in detector reset.
    ResetTicks = 1,
    /// Number of resets.
    ResetCount = 2,
    /// All event triggers (input count).
    AllEvent = 3,
    /// Events above the good-event threshold.
    AllGood = 4,
    /// Events inside window 0.
    InWindow0 = 5,
    /// Events inside window 1.
    InWindow1 = 6,
    /// Events flagged as pile-up.
    PileUp = 7,
    /// Total exposure ticks, even when packets were dropped.
    TotalTicks = 8,
}

impl Scaler {
    /// All scalers in SDK order.
    pub const ALL: [Scaler; N_SCALERS] = [
        Scaler::Time,
        Scaler::ResetTicks,
        Scaler::ResetCount,
        Scaler::AllEvent,
        Scaler::AllGood,
        Scaler::InWindow0,
        Scaler::InWindow1,
        Scaler::PileUp,
        Scaler::TotalTicks,
    ];

    /// The dataset / wire name of this scaler (snake case, as in the HDF5 layout).
    pub const fn name(self) -> &'static str {
        match self {
            Scaler::Time => "time",
            Scaler::ResetTicks => "reset_ticks",
            Scaler::ResetCount => "reset_count",
            Scaler::AllEvent => "all_events",
            Scaler::AllGood => "all_good",
            Scaler::InWindow0 => "in_window_0",
            Scaler::InWindow1 => "in_window_1",
            Scaler::PileUp => "pileup",
            Scaler::TotalTicks => "total_ticks",
        }
    }
}

/// Shape of one frame. Construct with [`Geometry::new`], which validates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    n_channels: u16,
    n_bins: u16,
    n_rois: u16,
}

/// A geometry outside the SDK's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// `n_channels` not in `1..=256`.
    Channels(u32),
    /// `n_bins` not in `1..=4096`.
    Bins(u32),
    /// More than [`MAX_ROIS`] software ROIs.
    Rois(u32),
}

impl core::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GeometryError::Channels(n) => {
                write!(f, "channel count {n} is outside 1..={MAX_CHANNELS}")
            }
            GeometryError::Bins(n) => write!(f, "bin count {n} is outside 1..={MAX_BINS}"),
            GeometryError::Rois(n) => write!(f, "{n} ROIs: at most {MAX_ROIS} are supported"),
        }
    }
}

impl Geometry {
    /// Validates `n_channels` in `1..=256` and `n_bins` in `1..=4096`; no ROIs.
    pub const fn new(n_channels: u32, n_bins: u32) -> Result<Self, GeometryError> {
        if n_channels == 0 || n_channels > MAX_CHANNELS as u32 {
            return Err(GeometryError::Channels(n_channels));
        }
        if n_bins == 0 || n_bins > MAX_BINS as u32 {
            return Err(GeometryError::Bins(n_bins));
        }
        Ok(Geometry {
            n_channels: n_channels as u16,
            n_bins: n_bins as u16,
            n_rois: 0,
        })
    }

    /// The same frames with the sums of `n_rois` software ROIs (at most [`MAX_ROIS`]).
    pub const fn with_rois(self, n_rois: u32) -> Result<Self, GeometryError> {
        if n_rois > MAX_ROIS as u32 {
            return Err(GeometryError::Rois(n_rois));
        }
        Ok(Geometry {
            n_rois: n_rois as u16,
            ..self
        })
    }

    pub const fn n_channels(&self) -> usize {
        self.n_channels as usize
    }

    pub const fn n_bins(&self) -> usize {
        self.n_bins as usize
    }

    pub const fn n_scalers(&self) -> usize {
        N_SCALERS
    }

    pub const fn n_rois(&self) -> usize {
        self.n_rois as usize
    }

    /// u32 words of MCA data in one frame (`n_channels * n_bins`).
    pub const fn mca_words(&self) -> usize {
        self.n_channels() * self.n_bins()
    }

    /// u32 words of scaler data in one frame (`n_channels * 9`).
    pub const fn scaler_words(&self) -> usize {
        self.n_channels() * N_SCALERS
    }

    /// u64 words of ROI sums in one frame (`n_rois * n_channels`).
    pub const fn roi_words(&self) -> usize {
        self.n_rois() * self.n_channels()
    }

    /// Bytes of MCA plus scaler data in one frame.
    pub const fn frame_bytes(&self) -> usize {
        (self.mca_words() + self.scaler_words()) * 4
    }
}

/// Per-frame metadata stamped by the acquisition engine. 24 bytes, no padding, little-endian on
/// the wire and in files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct FrameMeta {
    /// The SDK's 64-bit extended frame number (0-based since arm).
    pub frame_number: u64,
    /// When the engine read the frame out of the SDK, in ns from the caller's clock.
    pub timestamp_ns: u64,
    /// `FrameMeta::LOST_BEFORE` and friends.
    pub flags: u32,
    /// The SDK's error flags (`Xsp3ErrFlag` bits) seen by the poll that found this frame.
    pub sdk_err_flags: u32,
}

impl FrameMeta {
    /// One or more frames immediately before this one were lost (see the engine's lost ranges).
    pub const LOST_BEFORE: u32 = 1 << 0;
    /// The SDK reported a circular-buffer overrun while this frame was being read.
    pub const SDK_OVERRUN: u32 = 1 << 1;
    /// The last frame of the acquisition.
    pub const LAST: u32 = 1 << 2;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_limits_are_enforced() {
        assert_eq!(Geometry::new(0, 4096), Err(GeometryError::Channels(0)));
        assert_eq!(Geometry::new(257, 4096), Err(GeometryError::Channels(257)));
        assert_eq!(Geometry::new(4, 0), Err(GeometryError::Bins(0)));
        assert_eq!(Geometry::new(4, 4097), Err(GeometryError::Bins(4097)));
        let g = Geometry::new(256, 4096).unwrap();
        assert_eq!(g.mca_words(), 256 * 4096);
        assert_eq!(g.scaler_words(), 256 * 9);
        assert_eq!(g.frame_bytes(), (256 * 4096 + 256 * 9) * 4);
        assert_eq!(g.roi_words(), 0);
        let r = g.with_rois(MAX_ROIS as u32).unwrap();
        assert_eq!((r.n_rois(), r.roi_words()), (32, 32 * 256));
        assert_eq!(g.with_rois(33), Err(GeometryError::Rois(33)));
    }

    #[test]
    fn frame_meta_is_24_plain_bytes() {
        assert_eq!(core::mem::size_of::<FrameMeta>(), 24);
        let m = FrameMeta {
            frame_number: 0x0102_0304_0506_0708,
            timestamp_ns: 9,
            flags: FrameMeta::LOST_BEFORE,
            sdk_err_flags: 0x10000,
        };
        let bytes = bytemuck::bytes_of(&m);
        assert_eq!(&bytes[..8], &0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(bytemuck::pod_read_unaligned::<FrameMeta>(bytes), m);
    }

    #[test]
    fn scaler_names_follow_sdk_order() {
        for (i, s) in Scaler::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        assert_eq!(Scaler::ALL[8].name(), "total_ticks");
    }
}
