//! Element types of datasets, described the way numpy (through h5py) names them.

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};

/// A numpy-like description of a dataset's element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DType {
    Bool,
    Int(usize),
    UInt(usize),
    Float(usize),
    /// Variable-length string (numpy `object` in h5py).
    VlenStr,
    /// Fixed-length byte string of n bytes (numpy `|Sn`).
    FixedStr(usize),
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
            DType::VlenStr => "object".into(),
            DType::FixedStr(n) => format!("|S{n}"),
            DType::Other(s) => s.clone(),
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
            DType::FixedStr(n) => format!("|S{n}"),
            _ => return None,
        })
    }
    /// Size of one element in bytes for fixed-size numeric types.
    pub fn item_size(&self) -> Option<usize> {
        match self {
            DType::Bool => Some(1),
            DType::Int(n) | DType::UInt(n) | DType::Float(n) | DType::FixedStr(n) => Some(*n),
            _ => None,
        }
    }
    pub fn is_string(&self) -> bool {
        matches!(self, DType::VlenStr | DType::FixedStr(_))
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
            TypeDescriptor::Compound(c) => DType::Other(compound_repr(c)),
            other => DType::Other(format!("{other}")),
        }
    }
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
