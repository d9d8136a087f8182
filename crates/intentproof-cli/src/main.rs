//! The `intentproof` command. Subcommands arrive with the proof core, the
//! daemon and the gateway; today it reports its version.

use clap::Parser;

/// IntentProof: verifiable records of what AI agents meant to do and did.
#[derive(Parser)]
#[command(name = "intentproof", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
