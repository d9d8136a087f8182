//! `check_policy`, the one validation `serve`, `doctor` and `intentproof
//! policy` run: exact messages for the mistakes a user makes first.

use intentproof_policy::verification::{
    InvalidPolicy, MAX_POLICY_BYTES, PolicyFormat, check_policy,
};

const VALID: &str = "valid: required, forbidden, ordering, cardinality, temporal, consensus, value_bound, claim_match";

fn yaml(scope: &str, rule_type: &str) -> String {
    format!(
        "policy_id: p\ntenant_id: t\n{scope}rules:\n  - id: r1\n    type: {rule_type}\n    action: refund\n    min: 1\n"
    )
}

fn problems(name: &str, text: &str, format: PolicyFormat) -> Vec<String> {
    match check_policy(name, text.as_bytes(), format) {
        Ok(_) => panic!("{name} should be refused:\n{text}"),
        Err(InvalidPolicy { problems, .. }) => problems,
    }
}

const SCOPE: &str = "scope:\n  any_event_action_in: [refund]\n";

#[test]
fn a_valid_policy_passes() {
    let policy = check_policy(
        "p.yaml",
        yaml(SCOPE, "required").as_bytes(),
        PolicyFormat::Yaml,
    )
    .unwrap();
    assert_eq!(policy.rules().len(), 1);
}

#[test]
fn a_misspelt_type_names_the_field_the_author_wrote() {
    let err = check_policy(
        "policy.yaml",
        yaml(SCOPE, "requried").as_bytes(),
        PolicyFormat::Yaml,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("policy.yaml: rule \"r1\": type \"requried\" is not a category; {VALID}")
    );
    // The JSON form's field is `category`.
    let json = r#"{"policy_id":"p","tenant_id":"t","scope":{"any_event_action_in":["refund"]},
        "rules":[{"id":"r1","category":"requried","spec":{"action":"refund"}}]}"#;
    assert_eq!(
        problems("p.json", json, PolicyFormat::Yaml),
        vec![format!(
            "rule \"r1\": category \"requried\" is not a category; {VALID}"
        )]
    );
}

#[test]
fn scope_keys_are_checked() {
    assert_eq!(
        problems(
            "p.yaml",
            &yaml("scope:\n  any_event_actions_in: [refund]\n", "required"),
            PolicyFormat::Yaml
        ),
        vec![
            "scope.any_event_actions_in is not a scope field (known: any_event_action_in, ignore_flows_with_no_match); it would be ignored",
            "scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)",
        ]
    );
    assert_eq!(
        problems("p.yaml", &yaml("", "required"), PolicyFormat::Yaml),
        vec![
            "scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)"
        ]
    );
    assert_eq!(
        problems(
            "p.yaml",
            &yaml("scope:\n  any_event_action_in: []\n", "required"),
            PolicyFormat::Yaml
        ),
        vec![
            "scope.any_event_action_in is empty: list the actions whose flows this policy governs"
        ]
    );
    // `match_action` is the authoring form's spelling and compiles away.
    check_policy(
        "p.yaml",
        yaml("scope:\n  match_action: refund\n", "required").as_bytes(),
        PolicyFormat::Yaml,
    )
    .unwrap();
}

#[test]
fn every_problem_is_a_line_naming_the_file() {
    let err = check_policy(
        "dir/p.yaml",
        yaml("", "requried").as_bytes(),
        PolicyFormat::Detect,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "dir/p.yaml: scope.any_event_action_in is missing: list the actions whose flows this policy governs (a flow is checked when one of its events has one of them)\n\
             dir/p.yaml: rule \"r1\": type \"requried\" is not a category; {VALID}"
        )
    );
}

#[test]
fn unparseable_and_oversized_files_are_one_problem() {
    assert_eq!(
        problems("p.yaml", "rules: [", PolicyFormat::Yaml).len(),
        1,
        "YAML syntax"
    );
    let big = vec![b' '; MAX_POLICY_BYTES + 1];
    assert_eq!(
        check_policy("big.json", &big, PolicyFormat::Detect)
            .unwrap_err()
            .to_string(),
        "big.json: is larger than 1024 KiB, more than a policy can be; is this the right file?"
    );
    assert_eq!(
        InvalidPolicy::unreadable(
            "gone.yaml",
            &std::io::Error::from(std::io::ErrorKind::NotFound)
        )
        .to_string(),
        "gone.yaml: cannot read it: entity not found"
    );
}
