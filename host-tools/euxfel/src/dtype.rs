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
    /// A compound that is not h5py's complex: numpy's structured dtype, as h5py
    /// builds it (the file's member offsets and size, members in native byte order).
    Compound(Compound),
    /// Anything else (arrays, references, opaque...), with a description.
    Other(String),
}

/// The fields of a structured element, in the file's member order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compound {
    /// Bytes per element (numpy's `itemsize`), padding included.
    pub size: usize,
    pub fields: Vec<CompoundField>,
}

/// One field of a [`Compound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompoundField {
    pub name: String,
    /// Byte offset in the element.
    pub offset: usize,
    pub dtype: DType,
    /// Shape of an array field (`[]` for a scalar field).
    pub shape: Vec<usize>,
}

impl CompoundField {
    /// Bytes the field takes, or `None` for variable-size members.
    fn size(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(self.dtype.item_size()?, |a, &d| a.checked_mul(d))
    }
}

impl Compound {
    /// numpy's protocol form for an `.npy` header: a list of `(name, format[, shape])`
    /// with `('', '|Vn')` padding where the fields leave gaps, which `numpy.load` turns
    /// back into the same offsets and itemsize. `None` if a field has no fixed-size
    /// format or the fields are not in increasing, non-overlapping order.
    fn npy_descr(&self) -> Option<String> {
        let mut parts = Vec::with_capacity(self.fields.len());
        let mut at = 0usize;
        for f in &self.fields {
            if f.offset < at {
                return None;
            }
            if f.offset > at {
                parts.push(format!("('', '|V{}')", f.offset - at));
            }
            let descr = f.dtype.npy_descr()?;
            parts.push(field_entry(&f.name, &descr, &f.shape));
            at = f.offset.checked_add(f.size()?)?;
        }
        if at > self.size {
            return None;
        }
        if at < self.size {
            parts.push(format!("('', '|V{}')", self.size - at));
        }
        Some(format!("[{}]", parts.join(", ")))
    }

    /// `str(np.dtype)` of the structured dtype h5py builds: the list form when the
    /// fields are packed in order, else the dict form with offsets and itemsize.
    fn numpy_name(&self) -> String {
        let mut packed = true;
        let mut at = 0usize;
        for f in &self.fields {
            if f.offset != at {
                packed = false;
            }
            at = f.offset.saturating_add(f.size().unwrap_or(usize::MAX));
        }
        if packed && at == self.size {
            let parts: Vec<String> = self
                .fields
                .iter()
                .map(|f| field_entry(&f.name, &field_format(&f.dtype), &f.shape))
                .collect();
            format!("[{}]", parts.join(", "))
        } else {
            let names: Vec<String> = self
                .fields
                .iter()
                .map(|f| format!("'{}'", f.name))
                .collect();
            let formats: Vec<String> = self
                .fields
                .iter()
                .map(|f| match f.shape.as_slice() {
                    [] => quoted(&field_format(&f.dtype)),
                    s => format!("({}, {})", quoted(&field_format(&f.dtype)), tuple_repr(s)),
                })
                .collect();
            let offsets: Vec<String> = self.fields.iter().map(|f| f.offset.to_string()).collect();
            format!(
                "{{'names': [{}], 'formats': [{}], 'offsets': [{}], 'itemsize': {}}}",
                names.join(", "),
                formats.join(", "),
                offsets.join(", "),
                self.size
            )
        }
    }
}

/// A field as numpy writes it in a list-form dtype: `('x', '<f8')`, `('a', '<u1', (3,))`,
/// `('inner', [...])` (nested structures are not quoted).
fn field_entry(name: &str, format: &str, shape: &[usize]) -> String {
    let format = quoted(format);
    match shape {
        [] => format!("('{name}', {format})"),
        s => format!("('{name}', {format}, {})", tuple_repr(s)),
    }
}

fn quoted(format: &str) -> String {
    if format.starts_with('[') || format.starts_with('{') {
        format.to_string()
    } else {
        format!("'{format}'")
    }
}

