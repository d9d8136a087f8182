//! The daemon in the transparency-log ecosystem (C2SP, see
//! [`intentproof_core::tlog`]): its checkpoints as signed notes, a
//! `tlog-witness` for the logs it is configured to trust, and a client that
//! sends each new checkpoint to the witnesses it is configured with.
//!
//! - **Log.** Every checkpoint is also signed as a C2SP note by the daemon
//!   key under the log's *origin* (`[transparency] origin`, default
//!   `intentproof-gateway/<instance_id>`: the instance id never changes for
//!   a data directory, and the origin must not: a witness knows a log by
//!   it). The key name is the origin, so the verifier key is
//!   `<origin>+<key ID>+<base64(0x01 || public key)>`
//!   (`intentproof keys transparency` prints it).
//! - **Witness.** `POST /v1/witness/add-checkpoint` (the protocol's
//!   `<prefix>/add-checkpoint` with prefix `/v1/witness`) checks a
//!   checkpoint of a configured log (`[[transparency.logs]]`) against the
//!   size and root it recorded last, records the new ones durably
//!   (`<data-dir>/witness-state.json`, replaced atomically and fsync'd
//!   before the answer) and answers with its cosignature (type 0x04, name
//!   `[transparency] witness_name`, default
//!   `intentproof-witness/<instance_id>`, the daemon key). Status codes
//!   follow tlog-witness v1.0.0: 404 unknown origin, 403 no trusted
//!   signature, 400 malformed or old size above the new, 409 stale old size
//!   (body: the recorded size, `text/x.tlog.size`) or the same size with
//!   another root (a fork; the reason in `IntentProof-Refusal`), 422 a
//!   consistency proof that does not verify. (The spec's draft after
//!   v1.0.0 answers a same-size fork with 422; either way it is refused.)
//! - **Client.** One task per `[[transparency.witnesses]]` entry sends
//!   the latest note with a consistency proof from the size the witness
//!   has, learns that size from a 409, keeps each cosignature that
//!   verifies with the configured witness key (`cosignatures.jsonl`), and
//!   retries with backoff. Nothing on the ingest path waits for it.
//!
//! The witness endpoint takes no token (any C2SP log client can call it;
//! what it accepts is signed by a key it trusts), but it is behind the
//! browser guard's Origin and Host checks, and bodies are bounded
//! ([`witness::MAX_ADD_CHECKPOINT_BYTES`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use intentproof_core::backoff::{Backoff, retry_after_header};
use intentproof_core::keys::InstanceKey;
use intentproof_core::tlog::note::{KeyType, Note, NoteSignature, NoteSigner, NoteVerifier};
use intentproof_core::tlog::witness::{self, AddCheckpoint, Recorded, Refusal};
use intentproof_store::Store;
use intentproof_store::checkpoint as store_checkpoint;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use crate::config::{TransparencyConfig, WitnessConfig};

/// File of the witness's recorded sizes, under the data directory.
pub const WITNESS_STATE_FILE: &str = "witness-state.json";
/// `schema` of [`WITNESS_STATE_FILE`].
const WITNESS_STATE_SCHEMA: &str = "intentproof.witness.state.v1";

/// The daemon's log and witness identities, its latest notes, and the
/// witness's state.
pub struct Transparency {
    log: NoteSigner,
    cosigner: NoteSigner,
    logs: BTreeMap<String, Vec<NoteVerifier>>,
    recorded: Mutex<BTreeMap<String, Recorded>>,
    state_path: PathBuf,
    notes: Mutex<Notes>,
    /// Woken when a checkpoint note is written (the witness clients wait).
    pub new_note: Arc<Notify>,
}

