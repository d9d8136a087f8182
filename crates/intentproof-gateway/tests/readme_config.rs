//! The README's configuration snippets parse as the daemon reads them, and
//! say what the text around them says.

use intentproof_gateway::Config;

/// The first ```toml block after `heading`, parsed.
fn config_after(heading: &str) -> Config {
    let readme = include_str!("../../../README.md");
    let from = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"));
    let block = &readme[from..];
    let start = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = block[start..].find("```").expect("its end");
    Config::from_toml(&block[start..start + end], "README".as_ref())
        .unwrap_or_else(|e| panic!("{heading}: {e}"))
}

#[test]
fn the_configuration_reference_parses() {
    let config = config_after("### Configuration");
    assert_eq!(config.listen.to_string(), "127.0.0.1:9787");
    assert_eq!(config.exporters[0].name, "siem");
    assert_eq!(config.webhooks[0].name, "oncall");
    assert_eq!(config.otlp[0].endpoint, "http://127.0.0.1:4318/v1/traces");
    let fleet = config.fleet.expect("[fleet]");
    assert_eq!(
        fleet.display_url(),
        "postgresql://intentproof@127.0.0.1:5432/intentproof"
    );
}

#[test]
fn the_fleet_snippet_asks_for_verified_tls() {
    let fleet = config_after("### Fleet: several gateways, one PostgreSQL")
        .fleet
        .expect("[fleet]");
    assert!(fleet.postgres_url.ends_with("?sslmode=require"));
    assert_eq!(
        fleet.ca_file.as_deref(),
        Some("/etc/intentproof/pg-ca.crt".as_ref())
    );
    assert_eq!(fleet.batch().unwrap(), 4096);
    // The same URL without TLS is refused: db.internal is not loopback.
    let cleartext = intentproof_fleet::FleetConfig {
        postgres_url: fleet.postgres_url.replace("?sslmode=require", ""),
        ..intentproof_fleet::FleetConfig::default()
    };
    let err = cleartext.pg_config().unwrap_err().to_string();
    assert!(err.contains("host db.internal is not loopback"), "{err}");
}

#[test]
fn the_webhook_snippet_names_its_receiver() {
    let config = config_after("### Findings to webhooks");
    let hook = &config.webhooks[0];
    assert_eq!(hook.name, "oncall");
    assert_eq!(hook.url, "https://hooks.example/intentproof");
    assert_eq!(hook.links_base.as_deref(), Some("https://gateway.example"));
    assert_eq!(hook.headers["Authorization"], "Bearer ...");
}

#[test]
fn the_otlp_snippet_sends_to_a_local_collector() {
    let config = config_after("### OpenTelemetry export");
    let otlp = &config.otlp[0];
    assert_eq!(otlp.name, "collector");
    assert_eq!(otlp.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert!(!otlp.include_payloads, "payloads are opt-in");
    assert_eq!(otlp.batch_spans, 256);
}
