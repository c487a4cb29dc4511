use modernbert_train::data::{BatchSource, SourceConfig};
fn main() {
    let t = std::time::Instant::now();
    let mut src = BatchSource::open(std::path::Path::new("work/shards"), SourceConfig::train(17)).unwrap();
    println!("open {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut toks = 0;
    let mut masked = 0;
    for s in 0..3000 {
        let st = src.next_step(1 + (s % 4)).unwrap();
        for b in &st.batches { toks += b.input_ids.len(); masked += b.labels.iter().filter(|&&l| l != -100).count(); }
    }
    println!("{} tokens in {:?}, masked {:.4}, eff {:.4}, epoch {}, state {} bytes", toks, t.elapsed(), masked as f64 / toks as f64, src.stats().efficiency(), src.epoch(), src.state().to_string().len());
    let t = std::time::Instant::now();
    let mut ev = BatchSource::open(std::path::Path::new("work/shards"), SourceConfig::eval()).unwrap();
    let n: usize = ev.by_ref().map(|b| b.input_ids.len()).sum();
    println!("eval {} tokens in {:?}, {:?}", n, t.elapsed(), ev.stats());
}
