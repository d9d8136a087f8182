//! The README's `[approvals]` snippet is a config the daemon takes, and
//! bad approval settings are refused with the field named.

use intentproof_gateway::Config;

/// The first ```toml block after `heading` in the README.
fn readme_toml(heading: &str) -> String {
    let readme = include_str!("../../../README.md");
    let from = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let block = &readme[from..];
    let start = block.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = block[start..].find("```").expect("its end");
    block[start..start + end].to_owned()
}

#[test]
fn the_readme_approvals_snippet_loads() {
    let text = readme_toml("### Guard mode: a person approves risky calls");
    let config = Config::from_toml(&text, "README".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.approvals.timeout_secs, 300);
    assert_eq!(
        config.approvals.approvers.keys().collect::<Vec<_>>(),
        ["ops"]
    );
    let rules = config
        .approvals
        .parsed_rules()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rules[0].describe(),
        "mcp.payments.refund_* when amount_cents > 100"
    );
}

#[test]
fn bad_approval_settings_name_the_field() {
    for (text, expected) in [
        (
            "[[approvals.rules]]\naction = \"mcp.*\"\nwhen = [\"amount >> 3\"]\n",
            "require_approval \"mcp.*\": ",
        ),
        (
            "[approvals]\ntimeout_secs = 0\n",
            "approvals.timeout_secs = 0 is out of range",
        ),
        (
            "[approvals]\napprovers = { ops = \"short\" }\n",
            "approvals.approvers.ops: the token must be at least 16 characters",
        ),
        (
            "ingest_token = \"0123456789abcdef0\"\n[approvals]\napprovers = { ops = \"0123456789abcdef0\" }\n",
            "approvals.approvers.ops: the token is also the ingest or MCP token",
        ),
        (
            "[approvals]\napprovers = { owner = \"0123456789abcdef0\" }\n",
            "approvals.approvers: \"owner\" is not a usable name",
        ),
    ] {
        let e = Config::from_toml(text, "inline".as_ref())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(expected), "{text}: {e}");
    }
}
