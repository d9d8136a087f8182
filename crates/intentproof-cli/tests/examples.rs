//! Every file under `examples/` is valid: the gateway config starts a real
//! daemon (its policies load, its MCP server answers), the client configs
//! point at `intentproof mcp` or the daemon's `/mcp/<name>`, and the
//! policies pass `intentproof policy lint` or load as redaction policies.
//! A file of a kind this test does not know fails it, so nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod common;

use common::{BIN, start_daemon_with, workspace_root};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The `intentproof` arguments of a stdio server entry must parse as `intentproof mcp`.
fn check_stdio_entry(file: &Path, name: &str, server: &Value) {
    assert_eq!(
        server["command"],
        "intentproof",
        "{}: {name}",
        file.display()
    );
    let args: Vec<&str> = server["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: {name} has no args", file.display()))
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "mcp", "{}: {name}", file.display());
    let dash = args.iter().position(|a| *a == "--");
    assert!(
        dash.is_some_and(|i| i + 1 < args.len()),
        "{}: {name}: `intentproof mcp [flags] -- <server command>`",
        file.display()
    );
}

fn check_client_config(file: &Path) {
    let config: Value = serde_json::from_slice(&std::fs::read(file).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // VS Code calls the map `servers`; the others `mcpServers`.
    let servers = config
        .get("mcpServers")
        .or_else(|| config.get("servers"))
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{}: no mcpServers/servers map", file.display()));
    assert!(!servers.is_empty());
    for (name, server) in servers {
        match server.get("url").and_then(Value::as_str) {
            Some(url) => assert!(
                url.starts_with("http://127.0.0.1:9787/mcp/"),
                "{}: {name}: {url}",
                file.display()
            ),
            None => check_stdio_entry(file, name, server),
        }
    }
}

/// examples/fleet/compose.yaml: PostgreSQL and two gateways, each with its
/// own data volume and the fleet config mounted where its command reads it.
fn check_compose(file: &Path) {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let services = &doc["services"];
    assert!(
        services["postgres"].is_mapping(),
        "{}: no postgres",
        file.display()
    );
    let mut volumes = Vec::new();
    for name in ["gateway-a", "gateway-b"] {
        let gateway = &services[name];
        // gateway-b inherits gateway-a's command (a YAML merge key).
        let command = gateway["command"]
            .as_sequence()
            .or_else(|| services["gateway-a"]["command"].as_sequence())
            .unwrap_or_else(|| panic!("{}: {name} has no command", file.display()));
        let command: Vec<&str> = command.iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(
            command,
            ["serve", "--config", "/etc/intentproof/gateway.toml"]
        );
        let mounts: Vec<&str> = gateway["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            mounts.contains(&"./gateway.toml:/etc/intentproof/gateway.toml:ro"),
            "{name}: {mounts:?}"
        );
        volumes.extend(
            mounts
                .into_iter()
                .filter(|m| m.ends_with(":/data"))
                .map(str::to_owned),
        );
    }
    assert_eq!(
        volumes,
        ["gateway-a:/data", "gateway-b:/data"],
        "each replica its own data"
    );
}

/// examples/fleet/otel-collector.yaml takes OTLP/HTTP on 4318 in its traces
/// pipeline, where the fleet gateway.toml's `[[otlp]]` sends.
fn check_collector(file: &Path) {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(
        doc["receivers"]["otlp"]["protocols"]["http"]["endpoint"].as_str(),
        Some("0.0.0.0:4318")
    );
    let receivers = doc["service"]["pipelines"]["traces"]["receivers"]
        .as_sequence()
        .unwrap();
    assert_eq!(receivers[0].as_str(), Some("otlp"));
    let gateway = intentproof_gateway::Config::from_file(&file.with_file_name("gateway.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        gateway.otlp[0].endpoint,
        "http://otel-collector:4318/v1/traces"
    );
}

/// examples/fleet/kubernetes.yaml: a StatefulSet with a claim per replica,
/// its Services, the Secret, and a ConfigMap whose gateway.toml is a valid
/// config that reaches PostgreSQL over TLS with the Secret's CA.
fn check_kubernetes(file: &Path) {
    use serde::Deserialize;
    let text = std::fs::read_to_string(file).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_yaml_ng::Value::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["Secret", "ConfigMap", "Service", "Service", "StatefulSet"]
    );
    let config = docs[1]["data"]["gateway.toml"].as_str().unwrap();
    let config =
        intentproof_gateway::Config::from_toml(config, file).unwrap_or_else(|e| panic!("{e}"));
    let fleet = config.fleet.expect("[fleet]");
    assert!(
        fleet.postgres_url.ends_with("?sslmode=require"),
        "{}",
        fleet.postgres_url
    );
    assert!(!fleet.allow_cleartext);
    // The URL is accepted as it is (the password file exists only in the pod).
    intentproof_fleet::FleetConfig {
        password_file: None,
        ..fleet.clone()
    }
    .pg_config()
    .unwrap();
    let set = &docs[4]["spec"];
    assert_eq!(set["volumeClaimTemplates"][0]["metadata"]["name"], "data");
    let secret_keys: Vec<&str> = docs[0]["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(secret_keys, ["pg-password", "ingest-token", "pg-ca.crt"]);
    let dir = "/etc/intentproof/secret/";
    assert_eq!(
        fleet.password_file.unwrap().to_str(),
        Some(&*format!("{dir}pg-password"))
    );
    assert_eq!(
        fleet.ca_file.unwrap().to_str(),
        Some(&*format!("{dir}pg-ca.crt"))
    );
}

#[test]
fn every_example_file_is_valid() {
    let root = workspace_root();
    let mut all = Vec::new();
    files(&root.join("examples"), &mut all);
    all.sort();
    assert!(all.len() >= 8, "examples/ lost files: {all:?}");
    for file in &all {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let parent = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        match (parent.as_ref(), file.extension().and_then(|e| e.to_str())) {
            (_, Some("md")) => {}
            ("examples", Some("toml")) => {
                intentproof_gateway::Config::from_file(file).unwrap_or_else(|e| panic!("{e}"));
            }
            ("fleet", Some("toml")) => {
                intentproof_gateway::Config::from_file(file).unwrap_or_else(|e| panic!("{e}"));
            }
            ("fleet", Some("yaml")) if name == "compose.yaml" => check_compose(file),
            ("fleet", Some("yaml")) if name == "kubernetes.yaml" => check_kubernetes(file),
            ("fleet", Some("yaml")) if name == "otel-collector.yaml" => check_collector(file),
            ("clients", Some("json")) => check_client_config(file),
            ("policies", Some("yaml")) if name.starts_with("redaction") => {
                let text = std::fs::read_to_string(file).unwrap();
                intentproof_policy::redact::RedactionPolicy::from_yaml(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            }
            ("policies", Some("yaml")) => {
                let out = Command::new(BIN)
                    .args(["policy", "lint"])
                    .arg(file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}: {}{}",
                    file.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            _ => panic!(
                "{}: no check for this kind of example; add one to tests/examples.rs",
                file.display()
            ),
        }
    }
}

/// The example gateway config runs as written (only the listen address and
/// data dir are overridden): its policies load, and its `payments` MCP
/// server answers at `/mcp/payments` with the plan tool added.
#[test]
fn the_example_gateway_config_starts_a_daemon_that_serves_its_mcp_server() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // The config starts `intentproof demo-server`: put the binary under test first on PATH.
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _daemon = start_daemon_with(
        dir,
        &["--config", "examples/gateway.toml"],
        &[("PATH", path)],
    );
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("daemon.json")).unwrap()).unwrap();
    let url = format!("http://{}/mcp/payments", info["listen"].as_str().unwrap());
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "examples-test", "version": "1"}}});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        body.contains("\"name\":\"intentproof-demo-payments\""),
        "{url}: {body}"
    );
}
