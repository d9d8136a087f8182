//! Helpers shared by the fuzz targets in `fuzz_targets/`: chunking an input
//! the same way on every run, and the daemon-side context the ingest
//! targets call `intentproof_gateway::ingest::prepare` with.
//!
//! What it does not do: run anything by itself (`fuzz/run.sh` runs the
//! targets), or start a daemon (the targets call the pure functions an
//! HTTP handler calls, never a server).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use intentproof_core::canon::parse_strict;
use intentproof_core::keys::InstanceKey;
use intentproof_core::seal::verify_event;
use intentproof_gateway::ingest::{
    Caller, DaemonSealer, RESERVED_ACTION_PREFIX, TrustedKeys, prepare,
};
use intentproof_policy::redact::{HashKey, RedactionPolicy, Redactor};
use intentproof_store::{Store, StoreOptions};
use serde_json::Value;

/// Splits `data` into chunks whose sizes (1 to 64 bytes) follow from the
/// data itself, so a crashing input replays with the same boundaries and
/// seed files need no framing byte.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut state = data.len() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    for b in data.iter().take(8) {
        state = state.rotate_left(8) ^ u64::from(*b);
    }
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift64: cheap, deterministic, never stuck at zero.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state % 64 + 1) as usize;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// The daemon key's seed: fixed, so a crash replays identically.
const DAEMON_SEED: [u8; 32] = [7; 32];

/// What `ingest::prepare` needs: trusted keys (none), and the daemon's
/// sealer over a store in a temporary directory (read for chain heads
/// only: nothing is written to it).
pub struct IngestContext {
    /// Instance keys trusted for bare v1 events (empty: their signatures
    /// are recorded as unverified, as for an unknown instance).
    pub keys: TrustedKeys,
    /// The daemon's sealer (envelope events).
    pub sealer: DaemonSealer,
    /// The daemon key, to verify what the sealer signed.
    pub daemon_key: InstanceKey,
    store: Arc<Store>,
    redactor: Arc<Redactor>,
    uses: usize,
}

/// After this many inputs the sealer is replaced, so the chains it tracks
/// (one per correlation id seen) do not grow for the whole run.
const SEALER_USES: usize = 4096;

impl IngestContext {
    fn new() -> IngestContext {
        // `fuzz/run.sh` points TMPDIR at a directory it removes afterwards.
        let dir: PathBuf =
            std::env::temp_dir().join(format!("intentproof-fuzz-store-{}", std::process::id()));
        let store = Store::open(&dir, StoreOptions::default(), &|_| None)
            .unwrap_or_else(|e| panic!("cannot open the fuzz store in {}: {e}", dir.display()));
        let redactor = Arc::new(Redactor::new(
            RedactionPolicy::default_policy(),
            HashKey::from_bytes([9; 32]),
        ));
        let daemon_key = InstanceKey::from_seed("inst_01J00000000000000000000F22", DAEMON_SEED);
        let store = Arc::new(store);
        IngestContext {
            keys: TrustedKeys::default(),
            sealer: DaemonSealer::new(
                daemon_key.clone(),
                "fuzz",
                Arc::clone(&store),
                Arc::clone(&redactor),
            ),
            daemon_key,
            store,
            redactor,
            uses: 0,
        }
    }

    fn next_use(&mut self) {
        self.uses += 1;
        if self.uses >= SEALER_USES {
            self.uses = 0;
            self.sealer = DaemonSealer::new(
                self.daemon_key.clone(),
                "fuzz",
                Arc::clone(&self.store),
                Arc::clone(&self.redactor),
            );
        }
    }
}

thread_local! {
    static INGEST: RefCell<Option<IngestContext>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's ingest context (created on first use).
pub fn with_ingest<T>(f: impl FnOnce(&IngestContext) -> T) -> T {
    INGEST.with(|cell| {
        let mut slot = cell.borrow_mut();
        let context = slot.get_or_insert_with(IngestContext::new);
        context.next_use();
        f(context)
    })
}

/// Runs `ingest::prepare` on `body` from `caller` and checks what must
/// hold for any input: no panic; an accepted body is stored as bytes that
/// parse strictly; a bare v1 event is stored byte for byte; an envelope
/// event is stored signed by the daemon key, and that signature verifies;
/// an anonymous caller never gets a reserved (`intentproof.*`) action
/// stored.
pub fn check_prepared(ctx: &IngestContext, body: &[u8], caller: Caller) {
    let Ok(incoming) = prepare(body, &ctx.keys, &ctx.sealer, caller) else {
        return;
    };
    let stored = parse_strict(&incoming.bytes).unwrap_or_else(|e| {
        panic!(
            "accepted body stored as bytes that do not parse strictly ({e}): {:?}",
            String::from_utf8_lossy(&incoming.bytes)
        )
    });
    assert!(
        !incoming.meta.event_id.is_empty(),
        "stored without an event id"
    );
    let envelope = parse_strict(body).is_ok_and(|v| v.get("intentproof").is_some());
    if envelope {
        if let Err(e) = verify_event(&stored, &ctx.daemon_key.verifying_key()) {
            panic!("a sealed envelope event does not verify with the daemon key: {e}");
        }
    } else {
        assert_eq!(
            incoming.bytes, body,
            "a bare v1 event was not stored as sent"
        );
    }
    if caller == Caller::Anonymous {
        let action = stored.get("action").and_then(Value::as_str).unwrap_or("");
        assert!(
            !action.starts_with(RESERVED_ACTION_PREFIX),
            "an anonymous caller got reserved action {action:?} stored"
        );
    }
}
