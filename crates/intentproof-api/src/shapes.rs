//! The [`wire`](crate::wire) bodies that readers build from a store too:
//! an event, an event with its inclusion proof, a chain row. The daemon
//! answers with them and the TUI's local reader (no daemon, or `--local`)
//! builds the same bodies from a store it opened read-only, so both give
//! the same JSON.

use intentproof_core::merkle::hex;
use intentproof_store::{ChainSummary, EventQuery, Store, StoreError, StoredEvent};

use crate::wire::{Chain, EventBody, EventWithInclusion, Inclusion};

/// One stored event as the API answers it (`GET /v1/events`,
/// `/v1/chains/{id}`).
pub fn event_body(stored: StoredEvent) -> EventBody {
    EventBody {
        seq: stored.entry.seq,
        signature: stored.entry.meta.signature.as_str().to_owned(),
        event: stored.event,
        daemon: None,
    }
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

/// One row of `GET /v1/chains`: the chain with `agent`, who made its
/// calls. The TUI's LocalSource builds its rows with it too.
pub fn chain_row(store: &Store, summary: ChainSummary) -> Chain {
    let agent = chain_agent(store, &summary.correlation_id);
    Chain {
        agent: Some(agent),
        ..Chain::of(summary)
    }
}

/// `GET /v1/events/{id}`: the event plus its audit path to the latest
/// signed checkpoint that covers it (or, when none does yet, to the
/// store's current root, which nobody signed yet), with that checkpoint.
/// `None` when the store has no event `event_id`.
pub fn event_with_inclusion(
    store: &Store,
    event_id: &str,
) -> Result<Option<EventWithInclusion>, StoreError> {
    let Some(stored) = store.get(event_id)? else {
        return Ok(None);
    };
    let signed = intentproof_store::checkpoint::latest(store.dir())
        .ok()
        .flatten()
        .filter(|cp| cp.tree_size > stored.entry.seq);
    let size = signed.as_ref().map_or(store.tree_size(), |cp| cp.tree_size);
    let proof = store.inclusion_proof(stored.entry.seq, size)?;
    Ok(Some(EventWithInclusion {
        inclusion: Inclusion {
            leaf_index: stored.entry.seq,
            tree_size: size,
            root: format!("sha256:{}", hex(&store.root(size)?)),
            proof: proof.iter().map(hex).collect(),
            checkpoint: signed,
        },
        body: event_body(stored),
    }))
}
