//! `modernbert serve`: thin wrapper over `modernbert-server`.

use anyhow::Result;
use clap::Subcommand;

/// Serving subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Serve a model over HTTP (not implemented yet).
    Serve,
}

/// Runs a serving subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Serve => anyhow::bail!("`modernbert serve` is not implemented yet"),
    }
}
