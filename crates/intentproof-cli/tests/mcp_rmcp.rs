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

use std::path::Path;
use std::process::Command;

mod common;

use common::{
    Stopped, assert_http_command_upstream_transparent, assert_http_url_upstream_gives,
    assert_http_url_upstream_transparent, assert_stdio_gateway_transparent, mcp2026_script,
    pypi_fixture_stdio, python_mcp2, run_transcript, start_http_fixture,
};

const SERVER: &str = "rmcp-fixture-server";
const CLIENT: &str = "rmcp-transcript-client";

// ---- the peers ----------------------------------------------------------------------

/// The directory holding `rmcp-fixture-server` and `rmcp-transcript-client`.
fn peers_dir() -> &'static Path {
    common::rmcp_peers_dir()
}

fn peer(name: &str) -> String {
    peers_dir().join(name).to_string_lossy().into_owned()
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
            Fixture::PyPi => pypi_fixture_stdio(),
        }
    }

    /// Starts it over Streamable HTTP on a free loopback port; its URL.
    /// `json`: the rmcp server answers plain JSON, not SSE streams (see
    /// [`http_url_is_transparent`]).
    fn start_http(self, log: &Path, json: bool) -> (Stopped, String) {
        let mut cmd = match self {
            Fixture::Rmcp => Command::new(peer(SERVER)),
            Fixture::PyPi => {
                let mut cmd = Command::new(python_mcp2());
                cmd.arg(mcp2026_script("fixture_server.py"));
                cmd
            }
        };
        if json {
            cmd.env("RMCP_FIXTURE_JSON_RESPONSE", "1");
        }
        start_http_fixture(cmd, &format!("{self:?} fixture"), log)
    }
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
                let mut cmd = Command::new(python_mcp2());
                cmd.arg(mcp2026_script("transcript.py"));
                (cmd, mode, "transcript.py")
            }
            Client::Rmcp(mode) => (Command::new(peer(CLIENT)), mode, CLIENT),
        };
        cmd.args(["--mode", mode]).args(args);
        run_transcript(&mut cmd, &format!("{what} --mode {mode} {args:?}"))
    }
}

/// stdio: `client` with `fixture` directly vs through `intentproof mcp --`.
fn stdio_is_transparent(client: Client, fixture: Fixture) {
    assert_stdio_gateway_transparent(&fixture.stdio(), |args| client.transcript(args));
}

/// HTTP, `url` upstream: `client` with `fixture` over Streamable HTTP
/// directly vs through `/mcp/<name>` of `intentproof serve`.
///
/// The rmcp client against the rmcp server (which answers on SSE streams):
/// the direct transcript comes from a twin of the server that answers plain
/// JSON. rmcp 3.11's client races when a stream's last message and its end
/// arrive together: the `tools/list` answer can reach the caller without its
/// `x-mcp-header` positions being cached, and the `where` call then goes
/// out without `Mcp-Param-Region` (refused, -32020; ~2 % of direct runs on
/// a loaded machine). The gateway hands such a listing back as one JSON
/// body, so the run through it faces the SSE server itself.
fn http_url_is_transparent(client: Client, fixture: Fixture) {
    let temp = tempfile::tempdir().unwrap();
    let (server, upstream) = fixture.start_http(&temp.path().join("fixture.log"), false);
    if let (Client::Rmcp(_), Fixture::Rmcp) = (client, fixture) {
        let (twin, twin_url) = fixture.start_http(&temp.path().join("twin.log"), true);
        let direct = client.transcript(&["http", &twin_url]);
        drop(twin);
        assert_http_url_upstream_gives(temp.path(), &upstream, &direct, |args| {
            client.transcript(args)
        });
    } else {
        assert_http_url_upstream_transparent(temp.path(), &upstream, |args| {
            client.transcript(args)
        });
    }
    drop(server);
}

/// HTTP, `command` upstream: `client` with `fixture` over stdio directly vs
/// through `/mcp/<name>` of `intentproof serve` running it.
fn http_command_is_transparent(client: Client, fixture: Fixture) {
    assert_http_command_upstream_transparent(&fixture.stdio(), |args| client.transcript(args));
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
// Over HTTP against the rmcp server, see [`http_url_is_transparent`] for
// where the direct transcript comes from.

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
