//! `GET /v1/chains` and `GET /v1/chains/{id}` (a chain streamed in chunks).

use super::*;

/// Query parameters of `GET /v1/chains` (the fleet view's too).
#[derive(Debug, Deserialize)]
pub struct ChainParams {
    limit: Option<usize>,
    /// Skip this many chains first (paging; the answer's `total` says how many there are).
    offset: Option<usize>,
}

impl ChainParams {
    /// (offset, limit): limit 100 by default, 1 to 10,000.
    pub(crate) fn page(&self) -> (usize, usize) {
        (
            self.offset.unwrap_or(0),
            self.limit.unwrap_or(100).clamp(1, 10_000),
        )
    }
}

async fn list_chains(
    State(state): State<Shared>,
    _auth: Authorized,
    Query(params): Query<ChainParams>,
) -> Result<Wire<wire::ChainsPage>, ApiError> {
    let store = Arc::clone(&state.store);
    let (offset, limit) = params.page();
    let page = blocking(move || {
        let (total, summaries) = store.chains_page(offset, limit)?;
        let chains = summaries
            .into_iter()
            .map(|summary| chain_row(&store, summary))
            .collect();
        Ok(wire::ChainsPage { chains, total })
    })
    .await?;
    Ok(Wire(page))
}

async fn get_chain(
    State(state): State<Shared>,
    _auth: Authorized,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    // `wire::ChainWithEvents`, the events read and written a
    // chunk at a time: the whole chain at once took ~28 KB of memory per
    // event (parsed, copied, serialized) for as long as the answer lasted.
    // The first chunk is read before answering, so a store that cannot be
    // read still gets a 500, not a cut answer.
    let store = Arc::clone(&state.store);
    let first = tokio::task::spawn_blocking(move || {
        let Some(summary) = store.chain_summary(&id).map_err(std::io::Error::other)? else {
            return Ok(None);
        };
        let mut entries = store
            .chain_entries(&id)
            .map_err(std::io::Error::other)?
            .into_iter();
        let mut chunk = br#"{"chain":"#.to_vec();
        wire::write_answer(&mut chunk, &wire::Chain::of(summary))?;
        chunk.extend_from_slice(br#","events":["#);
        let done = chain_chunk(&store, &mut entries, &mut chunk, true)?;
        Ok::<_, std::io::Error>(Some((chunk, entries, done)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let Some((chunk, entries, done)) = first else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no chain with that correlation id",
        ));
    };
    let store = Arc::clone(&state.store);
    let rest = futures_util::stream::try_unfold((entries, done), move |(mut entries, done)| {
        let store = Arc::clone(&store);
        async move {
            if done {
                return Ok(None);
            }
            let (chunk, entries, done) = tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::new();
                let done = chain_chunk(&store, &mut entries, &mut chunk, false)?;
                Ok::<_, std::io::Error>((chunk, entries, done))
            })
            .await
            .map_err(std::io::Error::other)?
            .inspect_err(|e| {
                tracing::error!(error = %e, "a chain's answer was cut: an event could not be read");
            })?;
            Ok(Some((Bytes::from(chunk), (entries, done))))
        }
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(chunk)) }),
        rest,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Events per chunk of a streamed chain.
const CHAIN_CHUNK_EVENTS: usize = 256;

/// Appends up to [`CHAIN_CHUNK_EVENTS`] events of `entries` to `chunk`
/// (each after a comma, except the chain's very first), and the closing
/// `]}` once there are no more; true then.
fn chain_chunk(
    store: &Store,
    entries: &mut std::vec::IntoIter<intentproof_store::IndexEntry>,
    chunk: &mut Vec<u8>,
    first: bool,
) -> std::io::Result<bool> {
    for (i, entry) in entries.by_ref().take(CHAIN_CHUNK_EVENTS).enumerate() {
        if !(first && i == 0) {
            chunk.push(b',');
        }
        let stored = store.read_entry(entry).map_err(std::io::Error::other)?;
        wire::write_answer(chunk, &event_body(stored))?;
    }
    if entries.len() > 0 {
        return Ok(false);
    }
    chunk.extend_from_slice(b"]}");
    Ok(true)
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/chains", get(list_chains))
        .route("/v1/chains/{id}", get(get_chain))
}
