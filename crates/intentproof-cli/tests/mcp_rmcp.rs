//! rmcp (3.x, the Rust SDK) as a test peer: the gateway must be transparent
//! between peers of different SDKs too.
//!
//! (a) The PyPI mcp 2.3.0 transcript client (tests/mcp2026/transcript.py,
//!     pinned 2026-07-28 and auto) against `rmcp-fixture-server`: stdio
//!     direct vs `intentproof mcp -- rmcp-fixture-server stdio`; HTTP direct
//!     vs `intentproof serve` with a `url` upstream (the rmcp server over
//!     Streamable HTTP) and with a `command` upstream (it over stdio).
//! (b) `rmcp-transcript-client` at 2026-07-28 and at 2025-11-25 against the
//!     PyPI fixture (tests/mcp2026/fixture_server.py) and against
//!     `rmcp-fixture-server`, the same three ways.
//! Each transcript through the gateway must equal the direct one byte for
//! byte.
//!
//! The rmcp peers are the binaries of `crates/intentproof-mcp-peers`. A test
//! binary cannot depend on another package's binaries on stable Cargo, so
//! the first test builds them with `cargo build -p intentproof-mcp-peers`
//! into `<target>/rmcp-peers` (a separate target dir: the running `cargo
//! test` holds the lock of its own). `INTENTPROOF_TEST_RMCP_PEERS=<dir>`
//! names a directory that already holds both binaries instead. The PyPI
//! peers need `INTENTPROOF_TEST_PYTHON_MCP2` (what `./scripts/test`
//! installs). A missing peer fails the test, never skips it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;

use common::{BIN, Stopped, assert_same_transcript, daemon_listen, required_env, workspace_root};

/// The gateway's own tool, added to tools/list.
const PLAN_TOOL: &str = "intentproof_declare_plan";
/// A bound on runs that normally take seconds; never a timing assertion.
const DEADLINE: Duration = Duration::from_secs(300);
const SERVER: &str = "rmcp-fixture-server";
const CLIENT: &str = "rmcp-transcript-client";

// ---- the peers ----------------------------------------------------------------------

/// The directory holding `rmcp-fixture-server` and `rmcp-transcript-client`,
/// built once per test process.
fn peers_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("INTENTPROOF_TEST_RMCP_PEERS") {
            let dir = PathBuf::from(dir);
            for bin in [SERVER, CLIENT] {
                assert!(
                    dir.join(bin).is_file(),
                    "INTENTPROOF_TEST_RMCP_PEERS={} holds no {bin}: build it with \
                     `cargo build -p intentproof-mcp-peers`",
                    dir.display()
                );
            }
            return dir;
        }
        // <target>/<profile>/deps/mcp_rmcp-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target = profile_dir.parent().unwrap().join("rmcp-peers");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "--locked", "-p", "intentproof-mcp-peers", "--bins"])
            .arg("--target-dir")
            .arg(&target);
        if release {
            cmd.arg("--release");
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build the rmcp peers: {e}"));
        assert!(
            out.status.success(),
            "building the rmcp peers (cargo build -p intentproof-mcp-peers) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = target.join(if release { "release" } else { "debug" });
        for bin in [SERVER, CLIENT] {
            assert!(
                dir.join(bin).is_file(),
                "{} is missing after the build",
                dir.join(bin).display()
            );
        }
        dir
    })
}

fn peer(name: &str) -> String {
    peers_dir().join(name).to_string_lossy().into_owned()
}

fn python() -> PathBuf {
    required_env("INTENTPROOF_TEST_PYTHON_MCP2")
}

