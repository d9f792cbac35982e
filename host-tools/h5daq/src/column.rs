//! Typed column storage: the element types a DAQ dataset can hold, and the values a getter returns.

use std::fmt;

use crate::error::ParseError;

/// A value that does not fit a dataset's element type.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// Out of range, not integral for an integer type, or a number for a string dataset.
    #[error("value {value} does not fit {dtype}")]
    Number { value: Scalar, dtype: Dtype },
    /// Text for a numeric dataset.
    #[error("text does not fit {dtype}")]
    Text { dtype: Dtype },
    /// A string longer than a fixed-length string dataset's size (in UTF-8 bytes).
    #[error("a string of {bytes} bytes does not fit {dtype}")]
    TooLong { bytes: usize, dtype: Dtype },
    /// HDF5 strings end at a NUL byte, so one inside would cut the string short.
    #[error("a string with a NUL character does not fit {dtype}")]
    Nul { dtype: Dtype },
}

/// Largest size of a fixed-length string dataset's elements, in bytes.
pub const MAX_FIXED_STR: usize = 1 << 16;

/// Element type of a dataset (numpy names in parentheses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// Fixed-length strings of this many bytes (numpy `S<n>`): UTF-8, padded with NUL bytes.
    FixedStr(usize),
    /// Variable-length UTF-8 strings (h5py's `string_dtype()`, sdaq's `str`).
    Str,
    F64,
    F32,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
}

impl Dtype {
    /// numpy-style name: `float64`, `int32`, `uint8`, ..., `S16`, `str`.
    pub fn name(self) -> String {
        self.to_string()
    }
    /// True for the string types.
    pub fn is_text(self) -> bool {
        matches!(self, Dtype::FixedStr(_) | Dtype::Str)
    }
    /// Whether `s` fits this type: a string type, no NUL (HDF5 strings end there), and for
    /// fixed-length strings at most their size in UTF-8 bytes.
    pub fn check_text(self, s: &str) -> Result<(), ConvertError> {
        match self {
            Dtype::FixedStr(_) | Dtype::Str if s.contains('\0') => {
                Err(ConvertError::Nul { dtype: self })
            }
            Dtype::FixedStr(n) if s.len() > n => Err(ConvertError::TooLong {
                bytes: s.len(),
                dtype: self,
            }),
            Dtype::FixedStr(_) | Dtype::Str => Ok(()),
            _ => Err(ConvertError::Text { dtype: self }),
        }
    }
    /// Bytes per element in the file's chunks (a variable-length string's reference to its
    /// heap object takes 16; the text itself is stored apart).
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::FixedStr(n) => n,
            Dtype::Str => 16,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U64 => "uint64",
            Dtype::U32 => "uint32",
            Dtype::U16 => "uint16",
            Dtype::U8 => "uint8",
            Dtype::FixedStr(n) => return write!(f, "S{n}"),
            Dtype::Str => "str",
        };
        f.write_str(name)
    }
}

impl std::str::FromStr for Dtype {
    type Err = ParseError;
    /// Accepts numpy names (`float32`), short names (`f32`, `i16`, `u8`), `double`/`float`,
    /// `S<n>` (fixed-length strings of n bytes) and `str` (variable-length strings).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if let Some(n) = s.strip_prefix("|S").or_else(|| s.strip_prefix('S')) {
            return match n.parse::<usize>() {
                Ok(n) if (1..=MAX_FIXED_STR).contains(&n) => Ok(Dtype::FixedStr(n)),
                _ => Err(ParseError::unknown(
                    "dtype",
                    s,
                    &format!("S1 to S{MAX_FIXED_STR} (fixed-length strings of that many bytes)"),
                )),
            };
        }
        Ok(match s {
            "str" | "string" => Dtype::Str,
            "f64" | "float64" | "double" | "<f8" => Dtype::F64,
            "f32" | "float32" | "float" | "<f4" => Dtype::F32,
            "i64" | "int64" | "<i8" => Dtype::I64,
            "i32" | "int32" | "<i4" => Dtype::I32,
            "i16" | "int16" | "<i2" => Dtype::I16,
            "i8" | "int8" | "|i1" => Dtype::I8,
            "u64" | "uint64" | "<u8" => Dtype::U64,
            "u32" | "uint32" | "<u4" => Dtype::U32,
            "u16" | "uint16" | "<u2" => Dtype::U16,
            "u8" | "uint8" | "|u1" => Dtype::U8,
            other => {
                return Err(ParseError::unknown(
                    "dtype",
                    other,
                    "float64, float32, int64, int32, int16, int8, uint64, uint32, uint16, uint8, S<bytes> or str",
                ))
            }
        })
    }
}

