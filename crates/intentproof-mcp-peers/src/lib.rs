//! rmcp-based MCP test peers for IntentProof's transparency tests. Not shipped.
//!
//! What it does not do: ship, or serve anything but the fixed tools,
//! resource and prompt the transparency tests compare.
