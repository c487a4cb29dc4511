//! Prometheus metrics through the `metrics` crate and `metrics-exporter-prometheus` (the
//! recorder TEI uses), with TEI's names, labels and buckets so that existing dashboards work:
//! `te_request_count{method}`, `te_request_success{method}`, `te_request_failure{err}`,
//! `te_request_{,tokenization_,queue_,inference_}duration`, `te_embed_*`/`te_predict_*`,
//! `te_batch_next_size`, `te_batch_next_tokens`, `te_request_input_length`, `te_queue_size`.
//! Ours besides: `te_in_flight_requests`, `te_ready`, `te_tokens_total`,
//! `modernbert_http_requests_total{route,status}`, `process_resident_memory_bytes`.
//!
//! Each server has its own recorder (not the process-global one), so that several servers in
//! one process (the tests) keep separate numbers; handles are registered on it directly.

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::time::Duration;

const META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// What a request computes, for TEI's per-input `te_embed_*` / `te_predict_*` metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Embeddings, token vectors, similarity, ColBERT MaxSim.
    Embed,
    /// Classifier logits (`/predict`, cross-encoder `/rerank`).
    Predict,
}

impl Task {
    fn prefix(self) -> &'static str {
        match self {
            Task::Embed => "te_embed",
            Task::Predict => "te_predict",
        }
    }
}

/// Every metric the server exports, on one recorder.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Sequences waiting for the model.
    pub queue_size: Gauge,
    /// Requests being served (holding an admission permit).
    pub in_flight: Gauge,
    /// 1 once the model is loaded and warmed up.
    pub ready: Gauge,
    rss: Gauge,
    /// Sequences per model batch.
    pub batch_size: Histogram,
    /// Tokens per model batch.
    pub batch_tokens: Histogram,
    /// Tokens per input.
    pub input_length: Histogram,
    /// Tokens run through the model.
    pub tokens: Counter,
}

/// TEI's buckets (router/src/prometheus.rs): durations 1.5^k·10 µs (35), powers of two for lengths.
fn builder() -> PrometheusBuilder {
    let mut value = 0.00001;
    let durations: Vec<f64> = (0..35)
        .map(|_| {
            value *= 1.5;
            value
        })
        .collect();
    let powers = |n: i32| (0..n).map(|x| 2f64.powi(x)).collect::<Vec<_>>();
    let set =
        |b: PrometheusBuilder, m: Matcher, v: &[f64]| b.set_buckets_for_metric(m, v).expect("buckets are not empty");
    let b = PrometheusBuilder::new();
    let b = set(b, Matcher::Suffix("duration".into()), &durations);
    let b = set(b, Matcher::Full("te_request_input_length".into()), &powers(14));
    let b = set(b, Matcher::Full("te_batch_next_size".into()), &powers(13));
    set(b, Matcher::Full("te_batch_next_tokens".into()), &powers(21))
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            // Every metric kind shares one description table.
            recorder.describe_counter(name.into(), unit, help.into());
        };
        for (name, help) in [
            ("te_request_count", "Requests received (after parsing), by method: single or batch input."),
            ("te_request_success", "Requests answered with 200, by method."),
            ("te_request_failure", "Requests answered with an error, by err."),
            ("te_request_duration", "Request time, arrival to answer, in seconds."),
            ("te_request_tokenization_duration", "Tokenization time per request, in seconds."),
            ("te_request_queue_duration", "Longest time an input of the request waited for its batch, in seconds."),
            ("te_request_inference_duration", "Forward-pass time of the request's slowest batch, in seconds."),
            ("te_embed_count", "Inputs queued for an embedding."),
            ("te_predict_count", "Inputs queued for classifier logits."),
            ("te_batch_next_size", "Sequences per model batch."),
            ("te_batch_next_tokens", "Tokens per model batch."),
            ("te_request_input_length", "Tokens per input."),
            ("te_queue_size", "Sequences waiting for the model."),
            ("te_in_flight_requests", "Requests being served."),
            ("te_ready", "1 once the model is loaded and warmed up."),
            ("te_tokens_total", "Tokens run through the model."),
            ("modernbert_http_requests_total", "HTTP answers by route and status."),
            ("process_resident_memory_bytes", "Resident memory of the server process."),
        ] {
            describe(name, None, help);
        }
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &META);
        let histogram = |name: &'static str| recorder.register_histogram(&Key::from_static_name(name), &META);
        let metrics = Self {
            queue_size: gauge("te_queue_size"),
            in_flight: gauge("te_in_flight_requests"),
            ready: gauge("te_ready"),
            rss: gauge("process_resident_memory_bytes"),
            batch_size: histogram("te_batch_next_size"),
            batch_tokens: histogram("te_batch_next_tokens"),
            input_length: histogram("te_request_input_length"),
            tokens: recorder.register_counter(&Key::from_static_name("te_tokens_total"), &META),
            recorder,
            handle,
        };
        metrics.queue_size.set(0.0);
        metrics.in_flight.set(0.0);
        metrics.ready.set(0.0);
        metrics
    }
}

