//! Fill values for missing modules and frames, converted to the data's dtype as
//! `dtype.type(value)` does in NumPy (out-of-range values are refused, not wrapped).

use euxfel::DType;

use crate::error::{Error, Result};

/// A fill value as given by the user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FillValue {
    Int(i128),
    Float(f64),
}

impl std::fmt::Display for FillValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FillValue::Int(v) => write!(f, "{v}"),
            FillValue::Float(v) => write!(f, "{v}"),
        }
    }
}

impl FillValue {
    /// EXtra-data's default: NaN for floats, 0 for integers.
    pub fn default_for(dtype: &DType) -> FillValue {
        match dtype {
            DType::Float(_) => FillValue::Float(f64::NAN),
            _ => FillValue::Int(0),
        }
    }

    /// Parses a number as `extra-data-make-virtual-cxi` does: a float if Python's `float()`
    /// takes it (`1`, `1.5`, `nan`, `1e3`), else an integer with a base prefix (`0xffffffff`,
    /// `0o17`, `0b101`).
    pub fn parse(s: &str) -> Option<FillValue> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let unsigned = lower.trim_start_matches(['+', '-']);
        let float_like = matches!(unsigned, "nan" | "inf" | "infinity")
            || (!unsigned.is_empty()
                && unsigned
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-' | '_'))
                && unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.'));
        if float_like {
            let v = without_digit_separators(&lower, false, |c| c.is_ascii_digit())
                .and_then(|t| t.parse::<f64>().ok());
            if let Some(v) = v {
                return Some(FillValue::Float(v));
            }
        }
        let (neg, body) = match lower.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, lower.strip_prefix('+').unwrap_or(&lower)),
        };
        let (radix, digits) = if let Some(d) = body.strip_prefix("0x") {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o") {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b") {
            (2, d)
        } else {
            return None;
        };
        let digits = without_digit_separators(digits, true, |c| c.is_digit(radix))?;
        let v = i128::from_str_radix(&digits, radix).ok()?;
        Some(FillValue::Int(if neg { -v } else { v }))
    }

    /// The value as one element of `dtype`, little-endian.
    pub fn to_bytes(self, dtype: &DType) -> Result<Vec<u8>> {
        let bad = || Error::FillValue {
            value: self.to_string(),
            dtype: dtype.numpy_name(),
        };
        let int = |lo: i128, hi: i128| -> Result<i128> {
            let v = match self {
                FillValue::Int(v) => v,
                FillValue::Float(f) if f.is_finite() => f.trunc() as i128,
                FillValue::Float(_) => return Err(bad()),
            };
            if v < lo || v > hi {
                return Err(bad());
            }
            Ok(v)
        };
        let float = || match self {
            FillValue::Int(v) => v as f64,
            FillValue::Float(f) => f,
        };
        Ok(match dtype {
            DType::UInt(1) => (int(0, u8::MAX.into())? as u8).to_le_bytes().to_vec(),
            DType::UInt(2) => (int(0, u16::MAX.into())? as u16).to_le_bytes().to_vec(),
            DType::UInt(4) => (int(0, u32::MAX.into())? as u32).to_le_bytes().to_vec(),
            DType::UInt(8) => (int(0, u64::MAX.into())? as u64).to_le_bytes().to_vec(),
            DType::Int(1) => (int(i8::MIN.into(), i8::MAX.into())? as i8)
                .to_le_bytes()
                .to_vec(),
            DType::Int(2) => (int(i16::MIN.into(), i16::MAX.into())? as i16)
                .to_le_bytes()
                .to_vec(),
            DType::Int(4) => (int(i32::MIN.into(), i32::MAX.into())? as i32)
                .to_le_bytes()
                .to_vec(),
            DType::Int(8) => (int(i64::MIN.into(), i64::MAX.into())? as i64)
                .to_le_bytes()
                .to_vec(),
            DType::Float(4) => (float() as f32).to_le_bytes().to_vec(),
            DType::Float(8) => float().to_le_bytes().to_vec(),
            _ => return Err(bad()),
        })
    }
}

