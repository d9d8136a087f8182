//! `GET /v1/checkpoint`: the latest signed checkpoint, signed now if the
//! tree grew since ([`AppState::checkpoint_now`]).

use super::*;

async fn get_checkpoint(
    State(state): State<Shared>,
    _auth: Authorized,
) -> Result<Wire<wire::CheckpointAnswer>, ApiError> {
    let worker = Arc::clone(&state);
    let cp = tokio::task::spawn_blocking(move || worker.checkpoint_now())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Wire(wire::CheckpointAnswer {
        checkpoint: cp,
        public_key: state.daemon_key.public_key_base64(),
    }))
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/checkpoint", get(get_checkpoint))
}
