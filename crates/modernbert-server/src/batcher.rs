//! Dynamic batching: a queue of prepared inputs and the model worker thread(s) that drain it.
//!
//! Handlers push inputs (already tokenised by [`modernbert::Model::prepare`], off the model
//! thread) and await one reply per input. A worker that becomes free takes the oldest waiting
//! input, adds the waiting inputs closest to it in length until `max_batch_tokens` (or
//! `max_batch_requests`) is reached, hands the batch to [`modernbert::Model::run`] on its own OS
//! thread (never on the async runtime) and answers every input of the batch with the library's
//! [`Output`]. The server never touches the encoder, pooling or heads itself: it sees plain data.
//! Inputs that arrive while the model is busy are picked up by the next batch, so batches grow
//! with load and a lone request never waits for company.

use crate::metrics::{Metrics, Task};
pub use modernbert::embedding::PoolingMode;
pub use modernbert::pipelines::{Output, Prepared, Want};
use modernbert::Model;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where the time of one input went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Waiting for a batch.
    pub queue: Duration,
    /// The batch's forward pass.
    pub inference: Duration,
}

/// One input's reply: its output, or the reason inference failed.
pub type Reply = Result<(Output, Timing), String>;

/// Batch limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most tokens in one batch (a longer single input still runs, alone).
    pub max_batch_tokens: usize,
    /// Most inputs in one batch.
    pub max_batch_requests: Option<usize>,
}

