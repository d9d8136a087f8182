//! `intentproof tui`: the terminal UI (the `intentproof-tui` crate) on the
//! daemon of a data dir, or on its store when no daemon answers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use intentproof_api::datadir::{DataDir, server_given};
use intentproof_tui::{HttpSource, LocalSource, Source};

/// `intentproof tui` flags.
#[derive(Args, Debug)]
pub struct TuiArgs {
    /// Data directory (token, daemon address, store) [default: $INTENTPROOF_DATA_DIR or
    /// ~/.intentproof]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Daemon URL [default: $INTENTPROOF_SERVER, else the address the daemon on this data dir
    /// recorded, else http://127.0.0.1:9787]
    #[arg(long)]
    pub server: Option<String>,
    /// Read the store directly, read-only, even if a daemon answers (what it held when opened).
    #[arg(long)]
    pub local: bool,
    /// Browse the fleet view (`intentproof serve --fleet`: every daemon's
    /// records in PostgreSQL); its address and token are in <data dir>/fleet.
    #[arg(long, conflicts_with = "local")]
    pub fleet: bool,
    /// Where `e` writes proof bundles.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub export_dir: PathBuf,
    /// How often new events and flags are fetched, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub poll_ms: u64,
}

/// Picks the source (daemon if one answers, else the store) and runs the UI.
pub fn run(args: TuiArgs) -> Result<()> {
    let dir = DataDir::new(crate::daemon::client_data_dir(args.data_dir, args.fleet)?);
    let explicit = server_given(args.server.clone());
    let base = dir.daemon_base(explicit.clone());
    let source: Box<dyn Source> = if !args.local && HttpSource::probe(&base, Duration::from_secs(2))
    {
        let token = dir.token().with_context(|| {
                format!(
                    "a daemon answers at {base}, but there is no token in {}; pass the daemon's --data-dir",
                    dir.path().display()
                )
            })?;
        let daemon_key = dir.key_ring().ok().and_then(|ring| ring.daemon().copied());
        let source = HttpSource::new(&base, token, daemon_key)?;
        Box::new(if args.fleet { source.fleet() } else { source })
    } else if args.fleet {
        bail!(
            "no fleet view answers at {base}: start `intentproof serve --fleet` (with a [fleet] postgres_url in its --config) on this data dir"
        );
    } else if explicit.is_some() && !args.local {
        bail!(
            "no daemon answers at {base}: start `intentproof serve`, or drop --server to open the store of the data dir"
        );
    } else {
        Box::new(LocalSource::open(dir.path())?)
    };
    if !args.export_dir.is_dir() {
        bail!(
            "--export-dir {} is not a directory",
            args.export_dir.display()
        );
    }
    intentproof_tui::run(
        source,
        intentproof_tui::Options {
            export_dir: args.export_dir,
            poll_every: Duration::from_millis(args.poll_ms.max(100)),
        },
    )
    .context("the terminal UI failed (is this a terminal?)")
}
