//! `intentproof fleet`: the fleet database (`[fleet]` in the config).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use intentproof_fleet::FleetConfig;

use crate::daemon::resolve_config;

/// `intentproof fleet ...`.
#[derive(Subcommand)]
pub enum FleetCommand {
    /// Check every daemon's records in PostgreSQL against the checkpoints it
    /// signed (roots recomputed, consistency proofs, no gap, no fault):
    /// exit 0 verified, 1 not.
    Verify(FleetArgs),
    /// Each daemon in the fleet: records, checkpoints, last replication, faults.
    Status(FleetArgs),
}

/// Where the fleet database is.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// The daemon's TOML config, whose `[fleet]` names the database [env INTENTPROOF_CONFIG]
    #[arg(long)]
    config: Option<PathBuf>,
    /// The database instead of the config's (`postgresql://user@host:port/db`;
    /// the password from PGPASSWORD if set)
    #[arg(long, value_name = "URL")]
    postgres_url: Option<String>,
    /// With --postgres-url and ?sslmode=require: the PEM file of the CA that
    /// signed the server's certificate (default: the platform's trust store)
    #[arg(long, value_name = "FILE", requires = "postgres_url")]
    ca_file: Option<PathBuf>,
}

impl FleetArgs {
    fn fleet(&self) -> Result<FleetConfig> {
        if let Some(url) = &self.postgres_url {
            return Ok(FleetConfig {
                postgres_url: url.clone(),
                password_env: std::env::var_os("PGPASSWORD").map(|_| "PGPASSWORD".to_owned()),
                ca_file: self.ca_file.clone(),
                ..FleetConfig::default()
            });
        }
        let config = resolve_config(self.config.clone(), None)?;
        match config.fleet {
            Some(fleet) => Ok(fleet),
            None => bail!(
                "no fleet database: add a [fleet] section with postgres_url to the config (--config or INTENTPROOF_CONFIG), or pass --postgres-url"
            ),
        }
    }
}

/// Runs a `fleet` subcommand.
pub fn run(command: FleetCommand) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        FleetCommand::Verify(args) => {
            let fleet = args.fleet()?;
            let report = runtime.block_on(async {
                let client = fleet
                    .connect()
                    .await
                    .with_context(|| format!("cannot reach {}", fleet.display_url()))?;
                intentproof_fleet::verify_fleet(&client)
                    .await
                    .context("fleet verify")
            })?;
            if report.daemons.is_empty() {
                println!("no daemon has replicated into {} yet", fleet.display_url());
                return Ok(ExitCode::SUCCESS);
            }
            println!("{report}");
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        FleetCommand::Status(args) => {
            let fleet = args.fleet()?;
            let text = runtime.block_on(async {
                let client = fleet
                    .connect()
                    .await
                    .with_context(|| format!("cannot reach {}", fleet.display_url()))?;
                intentproof_fleet::status(&client)
                    .await
                    .context("fleet status")
            })?;
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