/// The latest checkpoint note and the largest cosigned one, each with the
/// cosignatures it has, kept in memory (read from the append-only files
/// once at start) so that serving, exporting and witnessing never rescan
/// files that grow by a line every checkpoint.
#[derive(Default)]
struct Notes {
    latest: Option<(u64, Note)>,
    cosigned: Option<(u64, Note)>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    schema: String,
    logs: BTreeMap<String, RecordedLine>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedLine {
    size: u64,
    root: String,
}

/// The default origin of the daemon whose key is `key`.
fn default_origin(key: &InstanceKey) -> String {
    format!("intentproof-gateway/{}", key.instance_id())
}

/// The default witness name of the daemon whose key is `key`.
fn default_witness_name(key: &InstanceKey) -> String {
    format!("intentproof-witness/{}", key.instance_id())
}

/// The daemon's two C2SP signers under `config`'s names (or the defaults):
/// the log's (type 0x01, named by the origin) and the witness's (type
/// 0x04), both the daemon key.
pub fn signers(config: &TransparencyConfig, key: &InstanceKey) -> (NoteSigner, NoteSigner) {
    let origin = config.origin.clone().unwrap_or_else(|| default_origin(key));
    let witness_name = config
        .witness_name
        .clone()
        .unwrap_or_else(|| default_witness_name(key));
    (
        NoteSigner::from_key(&origin, KeyType::Ed25519, key.signing_key().clone()),
        NoteSigner::from_key(
            &witness_name,
            KeyType::Cosignature,
            key.signing_key().clone(),
        ),
    )
}

impl Transparency {
    /// Builds the identities from `config` and the daemon key, and reads
    /// the witness state from `data_dir` (a damaged file is an error: the
    /// witness must never forget what it cosigned).
    pub fn new(
        config: &TransparencyConfig,
        key: &InstanceKey,
        data_dir: &Path,
    ) -> Result<Transparency, String> {
        let (log, cosigner) = signers(config, key);
        let mut logs: BTreeMap<String, Vec<NoteVerifier>> = BTreeMap::new();
        for log in &config.logs {
            let verifier = log.verifier()?;
            let origin = log
                .origin
                .clone()
                .unwrap_or_else(|| verifier.name().to_owned());
            logs.entry(origin).or_default().push(verifier);
        }
        let state_path = data_dir.join(WITNESS_STATE_FILE);
        let recorded = read_state(&state_path)?;
        let sized = |note: Option<Note>| -> Result<Option<(u64, Note)>, String> {
            note.map(|note| {
                intentproof_core::tlog::checkpoint::TlogCheckpoint::parse(note.text())
                    .map(|cp| (cp.size, note))
            })
            .transpose()
        };
        let read = |e: store_checkpoint::CheckpointError| e.to_string();
        let notes = Notes {
            latest: sized(store_checkpoint::cosigned_note(data_dir, |_, _| true).map_err(read)?)?,
            cosigned: sized(
                store_checkpoint::cosigned_note(data_dir, |_, by| !by.is_empty()).map_err(read)?,
            )?,
        };
        Ok(Transparency {
            log,
            cosigner,
            logs,
            recorded: Mutex::new(recorded),
            state_path,
            notes: Mutex::new(notes),
            new_note: Arc::new(Notify::new()),
        })
    }

    /// The log's origin (its checkpoints' first line and key name).
    pub fn origin(&self) -> &str {
        self.log.name()
    }

    /// The log's verifier key (`origin+id+base64`).
    pub fn log_key(&self) -> NoteVerifier {
        self.log.verifier()
    }

    /// The witness's cosignature verifier key.
    pub fn witness_key(&self) -> NoteVerifier {
        self.cosigner.verifier()
    }

    /// Signs the checkpoint note of `size` leaves with root `root`.
    fn sign_note(&self, size: u64, root: &intentproof_core::merkle::Hash) -> Result<Note, String> {
        let checkpoint =
            intentproof_core::tlog::checkpoint::TlogCheckpoint::new(self.origin(), size, *root);
        let mut note = Note::new(checkpoint.to_string()).map_err(|e| e.to_string())?;
        note.push(self.log.sign(note.text(), 0).map_err(|e| e.to_string())?);
        Ok(note)
    }

    /// The latest checkpoint note (size and note with its cosignatures).
    pub fn latest_note(&self) -> Option<(u64, Note)> {
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest
            .clone()
    }

    /// The note a bundle of records up to `last_seq` leads its tlog-proofs
    /// to: the largest cosigned one that covers them, else the latest if it
    /// does.
    pub fn note_covering(&self, last_seq: u64) -> Option<(u64, Note)> {
        let notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        [&notes.cosigned, &notes.latest]
            .into_iter()
            .flatten()
            .find(|(size, _)| *size > last_seq)
            .cloned()
    }

    /// Signs the note of `size` leaves with root `root`, appends it to the
    /// notes file, makes it the latest and wakes the witness clients.
    pub fn write_note(
        &self,
        dir: &Path,
        size: u64,
        root: &intentproof_core::merkle::Hash,
    ) -> Result<(), String> {
        let note = self.sign_note(size, root)?;
        store_checkpoint::append_note(dir, size, &note).map_err(|e| e.to_string())?;
        self.notes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest = Some((size, note));
        self.new_note.notify_waiters();
        Ok(())
    }

