//! Fresh initialisation (spec §6.1) and base → large weight tiling (spec §6.2).
//!
//! Init ("full_megatron"): truncated normal cut at ±`cutoff`·σ; σ = `initializer_range` for the
//! embedding and the "in" projections (`Wqkv`, `Wi`, `head.dense`), `initializer_range/√(2L)`
//! for the "out" projections (attention and MLP `Wo`), `hidden_size^-½` for a classifier's output
//! layer; LayerNorm weights 1, biases 0.
//!
//! Tiling ("tile_weights_from_middle"): the smaller tensor sits in the centre of the larger one,
//! offset `⌊(N − n)/2⌋` on every growing axis; the part before it is filled walking backwards
//! from the small tensor's end, the part after it forwards from its start (both wrapping around).
//! 2-D tensors tile their columns first, then the rows of that result. Fused `Wqkv` and `Wi` are
//! split into their Q/K/V and input/gate blocks, tiled block by block and concatenated again.
//! Large layer `i` copies small layer `round_half_even(i · L_small / L_large)`; `final_norm`
//! keeps its fresh init (ones).

use crate::params::{param_specs, HeadKind, ParamKind, ParamSpec};
use crate::rng::Rng;
use crate::st::HostTensor;
use anyhow::{bail, Context, Result};
use modernbert::Config;
use std::collections::BTreeMap;

/// Init hyper-parameters (HF config keys `initializer_range`, `initializer_cutoff_factor`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitConfig {
    /// σ of the embedding and "in" projections (0.02).
    pub initializer_range: f64,
    /// Truncation at ±cutoff·σ (2.0).
    pub cutoff: f64,
}

impl Default for InitConfig {
    fn default() -> Self {
        Self { initializer_range: 0.02, cutoff: 2.0 }
    }
}

/// σ of a parameter kind (`None` = not random: ones for norm weights, zeros for biases).
pub fn init_std(kind: ParamKind, cfg: &Config, init: &InitConfig) -> Option<f64> {
    match kind {
        ParamKind::Embedding | ParamKind::In => Some(init.initializer_range),
        ParamKind::Out => Some(init.initializer_range / (2.0 * cfg.num_hidden_layers as f64).sqrt()),
        ParamKind::Classifier => Some((cfg.hidden_size as f64).powf(-0.5)),
        ParamKind::NormWeight | ParamKind::Bias => None,
    }
}

/// Fresh parameters for every tensor of a masked-LM's [`param_specs`], drawn from per-tensor seeded streams.
pub fn init_params(cfg: &Config, init: &InitConfig, seed: u64) -> BTreeMap<String, HostTensor> {
    init_specs(cfg, &param_specs(cfg, HeadKind::MaskedLm), init, seed)
}

/// Fresh values for `specs` (stream `k` for the `k`-th spec of the list, so a spec's values
/// depend only on its position and the seed).
pub fn init_specs(cfg: &Config, specs: &[ParamSpec], init: &InitConfig, seed: u64) -> BTreeMap<String, HostTensor> {
    specs
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            let n: usize = spec.shape.iter().product();
            let data = match (spec.kind, init_std(spec.kind, cfg, init)) {
                (_, Some(std)) => {
                    let mut rng = Rng::keyed(seed, &[0x1417, k as u64]);
                    (0..n).map(|_| rng.trunc_normal(std, init.cutoff) as f32).collect()
                }
                (ParamKind::NormWeight, None) => vec![1.0; n],
                _ => vec![0.0; n],
            };
            (spec.name.clone(), HostTensor { shape: spec.shape.clone(), data })
        })
        .collect()
}

/// Python's `round(a / b)` (ties to even) for non-negative integers.
pub fn round_half_even(a: usize, b: usize) -> usize {
    let (q, r) = (a / b, a % b);
    match (2 * r).cmp(&b) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
    }
}

/// Source layer of every large layer: `round(i · small / large)`.
pub fn layer_map(small: usize, large: usize) -> Vec<usize> {
    (0..large).map(|i| round_half_even(i * small, large).min(small - 1)).collect()
}

/// Centre index map for one axis growing from `n` to `big`: `big` indices into the small axis.
pub fn tile_indices(n: usize, big: usize) -> Vec<usize> {
    assert!(big >= n && n > 0, "tiling cannot shrink an axis ({n} → {big})");
    let offset = (big - n) / 2;
    (0..big)
        .map(|j| {
            if j < offset {
                let k = offset - 1 - j;
                n - 1 - (k % n)
            } else if j < offset + n {
                j - offset
            } else {
                (j - offset - n) % n
            }
        })
        .collect()
}

