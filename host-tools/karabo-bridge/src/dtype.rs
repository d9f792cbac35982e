//! numpy element types as the bridge names them: `str(dtype)` in protocol 2.2 (`uint16`,
//! `float32`, `|S5`, `>u2` for big-endian) and the array-protocol string `dtype.str` in
//! protocol 1.0 (`<u2`, `<f4`, `>u2`).

use std::fmt;

/// The kind of a numpy element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    UInt,
    Float,
    Complex,
    /// Fixed-length byte string (`|Sn`).
    Bytes,
    /// Fixed-length UCS-4 string (`<Un`, 4 bytes per character).
    Unicode,
}

/// A numpy element type with a fixed size: what the bridge can carry as an array. Files and
/// this crate's server are little-endian; a Python server may send big-endian arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtype {
    pub kind: Kind,
    /// Bytes per element.
    pub size: usize,
    pub big_endian: bool,
}

impl Dtype {
    /// A little-endian type.
    pub const fn new(kind: Kind, size: usize) -> Dtype {
        Dtype {
            kind,
            size,
            big_endian: false,
        }
    }

    /// Whether byte order applies (multi-byte numbers and UCS-4 strings).
    fn has_order(&self) -> bool {
        !matches!(self.kind, Kind::Bool | Kind::Bytes) && self.size > 1
    }

    /// `str(np.dtype(...))`: the name protocol 2.2 sends (numpy names big-endian types by
    /// their type string).
    pub fn name(&self) -> String {
        if self.big_endian && self.has_order() {
            return self.descr();
        }
        let bits = self.size * 8;
        match self.kind {
            Kind::Bool => "bool".into(),
            Kind::Int => format!("int{bits}"),
            Kind::UInt => format!("uint{bits}"),
            Kind::Float => format!("float{bits}"),
            Kind::Complex => format!("complex{bits}"),
            Kind::Bytes => format!("|S{}", self.size),
            Kind::Unicode => format!("<U{}", self.size / 4),
        }
    }

    /// `np.dtype(...).str`: the type string protocol 1.0 (msgpack-numpy) sends.
    pub fn descr(&self) -> String {
        let order = match (self.has_order(), self.big_endian) {
            (false, _) => '|',
            (true, false) => '<',
            (true, true) => '>',
        };
        match self.kind {
            Kind::Bool => "|b1".into(),
            Kind::Int => format!("{order}i{}", self.size),
            Kind::UInt => format!("{order}u{}", self.size),
            Kind::Float => format!("{order}f{}", self.size),
            Kind::Complex => format!("{order}c{}", self.size),
            Kind::Bytes => format!("|S{}", self.size),
            Kind::Unicode => format!("{order}U{}", self.size / 4),
        }
    }

    /// Parses a protocol 2.2 name; `None` for types this crate does not carry (objects,
    /// datetimes, structured types, ...).
    pub fn from_name(name: &str) -> Option<Dtype> {
        if name.starts_with('>') {
            return Dtype::from_descr(name);
        }
        let sized = |prefix: &str, kind: Kind, sizes: &[usize]| {
            let bits: usize = name.strip_prefix(prefix)?.parse().ok()?;
            (bits % 8 == 0 && sizes.contains(&(bits / 8))).then(|| Dtype::new(kind, bits / 8))
        };
        if name == "bool" {
            return Some(Dtype::new(Kind::Bool, 1));
        }
        if let Some(n) = name.strip_prefix("|S") {
            return n.parse().ok().map(|n| Dtype::new(Kind::Bytes, n));
        }
        if let Some(n) = name.strip_prefix("<U") {
            let chars: usize = n.parse().ok()?;
            return chars.checked_mul(4).map(|s| Dtype::new(Kind::Unicode, s));
        }
        sized("uint", Kind::UInt, &[1, 2, 4, 8])
            .or_else(|| sized("int", Kind::Int, &[1, 2, 4, 8]))
            .or_else(|| sized("float", Kind::Float, &[2, 4, 8]))
            .or_else(|| sized("complex", Kind::Complex, &[8, 16]))
    }

    /// Parses a protocol 1.0 type string (`<u2`, `|u1`, `|b1`, `|S5`).
    pub fn from_descr(descr: &str) -> Option<Dtype> {
        let mut chars = descr.chars();
        let order = chars.next()?;
        let code = chars.next()?;
        let n: usize = chars.as_str().parse().ok()?;
        let kind = match code {
            'b' => Kind::Bool,
            'i' => Kind::Int,
            'u' => Kind::UInt,
            'f' => Kind::Float,
            'c' => Kind::Complex,
            'S' => Kind::Bytes,
            'U' => Kind::Unicode,
            _ => return None,
        };
        let size = if kind == Kind::Unicode {
            n.checked_mul(4)?
        } else {
            n
        };
        let little = Dtype::new(kind, size);
        // Only the sizes numpy has, and the order numpy writes for them.
        let known = Dtype::from_name(&little.name()) == Some(little);
        let dtype = match (order, little.has_order()) {
            ('<', true) | ('|', false) => little,
            ('>', true) => Dtype {
                big_endian: true,
                ..little
            },
            _ => return None,
        };
        known.then_some(dtype)
    }

