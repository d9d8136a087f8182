//! The fleet view (`intentproof serve --fleet`): the daemon's read API
//! answered from PostgreSQL, across every daemon that replicates there.
//!
//! It answers `GET /v1/events`, `/v1/events/{id}`, `/v1/chains`,
//! `/v1/chains/{id}`, `/v1/findings`, `/v1/plans`, `POST /v1/bundles` and
//! `POST /v1/keys` (trust a signer's key for bundles) with the
//! daemon's JSON shapes, so `intentproof findings --fleet`, `chains
//! --fleet`, `tui --fleet` and any client of the daemon read the fleet the
//! same way. An event names the daemon that stored it (`daemon`; its `seq`
//! is in that daemon's journal). Reads go through indexes
//! ([`intentproof_fleet::view`]).
//!
//! **One flow over replicas.** A correlation whose calls went through
//! several daemons is one chain (each daemon's records in its journal
//! order, merged by completion time); plans and findings are computed over
//! that merged flow with the daemon's own reference
//! ([`intentproof_findings::plans_and_findings`]), so a plan declared on one
//! replica and followed on another is judged as one plan.
//!
//! **Fleet bundles** ([`bundle`]): each event's audit path leads to a
//! checkpoint signed by the daemon that stored it; the fleet view signs the
//! manifest and the run with its own key.
//!
//! It has its own data dir (`<data dir>/fleet`: its key, its token, where
//! it listens), so it can run beside a daemon on the same machine.
//!
//! What it does not do: ingest, proxy, approve or close anything (its only
//! writes are bundle export and trusting a key, both behind its token); evaluate `[[policies]]` (findings are
//! the plan findings, unplanned and incomplete calls, unfinished tasks and
//! tool changes); stream a chain in chunks (a chain of more than
//! [`MAX_CHAIN_EVENTS`] events is refused, page it with
//! `/v1/events?correlation=`). Findings are recomputed from PostgreSQL at
//! most once a second, and at least every ten seconds while asked (cost:
//! one read of
//! every plan, gateway call and planned flow, at most
//! [`MAX_FINDINGS_RECORDS`]: beyond that the view says it does not compute
//! them, rather than hold an unbounded fleet in memory).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use intentproof_api::datadir::DataDir;
use intentproof_api::wire;
use intentproof_core::keys::InstanceKey;
use intentproof_findings::{FindingRow, MemorySource, PlanRow, plans_and_findings};
use intentproof_fleet::FleetConfig;
use intentproof_fleet::tokio_postgres::Client;
use intentproof_fleet::view::{self, FleetRecord};
use intentproof_store::{IndexEntry, StoredEvent};
use tokio::sync::Mutex;

use crate::api::{
    ChainParams, EventParams, FindingsParams, bundle_answer, export_request, require_bearer,
    trust_request, unchanged,
};
use crate::error::ApiError;

pub mod bundle;

/// Most events `GET /v1/chains/{id}` answers (and a fleet bundle holds):
/// the answer is built whole (the daemon streams its chains).
pub const MAX_CHAIN_EVENTS: usize = 10_000;

/// Most records (plans, gateway calls, planned flows' events) findings are
/// computed from: held as bytes while computing (about 1 KiB each).
pub const MAX_FINDINGS_RECORDS: usize = 1_000_000;

/// Default listen address of the fleet view (beside a daemon's 9787).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9788";

/// The fleet view's data dir inside a data dir.
pub fn data_dir(base: &std::path::Path) -> DataDir {
    DataDir::new(base.join("fleet"))
}

/// What the handlers share.
pub struct FleetView {
    config: FleetConfig,
    client: Mutex<Option<Arc<Client>>>,
    token: String,
    token_path: PathBuf,
    key: InstanceKey,
    dir: DataDir,
    idle: Duration,
    findings: Mutex<Option<Computed>>,
}

/// Plans and findings as of one moment.
struct Computed {
    replicated: u64,
    at: Instant,
    plans: Arc<Vec<PlanRow>>,
    findings: Arc<Vec<FindingRow>>,
    generation: u64,
}

