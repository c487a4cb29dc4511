//! A small PNG loss curve from `metrics.jsonl`: training loss per step (raw, light; smoothed,
//! dark) and held-out loss (red), with labelled axes. Plain pixel drawing with a built-in 5×7
//! font, encoded with the `png` crate.

use anyhow::{bail, Context, Result};
use std::path::Path;

const W: usize = 900;
const H: usize = 540;
const LEFT: usize = 80;
const RIGHT: usize = 24;
const TOP: usize = 40;
const BOTTOM: usize = 50;

struct Canvas {
    px: Vec<[u8; 3]>,
}

impl Canvas {
    fn new() -> Self {
        Self { px: vec![[255, 255, 255]; W * H] }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            self.px[y as usize * W + x as usize] = c;
        }
    }

    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: [u8; 3], width: i64) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = ((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64);
            for dx in 0..width {
                for dy in 0..width {
                    self.set(x + dx - width / 2, y + dy - width / 2, c);
                }
            }
        }
    }

    fn dot(&mut self, (x, y): (f64, f64), c: [u8; 3]) {
        for dx in -3i64..=3 {
            for dy in -3i64..=3 {
                if dx * dx + dy * dy <= 9 {
                    self.set(x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale`² screen pixels.
    fn text(&mut self, x: usize, y: usize, text: &str, c: [u8; 3], scale: usize) {
        for (k, ch) in text.chars().enumerate() {
            let Some(rows) = glyph(ch) else { continue };
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0b10000 >> col) != 0 {
                        for sx in 0..scale {
                            for sy in 0..scale {
                                let px = x + k * 6 * scale + col * scale + sx;
                                self.set(px as i64, (y + r * scale + sy) as i64, c);
                            }
                        }
                    }
                }
            }
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W as u32, H as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        let data: Vec<u8> = self.px.iter().flatten().copied().collect();
        writer.write_image_data(&data)?;
        Ok(())
    }
}

fn text_width(s: &str, scale: usize) -> usize {
    s.chars().count() * 6 * scale
}

/// 5×7 glyphs (one byte per row, bit 4 = leftmost column) for the characters the plot uses.
fn glyph(c: char) -> Option<[u8; 7]> {
    Some(match c {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        'a' => [0, 0, 14, 1, 15, 17, 15],
        'c' => [0, 0, 14, 16, 16, 17, 14],
        'd' => [1, 1, 13, 19, 17, 17, 15],
        'e' => [0, 0, 14, 17, 31, 16, 14],
        'h' => [16, 16, 22, 25, 17, 17, 17],
        'i' => [4, 0, 12, 4, 4, 4, 14],
        'k' => [16, 16, 18, 20, 24, 20, 18],
        'l' => [12, 4, 4, 4, 4, 4, 14],
        'm' => [0, 0, 26, 21, 21, 17, 17],
        'n' => [0, 0, 22, 25, 17, 17, 17],
        'o' => [0, 0, 14, 17, 17, 17, 14],
        'p' => [0, 0, 30, 17, 30, 16, 16],
        'r' => [0, 0, 22, 25, 16, 16, 16],
        's' => [0, 0, 14, 16, 14, 1, 30],
        't' => [8, 8, 28, 8, 8, 9, 6],
        'u' => [0, 0, 17, 17, 17, 19, 13],
        'v' => [0, 0, 17, 17, 17, 10, 4],
        'y' => [0, 0, 17, 17, 15, 1, 14],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        ' ' => [0; 7],
        _ => return None,
    })
}

/// "Nice" tick positions (1, 2 or 5 × 10^k apart) covering `[lo, hi]`, and the spacing.
fn ticks(lo: f64, hi: f64) -> (Vec<f64>, f64) {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), step)
}

/// Tick label with as many decimals as the spacing needs; `15k`, `1.2M` for large values.
fn label(v: f64, step: f64) -> String {
    if step >= 1000.0 && v.abs() >= 1e6 {
        format!("{}M", trim(v / 1e6, step / 1e6))
    } else if step >= 1000.0 {
        format!("{}k", trim(v / 1e3, step / 1e3))
    } else {
        trim(v, step)
    }
}

fn trim(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    format!("{v:.decimals$}")
}

/// `(step, loss)` points.
pub type Series = Vec<(f64, f64)>;

/// Reads `(step, loss)` of training and evaluation records.
pub fn read_metrics(path: &Path) -> Result<(Series, Series)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let (Some(step), Some(loss)) = (v["step"].as_f64(), v["loss"].as_f64()) else { continue };
        if !loss.is_finite() {
            continue;
        }
        match v["type"].as_str() {
            Some("eval") => eval.push((step, loss)),
            _ => train.push((step, loss)),
        }
    }
    Ok((train, eval))
}

/// Plots `metrics.jsonl` into a PNG file.
pub fn plot_metrics(metrics: &Path, out: &Path) -> Result<()> {
    let (train, eval) = read_metrics(metrics)?;
    if train.is_empty() && eval.is_empty() {
        bail!("{} has no loss records", metrics.display());
    }
    let all = train.iter().chain(&eval);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    (y0, y1) = (y0 - pad, y1 + pad);
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let to_px = |(x, y): (f64, f64)| (LEFT as f64 + (x - x0) / (x1 - x0) * pw, TOP as f64 + (y1 - y) / (y1 - y0) * ph);
    let mut c = Canvas::new();
    let (grey, light, axis) = ([225, 225, 225], [160, 190, 235], [60, 60, 60]);
    let (yt, ys) = ticks(y0, y1);
    for v in yt {
        let (_, y) = to_px((x0, v));
        c.line((LEFT as f64, y), ((W - RIGHT) as f64, y), grey, 1);
        let s = label(v, ys);
        c.text(LEFT - 8 - text_width(&s, 2), (y as usize).saturating_sub(7), &s, axis, 2);
    }
    let (xt, xs) = ticks(x0, x1);
    for v in xt {
        let (x, _) = to_px((v, y0));
        c.line((x, TOP as f64), (x, (H - BOTTOM) as f64), grey, 1);
        let s = label(v, xs.max(1.0));
        let w = text_width(&s, 2);
        c.text((x as usize).saturating_sub(w / 2).min(W - w), H - BOTTOM + 8, &s, axis, 2);
    }
    c.line((LEFT as f64, TOP as f64), (LEFT as f64, (H - BOTTOM) as f64), axis, 2);
    c.line((LEFT as f64, (H - BOTTOM) as f64), ((W - RIGHT) as f64, (H - BOTTOM) as f64), axis, 2);
    for w in train.windows(2) {
        c.line(to_px(w[0]), to_px(w[1]), light, 1);
    }
    // Exponential moving average, window about 1/50 of the run.
    let alpha = (2.0 / (train.len() as f64 / 50.0 + 1.0)).min(1.0);
    let mut ema: Vec<(f64, f64)> = Vec::with_capacity(train.len());
    for &(x, y) in &train {
        let prev = ema.last().map_or(y, |p| p.1);
        ema.push((x, prev + alpha * (y - prev)));
    }
    for w in ema.windows(2) {
        c.line(to_px(w[0]), to_px(w[1]), [30, 80, 200], 3);
    }
    for w in eval.windows(2) {
        c.line(to_px(w[0]), to_px(w[1]), [210, 40, 40], 2);
    }
    for &p in &eval {
        c.dot(to_px(p), [210, 40, 40]);
    }
    c.text(LEFT, 12, "loss", axis, 2);
    c.text(LEFT + 80, 12, "train", [30, 80, 200], 2);
    c.text(LEFT + 160, 12, "held-out", [210, 40, 40], 2);
    c.text(W - RIGHT - text_width("step", 2), H - 18, "step", axis, 2);
    c.save(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("metrics.jsonl");
        let mut lines = String::new();
        for s in 1..=200 {
            lines += &format!("{{\"type\":\"train\",\"step\":{s},\"loss\":{}}}\n", 8.0 / (1.0 + s as f64 / 50.0));
        }
        lines += "{\"type\":\"eval\",\"step\":0,\"loss\":8.1}\n{\"type\":\"eval\",\"step\":200,\"loss\":3.0}\n";
        std::fs::write(&m, lines).unwrap();
        let out = dir.path().join("loss.png");
        plot_metrics(&m, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(plot_metrics(&dir.path().join("missing.jsonl"), &out).is_err());
    }
}
