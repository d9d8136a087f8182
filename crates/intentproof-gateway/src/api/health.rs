//! `GET /healthz` (no token) and `GET /metrics`.

use super::*;

/// Liveness, plus the daemon's instance id so a client can tell which
/// data dir it serves.
async fn healthz(State(state): State<Shared>) -> Wire<wire::Health> {
    Wire(wire::Health {
        status: "ok".into(),
        instance_id: state.daemon_key.instance_id().to_owned(),
    })
}

async fn metrics(State(state): State<Shared>, _auth: Authorized) -> Result<Response, ApiError> {
    let text = state.metrics.render(state.store.tree_size());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}