type Shared = Arc<FleetView>;

impl FleetView {
    /// The view of `dir` (created with its key and token when missing)
    /// over the database of `config`; plans close after `idle` without a
    /// call.
    pub fn open(
        dir: DataDir,
        config: FleetConfig,
        idle: Duration,
    ) -> Result<FleetView, crate::serve::ServeError> {
        let key = dir.ensure()?;
        Ok(FleetView {
            config,
            client: Mutex::new(None),
            token: dir.token()?,
            token_path: dir.token_path(),
            key,
            dir,
            idle,
            findings: Mutex::new(None),
        })
    }

    /// A connection to PostgreSQL (a new one when the last broke).
    async fn client(&self) -> Result<Arc<Client>, ApiError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let mut client = self
            .config
            .connect()
            .await
            .map_err(|e| unavailable(&self.config, e))?;
        intentproof_fleet::schema::migrate(&mut client)
            .await
            .map_err(|e| unavailable(&self.config, e))?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Plans and findings: the cached ones when computed less than a
    /// second ago, or less than ten seconds ago with nothing replicated
    /// since (plans closing by idleness show within ten seconds), or when
    /// `paging` names their generation (a listing being paged reads one
    /// snapshot); else computed anew. The cache's lock is held while
    /// computing, on purpose: concurrent requests wait for one computation
    /// instead of each reading the fleet.
    async fn computed(
        &self,
        paging: Option<u64>,
    ) -> Result<(Arc<Vec<PlanRow>>, Arc<Vec<FindingRow>>, u64), ApiError> {
        let client = self.client().await?;
        let replicated = view::replicated(&client).await.map_err(|e| self.pg(e))?;
        let mut cache = self.findings.lock().await;
        if let Some(c) = cache.as_ref() {
            let age = c.at.elapsed();
            let fresh = age < Duration::from_secs(1)
                || (c.replicated == replicated && age < Duration::from_secs(10));
            if fresh || paging == Some(c.generation) {
                return Ok((Arc::clone(&c.plans), Arc::clone(&c.findings), c.generation));
            }
        }
        if paging.is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "the findings changed while paging: list them again from the first page",
            ));
        }
        let records = view::findings_records(&client, MAX_FINDINGS_RECORDS)
            .await
            .map_err(|e| self.pg(e))?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "fleet_too_large",
                    format!(
                        "the fleet holds more than {MAX_FINDINGS_RECORDS} plan and gateway-call records: the fleet view does not compute findings over that many yet; ask each daemon (`intentproof findings`), or query chains and events here"
                    ),
                )
            })?;
        let correlations: Vec<String> = records
            .iter()
            .map(|r| r.meta.correlation_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let last_at = view::last_at(&client, &correlations)
            .await
            .map_err(|e| self.pg(e))?;
        let idle = self.idle;
        let (plans, findings) = tokio::task::spawn_blocking(move || {
            let source =
                MemorySource::new(records.into_iter().map(|r| (r.meta, r.bytes)).collect())
                    .with_last_at(last_at.into_iter().collect());
            plans_and_findings(&source, idle, SystemTime::now(), &[])
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        let generation = generation_of(&plans, &findings);
        let computed = Computed {
            replicated,
            at: Instant::now(),
            plans: Arc::new(plans),
            findings: Arc::new(findings),
            generation,
        };
        let answer = (
            Arc::clone(&computed.plans),
            Arc::clone(&computed.findings),
            generation,
        );
        *cache = Some(computed);
        Ok(answer)
    }

    fn pg(&self, e: intentproof_fleet::FleetError) -> ApiError {
        unavailable(&self.config, e)
    }
}

/// PostgreSQL could not answer: 503, naming the database (password
/// redacted) and the cause.
fn unavailable(config: &FleetConfig, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "fleet_unavailable",
        format!(
            "the fleet database {} did not answer: {e}; check that PostgreSQL runs (`intentproof doctor --config ...`)",
            config.display_url()
        ),
    )
}

