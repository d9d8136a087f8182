//! What the CLI's end-to-end tests share: the binary, a daemon on a temp
//! data dir (port 0) that is stopped even when a test panics, and the test
//! peers that `./scripts/test` installs.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `intentproof` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_intentproof");

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `intentproof serve` on `dir` (127.0.0.1:0) and waits until it
/// listens.
pub fn start_daemon(dir: &Path) -> Stopped {
    start_daemon_with(dir, &[], &[])
}

/// [`start_daemon`] with extra `serve` arguments (e.g. `--config FILE`) and
/// environment, run from the workspace root so relative paths in a config
/// resolve there.
pub fn start_daemon_with(dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Stopped {
    let _ = std::fs::remove_file(dir.join("daemon.json"));
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("serve.log");
    let mut daemon = Stopped(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(workspace_root())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("daemon.json").exists() {
        if let Ok(Some(status)) = daemon.0.try_wait() {
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the daemon exited with {status}: {stderr}");
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

/// The workspace root (where `examples/` and `policies/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path from the environment that `./scripts/test` sets; fails loudly
/// when it is missing.
pub fn required_env(name: &str) -> PathBuf {
    let value = std::env::var_os(name).unwrap_or_else(|| {
        panic!("{name} is not set: run ./scripts/test, which installs the test peers and sets it")
    });
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{name}={} does not exist: run ./scripts/test to install it",
        path.display()
    );
    path
}

/// Runs a client command with `--json --data-dir dir` and parses its output.
pub fn cli_json(args: &[&str], dir: &Path) -> serde_json::Value {
    let output = Command::new(BIN)
        .args(args)
        .arg("--json")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A scripted agent speaking newline-delimited JSON-RPC to a gateway child.
pub struct Agent {
    /// The gateway's stdin.
    pub stdin: ChildStdin,
    /// The gateway's stdout.
    pub stdout: BufReader<ChildStdout>,
}

impl Agent {
    /// Takes over the stdio of a gateway started with piped stdin/stdout.
    pub fn attach(child: &mut Child) -> Agent {
        Agent {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
        }
    }

    /// Sends a request and returns its response (skipping anything else).
    pub fn request(
        &mut self,
        id: u64,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let message =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "gateway closed stdout"
            );
            let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
            if reply["id"] == serde_json::json!(id) {
                return reply;
            }
        }
    }

    /// `tools/call`.
    pub fn call(&mut self, id: u64, tool: &str, arguments: serde_json::Value) -> serde_json::Value {
        self.request(
            id,
            "tools/call",
            serde_json::json!({"name": tool, "arguments": arguments}),
        )
    }
}

/// Spawns a stdio gateway command (`intentproof mcp ...`) with its stdin
/// and stdout piped to a scripted agent (stderr dropped).
pub fn spawn_gateway(command: &mut Command) -> (Stopped, Agent) {
    let mut gateway = Stopped(
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent = Agent::attach(&mut gateway.0);
    (gateway, agent)
}

/// Starts `intentproof mcp --name NAME --no-autostart` on `dir` over the
/// built-in demo server (`extra` flags go before `--`), and attaches an agent.
pub fn start_gateway(dir: &Path, name: &str, extra: &[&str]) -> (Stopped, Agent) {
    spawn_gateway(
        Command::new(BIN)
            .args(["mcp", "--name", name, "--no-autostart"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir)
            .args(["--", BIN, "demo-server"]),
    )
}

/// Runs `tests/mcp/transcript.py` (the official Python MCP client's
/// scripted session) with `args` and returns its JSON transcript.
pub fn transcript(python: &Path, args: &[&str]) -> String {
    python_client(python, "transcript.py", args)
}

/// Runs the Python client `tests/mcp/<script>` with `args`; fails unless
/// it succeeds; what it printed (its transcript).
pub fn python_client(python: &Path, script: &str, args: &[&str]) -> String {
    let output = Command::new(python)
        .arg(workspace_root().join("tests/mcp").join(script))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Fails with a unified diff when the gateway changed what the client saw.
pub fn assert_same_transcript(dir: &Path, direct: &str, through: &str) {
    if direct == through {
        return;
    }
    let a = dir.join("direct.json");
    let b = dir.join("gateway.json");
    std::fs::write(&a, direct).unwrap();
    std::fs::write(&b, through).unwrap();
    let diff = Command::new("diff")
        .arg("-u")
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    panic!(
        "the gateway changed what the client sees:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

/// The address the daemon on `data` listens on, once it has written `daemon.json`.
pub fn daemon_listen(data: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(data.join("daemon.json")) {
            let info: serde_json::Value = serde_json::from_str(&text).unwrap();
            return info["listen"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks what `transcript.py`'s session through the gateway to server
/// `server` left in the store on `data`: one verified chain holding its nine
/// calls, in order, with their statuses. Returns (correlation id, events).
/// Waits (up to 10 s) for the nine: the daemon records calls after it has
/// answered them.
pub fn assert_transcript_recorded(data: &Path, server: &str) -> (String, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (chains, events) = loop {
        let chains = cli_json(&["chains"], data)["chains"].take();
        if let [chain] = chains.as_array().unwrap().as_slice() {
            let correlation = chain["correlation_id"].as_str().unwrap();
            let events = cli_json(&["events", "--correlation", correlation], data);
            if events["events"].as_array().unwrap().len() >= 9 {
                // The chain as it is with all nine stored.
                break (cli_json(&["chains"], data)["chains"].take(), events);
            }
        }
        assert!(
            Instant::now() < deadline,
            "not one chain with the transcript's nine events: {chains:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let chains = chains.as_array().unwrap();
    assert_eq!(chains.len(), 1, "{chains:?}");
    assert_eq!(chains[0]["verified"], true);
    let correlation = chains[0]["correlation_id"].as_str().unwrap().to_owned();
    let rows: Vec<(String, String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let e = &row["event"];
            (
                e["action"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["intent"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("echo", "ok"),
        ("get-sum", "ok"),
        ("resource.read", "ok"),
        ("prompt.get", "ok"),
        ("trigger-long-running-operation", "ok"),
        ("trigger-long-running-operation", "error"),
        ("trigger-sampling-request", "ok"),
        ("trigger-elicitation-request", "ok"),
        ("get-roots-list", "ok"),
    ]
    .iter()
    .map(|(tool, status)| {
        (
            format!("mcp.{server}.{tool}"),
            status.to_string(),
            "undeclared".to_string(),
        )
    })
    .collect();
    assert_eq!(rows, expected);
    assert_eq!(events["events"][5]["event"]["error"]["name"], "Cancelled");
    (correlation, events)
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`):
/// returns the status, the headers (names lower-cased) and the body, with a
/// chunked body de-chunked. For the MCP-over-HTTP tests, which must see the
/// exact status and headers the gateway sends. `Host` is `addr` unless
/// `headers` has one (the browser-guard tests send foreign ones).
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        rest.to_owned()
    };
    (status, headers, body)
}

/// The pids of `pid`'s child processes (every `/proc/<n>/stat` whose
/// parent is `pid`; `/proc/<pid>/task/*/children` misses children of
/// threads that have exited).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parens.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

/// Resident set size of `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

// ---- MCP peers of other SDKs (mcp_2026.rs, mcp_rmcp.rs, mcp_http_sessions.rs) --------

/// The gateway's own tool, added to tools/list (`--extra-tool` tells a
/// transcript client to expect it).
pub const PLAN_TOOL: &str = "intentproof_declare_plan";

/// A bound on peer runs that normally take seconds; never a timing assertion.
pub const PEER_DEADLINE: Duration = Duration::from_secs(300);

/// The python with PyPI mcp 2.3.0 that `./scripts/test` installs.
pub fn python_mcp2() -> PathBuf {
    required_env("INTENTPROOF_TEST_PYTHON_MCP2")
}

/// The absolute path of `tests/mcp2026/<name>`.
pub fn mcp2026_script(name: &str) -> String {
    workspace_root()
        .join("tests/mcp2026")
        .join(name)
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// `python fixture_server.py stdio`: the PyPI mcp 2.3.0 fixture over stdio.
pub fn pypi_fixture_stdio() -> Vec<String> {
    vec![
        python_mcp2().to_string_lossy().into_owned(),
        mcp2026_script("fixture_server.py"),
        "stdio".into(),
    ]
}

/// Nothing may redirect an `intentproof` the test runs (or one its children
/// run), and a daemon it starts listens on a free port.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
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
pub fn run_bounded(cmd: &mut Command, what: &str, within: Duration) -> Output {
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

/// Runs a transcript client `cmd` (clean environment, bounded by
/// [`PEER_DEADLINE`]); fails unless it succeeds; its transcript (stdout).
pub fn run_transcript(cmd: &mut Command, what: &str) -> String {
    clean_env(cmd);
    let out = run_bounded(cmd, what, PEER_DEADLINE);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Starts a fixture server `cmd` with `http PORT` (a free loopback port;
/// clean environment but for variables set on `cmd`, stderr to `log`) and
/// waits until it listens; returns it and its Streamable HTTP URL. `what`
/// names it in failures.
pub fn start_http_fixture(mut cmd: Command, what: &str, log: &Path) -> (Stopped, String) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    cmd.args(["http", &port.to_string()]);
    let chosen: Vec<_> = cmd
        .get_envs()
        .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
        .collect();
    clean_env(&mut cmd);
    cmd.envs(chosen);
    let mut server = Stopped(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}")),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!(
                "{what} http {port} exited with {status}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}/mcp"))
}

/// `intentproof serve --config` (127.0.0.1:0, data dir `dir/data`, log
/// `dir/daemon.log`) with `servers` (TOML: `[mcp]` settings and
/// `[[mcp.servers]]` tables); returns it and its address.
pub fn start_gateway_daemon(dir: &Path, servers: &str) -> (Stopped, String) {
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
pub fn command_server(name: &str, command: &[String]) -> String {
    format!(
        "[[mcp.servers]]\nname = {name:?}\ncommand = {}\n",
        serde_json::to_string(command).unwrap()
    )
}

/// A `[[mcp.servers]]` table for a remote Streamable HTTP upstream.
pub fn url_server(name: &str, url: &str) -> String {
    format!("[[mcp.servers]]\nname = {name:?}\nurl = {url:?}\n")
}

/// The arguments of a transcript client (`tests/mcp2026/transcript.py`,
/// `rmcp-transcript-client`) for a session with the stdio `server`, run
/// through `intentproof mcp --name fixture FLAGS...` on `data`.
pub fn through_stdio_gateway<'a>(
    data: &'a str,
    flags: &[&'a str],
    server: &'a [String],
) -> Vec<&'a str> {
    let mut args = vec![
        "--extra-tool",
        PLAN_TOOL,
        "stdio",
        "--",
        BIN,
        "mcp",
        "--name",
        "fixture",
    ];
    args.extend(flags);
    args.extend(["--data-dir", data, "--"]);
    args.extend(server.iter().map(String::as_str));
    args
}

/// stdio: `transcript` (a client's session with the given arguments) with
/// `server` directly vs through `intentproof mcp --`.
pub fn assert_stdio_gateway_transparent(server: &[String], transcript: impl Fn(&[&str]) -> String) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data").to_string_lossy().into_owned();
    let mut direct = vec!["stdio", "--"];
    direct.extend(server.iter().map(String::as_str));
    let direct = transcript(&direct);
    let through = transcript(&through_stdio_gateway(&data, &["--no-autostart"], server));
    assert_same_transcript(temp.path(), &direct, &through);
}

/// HTTP, `command` upstream: `transcript` with `server` over stdio directly
/// vs through `/mcp/<name>` of `intentproof serve` running it.
pub fn assert_http_command_upstream_transparent(
    server: &[String],
    transcript: impl Fn(&[&str]) -> String,
) {
    let temp = tempfile::tempdir().unwrap();
    let (daemon, listen) = start_gateway_daemon(temp.path(), &command_server("fixture", server));
    let mut direct = vec!["stdio", "--"];
    direct.extend(server.iter().map(String::as_str));
    let direct = transcript(&direct);
    let url = format!("http://{listen}/mcp/fixture");
    let through = transcript(&["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_same_transcript(temp.path(), &direct, &through);
    drop(daemon);
}

/// HTTP, `url` upstream: `transcript` with the server at `upstream`
/// (Streamable HTTP) directly vs through `/mcp/<name>` of `intentproof
/// serve` (its files in `dir`).
pub fn assert_http_url_upstream_transparent(
    dir: &Path,
    upstream: &str,
    transcript: impl Fn(&[&str]) -> String,
) {
    let direct = transcript(&["http", upstream]);
    assert_http_url_upstream_gives(dir, upstream, &direct, transcript);
}

/// The transcript through `/mcp/remote` of `intentproof serve` with `url =
/// upstream` equals `direct` (taken by the caller, from a twin of the
/// upstream when the direct pair cannot be run reliably).
pub fn assert_http_url_upstream_gives(
    dir: &Path,
    upstream: &str,
    direct: &str,
    transcript: impl Fn(&[&str]) -> String,
) {
    let (daemon, listen) = start_gateway_daemon(dir, &url_server("remote", upstream));
    let url = format!("http://{listen}/mcp/remote");
    let through = transcript(&["--extra-tool", PLAN_TOOL, "http", &url]);
    assert_same_transcript(dir, direct, &through);
    drop(daemon);
}

/// A private tmux server running one command in a window of the given
/// size (the terminal UI tests drive it with keys and read its screen),
/// killed when dropped.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        match version {
            Ok(out) if out.status.success() => {}
            other => panic!(
                "tmux is required for this test and was not found or does not run ({other:?}): install it (Debian/Ubuntu: apt-get install tmux)"
            ),
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tmux = Tmux {
            socket: format!("intentproof-test-{}-{nanos}", std::process::id()),
        };
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-u")
            .args(["-L", &self.socket])
            .args(args)
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap()
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "send-keys {keys:?} failed");
    }

    pub fn literal(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "tui", "-l", text]);
        assert!(out.status.success(), "send-keys -l {text:?} failed");
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok`; fails with the last screen.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "tui"]).status.success()
    }

    /// Waits (up to 10 s) until the program has exited; `what` names the
    /// keys that should have made it exit, for the failure message.
    pub fn wait_exit(&self, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.alive() {
            assert!(
                std::time::Instant::now() < deadline,
                "the TUI did not exit on {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Reads one HTTP/1.1 request from `stream` as a fake upstream sees it: the
/// head (request line and headers, at most 64 KiB) and the body its
/// `Content-Length` announces. `None` when the body is cut short.
pub fn read_http_request(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// The stored events (`intentproof events --json`, of `correlation` when
/// given) whose action starts with `prefix`, once there are `count` of
/// them (calls are recorded after they are answered), as listed.
pub fn recorded(
    data: &Path,
    correlation: Option<&str>,
    prefix: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut args = vec!["events", "--limit", "500"];
    if let Some(correlation) = correlation {
        args.extend(["--correlation", correlation]);
    }
    loop {
        let page = cli_json(&args, data);
        let events: Vec<serde_json::Value> = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].clone())
            .filter(|e| e["action"].as_str().unwrap().starts_with(prefix))
            .collect();
        if events.len() == count {
            return events;
        }
        assert!(Instant::now() < deadline, "{prefix}: {page:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`recorded`], in order of completion.
pub fn recorded_in_time(data: &Path, prefix: &str, count: usize) -> Vec<serde_json::Value> {
    let mut events = recorded(data, None, prefix, count);
    events.sort_by(|a, b| a["completed_at"].as_str().cmp(&b["completed_at"].as_str()));
    events
}

/// Exports `correlation` from the daemon of `data` and checks the bundle
/// with the daemon's key (`verify`, or `verify explain` with `explain`):
/// the exit code and what it printed.
pub fn export_and_verify(data: &Path, correlation: &str, explain: bool) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("flow.proof.tar.zst");
    let exported = Command::new(BIN)
        .args(["export", correlation, "-o"])
        .arg(&bundle)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let key = dir.path().join("daemon.pub");
    let shown = Command::new(BIN)
        .args(["keys", "show", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    std::fs::write(&key, &shown.stdout).unwrap();
    let mut verify = Command::new(BIN);
    verify.arg("verify");
    if explain {
        verify.arg("explain");
    }
    let checked = verify.arg("--key").arg(&key).arg(&bundle).output().unwrap();
    (
        checked.status.code(),
        String::from_utf8_lossy(&checked.stdout).into_owned(),
    )
}

/// The directory holding `rmcp-fixture-server` and `rmcp-transcript-client`,
/// built once per test process (`INTENTPROOF_TEST_RMCP_PEERS` names a
/// directory that has them already).
pub fn rmcp_peers_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("INTENTPROOF_TEST_RMCP_PEERS") {
            let dir = PathBuf::from(dir);
            for bin in ["rmcp-fixture-server", "rmcp-transcript-client"] {
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
        for bin in ["rmcp-fixture-server", "rmcp-transcript-client"] {
            assert!(
                dir.join(bin).is_file(),
                "{} is missing after the build",
                dir.join(bin).display()
            );
        }
        dir
    })
}

/// Requests a server received: (request line, body).
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTP server on 127.0.0.1:0 answering every request with `status`
/// and `body` (JSON); returns its base URL and what it received.
pub fn answering_server(status: &'static str, body: &'static str) -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((head, request_body)) = read_http_request(&mut stream) else {
                continue;
            };
            let line = head.lines().next().unwrap_or_default().to_owned();
            log.lock().unwrap().push((line, request_body));
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    (base, received)
}

/// An MCP 2025-11-25 session with the gateway at `addr` on `path`
/// (`/mcp/<name>`): `initialize` as `client`, then
/// `notifications/initialized`; the session id.
pub fn mcp_http_session(addr: &str, path: &str, client: &str) -> String {
    let json_headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let initialize =
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": client, "version": "1"}}})
        .to_string();
    let (status, headers, body) = http_exchange(addr, "POST", path, &json_headers, &initialize);
    assert_eq!(status, 200, "{body}");
    let session = headers
        .iter()
        .find(|(n, _)| n == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("a session id");
    let (status, _, _) = http_exchange(
        addr,
        "POST",
        path,
        &[
            json_headers[0],
            json_headers[1],
            ("Mcp-Session-Id", session.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    session
}
