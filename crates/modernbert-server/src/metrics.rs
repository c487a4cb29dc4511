//! Prometheus metrics, kept in atomics and rendered as text exposition format (version 0.0.4).
//!
//! Names follow TEI's (`te_*`) where a TEI metric means the same thing, so existing dashboards
//! keep working; durations are in seconds.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

const TIME_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
const TOKEN_BUCKETS: &[f64] =
    &[16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0];

/// A cumulative histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        let _ = self.sum_bits.fetch_update(Relaxed, Relaxed, |bits| Some((f64::from_bits(bits) + v).to_bits()));
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", f64::from_bits(self.sum_bits.load(Relaxed)));
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric the server exports.
pub struct Metrics {
    /// HTTP answers by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Time from arrival to answer of successful inference requests.
    pub request_duration: Histogram,
    pub tokenization_duration: Histogram,
    /// Time inputs waited in the queue before their batch started.
    pub queue_duration: Histogram,
    /// Time of the forward pass that served an input.
    pub inference_duration: Histogram,
    /// Sequences per model batch.
    pub batch_size: Histogram,
    /// Tokens per model batch.
    pub batch_tokens: Histogram,
    /// Tokens per input.
    pub input_length: Histogram,
    /// Inputs (sequences) run through the model.
    pub inputs: AtomicU64,
    /// Tokens run through the model.
    pub tokens: AtomicU64,
    /// Sequences waiting for the model.
    pub queue_size: AtomicI64,
    /// Inference requests being served.
    pub in_flight: AtomicI64,
    /// Model loaded and warmed up.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            http: Mutex::new(BTreeMap::new()),
            request_duration: Histogram::new(TIME_BUCKETS),
            tokenization_duration: Histogram::new(TIME_BUCKETS),
            queue_duration: Histogram::new(TIME_BUCKETS),
            inference_duration: Histogram::new(TIME_BUCKETS),
            batch_size: Histogram::new(COUNT_BUCKETS),
            batch_tokens: Histogram::new(TOKEN_BUCKETS),
            input_length: Histogram::new(TOKEN_BUCKETS),
            inputs: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            queue_size: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Counts one HTTP answer.
    pub fn count_response(&self, route: &str, status: u16) {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        *http.entry((route.to_string(), status)).or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP modernbert_http_requests_total HTTP answers by route and status.\n");
        out.push_str("# TYPE modernbert_http_requests_total counter\n");
        for ((route, status), n) in self.http.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "modernbert_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        let gauges: [(&str, &str, &str, i64); 6] = [
            (
                "te_request_success",
                "counter",
                "Inference requests answered with 200.",
                self.request_duration.count() as i64,
            ),
            ("te_embed_count", "counter", "Inputs run through the model.", self.inputs.load(Relaxed) as i64),
            ("te_tokens_total", "counter", "Tokens run through the model.", self.tokens.load(Relaxed) as i64),
            ("te_queue_size", "gauge", "Sequences waiting for the model.", self.queue_size.load(Relaxed)),
            ("te_in_flight_requests", "gauge", "Inference requests being served.", self.in_flight.load(Relaxed)),
            ("te_ready", "gauge", "1 once the model is loaded and warmed up.", self.ready.load(Relaxed) as i64),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory of the server process.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            rss_bytes().unwrap_or(0)
        );
        let histograms = [
            (&self.request_duration, "te_request_duration", "Inference request time, arrival to answer (s)."),
            (&self.tokenization_duration, "te_request_tokenization_duration", "Tokenization time per request (s)."),
            (&self.queue_duration, "te_request_queue_duration", "Time an input waited for its batch (s)."),
            (&self.inference_duration, "te_request_inference_duration", "Forward-pass time of an input's batch (s)."),
            (&self.batch_size, "te_batch_next_size", "Sequences per model batch."),
            (&self.batch_tokens, "te_batch_next_tokens", "Tokens per model batch."),
            (&self.input_length, "te_request_input_length", "Tokens per input."),
        ];
        for (h, name, help) in histograms {
            h.render(&mut out, name, help);
        }
        out
    }
}

/// Resident set size of this process, from `/proc/self/statm` (Linux only).
pub fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.batch_size.observe(3.0);
        m.batch_size.observe(100.0);
        m.count_response("/embed", 200);
        let text = m.render();
        assert!(text.contains("te_batch_next_size_bucket{le=\"4\"} 1"), "{text}");
        assert!(text.contains("te_batch_next_size_bucket{le=\"128\"} 2"));
        assert!(text.contains("te_batch_next_size_sum 103"));
        assert!(text.contains("modernbert_http_requests_total{route=\"/embed\",status=\"200\"} 1"));
    }
}