/// A generation that changes exactly when the rows do.
fn generation_of(plans: &[PlanRow], findings: &[FindingRow]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(plans).unwrap_or_default());
    hasher.update(serde_json::to_vec(findings).unwrap_or_default());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // Below 2^53: exact in every JSON reader.
    u64::from_be_bytes(first) >> 11
}

/// Records as parsed stored events, in their order (a record that is not
/// JSON is left out: `fleet verify` names it); a fleet bundle's flow.
pub(crate) fn stored_events(records: Vec<FleetRecord>) -> Vec<StoredEvent> {
    records
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let event = serde_json::from_slice(&r.bytes).ok()?;
            Some(StoredEvent {
                entry: IndexEntry {
                    seq: i as u64,
                    segment: 0,
                    offset: 0,
                    len: u32::try_from(r.bytes.len()).unwrap_or(u32::MAX),
                    meta: r.meta,
                },
                event,
            })
        })
        .collect()
}

fn event_body(r: FleetRecord) -> Result<wire::EventBody, ApiError> {
    let event = serde_json::from_slice(&r.bytes).map_err(|e| {
        ApiError::internal(format!(
            "record {} of daemon {} is not JSON ({e}): run `intentproof fleet verify`",
            r.seq, r.daemon
        ))
    })?;
    Ok(wire::EventBody {
        seq: r.seq,
        signature: r.meta.signature.as_str().to_owned(),
        event,
        daemon: Some(r.daemon),
    })
}

/// A request with the fleet view's token.
pub(crate) struct Authorized;

impl axum::extract::FromRequestParts<Shared> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Shared,
    ) -> Result<Self, ApiError> {
        authorize(state, &parts.headers).map(|()| Authorized)
    }
}

fn authorize(state: &FleetView, headers: &HeaderMap) -> Result<(), ApiError> {
    require_bearer(headers, &state.token, &state.token_path)
}

/// The answer, its keys in sorted order as the daemon writes them.
fn answer<T: serde::Serialize>(value: &T) -> Response {
    match wire::answer_bytes(value) {
        Some(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        None => ApiError::internal("an answer could not be encoded as JSON").into_response(),
    }
}

async fn healthz(State(state): State<Shared>) -> Response {
    answer(&wire::Health {
        status: "ok".into(),
        instance_id: state.key.instance_id().to_owned(),
    })
}

async fn list_events(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<EventParams>,
) -> Result<Response, ApiError> {
    let query = params.into_query()?;
    let client = state.client().await?;
    let (records, next_cursor) = view::events(&client, &query)
        .await
        .map_err(|e| state.pg(e))?;
    let events = records
        .into_iter()
        .map(event_body)
        .collect::<Result<_, _>>()?;
    Ok(answer(&wire::EventsPage {
        events,
        next_cursor,
    }))
}

async fn get_event(
    State(state): State<Shared>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = state.client().await?;
    let Some(record) = view::event(&client, &id).await.map_err(|e| state.pg(e))? else {
        return Err(not_found("no event with that id"));
    };
    let proof = bundle::audit_path(&state, &client, &record.daemon, record.seq).await?;
    Ok(answer(&wire::EventWithInclusion {
        inclusion: proof,
        body: event_body(record)?,
    }))
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", what.to_owned())
}

async fn list_chains(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<ChainParams>,
) -> Result<Response, ApiError> {
    let (offset, limit) = params.page();
    let client = state.client().await?;
    let (total, rows) = view::chains_page(&client, offset, limit)
        .await
        .map_err(|e| state.pg(e))?;
    let chains = rows
        .into_iter()
        .map(|(summary, first)| {
            let agent = serde_json::from_slice::<serde_json::Value>(&first)
                .ok()
                .and_then(|e| {
                    Some(
                        e.pointer("/attributes/mcp.client.name")?
                            .as_str()?
                            .to_owned(),
                    )
                })
                .unwrap_or_default();
            wire::Chain {
                agent: Some(agent),
                ..wire::Chain::of(summary)
            }
        })
        .collect();
    Ok(answer(&wire::ChainsPage { chains, total }))
}

async fn get_chain(
    State(state): State<Shared>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = state.client().await?;
    let records = view::chain(&client, &id, MAX_CHAIN_EVENTS)
        .await
        .map_err(|e| state.pg(e))?;
    let Some(records) = records else {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "chain_too_long",
            format!(
                "the chain has more than {MAX_CHAIN_EVENTS} events: page it with GET /v1/events?correlation=..."
            ),
        ));
    };
    let Some(summary) = view::summary(&records) else {
        return Err(not_found("no chain with that correlation id"));
    };
    let events = records
        .into_iter()
        .map(event_body)
        .collect::<Result<_, _>>()?;
    Ok(answer(&wire::ChainWithEvents {
        chain: wire::Chain::of(summary),
        events,
    }))
}

