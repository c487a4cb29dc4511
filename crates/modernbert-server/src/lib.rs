//! HTTP serving for ModernBERT: text-embeddings-inference (TEI) compatible routes, OpenAI
//! `/v1/embeddings`, and dynamic token-budget batching.
//!
//! Request path: axum router → JSON parsing and limits → tokenisation on the blocking pool
//! ([`modernbert::Model::prepare`]: the model's format decides prompts, lengths, ColBERT
//! prefixes) → [`batcher`] queue → model thread ([`modernbert::Model::run`] on one batch) →
//! the library's output per input → finished in the handler ([`modernbert::Model::finish`],
//! the cross-encoder activation, ColBERT MaxSim). The server never runs the encoder, pooling or
//! heads itself. See `docs/serving.md`.
//!
//! ```no_run
//! let args = modernbert_server::ServeArgs::for_model("tests/fixtures/tiny-mlm");
//! let server = modernbert_server::spawn(args)?; // binds 127.0.0.1:<free port>
//! println!("listening on {}", server.addr());
//! server.shutdown()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod batcher;
pub mod client;
pub mod encode;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod state;
pub mod types;

use anyhow::{Context, Result};
use state::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use modernbert::embedding::PoolingMode;

/// Parses `--pooling`: sentence-transformers' mode names (`cls`, `mean`, `max`,
/// `mean_sqrt_len_tokens`, `weightedmean`, `lasttoken`), also with `-` for `_` and TEI's
/// `last_token`.
pub fn parse_pooling(name: &str) -> Result<PoolingMode, String> {
    let key = name.trim().to_ascii_lowercase().replace('-', "_");
    let key = match key.as_str() {
        "last_token" => "lasttoken",
        "weighted_mean" => "weightedmean",
        "mean_sqrt_len" => "mean_sqrt_len_tokens",
        k => k,
    };
    PoolingMode::parse(key).ok_or_else(|| {
        format!("unknown pooling {name:?}; one of cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken")
    })
}

/// Options of `modernbert serve` (defaults as in TEI).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face Hub id.
    /// Not a flag: the `modernbert serve` command fills it in (with its default model).
    #[arg(skip)]
    pub model: String,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub hostname: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 3000)]
    pub port: u16,
    /// Most tokens in one forward pass (an input longer than this still runs, alone).
    #[arg(long, default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Most inputs in one forward pass (default: no limit besides tokens).
    #[arg(long)]
    pub max_batch_requests: Option<usize>,
    /// Inference requests served at once; more are answered 429.
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Most inputs in one request; more are answered 413.
    #[arg(long, default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Largest request body in bytes; larger ones are answered 413.
    #[arg(long, default_value_t = 2_000_000)]
    pub payload_limit: usize,
    /// Truncate over-long inputs unless a request says `"truncate": false`.
    #[arg(long)]
    pub auto_truncate: bool,
    /// Pooling for /embed, replacing the model's pooling modes: cls, mean, max,
    /// mean_sqrt_len_tokens, weightedmean or lasttoken (default: the model's sentence-transformers
    /// pooling, else mean). The model's Dense and Normalize modules still apply.
    #[arg(long, value_parser = parse_pooling)]
    pub pooling: Option<PoolingMode>,
    /// Model threads; each runs whole batches (forward passes are multi-threaded themselves).
    #[arg(long, default_value_t = 1)]
    pub model_workers: usize,
    /// Model name reported by /info and /v1/embeddings (default: --model).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Arithmetic of the encoder's linear layers: f32 (exact), bf16 or int8 (faster, approximate).
    #[arg(long, default_value = "f32")]
    pub precision: modernbert::Precision,
}

impl ServeArgs {
    /// Defaults for `model`, listening on 127.0.0.1 at a free port (for tests and embedding).
    pub fn for_model(model: &str) -> Self {
        Self {
            model: model.to_string(),
            hostname: "127.0.0.1".into(),
            port: 0,
            max_batch_tokens: 16384,
            max_batch_requests: None,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            payload_limit: 2_000_000,
            auto_truncate: false,
            pooling: None,
            model_workers: 1,
            served_model_name: None,
            precision: modernbert::Precision::F32,
        }
    }
}

