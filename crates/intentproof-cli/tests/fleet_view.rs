//! The fleet view end to end: three daemons replicate into one real
//! PostgreSQL (from the system's packages, started per test) while agents
//! work through each of them: MCP over HTTP (the rmcp fixture server) on
//! the first, the HTTP API proxy and an MCP stdio gateway on the second,
//! the PyPI IntentProof SDK (`intentproof==0.2.1`) ingesting into the
//! third. One flow spreads over two daemons: its plan is declared on the
//! first, its one call goes through the second's proxy.
//!
//! Then `intentproof serve --fleet` answers from PostgreSQL:
//! `findings --fleet` and the fleet TUI show that flow once, judged over
//! both replicas (step 2 never ran; step 1 is neither missing nor
//! unplanned, which each daemon alone would say), the chain lists both
//! daemons' events side by side, and a fleet bundle of the flow verifies
//! offline with each event proven against its own daemon's checkpoint,
//! while flipping any byte of it fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    BIN, Stopped, Tmux, answering_server, clean_env, cli_json, daemon_listen, http_exchange,
    mcp_http_session, required_env, rmcp_peers_dir, run_bounded, start_gateway,
    start_gateway_daemon, start_http_fixture, workspace_root,
};
use intentproof_fleet::testing::PgServer;
use serde_json::{Value, json};

const FLOW: &str = "ticket-T-42";
const TICKET: &str = r#"{"id":"T-42","status":"open"}"#;
const DEADLINE: Duration = Duration::from_secs(90);

