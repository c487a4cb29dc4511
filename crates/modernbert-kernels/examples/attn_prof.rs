// TEMPORARY profiling driver (not to be committed).
use modernbert_kernels::RopeTable;
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map(|s| s.as_str()).unwrap_or("local");
    let prec = args.get(2).map(|s| s.as_str()).unwrap_or("f32");
    let secs: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let lens = vec![512usize; 8];
    let (heads, d) = (12, 64);
    let total: usize = lens.iter().sum();
    let mut cu = vec![0u32];
    for &n in &lens { cu.push(cu.last().unwrap() + n as u32); }
    let mut s = 1u64;
    let qkv: Vec<f32> = (0..total * 3 * heads * d).map(|_| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 }).collect();
    let mut out = vec![0f32; total * heads * d];
    let rope = RopeTable::new(10_000.0, d, 8192);
    let window = if kind == "local" { Some(64) } else { None };
    let t = Instant::now();
    let mut runs = 0;
    let mut best = f64::MAX;
    while t.elapsed().as_secs_f64() < secs {
        let t1 = Instant::now();
        if prec == "bf16" {
            modernbert_kernels::attention_varlen_bf16(&qkv, &cu, heads, d, &rope, window, &mut out);
        } else {
            modernbert_kernels::attention_varlen(&qkv, &cu, heads, d, &rope, window, &mut out);
        }
        best = best.min(t1.elapsed().as_secs_f64());
        runs += 1;
    }
    println!("{kind} {prec}: {runs} runs, best {:.3} ms", best * 1e3);
}