/// Tiles a 1-D or 2-D tensor to `shape` (columns first, then rows).
pub fn tile_tensor(t: &HostTensor, shape: &[usize]) -> Result<HostTensor> {
    match (t.shape.as_slice(), shape) {
        ([n], [big]) => {
            let idx = tile_indices(*n, *big);
            Ok(HostTensor { shape: vec![*big], data: idx.iter().map(|&i| t.data[i]).collect() })
        }
        ([r, c], [br, bc]) => {
            let (ri, ci) = (tile_indices(*r, *br), tile_indices(*c, *bc));
            let mut data = Vec::with_capacity(br * bc);
            for &i in &ri {
                let row = &t.data[i * c..(i + 1) * c];
                data.extend(ci.iter().map(|&j| row[j]));
            }
            Ok(HostTensor { shape: shape.to_vec(), data })
        }
        (a, b) => bail!("cannot tile shape {a:?} to {b:?}"),
    }
}

/// Splits a `[parts·r, c]` tensor into `parts` row blocks, tiles each to `[R, C]` and stacks them.
fn tile_fused(t: &HostTensor, parts: usize, shape: &[usize]) -> Result<HostTensor> {
    let (rows, cols) = (t.shape[0] / parts, t.shape[1]);
    let block_rows = shape[0] / parts;
    let mut data = Vec::with_capacity(shape[0] * shape[1]);
    for p in 0..parts {
        let block =
            HostTensor { shape: vec![rows, cols], data: t.data[p * rows * cols..(p + 1) * rows * cols].to_vec() };
        data.extend(tile_tensor(&block, &[block_rows, shape[1]])?.data);
    }
    Ok(HostTensor { shape: shape.to_vec(), data })
}

/// Initialises a `large` model from a trained `small` one (spec §6.2). Tensors the small model
/// lacks (e.g. a backbone-only checkpoint's head) and `final_norm` get a fresh init.
pub fn tile_model(
    small_cfg: &Config,
    small: &BTreeMap<String, HostTensor>,
    large_cfg: &Config,
    init: &InitConfig,
    seed: u64,
) -> Result<BTreeMap<String, HostTensor>> {
    if small_cfg.vocab_size != large_cfg.vocab_size {
        bail!("tiling needs the same vocabulary ({} vs {})", small_cfg.vocab_size, large_cfg.vocab_size);
    }
    let map = layer_map(small_cfg.num_hidden_layers, large_cfg.num_hidden_layers);
    let mut out = init_params(large_cfg, init, seed);
    for (name, dst) in out.iter_mut() {
        if name.starts_with("model.final_norm.") {
            continue;
        }
        let src_name = match name.strip_prefix("model.layers.") {
            Some(rest) => {
                let (i, tail) = rest.split_once('.').context("layer parameter name")?;
                let i: usize = i.parse()?;
                // Small layer 0 has no attn_norm: a large layer mapped onto it keeps ones.
                format!("model.layers.{}.{tail}", map[i])
            }
            None => name.clone(),
        };
        let Some(src) = small.get(&src_name) else { continue };
        *dst = if name.ends_with("attn.Wqkv.weight") || name.ends_with("attn.Wqkv.bias") {
            tile_fused(&as_2d(src), 3, &as_2d_shape(&dst.shape))?.reshaped(&dst.shape)
        } else if name.ends_with("mlp.Wi.weight") || name.ends_with("mlp.Wi.bias") {
            tile_fused(&as_2d(src), 2, &as_2d_shape(&dst.shape))?.reshaped(&dst.shape)
        } else {
            tile_tensor(src, &dst.shape)?
        };
    }
    Ok(out)
}

fn as_2d(t: &HostTensor) -> HostTensor {
    HostTensor { shape: as_2d_shape(&t.shape), data: t.data.clone() }
}

fn as_2d_shape(s: &[usize]) -> Vec<usize> {
    if s.len() == 1 {
        vec![s[0], 1]
    } else {
        s.to_vec()
    }
}

