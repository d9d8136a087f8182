//! The real IntentProof Python SDK (PyPI `intentproof==0.2.1`) against the real
//! daemon: `intentproof serve` must be a drop-in local ingest for it.
//!
//! The SDK is installed by `./scripts/test` into `.ci-deps/venv`, which exports
//! `INTENTPROOF_TEST_PYTHON`; the scripts it runs are in `tests/interop/`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const SDK_SCRIPT: &str = "python_sdk_two_chains.py";
/// Generous: a deadline for things that normally take milliseconds, never a
/// timing assertion.
const DEADLINE: Duration = Duration::from_secs(60);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The venv python that has the SDK; fails (never skips) without it.
fn sdk_python() -> PathBuf {
    const HOW: &str = "run ./scripts/test, which installs the Python SDK (intentproof==0.2.1) \
                       into .ci-deps/venv and sets INTENTPROOF_TEST_PYTHON to its python; \
                       or set it to a python that has intentproof==0.2.1";
    let python = match std::env::var_os("INTENTPROOF_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("INTENTPROOF_TEST_PYTHON is not set: {HOW}"),
    };
    assert!(
        python.is_file(),
        "INTENTPROOF_TEST_PYTHON={} does not exist: {HOW}",
        python.display()
    );
    python
}

fn interop_script(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop")
        .join(name);
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `intentproof` with the environment that could redirect it removed.
fn intentproof() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intentproof"));
    for var in [
        "INTENTPROOF_DATA_DIR",
        "INTENTPROOF_LISTEN",
        "INTENTPROOF_CONFIG",
        "INTENTPROOF_SERVER",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn run(args: &[&str], data_dir: &Path) -> Output {
    intentproof()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run intentproof")
}

/// `intentproof ARGS --data-dir D`, which must exit 0; its stdout.
fn run_ok(args: &[&str], data_dir: &Path) -> String {
    let out = run(args, data_dir);
    assert!(
        out.status.success(),
        "intentproof {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn run_json(args: &[&str], data_dir: &Path) -> Value {
    let stdout = run_ok(args, data_dir);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("intentproof {args:?}: not JSON ({e}): {stdout}"))
}

/// A running `intentproof serve`; killed on drop unless stopped, and its log
/// printed if the test is failing.
struct Daemon {
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
    addr: String,
}

impl Daemon {
    fn start(data_dir: &Path, log: &Path) -> Daemon {
        let log_file = File::create(log).expect("create daemon log");
        let child = intentproof()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn intentproof serve");
        let mut daemon = Daemon {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            log: log.to_owned(),
            addr: String::new(),
        };
        daemon.addr = daemon.wait_listening();
        daemon
    }

    /// Polls `daemon.json` until the daemon has recorded its address.
    fn wait_listening(&mut self) -> String {
        let path = self.data_dir.join("daemon.json");
        let pid = self.child.as_ref().unwrap().id();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("intentproof serve exited {status} before listening");
            }
            let info = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            if let Some(info) = info {
                let listen = info["listen"].as_str().expect("daemon.json: listen");
                assert_eq!(info["pid"], pid, "daemon.json: pid of another daemon");
                return listen.to_owned();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {} after {DEADLINE:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (graceful shutdown) and wait for the daemon to exit 0.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("daemon already stopped");
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {} failed", child.id());
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() >= DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("intentproof serve still running {DEADLINE:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "intentproof serve exited {status} after SIGTERM"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!(
                "--- intentproof serve log ({}) ---\n{log}",
                self.log.display()
            );
        }
    }
}

/// What the SDK script printed: whose events they are.
struct SdkRun {
    instance_id: String,
    public_key: String,
    events: u64,
}

/// Runs the SDK script with `extra` args; it must exit 0 and print one JSON line.
fn run_sdk(sdk_dir: &Path, ingest: Option<&str>, extra: &[&str]) -> SdkRun {
    let mut cmd = Command::new(sdk_python());
    cmd.arg(interop_script(SDK_SCRIPT))
        .arg(sdk_dir)
        .args(extra)
        .stdin(Stdio::null());
    // Only INTENTPROOF_INGEST_URL decides where the SDK sends.
    for var in [
        "INTENTPROOF_INGEST_URL",
        "INTENTPROOF_INGEST_TOKEN",
        "INTENTPROOF_USE_LOCAL_INGEST",
        "INTENTPROOF_OUTBOX_PATH",
        "INTENTPROOF_TENANT_ID",
        "PYTHONPATH",
        "PYTHONHOME",
    ] {
        cmd.env_remove(var);
    }
    if let Some(url) = ingest {
        cmd.env("INTENTPROOF_INGEST_URL", url);
    }
    let out = cmd.output().expect("run the SDK script");
    assert!(
        out.status.success(),
        "{SDK_SCRIPT} {extra:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{SDK_SCRIPT}: last line not JSON ({e}): {stdout}"));
    let run = SdkRun {
        instance_id: v["instance_id"].as_str().expect("instance_id").to_owned(),
        public_key: v["public_key"].as_str().expect("public_key").to_owned(),
        events: v["events"].as_u64().expect("events"),
    };
    assert!(run.instance_id.starts_with("inst_"), "{stdout}");
    run
}

fn trust(data_dir: &Path, sdk: &SdkRun) -> String {
    run_ok(
        &["keys", "trust", &sdk.instance_id, &sdk.public_key],
        data_dir,
    )
}

/// The daemon's view after the SDK sent its 4 events, key trusted.
fn assert_two_verified_chains(data_dir: &Path, instance_id: &str) {
    let chains = run_json(&["chains", "--json"], data_dir);
    let chains = chains["chains"].as_array().expect("chains: array");
    let mut ids: Vec<&str> = chains
        .iter()
        .map(|c| c["correlation_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["interop-a", "interop-b"], "chains: {chains:#?}");
    for chain in chains {
        assert_eq!(chain["events"], 2, "{chain:#}");
        assert_eq!(chain["verified"], true, "{chain:#}");
        assert_eq!(chain["key_unknown"], 0, "{chain:#}");
        assert_eq!(chain["invalid_signatures"], 0, "{chain:#}");
        assert_eq!(chain["gaps"], 0, "{chain:#}");
        assert_eq!(chain["errors"], 0, "{chain:#}");
    }

    let listed = run_json(
        &["events", "--correlation", "interop-a", "--json"],
        data_dir,
    );
    let events = listed["events"].as_array().expect("events: array");
    assert_eq!(events.len(), 2, "{listed:#}");
    let mut positions: Vec<u64> = events
        .iter()
        .map(|e| {
            assert_eq!(e["signature"], "verified", "{e:#}");
            let event = &e["event"];
            assert_eq!(event["schema"], "intentproof.event.v1", "{e:#}");
            assert_eq!(event["correlation_id"], "interop-a", "{e:#}");
            assert_eq!(event["instance_id"], instance_id, "{e:#}");
            event["chain_position"].as_u64().expect("chain_position")
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(positions, [1, 2], "{listed:#}");
}

/// Stops the daemon, then checks its store offline.
fn stop_and_verify_store(mut daemon: Daemon, data_dir: &Path) {
    daemon.stop();
    let out = run_ok(&["store", "verify"], data_dir);
    assert!(
        out.lines().any(|l| l.starts_with("ok: 4 records")),
        "store verify: {out}"
    );
}

struct Dirs {
    _tmp: tempfile::TempDir,
    daemon: PathBuf,
    sdk: PathBuf,
    log: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let daemon = tmp.path().join("daemon");
    let sdk = tmp.path().join("sdk");
    std::fs::create_dir(&daemon).unwrap();
    Dirs {
        log: tmp.path().join("daemon.log"),
        daemon,
        sdk,
        _tmp: tmp,
    }
}

/// Events arrive from an unknown instance (stored, `key_unknown`); trusting
/// the key afterwards re-verifies them.
#[test]
fn python_sdk_events_verify_once_the_key_is_trusted_afterwards() {
    let python = sdk_python();
    let d = dirs();
    let daemon = Daemon::start(&d.daemon, &d.log);

    let sdk = run_sdk(&d.sdk, Some(&format!("http://{}", daemon.addr)), &[]);
    assert_eq!(sdk.events, 4, "{} reported", python.display());

    // Before the key is trusted: stored, but not verified.
    let chains = run_json(&["chains", "--json"], &d.daemon);
    let chains = chains["chains"].as_array().expect("chains: array");
    assert_eq!(chains.len(), 2, "{chains:#?}");
    for chain in chains {
        assert_eq!(chain["events"], 2, "{chain:#}");
        assert_eq!(chain["verified"], false, "{chain:#}");
        assert_eq!(chain["key_unknown"], 2, "{chain:#}");
    }

    let trusted = trust(&d.daemon, &sdk);
    assert!(
        trusted.contains("4 stored event(s) verified, 0 invalid"),
        "keys trust: {trusted}"
    );

    assert_two_verified_chains(&d.daemon, &sdk.instance_id);
    stop_and_verify_store(daemon, &d.daemon);
}

/// The key is trusted before the SDK sends anything: events verify on arrival.
#[test]
fn python_sdk_events_verify_on_arrival_when_the_key_is_trusted_first() {
    sdk_python();
    let d = dirs();
    let daemon = Daemon::start(&d.daemon, &d.log);

    let identity = run_sdk(&d.sdk, None, &["--identity"]);
    assert_eq!(identity.events, 0);
    let trusted = trust(&d.daemon, &identity);
    assert!(
        trusted.contains("0 stored event(s) verified, 0 invalid"),
        "keys trust: {trusted}"
    );

    let sdk = run_sdk(&d.sdk, Some(&format!("http://{}", daemon.addr)), &[]);
    assert_eq!(sdk.events, 4);
    assert_eq!(sdk.instance_id, identity.instance_id);
    assert_eq!(sdk.public_key, identity.public_key);

    assert_two_verified_chains(&d.daemon, &sdk.instance_id);
    stop_and_verify_store(daemon, &d.daemon);
}

/// The README's Python example, run as written: a plan declared with a
/// plain `POST /v1/plans`, SDK events in its correlation, one step skipped.
fn readme_python_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let start = readme
        .find("<!-- pypi-plan-example:start -->")
        .expect("README has the pypi-plan-example markers");
    let block = &readme[start..];
    let code = block.find("```python\n").expect("a python block") + "```python\n".len();
    let end = block[code..].find("```").expect("its end");
    block[code..code + end].to_owned()
}

/// A finding as compared across the two paths: the step's `action`
/// replaced by `<action>` (the SDK's and the MCP gateway's names differ).
fn comparable(finding: &Value, action: &str) -> Value {
    let text = |key: &str| {
        finding[key]
            .as_str()
            .unwrap_or_default()
            .replace(action, "<action>")
    };
    serde_json::json!({
        "kind": finding["kind"],
        "step_index": finding["step_index"],
        "intent": finding["intent"],
        "action": text("action"),
        "message": text("message"),
    })
}

/// The findings of a closed plan, [`comparable`].
fn closed_findings(data_dir: &Path, plan_id: &str, action: &str) -> Value {
    let closed = run_json(&["plans", "--close", plan_id, "--json"], data_dir);
    closed["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| comparable(f, action))
        .collect()
}

/// `POST /v1/plans` from the Python SDK's side plus the SDK's events give
/// the findings the MCP plan tool gives for the same plan and calls.
#[test]
fn a_plan_posted_for_python_sdk_events_gives_the_mcp_plan_tools_findings() {
    let python = sdk_python();
    let home = tempfile::tempdir().expect("tempdir");
    let data_dir = home.path().join(".intentproof");
    std::fs::create_dir(&data_dir).unwrap();
    let log = home.path().join("daemon.log");
    let daemon = Daemon::start(&data_dir, &log);
    let url = format!("http://{}", daemon.addr);
    let script = home.path().join("plan_example.py");
    std::fs::write(&script, readme_python_example()).unwrap();
    let mut cmd = Command::new(&python);
    cmd.arg(&script).stdin(Stdio::null());
    for var in [
        "INTENTPROOF_INGEST_TOKEN",
        "INTENTPROOF_USE_LOCAL_INGEST",
        "INTENTPROOF_OUTBOX_PATH",
        "INTENTPROOF_TENANT_ID",
        "INTENTPROOF_DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .env("HOME", home.path())
        .env("INTENTPROOF_SERVER", &url)
        .env("INTENTPROOF_INGEST_URL", &url)
        .output()
        .expect("run the README example");
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let plan_id = text(&out.stdout).trim().to_owned();
    // The SDK's event is in before the plan is closed.
    let start = Instant::now();
    while run_json(
        &["events", "--correlation", "sdk-ORD-1042", "--json"],
        &data_dir,
    )["events"]
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(start.elapsed() < DEADLINE, "the SDK's event never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sdk = closed_findings(&data_dir, &plan_id, "email.receipt");

    // The same plan and calls through the MCP plan tool.
    let mcp_dir = home.path().join("mcp");
    std::fs::create_dir(&mcp_dir).unwrap();
    let mcp_daemon = Daemon::start(&mcp_dir, &home.path().join("mcp.log"));
    let (mut gateway, mut agent) = common::start_gateway(&mcp_dir, "payments", &[]);
    agent.request(
        1,
        "initialize",
        serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "interop", "version": "1"}}),
    );
    agent.call(
        2,
        "intentproof_declare_plan",
        serde_json::json!({
        "intent": "Refund order ORD-1042 and email the receipt",
        "steps": [
            {"tool": "refund_payment", "purpose": "Refund the card"},
            {"tool": "send_receipt_email", "purpose": "Email the receipt"},
        ]}),
    );
    agent.call(
        3,
        "refund_payment",
        serde_json::json!({"order_id": "ORD-1042", "amount_cents": 4999}),
    );
    // Closing stdin ends the session (and closes its plan).
    drop(agent);
    assert!(gateway.0.wait().expect("the gateway exits").success());
    let plans = run_json(&["plans", "--json"], &mcp_dir);
    let mcp_plan = plans["plans"][0]["plan_id"]
        .as_str()
        .expect("a plan")
        .to_owned();
    // The session ended, so the plan closed by itself; --close answers 409
    // then, so read its findings instead.
    let findings = run_json(&["findings", "--json"], &mcp_dir);
    let mcp: Vec<Value> = findings["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["plan_id"] == mcp_plan.as_str())
        .map(|f| comparable(f, "mcp.payments.send_receipt_email"))
        .collect();
    assert_eq!(sdk, Value::Array(mcp));
    assert_eq!(
        sdk[0]["message"],
        "Step 2 `<action>` (Email the receipt) never ran: intent \"Refund order ORD-1042 and email the receipt\" is incomplete."
    );
    assert_eq!(sdk.as_array().map(Vec::len), Some(1));
    drop(mcp_daemon);
    drop(daemon);
}