    /// Keeps a witness's (verified) cosignature of `note`, of `size`
    /// leaves: appended to the file, and added to the notes in memory.
    pub fn keep_cosignature(
        &self,
        dir: &Path,
        size: u64,
        note: &Note,
        signature: NoteSignature,
    ) -> Result<(), String> {
        store_checkpoint::append_cosignature(dir, size, &signature).map_err(|e| e.to_string())?;
        let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((latest, held)) = notes.latest.as_mut()
            && *latest == size
        {
            held.push(signature.clone());
        }
        match notes.cosigned.as_mut() {
            Some((cosigned, held)) if *cosigned == size => held.push(signature),
            Some((cosigned, _)) if *cosigned > size => {}
            _ => {
                let mut with = note.clone();
                with.push(signature);
                notes.cosigned = Some((size, with));
            }
        }
        Ok(())
    }

    /// Handles one `add-checkpoint` body: the cosignature line to answer
    /// with, or the refusal. Records the new size durably first.
    pub fn add_checkpoint(&self, body: &str) -> Result<NoteSignature, WitnessAnswer> {
        let request = AddCheckpoint::parse(body)
            .map_err(|e| WitnessAnswer::Refused(Refusal::BadRequest(e)))?;
        let origin = request
            .checkpoint
            .text()
            .split('\n')
            .next()
            .unwrap_or_default()
            .to_owned();
        let keys = self.logs.get(&origin).map(Vec::as_slice);
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        let checkpoint = witness::decide(&request, keys, recorded.get(&origin).copied())
            .map_err(WitnessAnswer::Refused)?;
        let mut next = recorded.clone();
        next.insert(
            origin,
            Recorded {
                size: checkpoint.size,
                root: checkpoint.root,
            },
        );
        write_state(&self.state_path, &next).map_err(WitnessAnswer::Failed)?;
        *recorded = next;
        drop(recorded);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.cosigner
            .sign(request.checkpoint.text(), now)
            .map_err(|e| WitnessAnswer::Failed(e.to_string()))
    }
}

/// Why the witness did not cosign.
#[derive(Debug)]
pub enum WitnessAnswer {
    /// The protocol's refusal.
    Refused(Refusal),
    /// The witness could not record (500; nothing was cosigned).
    Failed(String),
}

fn read_state(path: &Path) -> Result<BTreeMap<String, Recorded>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(format!(
                "cannot read the witness state {}: {e}",
                path.display()
            ));
        }
    };
    let damaged = |why: String| {
        format!(
            "the witness state {} is damaged ({why}); restore it from a backup: without it this witness would cosign a forked log",
            path.display()
        )
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    if file.schema != WITNESS_STATE_SCHEMA {
        return Err(damaged(format!("schema {:?}", file.schema)));
    }
    file.logs
        .into_iter()
        .map(|(origin, line)| {
            let root = B64
                .decode(&line.root)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| damaged(format!("root of {origin:?}")))?;
            Ok((
                origin,
                Recorded {
                    size: line.size,
                    root,
                },
            ))
        })
        .collect()
}

