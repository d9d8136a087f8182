//! Plans for HTTP-proxy agents (issue 19, item 4), end to end with the real
//! binary: an agent declares its plan with `POST /v1/plans`, makes one of
//! its two planned calls through `/proxy/<route>/...` and a refused probe;
//! when the plan closes, `intentproof findings` shows INCOMPLETE INTENT for
//! the skipped step and nothing for the probe. The README's curl example
//! runs as written (only the daemon's address differs), and its output is
//! the README's.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

mod common;

use common::{BIN, Stopped, clean_env, http_exchange, run_bounded, start_daemon_with};

/// The ticket the fake upstream answers every request with.
const TICKET: &str = r#"{"id":"T-42","status":"open"}"#;

/// A ticketing API on 127.0.0.1:0 that answers every request with
/// [`TICKET`]; returns its base URL and the request lines it received. The
/// thread ends with the test process.
fn ticket_api() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((text, _)) = common::read_http_request(&mut stream) else {
                continue;
            };
            log.lock()
                .unwrap()
                .push(text.lines().next().unwrap_or_default().to_owned());
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{TICKET}",
                TICKET.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (base, seen)
}

/// A daemon on `data` with the README's `tickets` route, pointed at `upstream`.
fn daemon_with_tickets_route(data: &Path, upstream: &str) -> (Stopped, String, String) {
    std::fs::create_dir_all(data).unwrap();
    let config = data.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[http.routes]]\nname = \"tickets\"\nupstream = \"{upstream}\"\naction = [\"/v1/tickets/{{id}}\", \"/v1/tickets\"]\n"
        ),
    )
    .unwrap();
    let daemon = start_daemon_with(data, &["--config", config.to_str().unwrap()], &[]);
    let listen = common::daemon_listen(data);
    let token = std::fs::read_to_string(data.join("token"))
        .unwrap()
        .trim()
        .to_owned();
    (daemon, listen, token)
}

