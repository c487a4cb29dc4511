//! `modernbert serve`: thin wrapper over `modernbert-server`.

use anyhow::Result;
use clap::Subcommand;

/// Serving subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Serve a model over HTTP: text-embeddings-inference routes (/embed, /rerank, /predict, ...)
    /// and OpenAI /v1/embeddings, with dynamic batching. Stops gracefully on SIGTERM or Ctrl-C.
    Serve(modernbert_server::ServeArgs),
}

/// Runs a serving subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Serve(args) => modernbert_server::run(args),
    }
}
