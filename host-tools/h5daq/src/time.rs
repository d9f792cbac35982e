//! Time for the DAQ writer: an injectable wall clock, UTC calendar arithmetic (no time-zone
//! database: everything is UTC) and the calendar-aligned rollover schedule.
//!
//! Times are `f64` Unix seconds, true UTC (the reference stores local-time-shifted values).

use std::fmt;

use crate::error::ParseError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in Unix seconds. The daemon stamps samples and drives rollover with
/// it; tests inject a [`ManualClock`].
pub trait Clock: Send + Sync {
    /// Current time, Unix seconds (UTC).
    fn now(&self) -> f64;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            // A clock before 1970 is a broken host; report negative time rather than panic.
            Err(e) => -e.duration().as_secs_f64(),
        }
    }
}

/// A clock that only moves when told to: for tests of rollover boundaries.
#[derive(Debug)]
pub struct ManualClock {
    bits: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `t` Unix seconds.
    pub fn new(t: f64) -> Self {
        ManualClock {
            bits: AtomicU64::new(t.to_bits()),
        }
    }
    /// Sets the time.
    pub fn set(&self, t: f64) {
        self.bits.store(t.to_bits(), Ordering::SeqCst);
    }
    /// Moves the time forward by `dt` seconds.
    pub fn advance(&self, dt: f64) {
        self.set(self.now() + dt);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        f64::from_bits(self.bits.load(Ordering::SeqCst))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A broken-down UTC time with millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl UtcTime {
    /// Breaks Unix seconds down, rounding down to the millisecond.
    pub fn from_unix(t: f64) -> Self {
        let ms = (t * 1000.0).floor() as i64;
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod % 3600 / 60) as u32,
            second: (sod % 60) as u32,
            millis,
        }
    }

    /// Unix seconds of this time.
    pub fn to_unix(self) -> f64 {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        secs as f64 + f64::from(self.millis) / 1000.0
    }

    /// `%Y%m%dT%H%M%S.mmmZ`, the reference's file-name stamp.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// ISO 8601, `2026-11-21T18:50:50.612Z`, for logs and attributes.
    pub fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// `%Y%m%dT%H%M%S.mmmZ` of Unix seconds.
pub fn compact_stamp(t: f64) -> String {
    UtcTime::from_unix(t).compact()
}

/// ISO 8601 of Unix seconds.
pub fn iso_stamp(t: f64) -> String {
    UtcTime::from_unix(t).iso()
}

/// Parses a `%Y%m%dT%H%M%S.mmmZ` stamp back to Unix seconds.
pub fn parse_compact_stamp(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { s.get(r)?.parse().ok() };
    let t = UtcTime {
        year: i64::from(num(0..4)?),
        month: num(4..6)?,
        day: num(6..8)?,
        hour: num(9..11)?,
        minute: num(11..13)?,
        second: num(13..15)?,
        millis: num(16..19)?,
    };
    if !(1..=12).contains(&t.month) || !(1..=31).contains(&t.day) || t.hour > 23 {
        return None;
    }
    Some(t.to_unix())
}

/// Calendar unit of a rollover interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Years,
    Months,
    Weeks,
    Days,
    Hours,
    Minutes,
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Years => "years",
            Unit::Months => "months",
            Unit::Weeks => "weeks",
            Unit::Days => "days",
            Unit::Hours => "hours",
            Unit::Minutes => "minutes",
            Unit::Seconds => "seconds",
        }
    }
}

/// A calendar-aligned rollover interval: `count` units; boundaries fall on the unit's calendar
/// boundary (midnight UTC for days, Monday 00:00 UTC for weeks, the 1st for months, 1 January for
/// years, `:00` for hours and minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollover {
    pub count: u32,
    pub unit: Unit,
}

impl fmt::Display for Rollover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.unit.name();
        if self.count == 1 {
            write!(f, "1 {}", &name[..name.len() - 1])
        } else {
            write!(f, "{} {name}", self.count)
        }
    }
}

