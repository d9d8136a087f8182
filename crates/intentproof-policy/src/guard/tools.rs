//! Tool-definition pins: what a tool's definition is, its digest, which of
//! its fields changed, and what a call to a changed tool meets.
//!
//! A definition is the part of a `tools/list` entry that tells the agent
//! what the tool does: `name`, `title`, `description`, `inputSchema`,
//! `outputSchema`, `annotations` (those present). `_meta`, `icons` and
//! `execution` are left out: they do not change what the model reads. Its
//! digest is `sha256:` + hex of the SHA-256 of its JCS form (RFC 8785).
//!
//! No I/O here: keeping pins is the caller's (`intentproof_mcp::pins`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Refusal;

/// The members of a tool entry that make its definition, in the order
/// [`changed_fields`] names them.
pub const DEFINITION_FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// Rule of a call refused because its tool changed since it was pinned.
pub const CHANGED_RULE: &str = "tools.changed";

/// Whether a server's tools are pinned, and what a tool whose definition
/// differs from its pin (or that appeared after the server's tools were
/// pinned) meets until an operator approves the new definition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnToolChange {
    /// Do not pin (the default): `tools/list` passes untouched.
    #[default]
    Off,
    /// Record the change and raise a `TOOL CHANGED` finding.
    Flag,
    /// Also remove the tool from what the agent lists, and refuse its calls.
    Hide,
    /// Also refuse its calls (the agent still lists it).
    Block,
}

impl OnToolChange {
    /// Its name in config and attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            OnToolChange::Off => "off",
            OnToolChange::Flag => "flag",
            OnToolChange::Hide => "hide",
            OnToolChange::Block => "block",
        }
    }
}

/// Where the called tool stands against its server's pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolPin {
    /// Pinned, and the last list showed the pinned definition (or the
    /// server has no pins yet, or the tool was never listed).
    Pinned,
    /// The last list showed a definition that is not the pinned one, or
    /// a tool that appeared after pinning; not approved yet.
    Changed,
}

/// The definition part of a `tools/list` entry.
pub fn definition(tool: &Value) -> Value {
    let mut out = Map::new();
    if let Value::Object(map) = tool {
        for field in DEFINITION_FIELDS {
            if let Some(value) = map.get(field) {
                out.insert(field.to_owned(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// `sha256:` + hex of the SHA-256 of the JCS form of `tool`'s
/// [`definition`].
pub fn digest(tool: &Value) -> String {
    super::digest_of(&definition(tool))
}

/// The definition fields whose values differ between two entries (a field
/// present in one only counts as changed).
pub fn changed_fields(old: &Value, new: &Value) -> Vec<&'static str> {
    DEFINITION_FIELDS
        .into_iter()
        .filter(|field| old.get(field) != new.get(field))
        .collect()
}

/// What a call of a tool meets under `on_change`: a refusal when the tool
/// changed and the server hides or blocks changed tools.
pub fn decide(on_change: OnToolChange, action: &str, pin: ToolPin) -> Option<Refusal> {
    match (on_change, pin) {
        (OnToolChange::Off | OnToolChange::Flag, _) | (_, ToolPin::Pinned) => None,
        (mode, ToolPin::Changed) => Some(Refusal {
            rule: CHANGED_RULE,
            message: format!(
                "{action} was refused: the tool's definition changed since it was pinned (or it appeared after pinning) and this server {}s changed tools until an operator approves them: `intentproof tools diff` shows the change, `intentproof tools approve` accepts it",
                mode.as_str()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_definition_keeps_the_fields_the_model_reads() {
        let tool = json!({
            "name": "refund", "description": "Refund.", "inputSchema": {"type": "object"},
            "_meta": {"x": 1}, "icons": [], "execution": {"taskSupport": "optional"},
        });
        assert_eq!(
            definition(&tool),
            json!({"name": "refund", "description": "Refund.", "inputSchema": {"type": "object"}})
        );
        // The digest is of the JCS bytes: sorted keys, no spaces.
        use sha2::{Digest, Sha256};
        let jcs = br#"{"description":"Refund.","inputSchema":{"type":"object"},"name":"refund"}"#;
        let hex: String = Sha256::digest(jcs)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest(&tool), format!("sha256:{hex}"));
        // _meta does not move it.
        let mut other = tool.clone();
        other["_meta"] = json!({"y": 2});
        assert_eq!(digest(&other), digest(&tool));
    }

    #[test]
    fn changed_fields_name_what_differs() {
        let old = json!({"name": "a", "description": "x", "inputSchema": {}});
        let new = json!({"name": "a", "description": "y", "inputSchema": {}, "title": "A"});
        assert_eq!(changed_fields(&old, &new), vec!["title", "description"]);
        assert!(changed_fields(&old, &old).is_empty());
    }

    #[test]
    fn only_hide_and_block_refuse_and_only_changed_tools() {
        assert_eq!(
            decide(OnToolChange::Flag, "mcp.s.t", ToolPin::Changed),
            None
        );
        assert_eq!(
            decide(OnToolChange::Block, "mcp.s.t", ToolPin::Pinned),
            None
        );
        let refusal = decide(OnToolChange::Block, "mcp.s.t", ToolPin::Changed);
        assert_eq!(refusal.as_ref().map(|r| r.rule), Some(CHANGED_RULE));
        let message = refusal.map(|r| r.message).unwrap_or_default();
        assert!(message.starts_with("mcp.s.t was refused: the tool's definition changed"));
        assert!(message.contains("this server blocks changed tools"));
        assert!(
            decide(OnToolChange::Hide, "mcp.s.t", ToolPin::Changed)
                .is_some_and(|r| r.message.contains("hides changed tools"))
        );
    }
}
