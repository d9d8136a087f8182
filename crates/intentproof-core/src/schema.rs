//! Validation against the IntentProof spec's JSON Schemas (draft 2020-12).
//!
//! The schemas are embedded in the binary (copied unchanged from the spec,
//! commit 8cdc72b, into this crate's `schema/` folder). Nothing is fetched:
//! the `jsonschema` crate is built without remote `$ref` resolution, and the
//! one cross-schema reference (certificate -> claim) is served from the
//! embedded copies. `format`
//! keywords (`date-time`, `uri`) are asserted, not just annotated.
//! Each validator is compiled once, on first use, and cached.
//!
//! ```
//! use intentproof_core::schema::{validate, SchemaKind};
//! let errors = validate(SchemaKind::ExecutionEvent, &serde_json::json!({"schema": "invalid"})).unwrap_err();
//! assert!(errors.iter().any(|e| e.contains("\"intentproof.event.v1\" was expected")), "{errors:?}");
//! ```

use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::Value;

/// The spec's schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// `agent-manifest.v1.schema.json`
    AgentManifest,
    /// `attestation.v1.schema.json`
    Attestation,
    /// `bundle-manifest.v1.schema.json`
    BundleManifest,
    /// `certificate.v1.schema.json`
    Certificate,
    /// `claim.v1.schema.json`
    Claim,
    /// `execution_event.v1.schema.json` (`intentproof.event.v1`)
    ExecutionEvent,
    /// `finding.v1.schema.json`
    Finding,
    /// `flow.v1.schema.json`
    Flow,
    /// `policy.v1.schema.json`
    Policy,
    /// `run.v1.schema.json`
    Run,
    /// `webhook-finding.v1.schema.json`
    WebhookFinding,
}

impl SchemaKind {
    /// Every kind.
    pub const ALL: [SchemaKind; 11] = [
        SchemaKind::AgentManifest,
        SchemaKind::Attestation,
        SchemaKind::BundleManifest,
        SchemaKind::Certificate,
        SchemaKind::Claim,
        SchemaKind::ExecutionEvent,
        SchemaKind::Finding,
        SchemaKind::Flow,
        SchemaKind::Policy,
        SchemaKind::Run,
        SchemaKind::WebhookFinding,
    ];

    /// The schema's file name stem in the spec, e.g. `execution_event`
    /// (also the prefix of the spec's `golden/<stem>_cases.jsonl`).
    ///
    /// ```
    /// use intentproof_core::schema::SchemaKind;
    /// assert_eq!(SchemaKind::from_stem("webhook-finding"), Some(SchemaKind::WebhookFinding));
    /// ```
    pub fn stem(self) -> &'static str {
        match self {
            SchemaKind::AgentManifest => "agent-manifest",
            SchemaKind::Attestation => "attestation",
            SchemaKind::BundleManifest => "bundle-manifest",
            SchemaKind::Certificate => "certificate",
            SchemaKind::Claim => "claim",
            SchemaKind::ExecutionEvent => "execution_event",
            SchemaKind::Finding => "finding",
            SchemaKind::Flow => "flow",
            SchemaKind::Policy => "policy",
            SchemaKind::Run => "run",
            SchemaKind::WebhookFinding => "webhook-finding",
        }
    }

    /// The kind whose [`stem`](Self::stem) is `stem`.
    pub fn from_stem(stem: &str) -> Option<SchemaKind> {
        Self::ALL.into_iter().find(|k| k.stem() == stem)
    }

    /// The embedded schema text.
    pub fn source(self) -> &'static str {
        match self {
            SchemaKind::AgentManifest => include_str!("../schema/agent-manifest.v1.schema.json"),
            SchemaKind::Attestation => include_str!("../schema/attestation.v1.schema.json"),
            SchemaKind::BundleManifest => include_str!("../schema/bundle-manifest.v1.schema.json"),
            SchemaKind::Certificate => include_str!("../schema/certificate.v1.schema.json"),
            SchemaKind::Claim => include_str!("../schema/claim.v1.schema.json"),
            SchemaKind::ExecutionEvent => include_str!("../schema/execution_event.v1.schema.json"),
            SchemaKind::Finding => include_str!("../schema/finding.v1.schema.json"),
            SchemaKind::Flow => include_str!("../schema/flow.v1.schema.json"),
            SchemaKind::Policy => include_str!("../schema/policy.v1.schema.json"),
            SchemaKind::Run => include_str!("../schema/run.v1.schema.json"),
            SchemaKind::WebhookFinding => include_str!("../schema/webhook-finding.v1.schema.json"),
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

type Compiled = Result<Validator, String>;

/// Base URI of the spec's schema `$id`s.
const SCHEMA_BASE: &str = "https://intentproof.dev/schema/";

/// Serves cross-schema `$ref`s (e.g. certificate -> claim) from the embedded
/// copies; every other URI fails, so nothing is ever fetched.
struct Embedded;

impl jsonschema::Retrieve for Embedded {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let kind = uri
            .as_str()
            .strip_prefix(SCHEMA_BASE)
            .and_then(|file| file.strip_suffix(".v1.schema.json"))
            .and_then(SchemaKind::from_stem)
            .ok_or_else(|| format!("schema {uri} is not embedded and remote fetching is off"))?;
        Ok(serde_json::from_str(kind.source())?)
    }
}

static VALIDATORS: [OnceLock<Compiled>; 11] = [const { OnceLock::new() }; 11];

fn compile(kind: SchemaKind) -> Compiled {
    let schema: Value = serde_json::from_str(kind.source())
        .map_err(|e| format!("embedded schema {} is not JSON: {e}", kind.stem()))?;
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_retriever(Embedded)
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("embedded schema {} does not compile: {e}", kind.stem()))
}

/// Validates `value` against the schema of `kind`.
///
/// On failure returns one readable message per violation, each starting
/// with the JSON pointer of the offending value (`/` for the root).
pub fn validate(kind: SchemaKind, value: &Value) -> Result<(), Vec<String>> {
    let validator = match VALIDATORS[kind.index()].get_or_init(|| compile(kind)) {
        Ok(v) => v,
        Err(e) => return Err(vec![e.clone()]),
    };
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| {
            let path = e.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            format!("{path}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_compiles() {
        for kind in SchemaKind::ALL {
            compile(kind).unwrap();
            assert_eq!(SchemaKind::from_stem(kind.stem()), Some(kind));
        }
    }
}