/// A paging cursor: `<generation>.<offset>` (the rows of one computation).
fn parse_cursor(cursor: &str) -> Result<(u64, usize), ApiError> {
    cursor
        .split_once('.')
        .and_then(|(g, o)| Some((g.parse().ok()?, o.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_cursor",
                "the cursor is not one this fleet view gave (pass next_cursor as it came)",
            )
        })
}

/// The generation a request's cursor pages, if it has one.
fn paging(params: &FindingsParams) -> Result<Option<u64>, ApiError> {
    params
        .cursor
        .as_deref()
        .map(|c| parse_cursor(c).map(|(generation, _)| generation))
        .transpose()
}

/// Rows `offset..` of `rows` (at most `limit`) and where the next page
/// starts (`<generation>.<offset>`).
fn page_of<T: Clone>(
    rows: &[T],
    params: &FindingsParams,
    generation: u64,
) -> Result<(Vec<T>, wire::Paging), ApiError> {
    let offset = match params.cursor.as_deref().map(parse_cursor) {
        None => 0,
        Some(cursor) => cursor?.1,
    };
    let limit = params
        .limit
        .unwrap_or(intentproof_findings::live::DEFAULT_PAGE)
        .clamp(1, intentproof_findings::live::MAX_PAGE);
    let end = offset.saturating_add(limit).min(rows.len());
    let page = rows
        .get(offset.min(rows.len())..end)
        .unwrap_or_default()
        .to_vec();
    Ok((
        page,
        wire::Paging {
            total: Some(rows.len()),
            generation,
            next_cursor: (end < rows.len()).then(|| format!("{generation}.{end}")),
            unchanged: false,
        },
    ))
}

async fn list_findings(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<FindingsParams>,
) -> Result<Response, ApiError> {
    let (_, findings, generation) = state.computed(paging(&params)?).await?;
    if params.since == Some(generation) {
        return Ok(answer(&wire::FindingsPage {
            findings: Vec::new(),
            paging: unchanged(generation),
        }));
    }
    let (findings, paging) = page_of(&findings, &params, generation)?;
    Ok(answer(&wire::FindingsPage { findings, paging }))
}

async fn list_plans(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<FindingsParams>,
) -> Result<Response, ApiError> {
    let (plans, _, generation) = state.computed(paging(&params)?).await?;
    if params.since == Some(generation) {
        return Ok(answer(&wire::PlansPage {
            plans: Vec::new(),
            paging: unchanged(generation),
        }));
    }
    let mine: Vec<PlanRow>;
    let rows: &[PlanRow] = match &params.correlation_id {
        Some(id) => {
            mine = plans
                .iter()
                .filter(|p| &p.correlation_id == id)
                .cloned()
                .collect();
            &mine
        }
        None => &plans,
    };
    let (plans, paging) = page_of(rows, &params, generation)?;
    Ok(answer(&wire::PlansPage { plans, paging }))
}

