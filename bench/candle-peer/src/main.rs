//! candle-transformers' ModernBert on the inputs written by `modernbert bench --dump-inputs`.
//!
//! Usage: candle-peer CHECKPOINT_DIR INPUTS.json DATASET [BATCH_SIZE] [REPEAT]
//! Prints one JSON line: {"peer": "candle-transformers", "dataset", "tokens", "seconds", "tokens_per_second"}.
//! Batches are padded to their longest member, as candle-transformers requires.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::modernbert::{Config, ModernBert};
use serde_json::{json, Value};
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 4, "usage: candle-peer CHECKPOINT_DIR INPUTS.json DATASET [BATCH_SIZE] [REPEAT]");
    let dir = std::path::Path::new(&args[1]);
    let batch_size: usize = args.get(4).map_or(Ok(8), |s| s.parse())?;
    let repeat: usize = args.get(5).map_or(Ok(1), |s| s.parse())?;

    // candle-transformers reads the original config keys only; derive them from either form.
    let hf: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let get = |k: &str, default: Value| hf.get(k).cloned().unwrap_or(default);
    let config: Config = serde_json::from_value(json!({
        "vocab_size": get("vocab_size", json!(50368)),
        "hidden_size": get("hidden_size", json!(768)),
        "num_hidden_layers": get("num_hidden_layers", json!(22)),
        "num_attention_heads": get("num_attention_heads", json!(12)),
        "intermediate_size": get("intermediate_size", json!(1152)),
        "max_position_embeddings": get("max_position_embeddings", json!(8192)),
        "layer_norm_eps": get("norm_eps", json!(1e-5)),
        "pad_token_id": get("pad_token_id", json!(50283)),
        "global_attn_every_n_layers": get("global_attn_every_n_layers", json!(3)),
        "global_rope_theta": get("global_rope_theta", json!(160000.0)),
        "local_attention": get("local_attention", json!(128)),
        "local_rope_theta": get("local_rope_theta", json!(10000.0)),
    }))?;
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)? };
    let model = ModernBert::load(vb, &config)?;

    let inputs: Value = serde_json::from_str(&std::fs::read_to_string(&args[2])?)?;
    let docs: Vec<Vec<u32>> = serde_json::from_value(inputs.get(&args[3]).cloned().context("dataset not in inputs")?)?;
    let tokens: usize = docs.iter().map(Vec::len).sum();
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let start = Instant::now();
        for chunk in docs.chunks(batch_size) {
            let max = chunk.iter().map(Vec::len).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(chunk.len() * max);
            let mut mask = Vec::with_capacity(chunk.len() * max);
            for d in chunk {
                ids.extend(d.iter().copied().chain(std::iter::repeat(config.pad_token_id).take(max - d.len())));
                mask.extend((0..max).map(|t| u32::from(t < d.len())));
            }
            let ids = Tensor::from_vec(ids, (chunk.len(), max), &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, (chunk.len(), max), &Device::Cpu)?;
            model.forward(&ids, &mask)?;
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "{}",
        json!({"peer": "candle-transformers", "dataset": args[3], "tokens": tokens, "seconds": best,
               "tokens_per_second": tokens as f64 / best})
    );
    Ok(())
}
