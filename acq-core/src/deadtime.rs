//! Dead-time correction and count rates from the nine scalers (see [`Scaler`]).
//!
//! Units: `Time`, `ResetTicks` and `TotalTicks` are clock ticks (12.5 ns at 80 MHz); `AllEvent`
//! and `AllGood` are counts; the event width is in clock ticks (calibrated per channel, about 4 to
//! 12). The event-width model used by EPICS, LImA and MAX IV, on QD's advice:
//!
//! ```text
//! dead_ticks   = AllEvent * (EventWidth + 1) + ResetTicks          [ticks]
//! correction   = Time / (Time - dead_ticks)                        [dimensionless, >= 1]
//! dead_percent = 100 * dead_ticks / Time                           [%]
//! output rate  = AllGood * clock_hz / TotalTicks                   [counts/s]
//! ```
//!
//! When `Time <= dead_ticks` the channel was dead for the whole frame (saturated, or the scalers
//! are inconsistent) and no finite correction exists: that is reported as
//! [`DeadTimeError::Saturated`], never as a silent infinity or NaN. MAX IV's streamer divides the
//! output rate by the clock instead of multiplying; this module does not copy that.

use crate::geometry::{Scaler, N_SCALERS};

/// Dead time of one channel in one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeadTime {
    pub dead_ticks: u64,
    /// Multiply measured counts by this to correct them.
    pub correction: f64,
    pub dead_percent: f64,
}

/// Why no finite correction exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadTimeError {
    /// `time <= dead_ticks`: dead for the whole frame.
    Saturated { dead_ticks: u64, time: u32 },
}

/// `AllEvent * (event_width + 1) + ResetTicks`, in clock ticks.
pub fn dead_ticks(all_event: u32, event_width: u32, reset_ticks: u32) -> u64 {
    all_event as u64 * (event_width as u64 + 1) + reset_ticks as u64
}

/// Dead time of one channel from its nine scalers (SDK order) and its event width.
pub fn dead_time(scalers: &[u32; N_SCALERS], event_width: u32) -> Result<DeadTime, DeadTimeError> {
    let time = scalers[Scaler::Time as usize];
    let dead = dead_ticks(
        scalers[Scaler::AllEvent as usize],
        event_width,
        scalers[Scaler::ResetTicks as usize],
    );
    if time as u64 <= dead {
        return Err(DeadTimeError::Saturated {
            dead_ticks: dead,
            time,
        });
    }
    let live = time as u64 - dead;
    Ok(DeadTime {
        dead_ticks: dead,
        correction: time as f64 / live as f64,
        dead_percent: 100.0 * dead as f64 / time as f64,
    })
}

/// `AllGood * clock_hz / TotalTicks` in counts per second; `None` for a frame of 0 ticks.
pub fn output_count_rate(scalers: &[u32; N_SCALERS], clock_hz: f64) -> Option<f64> {
    let total = scalers[Scaler::TotalTicks as usize];
    (total > 0).then(|| scalers[Scaler::AllGood as usize] as f64 * clock_hz / total as f64)
}

/// `AllEvent * clock_hz / Time` in counts per second (the measured input rate, before
/// correction); `None` for a frame of 0 live ticks.
pub fn input_count_rate(scalers: &[u32; N_SCALERS], clock_hz: f64) -> Option<f64> {
    let time = scalers[Scaler::Time as usize];
    (time > 0).then(|| scalers[Scaler::AllEvent as usize] as f64 * clock_hz / time as f64)
}

/// The nine scalers of channel `chan` in a frame's `[chan][scaler]` block, or `None` when the
/// block is too short.
pub fn channel_scalers(frame_scalers: &[u32], chan: usize) -> Option<&[u32; N_SCALERS]> {
    frame_scalers
        .get(chan * N_SCALERS..(chan + 1) * N_SCALERS)
        .and_then(|s| s.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalers(time: u32, reset_ticks: u32, all_event: u32, all_good: u32, total: u32) -> [u32; 9] {
        [time, reset_ticks, 3, all_event, all_good, 0, 0, 0, total]
    }

    #[test]
    fn correction_follows_the_event_width_model() {
        // 1 ms at 80 MHz = 80_000 ticks; 1000 events of width 5 (+1) = 6000 ticks; 2000 reset.
        let s = scalers(80_000, 2_000, 1_000, 900, 80_000);
        let dt = dead_time(&s, 5).unwrap();
        assert_eq!(dt.dead_ticks, 8_000);
        assert!((dt.correction - 80_000.0 / 72_000.0).abs() < 1e-15);
        assert!((dt.dead_percent - 10.0).abs() < 1e-12);
    }

    #[test]
    fn zero_dead_time_gives_unit_correction() {
        let dt = dead_time(&scalers(80_000, 0, 0, 0, 80_000), 7).unwrap();
        assert_eq!(dt.correction, 1.0);
        assert_eq!(dt.dead_percent, 0.0);
    }

    #[test]
    fn saturated_channel_is_an_error_not_infinity() {
        // dead == time exactly.
        let s = scalers(8_000, 2_000, 1_000, 0, 8_000);
        assert_eq!(
            dead_time(&s, 5),
            Err(DeadTimeError::Saturated {
                dead_ticks: 8_000,
                time: 8_000
            })
        );
        // More dead than live, and no time at all.
        assert!(dead_time(&scalers(100, 2_000, 1_000, 0, 100), 5).is_err());
        assert!(dead_time(&scalers(0, 0, 0, 0, 0), 5).is_err());
    }

    #[test]
    fn dead_ticks_do_not_overflow_u32() {
        assert_eq!(dead_ticks(u32::MAX, 12, u32::MAX), u32::MAX as u64 * 14);
    }

    #[test]
    fn output_rate_multiplies_by_the_clock() {
        // 100_000 good counts in 0.1 s (8_000_000 ticks) = 1e6 counts/s.
        let s = scalers(8_000_000, 0, 120_000, 100_000, 8_000_000);
        let ocr = output_count_rate(&s, 80e6).unwrap();
        assert!((ocr - 1.0e6).abs() < 1e-6, "{ocr}");
        let icr = input_count_rate(&s, 80e6).unwrap();
        assert!((icr - 1.2e6).abs() < 1e-6, "{icr}");
        assert_eq!(output_count_rate(&scalers(0, 0, 0, 5, 0), 80e6), None);
    }

    #[test]
    fn channel_scalers_slices_the_frame_block() {
        let block: [u32; 18] = core::array::from_fn(|i| i as u32);
        assert_eq!(channel_scalers(&block, 1).unwrap()[0], 9);
        assert!(channel_scalers(&block, 2).is_none());
    }
}
