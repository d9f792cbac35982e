//! Element types of datasets, described the way numpy (through h5py) names them.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};

/// A numpy-like description of a dataset's element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DType {
    Bool,
    Int(usize),
    UInt(usize),
    Float(usize),
    /// Complex number of n bytes (h5py's compound of floats `r`, `i`).
    Complex(usize),
    /// Variable-length string (numpy `object` in h5py).
    VlenStr,
    /// Fixed-length byte string of n bytes (numpy `|Sn`).
    FixedStr(usize),
    /// A numeric type stored big-endian; reads give native (little-endian) values.
    BigEndian(Box<DType>),
    /// Anything else (compound, arrays, references...), with a description.
    Other(String),
}

impl DType {
    /// The name numpy prints for this dtype (`str(np.dtype)`).
    pub fn numpy_name(&self) -> String {
        match self {
            DType::Bool => "bool".into(),
            DType::Int(n) => format!("int{}", n * 8),
            DType::UInt(n) => format!("uint{}", n * 8),
            DType::Float(n) => format!("float{}", n * 8),
            DType::Complex(n) => format!("complex{}", n * 8),
            DType::VlenStr => "object".into(),
            DType::FixedStr(n) => format!("|S{n}"),
            // numpy names non-native byte orders by their protocol string.
            DType::BigEndian(d) => match d.npy_descr() {
                Some(p) => format!(">{}", &p[1..]),
                None => d.numpy_name(),
            },
            DType::Other(s) => s.clone(),
        }
    }
    /// The type of the values a read gives (big-endian data is converted to native).
    pub fn native(&self) -> &DType {
        match self {
            DType::BigEndian(d) => d,
            d => d,
        }
    }
    /// numpy array-protocol type string for numeric types (`<u2`, `<f4`, `|b1`).
    pub fn npy_descr(&self) -> Option<String> {
        Some(match self {
            DType::Bool => "|b1".into(),
            DType::Int(1) => "|i1".into(),
            DType::UInt(1) => "|u1".into(),
            DType::Int(n) => format!("<i{n}"),
            DType::UInt(n) => format!("<u{n}"),
            DType::Float(n) => format!("<f{n}"),
            DType::Complex(n) => format!("<c{n}"),
            DType::FixedStr(n) => format!("|S{n}"),
            DType::BigEndian(d) => return d.npy_descr(),
            _ => return None,
        })
    }
    /// Size of one element in bytes for fixed-size numeric types.
    pub fn item_size(&self) -> Option<usize> {
        match self {
            DType::Bool => Some(1),
            DType::Int(n)
            | DType::UInt(n)
            | DType::Float(n)
            | DType::Complex(n)
            | DType::FixedStr(n) => Some(*n),
            DType::BigEndian(d) => d.item_size(),
            _ => None,
        }
    }
    pub fn is_string(&self) -> bool {
        matches!(self, DType::VlenStr | DType::FixedStr(_))
    }
    /// The dtype of a dataset as h5py gives it. Types hdf5-metno has no descriptor
    /// for are recognised from their size: float16 and long double (numpy's
    /// `float128`) convert to f64, anything else is opaque bytes (`|Vn`).
    pub(crate) fn of_dataset(ds: &hdf5::Dataset) -> hdf5::Result<DType> {
        let t = ds.dtype()?;
        let d = match t.to_descriptor() {
            Ok(d) => DType::from_descriptor(&d),
            Err(_) => match t.size() {
                n @ (2 | 16) if t.conv_to::<f64>().is_some() => DType::Float(n),
                n => DType::Other(format!("|V{n}")),
            },
        };
        let numeric = matches!(
            d,
            DType::Int(_) | DType::UInt(_) | DType::Float(_) | DType::Complex(_)
        );
        Ok(
            if numeric && t.size() > 1 && t.byte_order() == hdf5::datatype::ByteOrder::BigEndian {
                DType::BigEndian(Box::new(d))
            } else {
                d
            },
        )
    }

    pub(crate) fn from_descriptor(d: &TypeDescriptor) -> DType {
        fn isz(s: &IntSize) -> usize {
            match s {
                IntSize::U1 => 1,
                IntSize::U2 => 2,
                IntSize::U4 => 4,
                IntSize::U8 => 8,
            }
        }
        match d {
            TypeDescriptor::Boolean => DType::Bool,
            TypeDescriptor::Integer(s) => DType::Int(isz(s)),
            TypeDescriptor::Unsigned(s) => DType::UInt(isz(s)),
            TypeDescriptor::Float(FloatSize::U4) => DType::Float(4),
            TypeDescriptor::Float(FloatSize::U8) => DType::Float(8),
            TypeDescriptor::VarLenAscii | TypeDescriptor::VarLenUnicode => DType::VlenStr,
            TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => DType::FixedStr(*n),
            // h5py reads an enum as its base integer type (the names are metadata).
            TypeDescriptor::Enum(e) if e.signed => DType::Int(isz(&e.size)),
            TypeDescriptor::Enum(e) => DType::UInt(isz(&e.size)),
            TypeDescriptor::Compound(c) => match complex_size(c) {
                Some(n) => DType::Complex(n),
                None => DType::Other(compound_repr(c)),
            },
            other => DType::Other(format!("{other}")),
        }
    }
}

/// h5py's complex numbers: a packed compound of two floats named `r` and `i`.
fn complex_size(c: &hdf5::types::CompoundType) -> Option<usize> {
    let [r, i] = c.fields.as_slice() else {
        return None;
    };
    let float = |t: &TypeDescriptor| match t {
        TypeDescriptor::Float(FloatSize::U4) => Some(4),
        TypeDescriptor::Float(FloatSize::U8) => Some(8),
        _ => None,
    };
    let n = float(&r.ty)?;
    (r.name == "r" && i.name == "i" && float(&i.ty) == Some(n) && r.offset == 0 && i.offset == n)
        .then_some(2 * n)
}

/// numpy's protocol string of a field type (`<f8`, `|u1`, `O`, `|S10`).
fn field_descr(t: &TypeDescriptor) -> String {
    match DType::from_descriptor(t) {
        DType::VlenStr => "O".into(),
        DType::Other(s) => s,
        d => d.npy_descr().unwrap_or_else(|| d.numpy_name()),
    }
}

/// `str(np.dtype)` of a structured dtype as h5py builds it: the list form when the
/// fields are packed in order, else the dict form with offsets and itemsize.
fn compound_repr(c: &hdf5::types::CompoundType) -> String {
    let mut fields: Vec<&hdf5::types::CompoundField> = c.fields.iter().collect();
    fields.sort_by_key(|f| f.index);
    let mut packed = true;
    let mut off = 0usize;
    for f in &fields {
        if f.offset != off {
            packed = false;
        }
        off = f.offset + f.ty.size();
    }
    if off != c.size {
        packed = false;
    }
    if packed {
        let parts: Vec<String> = fields
            .iter()
            .map(|f| format!("('{}', '{}')", f.name, field_descr(&f.ty)))
            .collect();
        format!("[{}]", parts.join(", "))
    } else {
        let names: Vec<String> = fields.iter().map(|f| format!("'{}'", f.name)).collect();
        let formats: Vec<String> = fields
            .iter()
            .map(|f| format!("'{}'", field_descr(&f.ty)))
            .collect();
        let offsets: Vec<String> = fields.iter().map(|f| f.offset.to_string()).collect();
        format!(
            "{{'names': [{}], 'formats': [{}], 'offsets': [{}], 'itemsize': {}}}",
            names.join(", "),
            formats.join(", "),
            offsets.join(", "),
            c.size
        )
    }
}
