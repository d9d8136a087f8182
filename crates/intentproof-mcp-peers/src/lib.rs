//! rmcp-based MCP test peers for IntentProof's transparency tests. Not shipped.
