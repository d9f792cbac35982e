//! What NeXus tools (nexusformat, silx, NeXpy) need beyond the raw datasets: the `default` path
//! from the file down to an `NXdata` group with a `signal` and its axes, units, and the entry's
//! start and end times, as the NeXus base classes (NXroot, NXentry, NXdata, NXdetector) define
//! them.

use std::time::{SystemTime, UNIX_EPOCH};

use acq_core::geometry::Scaler;
use hdf5::types::VarLenUnicode;
use hdf5::{File, Group, Location};

use super::layout;
use h5util::attrs::{set_scalar, set_str};

/// `t` as an ISO 8601 UTC date and time with microseconds (NX_DATE_TIME), e.g.
/// `2026-11-30T14:05:09.123456Z`.
pub fn iso8601_utc(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// The unit of a clock-tick count: one clock period, e.g. `12.5 ns` at 80 MHz (a scaled unit
/// UDUNITS and pint read).
pub fn tick_units(clock_hz: f64) -> String {
    format!("{} ns", 1e9 / clock_hz)
}

/// The units of a scaler's counts.
pub fn scaler_units(scaler: Scaler, clock_hz: f64) -> String {
    match scaler {
        Scaler::Time | Scaler::ResetTicks | Scaler::TotalTicks => tick_units(clock_hz),
        _ => "counts".to_string(),
    }
}

fn set_str_array(loc: &Location, name: &str, values: &[&str]) -> hdf5::Result<()> {
    let values = values
        .iter()
        .map(|v| v.parse::<VarLenUnicode>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| hdf5::Error::from(format!("attribute {name}: {e}")))?;
    loc.new_attr::<VarLenUnicode>()
        .shape(values.len())
        .create(name)?
        .write_raw(&values)
}

/// The `default` attributes of the file and the entry, the entry's start time, and the NXdata
/// group: `data` (the signal) and `frame_number` linked from the detector group, with `channel`
/// and `bin` axes. `bins` are the detector's bin numbers of the spectrum's bins.
pub fn write_plottable(
    file: &File,
    entry: &Group,
    n_channels: usize,
    bins: &[u32],
    start: SystemTime,
) -> hdf5::Result<()> {
    set_str(file, "default", layout::ENTRY)?;
    set_str(entry, "default", layout::NXDATA_NAME)?;
    set_time(entry, layout::START_TIME, start)?;
    let data = file.create_group(layout::NXDATA)?;
    set_str(&data, "NX_class", "NXdata")?;
    set_str(&data, "signal", layout::DATA)?;
    set_str_array(
        &data,
        "axes",
        &[layout::FRAME_NUMBER, layout::CHANNEL, layout::BIN],
    )?;
    set_scalar(&data, "frame_number_indices", 0u32)?;
    set_scalar(&data, "channel_indices", 1u32)?;
    set_scalar(&data, "bin_indices", 2u32)?;
    let detector = format!("/{}", layout::DETECTOR);
    data.link_hard(&format!("{detector}/{}", layout::DATA), layout::DATA)?;
    data.link_hard(
        &format!("{detector}/{}", layout::FRAME_NUMBER),
        layout::FRAME_NUMBER,
    )?;
    let channels: Vec<u32> = (0..n_channels as u32).collect();
    let channel = data
        .new_dataset_builder()
        .with_data(&channels)
        .create(layout::CHANNEL)?;
    set_str(&channel, "long_name", "detector channel")?;
    let bin = data
        .new_dataset_builder()
        .with_data(bins)
        .create(layout::BIN)?;
    set_str(&bin, "long_name", "energy bin")?;
    Ok(())
}

/// A scalar NX_DATE_TIME field of `group`; replaces an earlier one.
pub fn set_time(group: &Group, name: &str, t: SystemTime) -> hdf5::Result<()> {
    if group.link_exists(name) {
        group.unlink(name)?;
    }
    let text = iso8601_utc(t)
        .parse::<VarLenUnicode>()
        .map_err(|e| hdf5::Error::from(format!("{name}: {e}")))?;
    group
        .new_dataset::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso8601_dates() {
        let at = |s: u64, us: u32| {
            iso8601_utc(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us.into()))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_709_251_199, 999_999), "2024-02-29T23:59:59.999999Z");
        assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
    }

    #[test]
    fn tick_units_are_the_clock_period() {
        assert_eq!(tick_units(80e6), "12.5 ns");
        assert_eq!(scaler_units(Scaler::AllGood, 80e6), "counts");
        assert_eq!(scaler_units(Scaler::TotalTicks, 80e6), "12.5 ns");
    }
}