/// Serves on `listener` until `shutdown` resolves (or loading the model fails), then finishes
/// in-flight requests, stops the model threads and returns.
pub async fn serve(
    args: ServeArgs,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let state = Arc::new(AppState::new(args));
    let app = routes::router(state.clone());
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let loader = state.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let model = loader.args.model.clone();
        tracing::info!(model, "loading model");
        let state = loader.clone();
        match tokio::task::spawn_blocking(move || state.load()).await {
            Ok(Ok(ready)) => {
                eprintln!(
                    "modernbert serve: model {model} ready in {:.1}s: {} ({}), hidden {}, max input {} tokens, {}",
                    start.elapsed().as_secs_f64(),
                    ready.architecture,
                    ready.model.format.name(),
                    ready.hidden_size,
                    ready.encoder.max_input(),
                    ready.info["model_type"],
                );
                let _ = loader.ready.set(Arc::new(ready));
                loader.metrics.ready.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                let _ = failed_tx.send(e.context(format!("loading {model}")));
            }
            Err(e) => {
                let _ = failed_tx.send(anyhow::anyhow!("loading {model}: {e}"));
            }
        }
    });
    let (stop_tx, stop_rx) = oneshot::channel::<Option<anyhow::Error>>();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {
                tracing::info!("shutting down: finishing in-flight requests");
                let _ = stop_tx.send(None);
            }
            Ok(e) = failed_rx => { let _ = stop_tx.send(Some(e)); }
        }
    });
    let (error_tx, error_rx) = oneshot::channel();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let error = stop_rx.await.ok().flatten();
            let _ = error_tx.send(error);
        })
        .await
        .context("HTTP server failed")?;
    // Every connection is closed, so no request waits on the model any more.
    if let Some(ready) = state.ready.get().cloned() {
        tokio::task::spawn_blocking(move || ready.batcher.shutdown()).await?;
    }
    match error_rx.await {
        Ok(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `modernbert serve`: binds, prints the address, loads the model and serves until SIGTERM/Ctrl-C.
pub fn run(args: ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("http").build()?;
    let result = runtime.block_on(async {
        let addr = format!("{}:{}", args.hostname, args.port);
        let listener = TcpListener::bind(&addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!("modernbert serve: listening on http://{} (loading {})", listener.local_addr()?, args.model);
        serve(args, listener, shutdown_signal()).await
    });
    runtime.shutdown_timeout(Duration::from_secs(2));
    if result.is_ok() {
        eprintln!("modernbert serve: stopped");
    }
    result
}

/// A server running on its own thread (see [`spawn`]).
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

/// Binds `args.hostname:args.port` and serves on a background thread with its own runtime.
pub fn spawn(args: ServeArgs) -> Result<ServerHandle> {
    let listener = std::net::TcpListener::bind((args.hostname.as_str(), args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.hostname, args.port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("server".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("http").build()?;
        let result = runtime.block_on(async move {
            let listener = TcpListener::from_std(listener)?;
            serve(args, listener, async move {
                let _ = stopped.await;
            })
            .await
        });
        runtime.shutdown_timeout(Duration::from_secs(2));
        result
    })?;
    Ok(ServerHandle { addr, stop: Some(stop), thread: Some(thread) })
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until `/health` answers 200; fails if the server stopped or `timeout` passed.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                anyhow::bail!("the server stopped before it was ready");
            }
            if client::get(self.addr, "/health").is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            anyhow::ensure!(start.elapsed() < timeout, "the server was not ready after {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server thread has ended (for example because the model failed to load).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops accepting connections, finishes in-flight requests, and returns the server's result.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pooling_mode_parses() {
        for mode in [
            PoolingMode::Cls,
            PoolingMode::Mean,
            PoolingMode::Max,
            PoolingMode::MeanSqrtLen,
            PoolingMode::WeightedMean,
            PoolingMode::LastToken,
        ] {
            assert_eq!(parse_pooling(mode.name()), Ok(mode));
        }
        assert_eq!(parse_pooling("last_token"), Ok(PoolingMode::LastToken));
        assert_eq!(parse_pooling("Mean-Sqrt-Len-Tokens"), Ok(PoolingMode::MeanSqrtLen));
        assert!(parse_pooling("splade").unwrap_err().contains("lasttoken"));
    }

    #[test]
    fn serve_flags_parse() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["serve", "--pooling", "last_token", "--port", "0"]).unwrap();
        assert_eq!(cli.serve.pooling, Some(PoolingMode::LastToken));
        assert_eq!(Cli::try_parse_from(["serve"]).unwrap().serve.pooling, None);
        let err = Cli::try_parse_from(["serve", "--pooling", "splade"]).err().unwrap().to_string();
        assert!(err.contains("unknown pooling"), "{err}");
    }
}