    #[cfg(feature = "files")]
    /// The type of an EuXFEL dataset, if the bridge carries it as an array.
    /// Big-endian datasets travel as their native type: the reader converts their values.
    pub fn from_euxfel(d: &euxfel::DType) -> Option<Dtype> {
        use euxfel::DType as D;
        Some(match *d.native() {
            D::Bool => Dtype::new(Kind::Bool, 1),
            D::Int(n) => Dtype::new(Kind::Int, n),
            D::UInt(n) => Dtype::new(Kind::UInt, n),
            D::Float(n) => Dtype::new(Kind::Float, n),
            D::Complex(n) => Dtype::new(Kind::Complex, n),
            D::FixedStr(n) => Dtype::new(Kind::Bytes, n),
            D::VlenStr | D::BigEndian(_) | D::Compound(_) | D::Other(_) => return None,
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A numpy scalar (`np.float32(1.5)`, `np.uint64(7)`): its type and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub dtype: Dtype,
    pub bytes: Vec<u8>,
}

impl Scalar {
    /// `scalar.item()`: the Python value numpy converts it to, as msgpack packs that value.
    /// `None` for complex numbers, which msgpack cannot pack.
    pub fn item(&self) -> Option<rmpv::Value> {
        use rmpv::Value;
        if self.dtype.big_endian && self.dtype.has_order() {
            return Scalar {
                dtype: Dtype::new(self.dtype.kind, self.dtype.size),
                bytes: to_little_endian(self.dtype, &self.bytes),
            }
            .item();
        }
        let b = &self.bytes;
        let word = |n: usize| -> Option<u64> {
            let mut w = [0u8; 8];
            w.get_mut(..n)?.copy_from_slice(b.get(..n)?);
            Some(u64::from_le_bytes(w))
        };
        Some(match self.dtype.kind {
            Kind::Bool => Value::Boolean(*b.first()? != 0),
            Kind::UInt => Value::from(word(self.dtype.size)?),
            Kind::Int => {
                let n = self.dtype.size;
                let shift = 64 - 8 * n as u32;
                // Sign-extend from n bytes.
                Value::from(((word(n)? << shift) as i64) >> shift)
            }
            Kind::Float => Value::F64(match self.dtype.size {
                2 => f16_to_f64(u16::from_le_bytes([*b.first()?, *b.get(1)?])),
                4 => f32::from_le_bytes(b.get(..4)?.try_into().ok()?) as f64,
                8 => f64::from_le_bytes(b.get(..8)?.try_into().ok()?),
                _ => return None,
            }),
            // np.bytes_ is packed as bytes (without its trailing NULs); np.str_ as str.
            Kind::Bytes => {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                Value::Binary(b[..end].to_vec())
            }
            Kind::Unicode => {
                let chars: String = b
                    .chunks_exact(4)
                    .filter_map(|c| char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                Value::from(chars.trim_end_matches('\0'))
            }
            Kind::Complex => return None,
        })
    }
}

/// The elements of `bytes` (of type `dtype`) with their bytes reversed: big-endian to
/// little-endian. Complex numbers swap each half, UCS-4 strings each character.
pub(crate) fn to_little_endian(dtype: Dtype, bytes: &[u8]) -> Vec<u8> {
    let unit = match dtype.kind {
        Kind::Complex => dtype.size / 2,
        Kind::Unicode => 4,
        _ => dtype.size,
    }
    .max(1);
    bytes
        .chunks(unit)
        .flat_map(|c| c.iter().rev().copied())
        .collect()
}

/// IEEE half precision to double.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        0x1f if frac == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e as i32 - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descrs_round_trip() {
        for (name, descr) in [
            ("bool", "|b1"),
            ("int8", "|i1"),
            ("uint8", "|u1"),
            ("int16", "<i2"),
            ("uint64", "<u8"),
            ("float16", "<f2"),
            ("float32", "<f4"),
            ("float64", "<f8"),
            ("complex64", "<c8"),
            ("|S7", "|S7"),
            ("<U3", "<U3"),
        ] {
            let d = Dtype::from_name(name).unwrap();
            assert_eq!(d.name(), name);
            assert_eq!(d.descr(), descr);
            assert_eq!(Dtype::from_descr(descr), Some(d));
        }
        for bad in [
            "uint3", "float128", "object", ">b1", "int", "", "|S", "<Ux", ">u1",
        ] {
            assert_eq!(Dtype::from_name(bad), None, "{bad}");
        }
        for bad in ["<u3", "|u2", "<x4", "<", "O", ">u1", "<b1"] {
            assert_eq!(Dtype::from_descr(bad), None, "{bad}");
        }
        // Big-endian types, which numpy names by their type string.
        for name in [">u2", ">f8", ">i4", ">c16", ">U2"] {
            let d = Dtype::from_name(name).unwrap();
            assert!(d.big_endian);
            assert_eq!((d.name(), d.descr()), (name.to_string(), name.to_string()));
        }
    }

    #[test]
    fn scalars_convert_like_item() {
        let s = |kind, bytes: &[u8]| Scalar {
            dtype: Dtype::new(kind, bytes.len()),
            bytes: bytes.to_vec(),
        };
        assert_eq!(
            s(Kind::Int, &(-3i16).to_le_bytes()).item(),
            Some(rmpv::Value::from(-3))
        );
        assert_eq!(
            s(Kind::UInt, &u64::MAX.to_le_bytes()).item(),
            Some(rmpv::Value::from(u64::MAX))
        );
        assert_eq!(
            s(Kind::Float, &1.5f32.to_le_bytes()).item(),
            Some(rmpv::Value::F64(1.5))
        );
        // float16 1.0 = 0x3c00, -2.0 = 0xc000, smallest subnormal 0x0001.
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(
            s(Kind::Bytes, b"ab\0\0").item(),
            Some(rmpv::Value::Binary(b"ab".to_vec()))
        );
        assert_eq!(s(Kind::Complex, &[0; 8]).item(), None);
        let big = Scalar {
            dtype: Dtype::from_name(">i2").unwrap(),
            bytes: (-3i16).to_be_bytes().to_vec(),
        };
        assert_eq!(big.item(), Some(rmpv::Value::from(-3)));
    }
}
