//! `modernbert serve`: thin wrapper over `modernbert-server`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

/// Serving subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Serve a model over HTTP: text-embeddings-inference routes (/embed, /rerank, /predict, ...)
    /// and OpenAI /v1/embeddings, with dynamic batching. Stops gracefully on SIGTERM or Ctrl-C.
    Serve(ServeCommand),
}

/// Arguments of `modernbert serve`.
#[derive(Args)]
pub struct ServeCommand {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face Hub id.
    /// Default: $MODERNBERT_MODEL, else the embedding model shipped in this repository
    /// (models/modernbert-mini-embed), else models/modernbert-mini.
    #[arg(long, short)]
    model: Option<String>,
    #[command(flatten)]
    server: modernbert_server::ServeArgs,
}

/// Runs a serving subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Serve(ServeCommand { model, mut server }) => {
            server.model = match model {
                Some(m) => m,
                None => modernbert::hub::default_embedding_model().context(crate::NO_MODEL)?,
            };
            modernbert_server::run(server)
        }
    }
}
