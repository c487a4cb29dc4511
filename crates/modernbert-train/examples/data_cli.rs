//! Try the `data` / `tokenizer` CLI before it is wired into `modernbert`:
//! `cargo run --release -p modernbert-train --example data_cli -- data prepare ...`

#[path = "../../modernbert-cli/src/data_cmd.rs"]
mod data_cmd;

use clap::Parser;

#[derive(Parser)]
#[command(name = "modernbert")]
struct Cli {
    #[command(subcommand)]
    command: data_cmd::Commands,
}

fn main() -> anyhow::Result<()> {
    data_cmd::run(Cli::parse().command)
}