impl std::str::FromStr for Rollover {
    type Err = ParseError;
    /// Parses `"1 day"`, `"2 hours"`, `"30min"`, `"1 week"`, `"3 months"`, `"1 year"`, `"10 s"`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        let fail = |problem: String| ParseError {
            what: "rollover",
            given: s.to_string(),
            problem,
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let count: u32 = if num.is_empty() {
            1
        } else {
            num.parse()
                .map_err(|_| fail(format!("bad count {num:?}")))?
        };
        if count == 0 {
            return Err(fail("the count must be >= 1".into()));
        }
        let unit = match unit.trim().to_ascii_lowercase().as_str() {
            "y" | "year" | "years" => Unit::Years,
            "mo" | "month" | "months" => Unit::Months,
            "w" | "week" | "weeks" => Unit::Weeks,
            "d" | "day" | "days" => Unit::Days,
            "h" | "hour" | "hours" => Unit::Hours,
            "m" | "min" | "minute" | "minutes" => Unit::Minutes,
            "s" | "sec" | "second" | "seconds" => Unit::Seconds,
            other => {
                return Err(fail(format!(
                    "unknown unit {other:?} (use years, months, weeks, days, hours, minutes or seconds)"
                )))
            }
        };
        Ok(Rollover { count, unit })
    }
}

impl Rollover {
    /// The first boundary strictly after `t`: `t + count units`, rounded down to the unit's
    /// calendar boundary (the reference's alignment rule).
    pub fn next_after(&self, t: f64) -> f64 {
        let n = i64::from(self.count);
        let u = UtcTime::from_unix(t);
        let day = days_from_civil(u.year, u.month, u.day);
        let secs = t.floor() as i64;
        let b = match self.unit {
            Unit::Seconds => (secs + n) as f64,
            Unit::Minutes => ((secs + 60 * n).div_euclid(60) * 60) as f64,
            Unit::Hours => ((secs + 3600 * n).div_euclid(3600) * 3600) as f64,
            Unit::Days => ((day + n) * 86_400) as f64,
            Unit::Weeks => {
                // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7.
                let d = day + 7 * n;
                ((d - (d + 3).rem_euclid(7)) * 86_400) as f64
            }
            Unit::Months => {
                let m0 = u.year * 12 + i64::from(u.month) - 1 + n;
                (days_from_civil(m0.div_euclid(12), (m0.rem_euclid(12) + 1) as u32, 1) * 86_400)
                    as f64
            }
            Unit::Years => (days_from_civil(u.year + n, 1, 1) * 86_400) as f64,
        };
        // A boundary never lies at or before `t` (guards sub-second rounding for Seconds).
        if b <= t {
            b + 1.0
        } else {
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 59, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(compact_stamp(1_795_287_050.612), "20261121T185050.612Z");
        assert_eq!(
            parse_compact_stamp("20261121T185050.612Z"),
            Some(1_795_287_050.612)
        );
    }

    #[test]
    fn rollover_alignment() {
        let t = parse_compact_stamp("20261121T103000.000Z").unwrap();
        let r = |s: &str| s.parse::<Rollover>().unwrap();
        let at = |s: &str| parse_compact_stamp(s).unwrap();
        assert_eq!(r("1 day").next_after(t), at("20261122T000000.000Z"));
        assert_eq!(r("2 hours").next_after(t), at("20261121T120000.000Z"));
        assert_eq!(r("15 min").next_after(t), at("20261121T104500.000Z"));
        // 2026-11-21 is a Saturday; the next Monday is the 23rd.
        assert_eq!(r("1 week").next_after(t), at("20261123T000000.000Z"));
        assert_eq!(r("3 months").next_after(t), at("20270201T000000.000Z"));
        assert_eq!(r("1 year").next_after(t), at("20270101T000000.000Z"));
        let leap = at("20280229T120000.000Z");
        assert_eq!(r("1 day").next_after(leap), at("20280301T000000.000Z"));
        assert!("0 days".parse::<Rollover>().is_err());
        assert!("1 fortnight".parse::<Rollover>().is_err());
    }
}