fn script(name: &str) -> String {
    workspace_root()
        .join("tests/mcp2026")
        .join(name)
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The two fixture servers: same tools, resource and prompt.
#[derive(Clone, Copy, Debug)]
enum Fixture {
    /// `rmcp-fixture-server`.
    Rmcp,
    /// tests/mcp2026/fixture_server.py (PyPI mcp 2.3.0).
    PyPi,
}

impl Fixture {
    /// The command serving it over stdio.
    fn stdio(self) -> Vec<String> {
        match self {
            Fixture::Rmcp => vec![peer(SERVER), "stdio".into()],
            Fixture::PyPi => vec![
                python().to_string_lossy().into_owned(),
                script("fixture_server.py"),
                "stdio".into(),
            ],
        }
    }

    /// Starts it over Streamable HTTP on a free loopback port; its URL.
    /// `json`: the rmcp server answers plain JSON, not SSE streams (see
    /// [`rmcp_client_transcript`]).
    fn start_http(self, log: &Path, json: bool) -> (Stopped, String) {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut cmd = match self {
            Fixture::Rmcp => Command::new(peer(SERVER)),
            Fixture::PyPi => {
                let mut cmd = Command::new(python());
                cmd.arg(script("fixture_server.py"));
                cmd
            }
        };
        cmd.args(["http", &port.to_string()]);
        if json {
            cmd.env("RMCP_FIXTURE_JSON_RESPONSE", "1");
        }
        clean_env(&mut cmd);
        let mut server = Stopped(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("{self:?} fixture: cannot start: {e}")),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!(
                    "{self:?} fixture http {port} exited with {status}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{self:?} fixture did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (server, format!("http://127.0.0.1:{port}/mcp"))
    }
}

// ---- processes (as in mcp_2026.rs) ----------------------------------------------------

/// Nothing may redirect an `intentproof` the test runs (or one its children
/// run), and a daemon it starts listens on a free port.
fn clean_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "INTENTPROOF_DATA_DIR",
        "INTENTPROOF_CONFIG",
        "INTENTPROOF_SERVER",
        "INTENTPROOF_INGEST_TOKEN",
        "RUST_LOG",
        "RMCP_FIXTURE_JSON_RESPONSE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("INTENTPROOF_LISTEN", "127.0.0.1:0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
}

/// Runs `cmd` to its end (stdout and stderr captured), killed after `within`.
fn run_bounded(cmd: &mut Command, what: &str, within: Duration) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Stopped(
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}")),
    );
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still running after {within:?}; stderr so far:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// `intentproof serve --config` (127.0.0.1:0, data dir `dir/data`) with
/// `servers` (TOML `[[mcp.servers]]` tables); returns it and its address.
fn start_gateway_daemon(dir: &Path, servers: &str) -> (Stopped, String) {
    let data = dir.join("data");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n\n{servers}",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(&config);
    clean_env(&mut cmd);
    let daemon = Stopped(
        cmd.current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let listen = daemon_listen(&data);
    (daemon, listen)
}

/// A `[[mcp.servers]]` table running `command` (a stdio server).
fn command_server(name: &str, command: &[String]) -> String {
    format!(
        "[[mcp.servers]]\nname = {name:?}\ncommand = {}\n",
        serde_json::to_string(command).unwrap()
    )
}

/// A `[[mcp.servers]]` table for a remote Streamable HTTP upstream.
fn url_server(name: &str, url: &str) -> String {
    format!("[[mcp.servers]]\nname = {name:?}\nurl = {url:?}\n")
}

// ---- the transcript clients -----------------------------------------------------------

/// Which client runs the fixed session.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// tests/mcp2026/transcript.py (PyPI mcp 2.3.0) at this `--mode`.
    PyPi(&'static str),
    /// rmcp-transcript-client at this `--mode`.
    Rmcp(&'static str),
}

impl Client {
    /// Its transcript of a session with `args` (`[--extra-tool T] stdio --
    /// cmd...` or `[--extra-tool T] http URL`).
    fn transcript(self, args: &[&str]) -> String {
        let (mut cmd, mode, what) = match self {
            Client::PyPi(mode) => {
                let mut cmd = Command::new(python());
                cmd.arg(script("transcript.py"));
                (cmd, mode, "transcript.py")
            }
            Client::Rmcp(mode) => (Command::new(peer(CLIENT)), mode, CLIENT),
        };
        cmd.args(["--mode", mode]).args(args);
        clean_env(&mut cmd);
        let what = format!("{what} --mode {mode} {args:?}");
        let out = run_bounded(&mut cmd, &what, DEADLINE);
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// stdio: `client` with `fixture` directly vs through `intentproof mcp --`.
fn stdio_is_transparent(client: Client, fixture: Fixture) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data").to_string_lossy().into_owned();
    let server = fixture.stdio();
    let mut direct = vec!["stdio", "--"];
    direct.extend(strs(&server));
    let mut through = vec![
        "--extra-tool",
        PLAN_TOOL,
        "stdio",
        "--",
        BIN,
        "mcp",
        "--name",
        "fixture",
        "--no-autostart",
        "--data-dir",
        &data,
        "--",
    ];
    through.extend(strs(&server));
    let direct = client.transcript(&direct);
    let through = client.transcript(&through);
    assert_same_transcript(temp.path(), &direct, &through);
}

/// HTTP, `url` upstream: `client` with `fixture` over Streamable HTTP
/// directly vs through `/mcp/<name>` of `intentproof serve`.
fn http_url_is_transparent(client: Client, fixture: Fixture) {
    let temp = tempfile::tempdir().unwrap();
    let json = matches!(client, Client::Rmcp(_));
    let (server, upstream) = fixture.start_http(&temp.path().join("fixture.log"), json);
    let (daemon, listen) = start_gateway_daemon(temp.path(), &url_server("remote", &upstream));
    let direct = client.transcript(&["http", &upstream]);
    let url = format!("http://{listen}/mcp/remote");
    let through = client.transcript(&["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_same_transcript(temp.path(), &direct, &through);
    drop(daemon);
    drop(server);
}

/// HTTP, `command` upstream: `client` with `fixture` over stdio directly vs
/// through `/mcp/<name>` of `intentproof serve` running it.
fn http_command_is_transparent(client: Client, fixture: Fixture) {
    let temp = tempfile::tempdir().unwrap();
    let server = fixture.stdio();
    let (daemon, listen) = start_gateway_daemon(temp.path(), &command_server("fixture", &server));
    let mut direct = vec!["stdio", "--"];
    direct.extend(strs(&server));
    let direct = client.transcript(&direct);
    let url = format!("http://{listen}/mcp/fixture");
    let through = client.transcript(&["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_same_transcript(temp.path(), &direct, &through);
    drop(daemon);
}

// ---- (a) the PyPI mcp 2.x client against the rmcp server ------------------------------

#[test]
fn pypi_client_pinned_rmcp_server_stdio() {
    stdio_is_transparent(Client::PyPi("2026-07-28"), Fixture::Rmcp);
}

#[test]
fn pypi_client_auto_rmcp_server_stdio() {
    stdio_is_transparent(Client::PyPi("auto"), Fixture::Rmcp);
}

#[test]
fn pypi_client_pinned_rmcp_server_http_url() {
    http_url_is_transparent(Client::PyPi("2026-07-28"), Fixture::Rmcp);
}

#[test]
fn pypi_client_auto_rmcp_server_http_url() {
    http_url_is_transparent(Client::PyPi("auto"), Fixture::Rmcp);
}

#[test]
fn pypi_client_pinned_rmcp_server_http_command() {
    http_command_is_transparent(Client::PyPi("2026-07-28"), Fixture::Rmcp);
}

#[test]
fn pypi_client_auto_rmcp_server_http_command() {
    http_command_is_transparent(Client::PyPi("auto"), Fixture::Rmcp);
}

// ---- (b) the rmcp client of each revision against both servers ------------------------
//
// Over HTTP the rmcp server answers plain JSON for these: rmcp 3.11's HTTP
// client learns a tool's `x-mcp-header` map only from a tools/list answered
// as JSON, not from one answered on an SSE stream (the rmcp server's
// default), so against an SSE-answering rmcp server its `where` call lacks
// Mcp-Param-Region and is refused (-32020) with or without a gateway.

macro_rules! rmcp_client_cases {
    ($($name:ident: $mode:literal, $fixture:ident;)*) => {
        mod rmcp_client {
            use super::*;
            $(
                mod $name {
                    use super::*;
                    #[test]
                    fn stdio() {
                        stdio_is_transparent(Client::Rmcp($mode), Fixture::$fixture);
                    }
                    #[test]
                    fn http_url() {
                        http_url_is_transparent(Client::Rmcp($mode), Fixture::$fixture);
                    }
                    #[test]
                    fn http_command() {
                        http_command_is_transparent(Client::Rmcp($mode), Fixture::$fixture);
                    }
                }
            )*
        }
    };
}

rmcp_client_cases! {
    v2026_rmcp_server: "2026-07-28", Rmcp;
    v2025_rmcp_server: "2025-11-25", Rmcp;
    v2026_pypi_server: "2026-07-28", PyPi;
    v2025_pypi_server: "2025-11-25", PyPi;
}
