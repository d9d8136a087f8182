//! A throwaway PostgreSQL server for tests and benchmarks: `initdb` into a
//! temp directory, `postgres` on a free loopback port, stopped (fast
//! shutdown) and removed on drop.
//!
//! The binaries come from `INTENTPROOF_TEST_PG_BIN` (the directory holding
//! `initdb` and `postgres`; `scripts/test` sets it), else the newest
//! `/usr/lib/postgresql/<version>/bin`. PostgreSQL refuses to run as root,
//! so as root the server runs as the `postgres` user (the directory is
//! handed to it); as anyone else it runs as that user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running test server.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    user: Option<(u32, u32)>,
    fsync: bool,
    tls: bool,
    child: Option<Child>,
}

/// Why the server could not start.
pub type PgError = String;

impl PgServer {
    /// Initializes and starts a server; `fsync = false` for tests that do
    /// not measure durability (much faster), `true` for benchmarks.
    pub fn start(fsync: bool) -> Result<PgServer, PgError> {
        PgServer::start_with(fsync, None)
    }

    /// [`start`](Self::start) with TLS on: `cert` and `key` (PEM files) are
    /// the server's certificate and key (copied into its directory).
    pub fn start_tls(fsync: bool, cert: &Path, key: &Path) -> Result<PgServer, PgError> {
        PgServer::start_with(fsync, Some((cert, key)))
    }

    fn start_with(fsync: bool, tls: Option<(&Path, &Path)>) -> Result<PgServer, PgError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("intentproof-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let user = if is_root() {
            Some(postgres_ids()?)
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb
            .output()
            .map_err(|e| format!("{}: {e}", bin.join("initdb").display()))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if let Some((cert, key)) = tls {
            for (from, name) in [(cert, "server.crt"), (key, "server.key")] {
                let to = data.join(name);
                std::fs::copy(from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| e.to_string())?;
                if let Some((uid, gid)) = user {
                    std::os::unix::fs::chown(&to, Some(uid), Some(gid))
                        .map_err(|e| format!("chown {}: {e}", to.display()))?;
                }
            }
        }
        let port = free_port()?;
        let mut server = PgServer {
            bin,
            dir,
            port,
            user,
            fsync,
            tls: tls.is_some(),
            child: None,
        };
        server.resume()?;
        Ok(server)
    }

    /// `postgresql://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Fast shutdown (SIGINT), waiting for it to exit.
    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data (after [`pause`](Self::pause)).
    pub fn resume(&mut self) -> Result<(), PgError> {
        let data = self.dir.path().join("data");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", if self.fsync { "fsync=on" } else { "fsync=off" }])
            .args(["-c", "max_connections=200"])
            .args(["-c", if self.tls { "ssl=on" } else { "ssl=off" }])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(|e| format!("postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("postgres exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("postgres did not accept connections within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.pause();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn postgres_ids() -> Result<(u32, u32), PgError> {
    let id = |flag: &str| -> Result<u32, PgError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| format!("id: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| "running as root and there is no `postgres` user to run PostgreSQL as (install the postgresql package)".to_owned())
    };
    Ok((id("-u")?, id("-g")?))
}

fn free_port() -> Result<u16, PgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn bin_dir() -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os("INTENTPROOF_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin)
                .join("postgres")
                .exists()
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "no PostgreSQL server binaries: install the postgresql package (Debian: apt-get install postgresql) or set INTENTPROOF_TEST_PG_BIN to the directory holding initdb and postgres".to_owned()
    })
}
