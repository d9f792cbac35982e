//! Converting reads (EXtra-data's `ndarray(astype=...)`): integer or float data into a float32
//! or float64 output, each value converted as NumPy's `astype` (and libhdf5's conversion, which
//! EXtra-data's `read_direct` uses) converts it.

use euxfel::DType;

/// Converts the little-endian elements of `src` into those of `out` (as many as fit both).
pub(crate) type Converter = fn(&[u8], &mut [u8]);

macro_rules! convert_fn {
    ($s:ty, $t:ty) => {{
        fn convert(src: &[u8], out: &mut [u8]) {
            let pairs = out
                .chunks_exact_mut(std::mem::size_of::<$t>())
                .zip(src.chunks_exact(std::mem::size_of::<$s>()));
            for (o, i) in pairs {
                let v = <$s>::from_le_bytes(bytemuck::pod_read_unaligned(i)) as $t;
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        convert as Converter
    }};
}

macro_rules! into {
    ($from:expr, $t:ty) => {
        match $from {
            DType::UInt(1) => Some(convert_fn!(u8, $t)),
            DType::UInt(2) => Some(convert_fn!(u16, $t)),
            DType::UInt(4) => Some(convert_fn!(u32, $t)),
            DType::UInt(8) => Some(convert_fn!(u64, $t)),
            DType::Int(1) => Some(convert_fn!(i8, $t)),
            DType::Int(2) => Some(convert_fn!(i16, $t)),
            DType::Int(4) => Some(convert_fn!(i32, $t)),
            DType::Int(8) => Some(convert_fn!(i64, $t)),
            DType::Float(4) => Some(convert_fn!(f32, $t)),
            DType::Float(8) => Some(convert_fn!(f64, $t)),
            _ => None,
        }
    };
}

/// The conversion from `from` to `to` (float32 or float64), if there is one.
pub(crate) fn converter(from: &DType, to: &DType) -> Option<Converter> {
    match to {
        DType::Float(4) => into!(from, f32),
        DType::Float(8) => into!(from, f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_as_numpy_astype() {
        let src: Vec<u8> = [0u16, 1, 65535]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut out = vec![0u8; 12];
        converter(&DType::UInt(2), &DType::Float(4)).expect("u16 -> f32")(&src, &mut out);
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&out);
        assert_eq!(got, vec![0.0, 1.0, 65535.0]);

        let src: Vec<u8> = [-2i32, i32::MAX]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut out = vec![0u8; 16];
        converter(&DType::Int(4), &DType::Float(8)).expect("i32 -> f64")(&src, &mut out);
        let got: Vec<f64> = bytemuck::pod_collect_to_vec(&out);
        assert_eq!(got, vec![-2.0, f64::from(i32::MAX)]);

        assert!(converter(&DType::UInt(2), &DType::UInt(4)).is_none());
        assert!(converter(&DType::VlenStr, &DType::Float(4)).is_none());
    }
}
