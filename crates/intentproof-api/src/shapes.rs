//! The shapes of the daemon's JSON answers that readers build from a store
//! too: an event, an event with its inclusion proof, a chain summary and a
//! chain row. The daemon answers with them and the TUI's local reader
//! (no daemon) builds the same bodies from a store it opened read-only, so
//! both give the same JSON.

use intentproof_core::merkle::hex;
use intentproof_store::{ChainSummary, EventQuery, Store, StoreError, StoredEvent};
use serde_json::{Value, json};

/// One stored event as the API answers it (`GET /v1/events`,
/// `/v1/chains/{id}`): `{"seq", "signature", "event"}`. Readers that open
/// the store themselves (the TUI without a daemon) use it too, so both
/// give the same shape.
pub fn event_json(stored: &StoredEvent) -> Value {
    json!({
        "seq": stored.entry.seq,
        "signature": stored.entry.meta.signature.as_str(),
        "event": stored.event,
    })
}

/// One chain summary as the API answers it (`GET /v1/chains`, the `chain`
/// of `/v1/chains/{id}`): the summary's fields plus `verified` and `gaps`.
pub fn chain_json(summary: &ChainSummary) -> Value {
    let mut value = serde_json::to_value(summary).unwrap_or(Value::Null);
    value["verified"] = Value::Bool(summary.verified());
    value["gaps"] = json!(summary.gaps());
    value
}

/// Who made a chain's calls: the MCP client's name on its first event
/// (empty when it has none, e.g. SDK events, or when that event cannot be
/// read: a damaged record must not hide the chain from the list, and
/// verifying that chain names the damage).
fn chain_agent(store: &Store, correlation_id: &str) -> String {
    let query = EventQuery {
        correlation_id: Some(correlation_id.to_owned()),
        limit: 1,
        ..EventQuery::default()
    };
    let first = match store.events(&query) {
        Ok(page) => page.events.into_iter().next(),
        Err(e) => {
            tracing::warn!(correlation_id, error = %e, "cannot read a chain's first event for its agent");
            None
        }
    };
    first
        .and_then(|e| {
            let client = e.event.pointer("/attributes/mcp.client.name")?.as_str()?;
            Some(client.to_owned())
        })
        .unwrap_or_default()
}

/// One row of `GET /v1/chains`: [`chain_json`] plus `agent`, who made the
/// chain's calls. The TUI's LocalSource builds its rows with it too.
pub fn chain_row_json(store: &Store, summary: &ChainSummary) -> Value {
    let mut value = chain_json(summary);
    value["agent"] = Value::String(chain_agent(store, &summary.correlation_id));
    value
}

/// `GET /v1/events/{id}`: [`event_json`] plus `inclusion`, the event's
/// audit path to the latest signed checkpoint that covers it (or, when none
/// does yet, to the store's current root, which nobody signed yet), with
/// that checkpoint. `None` when the store has no event `event_id`.
pub fn event_with_inclusion_json(
    store: &Store,
    event_id: &str,
) -> Result<Option<Value>, StoreError> {
    let Some(stored) = store.get(event_id)? else {
        return Ok(None);
    };
    let signed = intentproof_store::checkpoint::latest(store.dir())
        .ok()
        .flatten()
        .filter(|cp| cp.tree_size > stored.entry.seq);
    let size = signed.as_ref().map_or(store.tree_size(), |cp| cp.tree_size);
    let proof = store.inclusion_proof(stored.entry.seq, size)?;
    let mut body = event_json(&stored);
    body["inclusion"] = json!({
        "leaf_index": stored.entry.seq,
        "tree_size": size,
        "root": format!("sha256:{}", hex(&store.root(size))),
        "proof": proof.iter().map(hex).collect::<Vec<_>>(),
        "checkpoint": signed,
    });
    Ok(Some(body))
}