/// `s` without the underscores Python's number literals allow (PEP 515): each one between
/// two digits, or with `leading` also first (after an integer's base prefix: `0x_ff`).
fn without_digit_separators(
    s: &str,
    leading: bool,
    digit: impl Fn(char) -> bool,
) -> Option<String> {
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c != '_' {
            continue;
        }
        let before = match i.checked_sub(1) {
            Some(j) => digit(chars[j]),
            None => leading,
        };
        let after = chars.get(i + 1).is_some_and(|&n| digit(n));
        if !before || !after {
            return None;
        }
    }
    Some(chars.into_iter().filter(|&c| c != '_').collect())
}

/// Fills `buf` (a whole number of elements) with copies of one element: the element
/// once, then the filled start copied onward in blocks that stay in the cache.
pub(crate) fn fill_bytes(buf: &mut [u8], elem: &[u8]) {
    if elem.iter().all(|&b| b == 0) {
        buf.fill(0);
        return;
    }
    let e = elem.len();
    let Some(first) = buf.get_mut(..e) else {
        return;
    };
    first.copy_from_slice(elem);
    let block = (64 * 1024 / e).max(1) * e;
    let mut filled = e;
    while filled < buf.len() {
        let k = filled.min(block).min(buf.len() - filled);
        let (done, rest) = buf.split_at_mut(filled);
        rest[..k].copy_from_slice(&done[..k]);
        filled += k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_repeats_the_element_over_any_length() {
        for n in [0, 1, 3, 16_385, 40_000] {
            let mut buf = vec![0u8; n * 4];
            fill_bytes(&mut buf, &[1, 2, 3, 4]);
            assert!(buf.chunks_exact(4).all(|c| c == [1, 2, 3, 4]), "{n}");
        }
        let mut buf = vec![7u8; 10];
        fill_bytes(&mut buf, &[0, 0]);
        assert_eq!(buf, vec![0; 10]);
    }

    #[test]
    fn parse_follows_python_float_then_int_base0() {
        assert_eq!(FillValue::parse("1"), Some(FillValue::Float(1.0)));
        assert_eq!(FillValue::parse("-2.5"), Some(FillValue::Float(-2.5)));
        assert!(matches!(FillValue::parse("nan"), Some(FillValue::Float(f)) if f.is_nan()));
        assert_eq!(
            FillValue::parse("0xffffffff"),
            Some(FillValue::Int(0xffff_ffff))
        );
        assert_eq!(FillValue::parse("0b101"), Some(FillValue::Int(5)));
        assert_eq!(FillValue::parse("abc"), None);
    }

    #[test]
    fn parse_takes_underscores_where_python_does() {
        assert_eq!(FillValue::parse("1_000"), Some(FillValue::Float(1000.0)));
        assert_eq!(
            FillValue::parse("1_0.2_5e1_0"),
            Some(FillValue::Float(10.25e10))
        );
        assert_eq!(FillValue::parse("0x_ff"), Some(FillValue::Int(255)));
        assert_eq!(FillValue::parse("0b1_0"), Some(FillValue::Int(2)));
        for bad in [
            "1__0", "_1", "1_", "1_.5", "1._5", "0xf__f", "0xff_", "0x", "0x__f", "_",
        ] {
            assert_eq!(FillValue::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn conversion_checks_range_and_truncates_floats() {
        assert_eq!(
            FillValue::Float(1.7).to_bytes(&DType::UInt(2)).unwrap(),
            vec![1, 0]
        );
        assert_eq!(
            FillValue::Int(0xffff_ffff)
                .to_bytes(&DType::UInt(4))
                .unwrap(),
            vec![255; 4]
        );
        assert!(FillValue::Int(-1).to_bytes(&DType::UInt(2)).is_err());
        assert!(FillValue::Float(f64::NAN)
            .to_bytes(&DType::UInt(2))
            .is_err());
        let nan = FillValue::default_for(&DType::Float(4))
            .to_bytes(&DType::Float(4))
            .unwrap();
        assert!(f32::from_le_bytes([nan[0], nan[1], nan[2], nan[3]]).is_nan());
    }
}