fn write_state(path: &Path, recorded: &BTreeMap<String, Recorded>) -> Result<(), String> {
    let file = StateFile {
        schema: WITNESS_STATE_SCHEMA.into(),
        logs: recorded
            .iter()
            .map(|(origin, r)| {
                (
                    origin.clone(),
                    RecordedLine {
                        size: r.size,
                        root: B64.encode(r.root),
                    },
                )
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
    let failed =
        |e: std::io::Error| format!("cannot write the witness state {}: {e}", path.display());
    intentproof_core::private_file::replace_private_file(path, &bytes).map_err(failed)?;
    // The rename must be durable before the cosignature leaves.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(failed)?;
    }
    Ok(())
}

/// Sends each new checkpoint note to one witness until `stop`, keeping the
/// cosignatures that verify with the configured key.
pub async fn push_to_witness(
    config: WitnessConfig,
    store: Arc<Store>,
    transparency: Arc<Transparency>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let new_note = Arc::clone(&transparency.new_note);
    let verifier = match config.verifier() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(witness = %config.url, error = %e, "witness client disabled");
            return;
        }
    };
    let client = match crate::pump::delivery_client(config.timeout_ms) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(witness = %config.url, error = %e, "witness client disabled: cannot build HTTP client");
            return;
        }
    };
    let url = format!("{}/add-checkpoint", config.url.trim_end_matches('/'));
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    // The size the witness recorded, as far as we know (learned from 409s).
    let mut witness_size: u64 = 0;
    let mut cosigned: Option<u64> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let wake = new_note.notified();
        let (size, note) = match transparency.latest_note() {
            Some((size, note)) if cosigned != Some(size) => (size, note),
            _ => {
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        let sending = Sending {
            client: &client,
            url: &url,
            config: &config,
            store: &store,
            verifier: &verifier,
        };
        let outcome = sending.send(size, &note, witness_size).await;
        metrics.witness_attempt(matches!(outcome, Sent::Cosigned(_)));
        match outcome {
            Sent::Cosigned(signature) => {
                let (worker, keeper) = (Arc::clone(&store), Arc::clone(&transparency));
                let sent = note.clone();
                let kept = tokio::task::spawn_blocking(move || {
                    keeper.keep_cosignature(worker.dir(), size, &sent, signature)
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                if let Err(e) = kept {
                    tracing::error!(witness = %verifier.name(), size, error = %e, "cannot keep the cosignature");
                }
                tracing::info!(witness = %verifier.name(), size, "checkpoint cosigned");
                witness_size = size;
                cosigned = Some(size);
                backoff.reset();
            }
            Sent::Stale(recorded) if recorded != witness_size && recorded <= size => {
                // The witness told us its size: retry from it at once.
                witness_size = recorded;
            }
            Sent::Stale(recorded) => {
                tracing::error!(
                    witness = %verifier.name(),
                    size,
                    recorded,
                    "the witness refuses this checkpoint at the size it recorded: this log does not extend what it cosigned (was the store rewritten?)"
                );
                if wait(&mut backoff, None, &mut stop).await {
                    return;
                }
            }
            Sent::Failed { why, retry_after } => {
                tracing::warn!(witness = %verifier.name(), size, error = %why, "checkpoint not cosigned; will retry");
                if wait(&mut backoff, retry_after, &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// Waits the next backoff step; `true` when the daemon stops meanwhile.
async fn wait(
    backoff: &mut Backoff,
    retry_after: Option<Duration>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let pause = backoff.next_wait(retry_after);
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stop.changed() => true,
    }
}

enum Sent {
    Cosigned(NoteSignature),
    /// 409: the witness's recorded size.
    Stale(u64),
    Failed {
        why: String,
        retry_after: Option<Duration>,
    },
}

/// One witness and how to reach it.
struct Sending<'a> {
    client: &'a reqwest::Client,
    url: &'a str,
    config: &'a WitnessConfig,
    store: &'a Arc<Store>,
    verifier: &'a NoteVerifier,
}

impl Sending<'_> {
    /// Sends the note of `size` leaves with a consistency proof from
    /// `old` (the size the witness recorded, as far as we know).
    async fn send(&self, size: u64, note: &Note, old: u64) -> Sent {
        let (client, url, config, store, verifier) = (
            self.client,
            self.url,
            self.config,
            self.store,
            self.verifier,
        );
        let failed = |why: String| Sent::Failed {
            why,
            retry_after: None,
        };
        if old > size {
            return failed(format!(
                "the witness recorded size {old}, more than this log's {size}: this log lost records"
            ));
        }
        // The note without this witness's own cosignatures: it adds its own.
        let mut own = Note::new(note.text()).unwrap_or_else(|_| note.clone());
        for signature in note.signatures() {
            if signature.name != verifier.name() {
                own.push(signature.clone());
            }
        }
        let worker = Arc::clone(store);
        let proof =
            match tokio::task::spawn_blocking(move || worker.consistency_proof(old, size)).await {
                Ok(Ok(proof)) => proof,
                Ok(Err(e)) => return failed(format!("no consistency proof {old} -> {size}: {e}")),
                Err(e) => return failed(e.to_string()),
            };
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: own,
        }
        .to_string();
        let mut request = client.post(url).body(body);
        for (name, value) in &config.headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return failed(e.without_url().to_string()),
        };
        let status = response.status();
        let retry_after = retry_after_header(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
        );
        let reason = response
            .headers()
            .get("intentproof-refusal")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = match response.text().await {
            Ok(t) => t.chars().take(2000).collect::<String>(),
            Err(e) => return failed(e.without_url().to_string()),
        };
        if status.as_u16() == 409 {
            return match text.trim_end_matches('\n').parse::<u64>() {
                Ok(recorded) => {
                    if let Some(reason) = reason {
                        tracing::warn!(witness = %verifier.name(), %reason, "witness: 409");
                    }
                    Sent::Stale(recorded)
                }
                Err(_) => failed(format!("409 without a size: {text:?}")),
            };
        }
        if !status.is_success() {
            return Sent::Failed {
                why: format!("HTTP {status}: {}", text.trim()),
                retry_after,
            };
        }
        for line in text.lines() {
            let Ok(signature) = NoteSignature::parse_line(line) else {
                continue;
            };
            if signature.name == verifier.name()
                && signature.key_id == verifier.id()
                && verifier.verify_line(note.text(), &signature)
            {
                return Sent::Cosigned(signature);
            }
        }
        failed(format!(
            "the answer has no cosignature that verifies with {verifier}: {:?}",
            text
        ))
    }
}