/// `intentproof <args>` (which must succeed): its stdout.
fn cli(args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd).args(args);
    let out = run_bounded(
        &mut cmd,
        &format!("intentproof {args:?}"),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "intentproof {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn token(data: &Path) -> String {
    std::fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The findings of `args` as sorted (kind, correlation, action) rows.
fn flags(value: &Value) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = value["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["correlation_id"].as_str().unwrap().to_owned(),
                f["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn event_ids(value: &Value) -> BTreeSet<String> {
    value["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The SDK's venv python (`./scripts/test` installs it).
fn sdk_python() -> PathBuf {
    required_env("INTENTPROOF_TEST_PYTHON")
}

/// The README's fleet view commands, run as pasted: by `sh` in `root`,
/// with a home of their own and this build's `intentproof` first on PATH.
struct Readme {
    lines: Vec<&'static str>,
    root: PathBuf,
    home: PathBuf,
    path: String,
}

impl Readme {
    fn new(root: &Path) -> Readme {
        let readme = include_str!("../../../README.md");
        let from = readme
            .find("#### The fleet view")
            .expect("the README's fleet view section");
        let block = &readme[from..];
        let start = block.find("```bash\n").expect("a bash block") + "```bash\n".len();
        let end = block[start..].find("```").expect("its end");
        let lines: Vec<&str> = block[start..start + end].lines().collect();
        assert_eq!(lines.len(), 6, "{lines:?}");
        let home = root.join("home");
        std::fs::create_dir(&home).unwrap();
        let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
        Readme {
            lines,
            root: root.to_owned(),
            home,
            path: format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
        }
    }

    fn shell(&self, line: &str) -> Command {
        let mut cmd = Command::new("sh");
        clean_env(&mut cmd)
            .args(["-c", line])
            .current_dir(&self.root)
            .env("HOME", &self.home)
            .env("PATH", &self.path);
        cmd
    }

    /// Runs `line`, which must succeed: its stdout.
    fn run(&self, line: &str) -> String {
        let out = run_bounded(&mut self.shell(line), line, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "{line}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn three_daemons_one_view_one_flow_over_two_replicas_and_a_bundle_that_proves() {
    let pg = PgServer::start(false).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    let (tickets, _) = answering_server("200 OK", TICKET);
    let (_fixture, fixture_url) = start_http_fixture(
        Command::new(rmcp_peers_dir().join("rmcp-fixture-server")),
        "rmcp fixture",
        &root.join("fixture.log"),
    );
    let fleet = format!("[fleet]\npostgres_url = \"{}\"\n", pg.url());
    let route = format!(
        "[[http.routes]]\nname = \"tickets\"\nupstream = \"{tickets}\"\naction = [\"/v1/tickets/{{id}}\"]\n"
    );
    let daemon = |name: &str, rest: &str| {
        let dir = root.join(name);
        std::fs::create_dir(&dir).unwrap();
        let (stopped, addr) = start_gateway_daemon(
            &dir,
            &format!("checkpoint_interval_secs = 1\n{fleet}\n{rest}"),
        );
        (stopped, addr, dir.join("data"))
    };
    let (_d1, addr1, data1) = daemon(
        "one",
        &format!("[[mcp.servers]]\nname = \"fixture\"\nurl = \"{fixture_url}\"\n\n{route}"),
    );
    let (_d2, addr2, data2) = daemon("two", &route);
    let (_d3, addr3, data3) = daemon("three", "");
    let json_type = ("Content-Type", "application/json");

    // Daemon one: an MCP client over HTTP (a session, one tool call) ...
    let accept = ("Accept", "application/json, text/event-stream");
    let session = mcp_http_session(&addr1, "/mcp/fixture", "fleet-test");
    let in_session = [
        json_type,
        accept,
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    let (status, _, body) = http_exchange(
        &addr1,
        "POST",
        "/mcp/fixture",
        &in_session,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
    );
    assert_eq!(status, 200, "{body}");
    // ... and the flow's plan, declared over HTTP.
    let plan = json!({
        "intent": "Answer ticket T-42 and close it",
        "correlation_id": FLOW,
        "steps": [
            {"action": "http.tickets.GET./v1/tickets/{id}", "purpose": "Read the ticket"},
            {"action": "http.tickets.PATCH./v1/tickets/{id}", "purpose": "Close the ticket"},
        ],
    });
    let bearer = format!("Bearer {}", token(&data1));
    let (status, _, declared) = http_exchange(
        &addr1,
        "POST",
        "/v1/plans",
        &[("Authorization", &bearer), json_type],
        &plan.to_string(),
    );
    assert_eq!(status, 201, "{declared}");
    let plan_id = serde_json::from_str::<Value>(&declared).unwrap()["plan_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Daemon two: the flow's call, through the HTTP API proxy ...
    let (status, _, body) = http_exchange(
        &addr2,
        "GET",
        "/proxy/tickets/v1/tickets/T-42",
        &[
            ("X-IntentProof-Token", &token(&data2)),
            ("X-IntentProof-Correlation-Id", FLOW),
        ],
        "",
    );
    assert_eq!((status, body.as_str()), (200, TICKET));
    // ... and an MCP client over stdio.
    let (mut stdio, mut agent) = start_gateway(&data2, "payments", &[]);
    agent.request(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "stdio-agent", "version": "1"}}),
    );
    let answer = agent.call(2, "lookup_order", json!({"order_id": "ORD-7731"}));
    assert!(answer.get("result").is_some(), "{answer}");
    drop(agent);
    assert!(stdio.0.wait().unwrap().success());

    // Daemon three: the PyPI SDK, ingesting locally.
    let sdk = Command::new(sdk_python())
        .arg(workspace_root().join("tests/interop/python_sdk_two_chains.py"))
        .arg(root.join("sdk"))
        .env("INTENTPROOF_INGEST_URL", format!("http://{addr3}"))
        .env_remove("INTENTPROOF_INGEST_TOKEN")
        .env_remove("INTENTPROOF_USE_LOCAL_INGEST")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        sdk.status.success(),
        "{}",
        String::from_utf8_lossy(&sdk.stderr)
    );
    let sdk_identity: Value = serde_json::from_str(
        String::from_utf8_lossy(&sdk.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
    )
    .unwrap();

    // The plan closes on daemon one.
    let data1_s = data1.to_str().unwrap();
    cli(&["plans", "--close", &plan_id, "--data-dir", data1_s]);

    // Each daemon alone judges the flow by what it saw.
    let alone = |data: &Path| flags(&cli_json(&["findings"], data));
    let one = alone(&data1);
    let two = alone(&data2);
    let row = |kind: &str, correlation: &str, action: &str| {
        (kind.to_owned(), correlation.to_owned(), action.to_owned())
    };
    let get = "http.tickets.GET./v1/tickets/{id}";
    let patch = "http.tickets.PATCH./v1/tickets/{id}";
    assert!(
        one.contains(&row("incomplete_intent", FLOW, get)),
        "{one:?}"
    );
    assert!(
        one.contains(&row("incomplete_intent", FLOW, patch)),
        "{one:?}"
    );
    assert!(two.contains(&row("unplanned_call", FLOW, get)), "{two:?}");

    // The fleet view, started and used with the README's commands as
    // pasted (in a home of its own; the view listens on port 0 here, tests
    // run in parallel).
    let readme = Readme::new(root);
    std::fs::write(root.join("fleet.toml"), &fleet).unwrap();
    let serve_line = readme.lines[0].strip_suffix(" &").expect("serve ... &");
    let mut serve = readme.shell(&format!("exec {serve_line} --listen 127.0.0.1:0"));
    serve
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("view.log")).unwrap());
    let _view = Stopped(serve.spawn().unwrap());
    let view = readme.home.join(".intentproof");
    let view_dir = view.join("fleet");
    let view_addr = daemon_listen(&view_dir);

    // Every event of the three daemons reaches the view, each once.
    let mut expected = BTreeSet::new();
    for data in [&data1, &data2, &data3] {
        expected.extend(event_ids(&cli_json(&["events", "--limit", "1000"], data)));
    }
    let deadline = Instant::now() + DEADLINE;
    let listed = loop {
        let listed = cli_json(&["events", "--fleet", "--limit", "1000"], &view);
        if event_ids(&listed) == expected {
            break listed;
        }
        assert!(
            Instant::now() < deadline,
            "the fleet view lists {:?}, the daemons hold {expected:?}",
            event_ids(&listed)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(listed["events"].as_array().unwrap().len(), expected.len());

    // What only a daemon answers (approvals here) is a 404 that says where
    // to ask, not an empty list that hides what the daemons hold.
    let (status, _, body) = http_exchange(&view_addr, "GET", "/v1/approvals", &[], "");
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({
            "reason": "not_in_fleet_view",
            "error": "/v1/approvals is not answered by the fleet view, which serves the read API only (/v1/events, /v1/chains, /v1/findings, /v1/plans, /v1/bundles, /v1/keys): ask the daemon that holds it (the same command without --fleet, with that daemon's --data-dir or --server)",
        })
    );

    // `findings --fleet`: the flow judged over both replicas.
    let fleet_flags = flags(&cli_json(&["findings", "--fleet"], &view));
    let unplanned_echo = one
        .iter()
        .find(|(kind, c, _)| kind == "unplanned_call" && c != FLOW)
        .cloned()
        .expect("daemon one flags its MCP call as unplanned");
    let unplanned_stdio = two
        .iter()
        .find(|(kind, c, _)| kind == "unplanned_call" && c != FLOW)
        .cloned()
        .expect("daemon two flags its stdio call as unplanned");
    let mut want = vec![
        row("incomplete_intent", FLOW, patch),
        unplanned_echo,
        unplanned_stdio,
    ];
    want.sort();
    assert_eq!(fleet_flags, want);
    assert_eq!(readme.lines[1], "intentproof findings --fleet");
    let table = readme.run(readme.lines[1]);
    let flow_rows: Vec<&str> = table.lines().filter(|l| l.contains(FLOW)).collect();
    assert_eq!(flow_rows.len(), 1, "{table}");
    assert!(
        flow_rows[0].contains(
            "INCOMPLETE INTENT  ticket-T-42                  http.tickets.PATCH./v1/tickets/{id}  Step 2 `http.tickets.PATCH./v1/tickets/{id}` (Close the ticket) never ran: intent \"Answer ticket T-42 and close it\" is incomplete."
        ),
        "{table}"
    );
    let plans = cli_json(&["plans", "--fleet"], &view);
    let flow_plan = plans["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plan_id"] == plan_id.as_str())
        .cloned()
        .expect("the flow's plan");
    assert_eq!(
        (
            &flow_plan["state"],
            &flow_plan["closed_by"],
            &flow_plan["calls"],
            &flow_plan["flags"]
        ),
        (&json!("closed"), &json!("closed"), &json!(1), &json!(1))
    );

    // The chain: both daemons' events, in the order they finished.
    let http = reqwest::blocking::Client::new();
    let chain: Value = http
        .get(format!("http://{view_addr}/v1/chains/{FLOW}"))
        .bearer_auth(token(&view_dir))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let instance = |addr: &str| {
        let health: Value = http
            .get(format!("http://{addr}/healthz"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        health["instance_id"].as_str().unwrap().to_owned()
    };
    let (inst1, inst2) = (instance(&addr1), instance(&addr2));
    let steps: Vec<(String, String)> = chain["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["daemon"].as_str().unwrap().to_owned(),
                e["event"]["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (inst1.clone(), "intentproof.plan.declare".to_owned()),
            (inst2.clone(), get.to_owned()),
            (inst1.clone(), "intentproof.plan.close".to_owned()),
        ]
    );
    assert_eq!(chain["chain"]["events"], 3);

    // The fleet TUI shows the same flow and flag.
    assert_eq!(readme.lines[5], "intentproof tui --fleet");
    let tmux = Tmux::start(
        &format!(
            "env HOME='{}' PATH='{}' {} --poll-ms 300",
            readme.home.display(),
            readme.path,
            readme.lines[5]
        ),
        120,
        30,
    );
    tmux.wait_for("the fleet's chains", |s| {
        s.contains("Chains") && s.contains(FLOW)
    });
    tmux.keys(&["2"]);
    let screen = tmux.wait_for("the fleet's findings", |s| {
        s.contains("[2 Findings 3]") && s.contains(FLOW)
    });
    let rows: Vec<&str> = screen.lines().filter(|l| l.contains(FLOW)).collect();
    assert_eq!(rows.len(), 1, "one flagged row for the flow:\n{screen}");
    assert!(
        rows[0].contains("! incomplete intent       ticket-T-42                    http.tickets.PATCH./v1/tickets"),
        "{screen}"
    );
    assert!(screen.contains("source: fleet view http://"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_exit("q");

    // A fleet bundle: every event proven against its daemon's checkpoint.
    assert_eq!(
        readme.lines[2],
        "intentproof export ticket-T-42 --fleet -o ticket-T-42.proof.tar.zst"
    );
    let bundle = root.join("ticket-T-42.proof.tar.zst");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = run_bounded(
            &mut readme.shell(readme.lines[2]),
            "export --fleet",
            Duration::from_secs(60),
        );
        if out.status.success() {
            break;
        }
        // Until each daemon's checkpoint covering the flow has replicated.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("has not replicated a checkpoint that covers"),
            "{stderr}"
        );
        assert!(Instant::now() < deadline, "{stderr}");
        std::thread::sleep(Duration::from_millis(300));
    }
    readme.run(readme.lines[3]);
    let key = root.join("fleet-view.pem");
    let verified = readme.run(readme.lines[4]);
    assert!(verified.starts_with("✓ pass"), "{verified}");
    // Three events, each proven against its own daemon's checkpoint: two
    // checkpoints, each verified with its daemon's key.
    assert!(
        verified.contains("\n- inclusion_proofs_valid:3\n"),
        "{verified}"
    );
    assert_eq!(
        verified
            .lines()
            .filter(|l| *l == "- checkpoint.signature_valid")
            .count(),
        2,
        "{verified}"
    );
    assert_eq!(
        verified
            .lines()
            .filter(|l| *l == "- event.signature_valid")
            .count(),
        3,
        "{verified}"
    );
    let bytes = std::fs::read(&bundle).unwrap();
    let members = intentproof_bundle::read_archive(&bytes, &Default::default()).unwrap();
    let proofs: Value = serde_json::from_slice(
        members
            .get("fleet_inclusion.json")
            .expect("fleet_inclusion.json"),
    )
    .unwrap();
    let daemons: BTreeSet<&str> = proofs["checkpoints"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(daemons, BTreeSet::from([inst1.as_str(), inst2.as_str()]));

    // Flipping any byte fails it.
    let options = intentproof_bundle::VerifyOptions {
        trusted_keys: vec![intentproof_bundle::TrustedKey {
            key_id: None,
            key: intentproof_bundle::parse_public_key_bytes(&std::fs::read(&key).unwrap()).unwrap(),
        }],
        ..Default::default()
    };
    assert!(intentproof_bundle::verify(&bytes, &options).passed());
    // Every byte of the file: the flip fails verification, or it fell in
    // the compression's slack (a bit zstd's decoder ignores) and the
    // archive reads back exactly as before (nothing the bundle says
    // changed).
    let limits = Default::default();
    let original = members.members.clone();
    let mut slack = Vec::new();
    for i in 0..bytes.len() {
        let mut tampered = bytes.clone();
        tampered[i] ^= 0x01;
        if intentproof_bundle::verify(&tampered, &options).passed() {
            let read = intentproof_bundle::read_archive(&tampered, &limits).unwrap();
            assert_eq!(
                read.members, original,
                "flipping byte {i} changed the bundle and passes"
            );
            slack.push(i);
        }
    }
    assert!(slack.len() <= 4, "{slack:?}");
    eprintln!(
        "fleet bundle: {} bytes; flips in zstd's slack (archive unchanged): {slack:?}",
        bytes.len()
    );
    // Every byte of every member (what the bundle says): the flip fails.
    let pairs: Vec<(String, Vec<u8>)> = original
        .iter()
        .map(|m| (m.path.clone(), m.data.clone()))
        .collect();
    for (m, (path, data)) in pairs.iter().enumerate() {
        for i in 0..data.len() {
            let mut edited = pairs.clone();
            edited[m].1[i] ^= 0x01;
            let repacked = intentproof_bundle::pack_members(&edited, true).unwrap();
            assert!(
                !intentproof_bundle::verify(&repacked, &options).passed(),
                "flipping byte {i} of {path} still passes"
            );
        }
    }

    // An SDK's flow: the view bundles its signer's key once trusted
    // (`keys trust --fleet`), and says what to do until then.
    let sdk_instance = sdk_identity["instance_id"].as_str().unwrap();
    let sdk_key = sdk_identity["public_key"].as_str().unwrap();
    let sdk_bundle = root.join("interop-a.proof.tar.zst");
    let sdk_bundle_s = sdk_bundle.to_str().unwrap();
    let deadline = Instant::now() + DEADLINE;
    let refused = loop {
        let out = run_bounded(
            &mut readme.shell(&format!(
                "intentproof export interop-a --fleet -o {sdk_bundle_s}"
            )),
            "export interop-a",
            Duration::from_secs(60),
        );
        // Until daemon three's checkpoint covering the flow has replicated.
        let waiting = String::from_utf8_lossy(&out.stderr)
            .contains("has not replicated a checkpoint that covers");
        if !waiting || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!(
            "is signed by instance {sdk_instance}, whose key the fleet view does not trust; trust it with `intentproof keys trust {sdk_instance} <public key> --data-dir {}`",
            view.join("fleet").display()
        )),
        "{stderr}"
    );
    let trusted = readme.run(&format!(
        "intentproof keys trust --fleet {sdk_instance} {sdk_key}"
    ));
    assert_eq!(
        trusted,
        format!("trusted {sdk_instance}: 4 stored event(s) verified, 0 invalid\n")
    );
    readme.run(&format!(
        "intentproof export interop-a --fleet -o {sdk_bundle_s}"
    ));
    let verified = readme.run(&format!(
        "intentproof verify --key fleet-view.pem {sdk_bundle_s}"
    ));
    assert!(verified.starts_with("✓ pass"), "{verified}");

    // A daemon key in PostgreSQL is not taken on trust: registered as
    // another key, the flow no longer exports (its checkpoint does not
    // verify with it); with the daemon's real key pinned on the view, the
    // export names the mismatch.
    let impostor = intentproof_core::keys::InstanceKey::from_seed("impostor", [5u8; 32]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = intentproof_fleet::FleetConfig {
            postgres_url: pg.url(),
            ..Default::default()
        };
        let client = config.connect().await.unwrap();
        client
            .execute(
                "UPDATE intentproof.daemons SET public_key = $1 WHERE daemon = $2",
                &[&impostor.public_key_base64(), &inst1],
            )
            .await
            .unwrap();
    });
    let export_again = || {
        run_bounded(
            &mut readme.shell(readme.lines[2]),
            "export --fleet",
            Duration::from_secs(60),
        )
    };
    let out = export_again();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("daemon {inst1}'s checkpoint at tree size"))
            && stderr.contains("does not verify with its key"),
        "{stderr}"
    );
    let real = root.join("one.pem");
    std::fs::write(
        &real,
        cli(&[
            "keys",
            "show",
            "--pem",
            "--data-dir",
            data1.to_str().unwrap(),
        ]),
    )
    .unwrap();
    readme.run(&format!(
        "intentproof keys trust --fleet {inst1} {}",
        real.display()
    ));
    let out = export_again();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "PostgreSQL registers another key for daemon {inst1} than the one the fleet view trusts for it"
        )),
        "{stderr}"
    );
}
