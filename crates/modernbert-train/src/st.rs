//! Minimal f32 safetensors reading/writing for checkpoints and optimizer state.

use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A host f32 tensor: shape and row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// Writes named f32 tensors (and string metadata) to a safetensors file.
pub fn save(path: &Path, tensors: &BTreeMap<String, HostTensor>, metadata: HashMap<String, String>) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| Ok((n.as_str(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, Some(metadata), path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads every tensor of a safetensors file as f32 (f32, bf16, f16 and f64 accepted), plus its metadata.
pub fn load(path: &Path) -> Result<(BTreeMap<String, HostTensor>, HashMap<String, String>)> {
    let buf = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let st = SafeTensors::deserialize(&buf).with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let (_, meta) = SafeTensors::read_metadata(&buf)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let b = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            Dtype::BF16 => {
                b.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect()
            }
            Dtype::F16 => b.chunks_exact(2).map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
            other => bail!("{}: tensor `{name}` has dtype {other:?}", path.display()),
        };
        out.insert(name, HostTensor { shape: view.shape().to_vec(), data });
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => return f32::from_bits(sign) + (if sign != 0 { -1.0 } else { 1.0 }) * mant as f32 * 2f32.powi(-24),
        31 => sign | 0x7f80_0000 | (mant << 13),
        e => sign | (((e - 15 + 127) as u32) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        let mut t = BTreeMap::new();
        t.insert(
            "a".to_string(),
            HostTensor { shape: vec![2, 3], data: vec![1.0, -2.0, 3.5, 0.0, f32::MIN_POSITIVE, 7.0] },
        );
        t.insert("b".to_string(), HostTensor { shape: vec![], data: vec![42.0] });
        let meta = HashMap::from([("step".to_string(), "3".to_string())]);
        save(&p, &t, meta.clone()).unwrap();
        let (back, m) = load(&p).unwrap();
        assert_eq!(back, t);
        assert_eq!(m, meta);
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
    }
}
