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
pub mod conn;
pub mod encode;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod search;
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

/// Parses a duration: seconds (`10`, `0.5`, `10s`) or milliseconds (`500ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = match s.strip_suffix("ms") {
        Some(n) => (n, 1e-3),
        None => (s.strip_suffix('s').unwrap_or(s), 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Duration::from_secs_f64(v * scale)),
        _ => Err(format!("{s:?} is not a positive duration (seconds, e.g. 10 or 0.5, or 500ms)")),
    }
}

/// Options of `modernbert serve` (defaults as in TEI unless said otherwise).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face Hub id.
    /// Not a flag: the `modernbert serve` command fills it in (with its default model).
    #[arg(skip)]
    pub model: String,
    /// Address to listen on. The default serves this machine only; `0.0.0.0` (or `::`) serves
    /// every interface (then consider --api-key).
    #[arg(long, default_value = "127.0.0.1")]
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
    /// Most inputs in one request; more are answered 413. The default is OpenAI's own limit, so
    /// that OpenAI clients (LangChain sends 1000 inputs per request) work unchanged (TEI: 32).
    #[arg(long, default_value_t = 2048)]
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
    /// Require `Authorization: Bearer <KEY>` on every route but /health, /ping, GET /, /metrics,
    /// /docs and /openapi.json (401 otherwise).
    #[arg(long, env = "MODERNBERT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Origins allowed to call the server from a browser (CORS), comma-separated or repeated;
    /// `*` for any. Default: none (no CORS headers).
    #[arg(long, value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,
    /// Most time to receive a request's headers, from their first byte (or from connecting);
    /// the connection is closed after it. Seconds, or e.g. 500ms.
    #[arg(long, default_value = "10", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Most time to receive a request's body once its headers arrived; 408 after it.
    #[arg(long, default_value = "30", value_parser = parse_duration)]
    pub body_read_timeout: Duration,
    /// Most time an idle keep-alive connection waits for its next request before it is closed
    /// (above the 60 s idle timeout of common load balancers).
    #[arg(long, default_value = "75", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,
    /// On SIGTERM/Ctrl-C, most time open requests may take to finish; then they are answered
    /// 503 and the process exits (below Kubernetes' default 30 s grace period).
    #[arg(long, default_value = "20", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Also serve code search over this index (built by `modernbert index PATH --index DIR`):
    /// `POST /search` (the JSON of `modernbert search --json`) and a search page at `GET /search`.
    #[arg(long, value_name = "DIR")]
    pub index: Option<std::path::PathBuf>,
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
            max_client_batch_size: 2048,
            payload_limit: 2_000_000,
            auto_truncate: false,
            pooling: None,
            model_workers: 1,
            served_model_name: None,
            precision: modernbert::Precision::F32,
            api_key: None,
            cors_allow_origin: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            shutdown_timeout: Duration::from_secs(20),
            index: None,
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
    if args.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        anyhow::bail!("the API key (--api-key or MODERNBERT_API_KEY) is empty");
    }
    let search = search::SearchState::open(&args)?;
    let mut state = AppState::new(args);
    state.search = search;
    let state = Arc::new(state);
    let app = routes::router(state.clone());
    let (failed_tx, failed_rx) = oneshot::channel::<anyhow::Error>();
    let loader = state.clone();
    tokio::spawn(async move {
        let start = Instant::now();
        let model = loader.args.model.clone();
        tracing::info!(model, "loading model");
        let state = loader.clone();
        let load = move || {
            let ready = state.load()?;
            let index = state.search.prepare(&ready)?;
            Ok::<_, anyhow::Error>((ready, index))
        };
        match tokio::task::spawn_blocking(load).await {
            Ok(Ok((ready, index))) => {
                eprintln!(
                    "modernbert serve: model {model} ready in {:.1}s: {} ({}), hidden {}, max input {} tokens, {}",
                    start.elapsed().as_secs_f64(),
                    ready.architecture,
                    ready.model.format.name(),
                    ready.hidden_size,
                    ready.encoder.max_input(),
                    ready.info["model_type"],
                );
                if let Some(index) = index {
                    eprintln!("modernbert serve: {index}; search page at /search");
                }
                let _ = loader.ready.set(Arc::new(ready));
                loader.metrics.ready.set(1.0);
            }
            Ok(Err(e)) => {
                let _ = failed_tx.send(e.context(format!("loading {model}")));
            }
            Err(e) => {
                let _ = failed_tx.send(anyhow::anyhow!("loading {model}: {e}"));
            }
        }
    });
    // Histogram samples are drained into buckets here too, so memory stays bounded unscraped.
    let upkeep = state.clone();
    let upkeep = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.metrics.upkeep();
        }
    });
    let (error_tx, error_rx) = oneshot::channel::<Option<anyhow::Error>>();
    let stop = async move {
        tokio::select! {
            () = shutdown => {
                tracing::info!("shutting down: finishing open requests");
                let _ = error_tx.send(None);
            }
            Ok(e) = failed_rx => { let _ = error_tx.send(Some(e)); }
        }
    };
    let args = &state.args;
    let timeouts = conn::Timeouts {
        header: args.header_read_timeout,
        idle: args.keep_alive_timeout,
        shutdown: args.shutdown_timeout,
    };
    let aborted = conn::serve_connections(listener, app, state.clone(), timeouts, stop).await;
    upkeep.abort();
    if aborted {
        tracing::warn!("stopped at the shutdown deadline");
    }
    // No request waits on the model any more: fail what is still queued (inputs of requests
    // that are gone), let the model threads end; a batch still running after a second is left
    // to the process exit.
    if let Some(ready) = state.ready.get().cloned() {
        ready.batcher.abort();
        let join = tokio::task::spawn_blocking(move || ready.batcher.shutdown());
        let _ = tokio::time::timeout(Duration::from_secs(1), join).await;
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
    runtime.shutdown_timeout(Duration::from_millis(500));
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
        runtime.shutdown_timeout(Duration::from_millis(500));
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

        // Serving on all interfaces is a choice; the timeouts have defaults.
        let defaults = Cli::try_parse_from(["serve"]).unwrap().serve;
        assert_eq!(defaults.hostname, "127.0.0.1");
        assert_eq!(defaults.max_client_batch_size, 2048);
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.shutdown_timeout, Duration::from_secs(20));
        assert!(defaults.cors_allow_origin.is_empty());
        let cli = Cli::try_parse_from([
            "serve",
            "--cors-allow-origin",
            "https://a.example,https://b.example",
            "--header-read-timeout",
            "500ms",
            "--api-key",
            "k",
        ])
        .unwrap();
        assert_eq!(cli.serve.cors_allow_origin, ["https://a.example", "https://b.example"]);
        assert_eq!(cli.serve.header_read_timeout, Duration::from_millis(500));
        assert_eq!(cli.serve.api_key.as_deref(), Some("k"));
    }

    #[test]
    fn api_key_from_the_environment() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // SAFETY: no other test of this binary reads or writes this variable.
        unsafe { std::env::set_var("MODERNBERT_API_KEY", "from-env") };
        let cli = Cli::try_parse_from(["serve"]).unwrap();
        unsafe { std::env::remove_var("MODERNBERT_API_KEY") };
        assert_eq!(cli.serve.api_key.as_deref(), Some("from-env"));
        let help = Cli::try_parse_from(["serve", "--help"]).err().unwrap().to_string();
        assert!(help.contains("MODERNBERT_API_KEY") && !help.contains("from-env"), "{help}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0").is_err() && parse_duration("soon").is_err());
    }
}