/// A scalar a getter returns; converted to the dataset's dtype when buffered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Float(f64),
    Int(i64),
    UInt(u64),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Float(v) => write!(f, "{v}"),
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::UInt(v) => write!(f, "{v}"),
        }
    }
}

/// An element type of a [`Column`].
pub trait Elem: Copy + PartialEq + hdf5::H5Type + bytemuck::Pod + Send + 'static {
    /// The dtype of this element type.
    const DTYPE: Dtype;
    /// Converts a scalar, or `None` when the value does not fit (out of range, not integral).
    fn from_scalar(s: Scalar) -> Option<Self>;
    /// The element as a scalar.
    fn to_scalar(self) -> Scalar;
    /// Appends the element's bytes (for equality of rows, bitwise: NaN equals NaN).
    fn push_bytes(self, out: &mut Vec<u8>);
}

macro_rules! float_elem {
    ($t:ty, $d:ident) => {
        impl Elem for $t {
            const DTYPE: Dtype = Dtype::$d;
            fn from_scalar(s: Scalar) -> Option<Self> {
                let x = match s {
                    Scalar::Float(v) => v as $t,
                    Scalar::Int(v) => v as $t,
                    Scalar::UInt(v) => v as $t,
                };
                // A finite value beyond the type's range does not fit (it is not infinity).
                let finite_in = match s {
                    Scalar::Float(v) => v.is_finite(),
                    _ => true,
                };
                (!(finite_in && x.is_infinite())).then_some(x)
            }
            fn to_scalar(self) -> Scalar {
                Scalar::Float(f64::from(self))
            }
            fn push_bytes(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
        }
    };
}
float_elem!(f64, F64);
float_elem!(f32, F32);

macro_rules! int_elem {
    ($t:ty, $d:ident, $scalar:ident, $wide:ty) => {
        impl Elem for $t {
            const DTYPE: Dtype = Dtype::$d;
            fn from_scalar(s: Scalar) -> Option<Self> {
                match s {
                    Scalar::Float(v) => {
                        if v.is_finite()
                            && v.fract() == 0.0
                            && v >= <$t>::MIN as f64
                            && v <= <$t>::MAX as f64
                        {
                            Some(v as $t)
                        } else {
                            None
                        }
                    }
                    Scalar::Int(v) => <$t>::try_from(v).ok(),
                    Scalar::UInt(v) => <$t>::try_from(v).ok(),
                }
            }
            fn to_scalar(self) -> Scalar {
                Scalar::$scalar(<$wide>::from(self))
            }
            fn push_bytes(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
        }
    };
}
int_elem!(i64, I64, Int, i64);
int_elem!(i32, I32, Int, i64);
int_elem!(i16, I16, Int, i64);
int_elem!(i8, I8, Int, i64);
int_elem!(u64, U64, UInt, u64);
int_elem!(u32, U32, UInt, u64);
int_elem!(u16, U16, UInt, u64);
int_elem!(u8, U8, UInt, u64);

/// A typed, growable run of elements: one dataset's buffered rows (flattened, row-major), or
/// one array entry a getter returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    F64(Vec<f64>),
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U64(Vec<u64>),
    U32(Vec<u32>),
    U16(Vec<u16>),
    U8(Vec<u8>),
    /// Fixed-length strings: `size` bytes per element, NUL-padded.
    FixedStr(usize, Vec<u8>),
    /// Variable-length strings.
    Str(Vec<String>),
}

/// Runs `$body` with `$v` bound to the typed vector inside a numeric [`Column`] (by whatever
/// reference `$col` is), or `$text` for a string column (`$t` bound to the column).
macro_rules! with_column {
    ($col:expr, $v:ident => $body:expr, $t:ident => $text:expr) => {
        match $col {
            $t @ ($crate::Column::FixedStr(..) | $crate::Column::Str(_)) => $text,
            $crate::Column::F64($v) => $body,
            $crate::Column::F32($v) => $body,
            $crate::Column::I64($v) => $body,
            $crate::Column::I32($v) => $body,
            $crate::Column::I16($v) => $body,
            $crate::Column::I8($v) => $body,
            $crate::Column::U64($v) => $body,
            $crate::Column::U32($v) => $body,
            $crate::Column::U16($v) => $body,
            $crate::Column::U8($v) => $body,
        }
    };
}
pub(crate) use with_column;

impl Column {
    /// An empty column of `dtype` with room for `capacity` elements.
    pub fn with_capacity(dtype: Dtype, capacity: usize) -> Column {
        match dtype {
            Dtype::F64 => Column::F64(Vec::with_capacity(capacity)),
            Dtype::F32 => Column::F32(Vec::with_capacity(capacity)),
            Dtype::I64 => Column::I64(Vec::with_capacity(capacity)),
            Dtype::I32 => Column::I32(Vec::with_capacity(capacity)),
            Dtype::I16 => Column::I16(Vec::with_capacity(capacity)),
            Dtype::I8 => Column::I8(Vec::with_capacity(capacity)),
            Dtype::U64 => Column::U64(Vec::with_capacity(capacity)),
            Dtype::U32 => Column::U32(Vec::with_capacity(capacity)),
            Dtype::U16 => Column::U16(Vec::with_capacity(capacity)),
            Dtype::U8 => Column::U8(Vec::with_capacity(capacity)),
            Dtype::FixedStr(n) => Column::FixedStr(n, Vec::with_capacity(capacity * n)),
            Dtype::Str => Column::Str(Vec::with_capacity(capacity)),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            Column::F64(_) => Dtype::F64,
            Column::F32(_) => Dtype::F32,
            Column::I64(_) => Dtype::I64,
            Column::I32(_) => Dtype::I32,
            Column::I16(_) => Dtype::I16,
            Column::I8(_) => Dtype::I8,
            Column::U64(_) => Dtype::U64,
            Column::U32(_) => Dtype::U32,
            Column::U16(_) => Dtype::U16,
            Column::U8(_) => Dtype::U8,
            Column::FixedStr(n, _) => Dtype::FixedStr(*n),
            Column::Str(_) => Dtype::Str,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_column!(self, v => v.len(), t => match t {
            Column::FixedStr(n, b) => b.len() / (*n).max(1),
            Column::Str(v) => v.len(),
            _ => 0,
        })
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a scalar (`None` for strings).
    pub fn get(&self, i: usize) -> Option<Scalar> {
        with_column!(self, v => v.get(i).map(|x| x.to_scalar()), _t => None)
    }

    /// Element `i` of a string column as text (a fixed-length string without its padding).
    pub fn text(&self, i: usize) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Column::FixedStr(n, b) => {
                let e = b.get(i * n..(i + 1) * n)?;
                let end = e.iter().position(|&c| c == 0).unwrap_or(e.len());
                Some(String::from_utf8_lossy(&e[..end]))
            }
            Column::Str(v) => v.get(i).map(|s| std::borrow::Cow::Borrowed(s.as_str())),
            _ => None,
        }
    }

    /// Shortens to `len` elements.
    pub fn truncate(&mut self, len: usize) {
        with_column!(self, v => v.truncate(len), t => match t {
            Column::FixedStr(n, b) => b.truncate(len * *n),
            Column::Str(v) => v.truncate(len),
            _ => {}
        })
    }

    /// Removes all elements, keeping the allocation.
    pub fn clear(&mut self) {
        self.truncate(0)
    }

    /// Moves the elements from `at` on into a new column of the same type.
    pub fn split_off(&mut self, at: usize) -> Column {
        match self {
            Column::F64(v) => Column::F64(v.split_off(at)),
            Column::F32(v) => Column::F32(v.split_off(at)),
            Column::I64(v) => Column::I64(v.split_off(at)),
            Column::I32(v) => Column::I32(v.split_off(at)),
            Column::I16(v) => Column::I16(v.split_off(at)),
            Column::I8(v) => Column::I8(v.split_off(at)),
            Column::U64(v) => Column::U64(v.split_off(at)),
            Column::U32(v) => Column::U32(v.split_off(at)),
            Column::U16(v) => Column::U16(v.split_off(at)),
            Column::U8(v) => Column::U8(v.split_off(at)),
            Column::FixedStr(n, b) => Column::FixedStr(*n, b.split_off(at * *n)),
            Column::Str(v) => Column::Str(v.split_off(at)),
        }
    }

    /// Appends a scalar converted to this column's type (a number does not fit a string).
    pub fn push_scalar(&mut self, s: Scalar) -> Result<(), ConvertError> {
        let dtype = self.dtype();
        with_column!(self, v => push_conv(v, s), _t => Err(ConvertError::Number { value: s, dtype }))
    }

    /// Appends a string to a string column: one that is too long for a fixed-length column or
    /// holds a NUL character does not fit, nor does text in a numeric column.
    pub fn push_text(&mut self, s: &str) -> Result<(), ConvertError> {
        self.dtype().check_text(s)?;
        match self {
            Column::FixedStr(n, b) => {
                b.extend_from_slice(s.as_bytes());
                b.resize(b.len() + (*n - s.len()), 0);
                Ok(())
            }
            Column::Str(v) => {
                v.push(s.to_string());
                Ok(())
            }
            // check_text refused text for the numeric types.
            _ => Ok(()),
        }
    }

    /// Appends one entry: a scalar, the elements of an array, or a string.
    pub fn push_entry(&mut self, e: &Entry) -> Result<(), ConvertError> {
        match e {
            Entry::Scalar(s) => self.push_scalar(*s),
            Entry::Array(a) => self.extend_from(a),
            Entry::Text(t) => self.push_text(t),
        }
    }

    /// Appends all elements of `src`, converting element-wise when the types differ.
    /// On a failed conversion nothing is appended.
    pub fn extend_from(&mut self, src: &Column) -> Result<(), ConvertError> {
        let before = self.len();
        let res = match (&mut *self, src) {
            (Column::FixedStr(n, d), Column::FixedStr(m, s)) if n == m => {
                d.extend_from_slice(s);
                Ok(())
            }
            (Column::Str(d), Column::Str(s)) => {
                d.extend_from_slice(s);
                Ok(())
            }
            (dst @ (Column::FixedStr(..) | Column::Str(_)), src) => {
                (0..src.len()).try_for_each(|i| match (src.text(i), src.get(i)) {
                    (Some(t), _) => dst.push_text(&t),
                    (None, Some(value)) => Err(ConvertError::Number {
                        value,
                        dtype: dst.dtype(),
                    }),
                    (None, None) => Ok(()),
                })
            }
            (dst, src) => {
                let dtype = dst.dtype();
                with_column!(dst, d => extend_conv(d, src), _t => Err(ConvertError::Text { dtype }))
            }
        };
        if res.is_err() {
            self.truncate(before);
        }
        res
    }

    /// Appends elements `range` of `src` (same type required; used to split drained rows).
    pub fn extend_range(&mut self, src: &Column, range: std::ops::Range<usize>) {
        macro_rules! arm {
            ($($var:ident),*) => {
                match (self, src) {
                    $((Column::$var(d), Column::$var(s)) => d.extend_from_slice(&s[range]),)*
                    (Column::FixedStr(n, d), Column::FixedStr(m, s)) if n == m => {
                        d.extend_from_slice(&s[range.start * *n..range.end * *n])
                    }
                    (Column::Str(d), Column::Str(s)) => d.extend_from_slice(&s[range]),
                    (d, s) => {
                        // Different types never happen inside one job; convert to stay total.
                        for i in range {
                            if let Some(x) = s.get(i) {
                                let _ = d.push_scalar(x);
                            }
                        }
                    }
                }
            };
        }
        arm!(F64, F32, I64, I32, I16, I8, U64, U32, U16, U8)
    }

    /// Appends the bytes of elements `range` (row equality for de-duplication; a
    /// variable-length string as its length and bytes).
    pub fn row_bytes(&self, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
        match self {
            Column::FixedStr(n, b) => {
                if let Some(s) = b.get(range.start * n..range.end * n) {
                    out.extend_from_slice(s);
                }
            }
            Column::Str(v) => {
                for s in v.get(range).into_iter().flatten() {
                    out.extend_from_slice(&(s.len() as u64).to_ne_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
            numeric => with_column!(numeric, v => {
                if let Some(s) = v.get(range) {
                    for x in s {
                        x.push_bytes(out);
                    }
                }
            }, _t => {}),
        }
    }

    /// Bytes a row range of this column takes in memory and in the file beyond the chunks:
    /// the text of variable-length strings (0 for the other types, whose size is fixed).
    pub fn heap_bytes(&self, range: std::ops::Range<usize>) -> usize {
        match self {
            Column::Str(v) => v.get(range).map_or(0, |s| s.iter().map(String::len).sum()),
            _ => 0,
        }
    }
}

fn push_conv<T: Elem>(v: &mut Vec<T>, s: Scalar) -> Result<(), ConvertError> {
    match T::from_scalar(s) {
        Some(x) => {
            v.push(x);
            Ok(())
        }
        None => Err(ConvertError::Number {
            value: s,
            dtype: T::DTYPE,
        }),
    }
}

fn extend_conv<T: Elem>(dst: &mut Vec<T>, src: &Column) -> Result<(), ConvertError> {
    macro_rules! same {
        ($s:expr) => {{
            // Same element type: a plain copy.
            let any: &dyn std::any::Any = $s;
            if let Some(s) = any.downcast_ref::<Vec<T>>() {
                dst.extend_from_slice(s);
                return Ok(());
            }
            for x in $s.iter() {
                push_conv(dst, x.to_scalar())?;
            }
            Ok(())
        }};
    }
    with_column!(src, s => same!(s), _t => Err(ConvertError::Text { dtype: T::DTYPE }))
}

/// One dataset's entry in a sample: a scalar for scalar datasets, or an array (flattened,
/// row-major, `shape.iter().product()` elements) for datasets with an entry shape.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Scalar(Scalar),
    Array(Column),
    /// A string, for string datasets.
    Text(String),
}

impl From<String> for Entry {
    fn from(v: String) -> Self {
        Entry::Text(v)
    }
}
impl From<&str> for Entry {
    fn from(v: &str) -> Self {
        Entry::Text(v.to_string())
    }
}

impl From<f64> for Entry {
    fn from(v: f64) -> Self {
        Entry::Scalar(Scalar::Float(v))
    }
}
impl From<f32> for Entry {
    fn from(v: f32) -> Self {
        Entry::Scalar(Scalar::Float(f64::from(v)))
    }
}
impl From<i64> for Entry {
    fn from(v: i64) -> Self {
        Entry::Scalar(Scalar::Int(v))
    }
}
impl From<i32> for Entry {
    fn from(v: i32) -> Self {
        Entry::Scalar(Scalar::Int(i64::from(v)))
    }
}
impl From<u64> for Entry {
    fn from(v: u64) -> Self {
        Entry::Scalar(Scalar::UInt(v))
    }
}
impl From<u32> for Entry {
    fn from(v: u32) -> Self {
        Entry::Scalar(Scalar::UInt(u64::from(v)))
    }
}
impl From<Vec<f64>> for Entry {
    fn from(v: Vec<f64>) -> Self {
        Entry::Array(Column::F64(v))
    }
}
impl From<Vec<f32>> for Entry {
    fn from(v: Vec<f32>) -> Self {
        Entry::Array(Column::F32(v))
    }
}
impl From<Vec<i64>> for Entry {
    fn from(v: Vec<i64>) -> Self {
        Entry::Array(Column::I64(v))
    }
}
impl From<Vec<u16>> for Entry {
    fn from(v: Vec<u16>) -> Self {
        Entry::Array(Column::U16(v))
    }
}
impl From<Column> for Entry {
    fn from(v: Column) -> Self {
        Entry::Array(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let mut c = Column::with_capacity(Dtype::U8, 4);
        assert!(c.push_scalar(Scalar::Int(200)).is_ok());
        assert!(c.push_scalar(Scalar::Int(300)).is_err());
        assert!(c.push_scalar(Scalar::Float(1.5)).is_err());
        assert!(c.push_scalar(Scalar::Float(3.0)).is_ok());
        assert_eq!(c, Column::U8(vec![200, 3]));
        let mut f = Column::with_capacity(Dtype::F32, 4);
        f.extend_from(&Column::I64(vec![1, 2])).unwrap();
        f.extend_from(&Column::F32(vec![0.5])).unwrap();
        assert_eq!(f, Column::F32(vec![1.0, 2.0, 0.5]));
        assert!(
            f.push_scalar(Scalar::Float(1e40)).is_err(),
            "beyond float32"
        );
        assert!(f.push_scalar(Scalar::Float(f64::INFINITY)).is_ok());
        assert!(f.push_scalar(Scalar::Float(f64::NAN)).is_ok());
        let mut i = Column::with_capacity(Dtype::I16, 4);
        assert!(i.extend_from(&Column::I64(vec![1, 100_000])).is_err());
        assert!(i.is_empty(), "a failed conversion appends nothing");
    }

    #[test]
    fn strings() {
        assert_eq!("S8".parse::<Dtype>().unwrap(), Dtype::FixedStr(8));
        assert_eq!("|S3".parse::<Dtype>().unwrap(), Dtype::FixedStr(3));
        assert_eq!("str".parse::<Dtype>().unwrap(), Dtype::Str);
        assert!("S0".parse::<Dtype>().is_err());
        assert!("S99999999".parse::<Dtype>().is_err());
        assert_eq!(Dtype::FixedStr(8).to_string(), "S8");
        let mut f = Column::with_capacity(Dtype::FixedStr(4), 2);
        f.push_text("ab").unwrap();
        f.push_text("°C").unwrap();
        assert_eq!(
            f.push_text("abcde"),
            Err(ConvertError::TooLong {
                bytes: 5,
                dtype: Dtype::FixedStr(4)
            })
        );
        assert!(matches!(f.push_text("a\0b"), Err(ConvertError::Nul { .. })));
        assert!(
            f.push_scalar(Scalar::Int(1)).is_err(),
            "a number is not text"
        );
        assert_eq!(f, Column::FixedStr(4, b"ab\0\0\xc2\xb0C\0".to_vec()));
        assert_eq!(f.len(), 2);
        assert_eq!(f.text(1).unwrap(), "°C");
        let mut v = Column::with_capacity(Dtype::Str, 0);
        v.extend_from(&f).unwrap();
        v.push_entry(&Entry::from("a longer one")).unwrap();
        assert_eq!(
            v,
            Column::Str(vec!["ab".into(), "°C".into(), "a longer one".into()])
        );
        assert_eq!(v.heap_bytes(1..3), 3 + 12);
        let mut back = Column::with_capacity(Dtype::FixedStr(4), 0);
        assert!(back.extend_from(&v).is_err(), "12 bytes do not fit S4");
        assert!(back.is_empty(), "nothing appended");
        assert!(back.extend_from(&Column::F64(vec![1.0])).is_err());
        let mut n = Column::with_capacity(Dtype::F64, 0);
        assert_eq!(
            n.push_text("1.5"),
            Err(ConvertError::Text { dtype: Dtype::F64 })
        );
        assert!(n.extend_from(&v).is_err());
        let tail = f.split_off(1);
        assert_eq!(
            (f.len(), tail.text(0).unwrap().into_owned()),
            (1, "°C".to_string())
        );
        let spec = crate::DatasetSpec::scalar("s", Dtype::FixedStr(3)).with_truncate(true);
        assert_eq!(spec.fit_text("a°C"), "a°", "cut at a character boundary");
        assert_eq!(spec.fit_text("ab°"), "ab");
    }
}
