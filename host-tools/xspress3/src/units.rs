//! Values users type: durations (`1ms`, `250us`, `2s`) and exposure ticks.

use std::time::Duration;

/// A duration a user typed that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration (examples: 1ms, 250us, 2s)")]
    NotANumber(String),
    #[error("`{text}`: unknown unit `{unit}` (use ns, us, ms, s, min)")]
    UnknownUnit { text: String, unit: String },
    #[error("`{0}` is not a non-negative duration")]
    Negative(String),
    #[error("`{0}` is too long")]
    TooLong(String),
}

/// An exposure the detector cannot time.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExposureError {
    #[error("exposure {exposure:?} is shorter than one clock tick ({:.1} ns)", 1e9 / .clock_hz)]
    BelowOneTick { exposure: Duration, clock_hz: f64 },
    #[error(
        "exposure {exposure:?} exceeds the longest frame ({:.1} s at {:.0} Hz)",
        u32::MAX as f64 / .clock_hz,
        .clock_hz
    )]
    AboveLongestFrame { exposure: Duration, clock_hz: f64 },
}

/// Parses `<number><unit>` with unit `ns`, `us`, `ms`, `s` or `min`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| {
            !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+')
        })
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::NotANumber(text.to_string()))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "min" => 60.0,
        other => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            })
        }
    };
    let seconds = value * scale;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(DurationError::Negative(text.to_string()));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| DurationError::TooLong(text.to_string()))
}

/// Exposure in clock ticks, rounded to the nearest tick; at least 1 and at most `u32::MAX`
/// (53.7 s at 80 MHz).
pub fn exposure_ticks(exposure: Duration, clock_hz: f64) -> Result<u32, ExposureError> {
    let ticks = (exposure.as_secs_f64() * clock_hz).round();
    if ticks < 1.0 {
        return Err(ExposureError::BelowOneTick { exposure, clock_hz });
    }
    if ticks > u32::MAX as f64 {
        return Err(ExposureError::AboveLongestFrame { exposure, clock_hz });
    }
    Ok(ticks as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1 parsec").is_err());
        assert!(parse_duration("-1ms").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn exposure_ticks_are_bounded() {
        assert_eq!(exposure_ticks(Duration::from_millis(1), 80e6), Ok(80_000));
        assert!(exposure_ticks(Duration::from_nanos(1), 80e6).is_err());
        assert!(exposure_ticks(Duration::from_secs(60), 80e6).is_err());
        assert_eq!(
            exposure_ticks(Duration::from_secs(53), 80e6),
            Ok(4_240_000_000)
        );
    }
}
