//! `modernbert train | data | tokenizer | plot`: thin wrappers over `modernbert-train`.

use anyhow::Result;
use clap::Subcommand;

/// Training-related subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Pretrain or continue pretraining a ModernBERT model (not implemented yet).
    Train,
}

/// Runs a training-related subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Train => anyhow::bail!("`modernbert train` is not implemented yet"),
    }
}