impl HostTensor {
    fn reshaped(mut self, shape: &[usize]) -> Self {
        self.shape = shape.to_vec();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_map_22_to_28_matches_the_spec() {
        assert_eq!(
            layer_map(22, 28),
            vec![0, 1, 2, 2, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 11, 12, 13, 13, 14, 15, 16, 16, 17, 18, 19, 20, 20, 21]
        );
        assert_eq!(round_half_even(5, 2), 2);
        assert_eq!(round_half_even(7, 2), 4);
    }

    #[test]
    fn centre_tiling_with_wrap_around() {
        // 4 → 6: offset 1; new[0] = base[3], new[1..5] = base, new[5] = base[0].
        assert_eq!(tile_indices(4, 6), vec![3, 0, 1, 2, 3, 0]);
        // 4 → 11: offset 3; before: base[3], base[2], base[1] read backwards from the end.
        assert_eq!(tile_indices(4, 11), vec![1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        // 768 → 1024: offset 128, new[0..128] = base[640..768], new[896..1024] = base[0..128].
        let i = tile_indices(768, 1024);
        assert_eq!(i[..128], (640..768).collect::<Vec<_>>()[..]);
        assert_eq!(i[128..896], (0..768).collect::<Vec<_>>()[..]);
        assert_eq!(i[896..], (0..128).collect::<Vec<_>>()[..]);
        // 1152 → 2624: offset 736, new[0..736] = base[416..1152], new[1888..] = base[0..736].
        let i = tile_indices(1152, 2624);
        assert_eq!(i[..736], (416..1152).collect::<Vec<_>>()[..]);
        assert_eq!(i[1888..], (0..736).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn two_d_tiles_columns_then_rows() {
        // [2, 2] → [3, 4]: rows 2 → 3 (offset 0: [0, 1, 0]), columns 2 → 4 (offset 1: [1, 0, 1, 0]).
        let t = HostTensor { shape: vec![2, 2], data: vec![1.0, 2.0, 3.0, 4.0] };
        let big = tile_tensor(&t, &[3, 4]).unwrap();
        assert_eq!(big.data, vec![2.0, 1.0, 2.0, 1.0, 4.0, 3.0, 4.0, 3.0, 2.0, 1.0, 2.0, 1.0]);
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn fused_wqkv_is_split_before_tiling() {
        let small = Config::from_json(
            r#"{"model_type":"modernbert","vocab_size":16,"hidden_size":4,"intermediate_size":6,
                "num_hidden_layers":2,"num_attention_heads":2,"global_attn_every_n_layers":1}"#,
        )
        .unwrap();
        let large = Config::from_json(
            r#"{"model_type":"modernbert","vocab_size":16,"hidden_size":6,"intermediate_size":8,
                "num_hidden_layers":3,"num_attention_heads":3,"global_attn_every_n_layers":1}"#,
        )
        .unwrap();
        let init = InitConfig::default();
        let mut s = init_params(&small, &init, 1);
        // Wqkv of small layer 1: row r of block p holds 100·p + r in every column.
        let w = s.get_mut("model.layers.1.attn.Wqkv.weight").unwrap();
        for p in 0..3 {
            for r in 0..4 {
                for c in 0..4 {
                    w.data[(p * 4 + r) * 4 + c] = (100 * p + r) as f32 + c as f32 / 10.0;
                }
            }
        }
        let l = tile_model(&small, &s, &large, &init, 2).unwrap();
        // layer_map(2, 3) = [0, 1, 1]
        assert_eq!(layer_map(2, 3), vec![0, 1, 1]);
        let big = &l["model.layers.2.attn.Wqkv.weight"];
        assert_eq!(big.shape, vec![18, 6]);
        let rows = tile_indices(4, 6);
        let cols = tile_indices(4, 6);
        for p in 0..3 {
            for r in 0..6 {
                for c in 0..6 {
                    let want = (100 * p + rows[r]) as f32 + cols[c] as f32 / 10.0;
                    assert_eq!(big.data[(p * 6 + r) * 6 + c], want, "block {p} row {r} col {c}");
                }
            }
        }
        // final_norm is not tiled; the embedding is tiled on its columns only.
        assert!(l["model.final_norm.weight"].data.iter().all(|&v| v == 1.0));
        let e = &l["model.embeddings.tok_embeddings.weight"];
        let se = &s["model.embeddings.tok_embeddings.weight"];
        assert_eq!(e.data[6 + 1], se.data[4]);
        assert_eq!(e.data[6], se.data[4 + 3]);
    }

    #[test]
    fn megatron_init_stds() {
        let cfg = Config::from_json(r#"{"model_type":"modernbert","vocab_size":64,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":8,"num_attention_heads":4}"#).unwrap();
        let p = init_params(&cfg, &InitConfig::default(), 3);
        let std = |n: &str| {
            let d = &p[n].data;
            (d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / d.len() as f64).sqrt()
        };
        // truncated at ±2σ: std = 0.8796·σ
        assert!((std("model.layers.0.attn.Wqkv.weight") / (0.02 * 0.8796) - 1.0).abs() < 0.03);
        assert!((std("model.layers.3.mlp.Wo.weight") / (0.02 / 4.0 * 0.8796) - 1.0).abs() < 0.03);
        assert!(p["model.layers.0.attn.Wqkv.weight"].data.iter().all(|v| v.abs() <= 0.04));
        assert!(p["model.final_norm.weight"].data.iter().all(|&v| v == 1.0));
        assert!(p["decoder.bias"].data.iter().all(|&v| v == 0.0));
    }
}