/// Python's repr of a tuple of sizes: `(3,)`, `(2, 4)`.
fn tuple_repr(s: &[usize]) -> String {
    match s {
        [d] => format!("({d},)"),
        s => format!(
            "({})",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
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
            DType::Compound(c) => c.numpy_name(),
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
    /// numpy array-protocol type string for numeric types (`<u2`, `<f4`, `|b1`), and
    /// the list form of structured types, as an `.npy` header's `descr` holds them.
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
            DType::Compound(c) => return c.npy_descr(),
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
            DType::Compound(c) => c
                .fields
                .iter()
                .all(|f| f.size().is_some())
                .then_some(c.size),
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
                None => DType::Compound(compound_of(c)),
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

/// A field's format inside a dtype's name as numpy prints it: `<f8`, `u1`, `?`, `O`,
/// `S10`, or a nested structure (no `|` for types without a byte order).
fn field_format(d: &DType) -> String {
    match d {
        DType::Bool => "?".into(),
        DType::VlenStr => "O".into(),
        DType::Compound(c) => c.numpy_name(),
        DType::Other(s) => s.trim_start_matches('|').to_string(),
        d => {
            let f = d.npy_descr().unwrap_or_else(|| d.numpy_name());
            f.trim_start_matches('|').to_string()
        }
    }
}

/// The structured dtype of an HDF5 compound, fields in the file's member order; array
/// members become fields with a shape.
fn compound_of(c: &hdf5::types::CompoundType) -> Compound {
    let mut members: Vec<&hdf5::types::CompoundField> = c.fields.iter().collect();
    members.sort_by_key(|f| f.index);
    let fields = members
        .into_iter()
        .map(|f| {
            let mut ty = &f.ty;
            let mut shape = Vec::new();
            while let TypeDescriptor::FixedArray(base, n) = ty {
                shape.push(*n);
                ty = base;
            }
            CompoundField {
                name: f.name.clone(),
                offset: f.offset,
                dtype: DType::from_descriptor(ty),
                shape,
            }
        })
        .collect();
    Compound {
        size: c.size,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::{Compound, CompoundField, DType};

    fn field(name: &str, offset: usize, dtype: DType, shape: &[usize]) -> CompoundField {
        CompoundField {
            name: name.into(),
            offset,
            dtype,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn packed_compound_is_named_and_described_as_a_list() {
        let c = DType::Compound(Compound {
            size: 28,
            fields: vec![
                field("x", 0, DType::Float(8), &[]),
                field("y", 8, DType::Float(8), &[]),
                field("t", 16, DType::Float(8), &[]),
                field("m", 24, DType::Int(4), &[]),
            ],
        });
        let list = "[('x', '<f8'), ('y', '<f8'), ('t', '<f8'), ('m', '<i4')]";
        assert_eq!(c.numpy_name(), list);
        assert_eq!(c.npy_descr().as_deref(), Some(list));
        assert_eq!(c.item_size(), Some(28));
    }

    #[test]
    fn gaps_become_padding_fields_and_the_name_takes_the_dict_form() {
        let inner = DType::Compound(Compound {
            size: 2,
            fields: vec![
                field("ok", 0, DType::Bool, &[]),
                field("n", 1, DType::UInt(1), &[]),
            ],
        });
        let c = DType::Compound(Compound {
            size: 24,
            fields: vec![
                field("a", 0, DType::BigEndian(Box::new(DType::Int(2))), &[]),
                field("b", 8, DType::Float(8), &[]),
                field("c", 16, DType::UInt(1), &[3]),
                field("d", 19, inner, &[]),
            ],
        });
        assert_eq!(
            c.npy_descr().as_deref(),
            Some(
                "[('a', '<i2'), ('', '|V6'), ('b', '<f8'), ('c', '|u1', (3,)), \
                 ('d', [('ok', '|b1'), ('n', '|u1')]), ('', '|V3')]"
            )
        );
        assert_eq!(
            c.numpy_name(),
            "{'names': ['a', 'b', 'c', 'd'], 'formats': ['<i2', '<f8', ('u1', (3,)), \
             [('ok', '?'), ('n', 'u1')]], 'offsets': [0, 8, 16, 19], 'itemsize': 24}"
        );
    }

    #[test]
    fn compounds_without_a_fixed_layout_cannot_be_written() {
        let vlen = DType::Compound(Compound {
            size: 24,
            fields: vec![field("s", 0, DType::VlenStr, &[])],
        });
        assert_eq!(vlen.item_size(), None);
        assert_eq!(vlen.npy_descr(), None);
        let overlapping = DType::Compound(Compound {
            size: 8,
            fields: vec![
                field("a", 0, DType::Float(8), &[]),
                field("b", 4, DType::Int(4), &[]),
            ],
        });
        assert_eq!(overlapping.npy_descr(), None);
    }
}