/// `intentproof <args> --data-dir data`, which must succeed: its stdout.
fn cli(args: &[&str], data: &Path) -> String {
    let mut cmd = Command::new(BIN);
    clean_env(&mut cmd).args(args).arg("--data-dir").arg(data);
    let out = run_bounded(
        &mut cmd,
        &format!("intentproof {args:?}"),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "intentproof {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A findings table with each row's time (the first 24 columns) shown as
/// `…`, as the README prints it.
fn without_times(table: &str) -> String {
    table
        .lines()
        .map(|line| match line.get(..24) {
            Some(at) if at.starts_with("20") && at.ends_with('Z') => {
                format!("{:<24}{}", "…", &line[24..])
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with every UUID (the ids the daemon assigns) shown as `…`.
fn without_ids(text: &str) -> String {
    let is_uuid = |s: &[u8]| {
        s.len() == 36
            && s.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit() && !b.is_ascii_uppercase(),
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            out.push('…');
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

const SKIPPED_STEP: &str = "INCOMPLETE INTENT  ticket-T-42                  http.tickets.PATCH./v1/tickets/{id}  Step 2 `http.tickets.PATCH./v1/tickets/{id}` (Close the ticket) never ran: intent \"Answer ticket T-42 and close it\" is incomplete.";

#[test]
fn a_plan_declared_over_http_flags_the_skipped_step_and_not_the_refused_probe() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path();
    let (upstream, seen) = ticket_api();
    let (_daemon, addr, token) = daemon_with_tickets_route(data, &upstream);
    let bearer = format!("Bearer {token}");
    let json_type = ("Content-Type", "application/json");
    let declare = |headers: &[(&str, &str)], body: &str| {
        let (status, _, answer) = http_exchange(&addr, "POST", "/v1/plans", headers, body);
        (status, serde_json::from_str::<Value>(&answer).unwrap())
    };
    let plan = json!({
        "intent": "Answer ticket T-42 and close it",
        "correlation_id": "ticket-T-42",
        "steps": [
            {"action": "http.tickets.GET./v1/tickets/{id}", "purpose": "Read the ticket"},
            {"action": "http.tickets.PATCH./v1/tickets/{id}", "purpose": "Close the ticket"},
        ],
    })
    .to_string();

    // Refused declarations name what is wrong and what to do.
    let token_path = data.join("token");
    assert_eq!(
        declare(&[json_type], &plan),
        (
            401,
            json!({"reason": "unauthorized", "error": format!("declaring a plan needs `Authorization: Bearer <token>`: the daemon token (in {}) or the ingest token", token_path.display())})
        )
    );
    assert_eq!(
        declare(
            &[("Authorization", &bearer), ("Content-Type", "text/plain")],
            &plan
        ),
        (
            415,
            json!({"reason": "unsupported_media_type", "error": "Content-Type \"text/plain\": send the plan as `Content-Type: application/json`"})
        )
    );
    assert_eq!(
        declare(
            &[("Authorization", &bearer), json_type],
            r#"{"intent": "x", "steps": [{"purpose": "no action"}]}"#
        ),
        (
            400,
            json!({"reason": "invalid_plan", "error": "step 1 has no `tool` (or `action`): name the tool or action it calls"})
        )
    );
    assert_eq!(
        declare(
            &[("Authorization", &bearer), json_type],
            r#"{"intent": "x", "steps": [{"action": "a"}], "correlation_id": "ticket T-42"}"#
        ),
        (
            400,
            json!({"reason": "invalid_plan", "error": "`correlation_id` must be 1 to 256 visible ASCII characters (proxied calls name it in X-IntentProof-Correlation-Id); leave it out to get one"})
        )
    );
    assert_eq!(
        declare(
            &[("Authorization", &bearer), json_type],
            r#"{"intent": "x", "intent": "y", "steps": []}"#
        )
        .0,
        400
    );

    // Declared with the proxy's own header; the daemon keeps the chosen
    // correlation and records the MCP plan tool's event.
    let (status, declared) = declare(&[("X-IntentProof-Token", &token), json_type], &plan);
    assert_eq!(status, 201, "{declared}");
    let plan_id = declared["plan_id"].as_str().unwrap().to_owned();
    let event_id = declared["event_id"].as_str().unwrap().to_owned();
    assert_eq!(
        declared,
        json!({"plan_id": plan_id, "correlation_id": "ticket-T-42", "steps": 2, "event_id": event_id})
    );
    let events = common::cli_json(&["events", "--correlation", "ticket-T-42"], data);
    let event = &events["events"][0]["event"];
    assert_eq!(event["event_id"], event_id.as_str());
    assert_eq!(event["action"], "intentproof.plan.declare");
    assert_eq!(event["intent"], "Answer ticket T-42 and close it");
    assert_eq!(event["status"], "ok");
    assert_eq!(
        event["inputs"],
        serde_json::from_str::<Value>(&plan).unwrap()
    );
    assert_eq!(
        event["output"],
        json!({"plan_id": plan_id, "correlation_id": "ticket-T-42"})
    );
    assert_eq!(
        event["attributes"],
        json!({"intentproof.plan.id": plan_id, "intentproof.plan.ordered": false})
    );

    // One planned call, and two probes the proxy refuses: one in the plan's
    // correlation, one in a correlation with no plan.
    let proxy = |path: &str, correlation: &str| {
        let (status, _, body) = http_exchange(
            &addr,
            "GET",
            path,
            &[
                ("X-IntentProof-Token", &token),
                ("X-IntentProof-Correlation-Id", correlation),
            ],
            "",
        );
        (status, body)
    };
    assert_eq!(
        proxy("/proxy/tickets/v1/tickets/T-42", "ticket-T-42"),
        (200, TICKET.to_owned())
    );
    assert_eq!(
        proxy("/proxy/tickets/v1/%2e%2e/admin", "ticket-T-42").0,
        400
    );
    assert_eq!(proxy("/proxy/tickets/v1/%2e%2e/admin", "probe-only").0, 400);
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /v1/tickets/T-42 HTTP/1.1"],
        "refused probes never reach the upstream"
    );

    let closed = cli(&["plans", "--close", &plan_id], data);
    assert_eq!(
        closed,
        format!(
            "closed plan {plan_id}: 1 finding\n- Step 2 `http.tickets.PATCH./v1/tickets/{{id}}` (Close the ticket) never ran: intent \"Answer ticket T-42 and close it\" is incomplete.\n"
        )
    );
    // The planned call took its intent from the plan's step; the probes
    // are recorded, as refusals.
    let events = common::cli_json(&["events", "--correlation", "ticket-T-42"], data);
    let recorded: Vec<(&str, &str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["event"];
            (
                e["action"].as_str().unwrap(),
                e["intent"].as_str().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (
                "intentproof.plan.declare",
                "Answer ticket T-42 and close it",
                "ok"
            ),
            ("http.tickets.GET./v1/tickets/{id}", "Read the ticket", "ok"),
            ("http.tickets.refused", "undeclared", "error"),
            (
                "intentproof.plan.close",
                "Answer ticket T-42 and close it",
                "ok"
            ),
        ]
    );
    let probes = common::cli_json(&["events", "--correlation", "probe-only"], data);
    assert_eq!(
        probes["events"][0]["event"]["action"],
        "http.tickets.refused"
    );

    // The skipped step, and nothing for the probes (planned correlation or not).
    let table = without_times(&cli(&["findings"], data));
    let header = "AT                       FLAG               CORRELATION                  ACTION                               MESSAGE";
    assert_eq!(
        table,
        format!("{header}\n{:<24} {SKIPPED_STEP}\n1 finding", "…")
    );
}

/// The README's example, between its markers.
fn readme_example() -> (String, String) {
    let readme = std::fs::read_to_string(common::workspace_root().join("README.md")).unwrap();
    let start = "<!-- http-plan-example:start -->\n```sh\n";
    let end = "```\n<!-- http-plan-example:end -->\n";
    let from = readme
        .find(start)
        .expect("README.md lacks the example's start marker")
        + start.len();
    let to = from
        + readme[from..]
            .find(end)
            .expect("README.md lacks the example's end marker");
    let script = readme[from..to].to_owned();
    // What it prints: the ```text block that follows.
    let after = &readme[to + end.len()..];
    let open = "```text\n";
    let out_from = after.find(open).unwrap() + open.len();
    let out_to = out_from + after[out_from..].find("```\n").unwrap();
    (script, after[out_from..out_to].to_owned())
}

#[test]
fn the_readme_curl_example_runs_as_written_and_prints_what_the_readme_shows() {
    let (script, shown) = readme_example();
    assert!(script.contains("http://127.0.0.1:9787/"), "{script}");
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join(".intentproof");
    let (upstream, _) = ticket_api();
    let (_daemon, addr, _) = daemon_with_tickets_route(&data, &upstream);
    // The one change: the daemon listens on a free port, not 9787.
    let script = script.replace("http://127.0.0.1:9787/", &format!("http://{addr}/"));
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    clean_env(&mut cmd)
        .args(["-euo", "pipefail", "-c", &script])
        .env("HOME", home.path())
        .env("PATH", path)
        .current_dir(home.path());
    let out = run_bounded(
        &mut cmd,
        "the README's curl example",
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "the README's example failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        without_times(&without_ids(&stdout)) + "\n",
        shown,
        "README.md must show what its example prints"
    );
}