/// `POST /v1/keys`: trust an instance's key for the fleet view's bundles;
/// answers how many of its events in PostgreSQL verify with it.
async fn trust_key(
    State(state): State<Shared>,
    _auth: Authorized,
    body: Result<Json<wire::TrustKey>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let (request, key) = trust_request(&state.dir, body)?;
    let client = state.client().await?;
    let rows = view::signed_by(&client, &request.instance_id)
        .await
        .map_err(|e| state.pg(e))?;
    futures_util::pin_mut!(rows);
    // Checked 4,096 at a time on a blocking thread: memory bounded by the
    // chunk, not by the instance's events.
    let check = |chunk: Vec<Vec<u8>>| async move {
        tokio::task::spawn_blocking(move || {
            chunk.iter().fold((0u64, 0u64), |(ok, bad), bytes| {
                let verifies = serde_json::from_slice(bytes).ok().is_some_and(|event| {
                    intentproof_core::seal::verify_event(&event, &key).is_ok()
                });
                if verifies {
                    (ok + 1, bad)
                } else {
                    (ok, bad + 1)
                }
            })
        })
        .await
        .map_err(ApiError::internal)
    };
    let (mut verified, mut invalid) = (0, 0);
    let mut chunk = Vec::new();
    loop {
        let row = futures_util::TryStreamExt::try_next(&mut rows)
            .await
            .map_err(|e| state.pg(intentproof_fleet::FleetError::Postgres(e)))?;
        if let Some(row) = &row {
            chunk.push(row.get::<_, Vec<u8>>(0));
        }
        if chunk.len() == 4096 || (row.is_none() && !chunk.is_empty()) {
            let (ok, bad) = check(std::mem::take(&mut chunk)).await?;
            verified += ok;
            invalid += bad;
        }
        if row.is_none() {
            break;
        }
    }
    Ok(answer(&wire::KeyTrusted {
        instance_id: request.instance_id,
        events_verified: verified,
        events_invalid: invalid,
    }))
}

/// Every other route: what a daemon answers and the fleet view does not
/// (approvals, tools, ingest, plan declaration): a 404 that says where to
/// ask, rather than an answer (an empty approvals list) that hides what
/// the daemons hold.
async fn not_in_fleet_view(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_in_fleet_view",
        format!(
            "{} is not answered by the fleet view, which serves the read API only \
             (/v1/events, /v1/chains, /v1/findings, /v1/plans, /v1/bundles, /v1/keys): \
             ask the daemon that holds it (the same command without --fleet, with that \
             daemon's --data-dir or --server)",
            uri.path()
        ),
    )
}

async fn export_bundle(
    State(state): State<Shared>,
    _auth: Authorized,
    body: Result<Json<wire::ExportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let request = export_request(body)?;
    let exported = bundle::export(&state, &request.correlation_id, &request.profile).await?;
    Ok(bundle_answer(exported))
}

/// Every route of the fleet view.
pub fn router(state: Arc<FleetView>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/chains", get(list_chains))
        .route("/v1/chains/{id}", get(get_chain))
        .route("/v1/findings", get(list_findings))
        .route("/v1/plans", get(list_plans))
        .route("/v1/bundles", post(export_bundle))
        .route("/v1/keys", post(trust_key))
        .fallback(not_in_fleet_view)
        .with_state(state)
}

/// A running fleet view (tests and embedding).
pub struct RunningView {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningView {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// Starts the fleet view of `view` on `listen`, recording the address in
/// its data dir.
pub async fn start(
    view: FleetView,
    listen: SocketAddr,
) -> Result<RunningView, crate::serve::ServeError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| crate::serve::ServeError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| crate::serve::ServeError::Other(e.to_string()))?;
    // Connect (and migrate) before answering: a database this build
    // cannot use stops the view at start, with the reason.
    view.client()
        .await
        .map_err(|e| crate::serve::ServeError::Other(e.message.clone()))?;
    view.dir.write_daemon_info(&addr.to_string())?;
    tracing::info!(%addr, postgres = %view.config.display_url(), "fleet view listening");
    let app = router(Arc::new(view));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(RunningView {
        addr,
        stop: Some(stop),
        task,
    })
}
