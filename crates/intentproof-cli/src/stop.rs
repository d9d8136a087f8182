//! `intentproof stop [--data-dir D]`: stops the daemon of a data dir the
//! way Ctrl-C would (SIGTERM: it drains, fsyncs, writes a final
//! checkpoint) and waits until it has exited, so the store is free for the
//! next `serve`, `store verify` or `tui` when the command returns.
//!
//! It finds the daemon through `daemon.json` and signals the pid written
//! there only once the daemon at the recorded address has answered
//! `/healthz` with this data dir's instance id: a pid left in a stale file
//! may belong to another process by now. It never kills (no SIGKILL) and
//! never edits the data dir.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use intentproof_api::client::DaemonClient;
use intentproof_api::datadir::DataDir;
use intentproof_core::keys::InstanceKey;
use rustix::process::{Pid, Signal};

use crate::daemon::data_dir_or_default;

/// How long `/healthz` may take to answer before the daemon counts as not
/// answering.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a daemon may take to drain and exit.
const EXIT_WAIT: Duration = Duration::from_secs(60);
/// How often the wait looks again.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// `intentproof stop` flags.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Data directory [default: $INTENTPROOF_DATA_DIR or ~/.intentproof]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Stops the daemon of the data dir; no daemon running is not an error.
pub fn stop(args: StopArgs) -> Result<()> {
    let dir = data_dir_or_default(args.data_dir)?;
    let data_dir = DataDir::new(&dir);
    let Some(info) = data_dir.daemon_info()? else {
        println!("no daemon is running on {} (no daemon.json)", dir.display());
        return Ok(());
    };
    let own = InstanceKey::load_from(&dir)
        .with_context(|| format!("{} has a daemon.json but no daemon key", dir.display()))?;
    let pid = Pid::from_raw(i32::try_from(info.pid).unwrap_or(0)).with_context(|| {
        format!(
            "{}/daemon.json names pid {}, which cannot be a process",
            dir.display(),
            info.pid
        )
    })?;
    let base = format!("http://{}", info.listen);
    match healthz_instance(&base) {
        Ok(instance) if instance == own.instance_id() => {}
        Ok(instance) => bail!(
            "{base} is answered by daemon instance {instance}, not by this data dir's ({}); {}/daemon.json is stale. Nothing was stopped",
            own.instance_id(),
            dir.display()
        ),
        Err(reason) if !exited(pid) => bail!(
            "{}/daemon.json names pid {}, but nothing answers at {base} ({reason}). Nothing was stopped: if pid {} is a hung intentproof daemon, `kill {}` stops it after draining",
            dir.display(),
            info.pid,
            info.pid,
            info.pid
        ),
        Err(_) => {
            println!(
                "no daemon is running on {} (daemon.json is left from pid {}, which has exited)",
                dir.display(),
                info.pid
            );
            return Ok(());
        }
    }

    rustix::process::kill_process(pid, Signal::TERM)
        .with_context(|| format!("cannot signal the daemon (pid {})", info.pid))?;
    let deadline = Instant::now() + EXIT_WAIT;
    while !exited(pid) {
        if Instant::now() >= deadline {
            bail!(
                "the daemon of {} (pid {}) is still draining after {} s; wait for it, or `kill -9 {}` (events not yet acknowledged would be lost)",
                dir.display(),
                info.pid,
                EXIT_WAIT.as_secs(),
                info.pid
            );
        }
        std::thread::sleep(EXIT_POLL);
    }
    println!(
        "stopped the daemon of {} (pid {}, {base})",
        dir.display(),
        info.pid
    );
    Ok(())
}

/// The instance id the daemon at `base` answers `/healthz` with.
fn healthz_instance(base: &str) -> Result<String, String> {
    let client =
        DaemonClient::new(base, String::new(), Some(HEALTH_TIMEOUT)).map_err(|e| e.to_string())?;
    let answer: intentproof_api::wire::Health =
        client.get(&["healthz"], &[]).map_err(|e| e.to_string())?;
    Ok(answer.instance_id)
}

/// Whether `pid` is gone: no such process, or a zombie (exited, waiting
/// for its parent to reap it: the `intentproof mcp` that started it, which
/// never does while it runs). A zombie holds no files, so the store is
/// free either way. Zombies are seen through `/proc` (Linux); elsewhere
/// one counts as running until its parent reaps it.
fn exited(pid: Pid) -> bool {
    if rustix::process::test_kill_process(pid).is_err_and(|e| e == rustix::io::Errno::SRCH) {
        return true;
    }
    // `/proc/<pid>/stat`: "pid (comm) state ..."; comm may hold spaces and
    // parentheses, so the state follows the last ')'.
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}