struct Item {
    input: Prepared,
    want: Want,
    enqueued: Instant,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// The queue plus its model workers.
pub struct Batcher {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Batcher {
    /// Starts `workers` model threads (at least one) that share `model`; `pooling` replaces the
    /// model's pooling modes (`--pooling`).
    pub fn start(
        model: Arc<Model>,
        pooling: Option<PoolingMode>,
        limits: Limits,
        workers: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), wake: Condvar::new(), limits, metrics });
        let handles = (0..workers.max(1))
            .map(|i| {
                let shared = shared.clone();
                let model = model.clone();
                std::thread::Builder::new()
                    .name(format!("model-{i}"))
                    .spawn(move || worker(&shared, &model, pooling))
                    .expect("spawning a model thread")
            })
            .collect();
        Self { shared, workers: Mutex::new(handles) }
    }

    /// Queues the inputs of one request; the receivers answer in the same order.
    /// After [`Batcher::shutdown`] the receivers report the queue as closed.
    pub fn submit(&self, inputs: Vec<Prepared>, want: Want) -> Vec<oneshot::Receiver<Reply>> {
        let now = Instant::now();
        let mut receivers = Vec::with_capacity(inputs.len());
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        for input in inputs {
            let (reply, rx) = oneshot::channel();
            receivers.push(rx);
            if queue.closed {
                let _ = reply.send(Err("the server is shutting down".into()));
            } else {
                self.shared.metrics.input_length.record(input.ids.len() as f64);
                queue.items.push_back(Item { input, want, enqueued: now, reply });
            }
        }
        self.shared.metrics.queue_size.set(queue.items.len() as f64);
        drop(queue);
        let task = if want == Want::Logits { Task::Predict } else { Task::Embed };
        self.shared.metrics.inputs_queued(task, receivers.len());
        self.shared.wake.notify_all();
        receivers
    }

    /// Closes the queue and answers every input still waiting with an error (the shutdown
    /// deadline passed); batches already running finish on their threads.
    pub fn abort(&self) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.closed = true;
        for item in queue.items.drain(..) {
            let _ = item.reply.send(Err("the server is shutting down".into()));
        }
        self.shared.metrics.queue_size.set(0.0);
        drop(queue);
        self.shared.wake.notify_all();
    }

    /// Lets the workers finish what is queued, then stops and joins them.
    pub fn shutdown(&self) {
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.wake.notify_all();
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker(shared: &Shared, model: &Model, pooling: Option<PoolingMode>) {
    loop {
        let batch = {
            let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            while queue.items.is_empty() && !queue.closed {
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            // Inputs whose request is gone (client disconnected, shutdown deadline) are skipped.
            let before = queue.items.len();
            queue.items.retain(|item| !item.reply.is_closed());
            if queue.items.len() < before {
                shared.metrics.request_failed_n("dropped", before - queue.items.len());
            }
            if queue.items.is_empty() {
                if queue.closed {
                    return;
                }
                shared.metrics.queue_size.set(0.0);
                continue;
            }
            let batch = next_batch(&mut queue.items, shared.limits);
            shared.metrics.queue_size.set(queue.items.len() as f64);
            batch
        };
        let start = Instant::now();
        let inputs: Vec<(&Prepared, Want)> = batch.iter().map(|i| (&i.input, i.want)).collect();
        let result = catch_unwind(AssertUnwindSafe(|| run(model, pooling, &inputs)))
            .unwrap_or_else(|panic| Err(format!("inference panicked: {}", panic_message(&panic))));
        let inference = start.elapsed();
        let m = &shared.metrics;
        let tokens: usize = batch.iter().map(|i| i.input.ids.len()).sum();
        m.batch_size.record(batch.len() as f64);
        m.batch_tokens.record(tokens as f64);
        m.tokens.increment(tokens as u64);
        match result {
            Ok(outputs) => {
                for (item, output) in batch.into_iter().zip(outputs) {
                    let timing = Timing { queue: start.duration_since(item.enqueued), inference };
                    let _ = item.reply.send(Ok((output, timing)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, inputs = batch.len(), tokens, "inference failed");
                for item in batch {
                    let _ = item.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Takes the oldest item, then the items closest to it in length, within the limits.
fn next_batch(items: &mut VecDeque<Item>, limits: Limits) -> Vec<Item> {
    let anchor = items.pop_front().expect("queue is not empty");
    let max_sequences = limits.max_batch_requests.unwrap_or(usize::MAX).max(1);
    let mut budget = limits.max_batch_tokens.saturating_sub(anchor.input.ids.len());
    let len = anchor.input.ids.len();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].input.ids.len().abs_diff(len), i));
    let mut chosen = Vec::new();
    for i in order {
        if chosen.len() + 1 >= max_sequences || budget == 0 {
            break;
        }
        if items[i].input.ids.len() <= budget {
            budget -= items[i].input.ids.len();
            chosen.push(i);
        }
    }
    chosen.sort_unstable_by(|a, b| b.cmp(a));
    let mut batch = vec![anchor];
    batch.extend(chosen.into_iter().map(|i| items.remove(i).expect("index in range")));
    batch
}

/// One call of the library's pipeline over the batch: outputs in input order, one per input.
fn run(model: &Model, pooling: Option<PoolingMode>, inputs: &[(&Prepared, Want)]) -> Result<Vec<Output>, String> {
    let outputs = model.run(inputs, pooling).map_err(|e| e.to_string())?;
    if outputs.len() != inputs.len() {
        return Err(format!("the model answered {} outputs for {} inputs", outputs.len(), inputs.len()));
    }
    Ok(outputs)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Compile-time check: the model can be shared by worker threads.
#[allow(dead_code)]
fn assert_model_is_shareable() {
    fn is<T: Send + Sync>() {}
    is::<Model>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: usize) -> Item {
        let (reply, _) = oneshot::channel();
        Item { input: Prepared::from_ids(vec![1; len]), want: Want::Embedding, enqueued: Instant::now(), reply }
    }

    #[test]
    fn batches_take_the_oldest_then_similar_lengths() {
        let mut q: VecDeque<Item> = [100, 10, 90, 120, 5].into_iter().map(item).collect();
        let b = next_batch(&mut q, Limits { max_batch_tokens: 310, max_batch_requests: None });
        let lens: Vec<usize> = b.iter().map(|i| i.input.ids.len()).collect();
        assert_eq!(lens, vec![100, 120, 90]);
        assert_eq!(q.iter().map(|i| i.input.ids.len()).collect::<Vec<_>>(), vec![10, 5]);
        let b = next_batch(&mut q, Limits { max_batch_tokens: 320, max_batch_requests: Some(1) });
        assert_eq!(b.len(), 1);
        // A sequence longer than the budget still runs, alone.
        let mut q: VecDeque<Item> = [500, 10].into_iter().map(item).collect();
        assert_eq!(next_batch(&mut q, Limits { max_batch_tokens: 100, max_batch_requests: None }).len(), 1);
    }
}