impl Metrics {
    /// A counter with labels (registered on first use).
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, v.to_string())).collect();
        self.recorder.register_counter(&Key::from_parts(name, labels), &META)
    }

    /// A histogram without labels.
    pub fn histogram(&self, name: &'static str) -> Histogram {
        self.recorder.register_histogram(&Key::from_static_name(name), &META)
    }

    /// Counts one HTTP answer.
    pub fn count_response(&self, route: &str, status: u16) {
        self.counter("modernbert_http_requests_total", &[("route", route), ("status", &status.to_string())])
            .increment(1);
    }

    /// TEI's `te_request_count{method}`: a request with one input (`single`) or a list (`batch`).
    pub fn request_received(&self, single: bool) {
        self.counter("te_request_count", &[("method", method(single))]).increment(1);
    }

    /// TEI's `te_request_failure{err}`.
    pub fn request_failed(&self, err: &str) {
        self.counter("te_request_failure", &[("err", err)]).increment(1);
    }

    /// `n` × TEI's `te_request_failure{err}`.
    pub fn request_failed_n(&self, err: &str, n: usize) {
        self.counter("te_request_failure", &[("err", err)]).increment(n as u64);
    }

    /// TEI's `te_embed_count` / `te_predict_count`: inputs queued for the model.
    pub fn inputs_queued(&self, task: Task, n: usize) {
        let name = match task {
            Task::Embed => "te_embed_count",
            Task::Predict => "te_predict_count",
        };
        self.counter(name, &[]).increment(n as u64);
    }

    /// A successful request: `te_request_success{method}`, the `te_request_*duration` histograms
    /// and TEI's per-input `te_{embed,predict}_success` and `_*duration` (the request's times).
    pub fn request_succeeded(&self, single: bool, task: Task, inputs: usize, times: [Duration; 4]) {
        self.counter("te_request_success", &[("method", method(single))]).increment(1);
        let [total, tokenization, queue, inference] = times.map(|d| d.as_secs_f64());
        for (name, v) in [
            ("te_request_duration", total),
            ("te_request_tokenization_duration", tokenization),
            ("te_request_queue_duration", queue),
            ("te_request_inference_duration", inference),
        ] {
            self.histogram(name).record(v);
        }
        let p = task.prefix();
        self.counter(leak_name(p, "_success"), &[]).increment(inputs as u64);
        for (suffix, v) in [
            ("_duration", total),
            ("_tokenization_duration", tokenization),
            ("_queue_duration", queue),
            ("_inference_duration", inference),
        ] {
            self.histogram(leak_name(p, suffix)).record_many(v, inputs);
        }
    }

    /// Runs the recorder's housekeeping (drains histogram samples); call every few seconds so
    /// that memory stays bounded when nobody scrapes `/metrics`.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Some(rss) = rss_bytes() {
            self.rss.set(rss as f64);
        }
        self.handle.render()
    }
}

fn method(single: bool) -> &'static str {
    if single {
        "single"
    } else {
        "batch"
    }
}

/// `te_embed` + `_success` etc. as `&'static str` (a fixed set of names).
fn leak_name(prefix: &'static str, suffix: &'static str) -> &'static str {
    match (prefix, suffix) {
        ("te_embed", "_success") => "te_embed_success",
        ("te_embed", "_duration") => "te_embed_duration",
        ("te_embed", "_tokenization_duration") => "te_embed_tokenization_duration",
        ("te_embed", "_queue_duration") => "te_embed_queue_duration",
        ("te_embed", "_inference_duration") => "te_embed_inference_duration",
        ("te_predict", "_success") => "te_predict_success",
        ("te_predict", "_duration") => "te_predict_duration",
        ("te_predict", "_tokenization_duration") => "te_predict_tokenization_duration",
        ("te_predict", "_queue_duration") => "te_predict_queue_duration",
        ("te_predict", "_inference_duration") => "te_predict_inference_duration",
        _ => unreachable!("unknown metric name {prefix}{suffix}"),
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
    fn tei_names_labels_and_buckets() {
        let m = Metrics::default();
        m.batch_size.record(3.0);
        m.batch_size.record(100.0);
        m.count_response("/embed", 200);
        m.request_received(true);
        m.request_failed("batch_size");
        let ms = Duration::from_millis(1);
        m.request_succeeded(false, Task::Embed, 2, [ms * 30, ms, ms * 4, ms * 20]);
        let text = m.render();
        for needle in [
            "te_batch_next_size_bucket{le=\"4\"} 1",
            "te_batch_next_size_bucket{le=\"128\"} 2",
            "te_batch_next_size_sum 103",
            "modernbert_http_requests_total{route=\"/embed\",status=\"200\"} 1",
            "te_request_count{method=\"single\"} 1",
            "te_request_failure{err=\"batch_size\"} 1",
            "te_request_success{method=\"batch\"} 1",
            "te_request_duration_count 1",
            "te_request_inference_duration_bucket",
            "te_embed_success 2",
            "te_embed_queue_duration_count 2",
            "# TYPE te_request_duration histogram",
            "te_queue_size 0",
            "te_ready 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
