//! `POST /v1/keys`: trust an instance's public key.

use super::*;

/// The body of `POST /v1/keys` (the fleet view's too), its key parsed and
/// saved as trusted in `data_dir`; a 400 saying what is wrong.
pub(crate) fn trust_request(
    data_dir: &intentproof_api::datadir::DataDir,
    body: Result<Json<wire::TrustKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(wire::TrustKey, ed25519_dalek::VerifyingKey), ApiError> {
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "{}; send {{\"instance_id\": \"inst_...\", \"public_key\": \"<base64 or PEM>\"}}",
                e.body_text()
            ),
        )
    })?;
    let key = parse_public_key(&request.public_key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", e.to_string()))?;
    data_dir
        .trust(&request.instance_id, &key)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_key", e.to_string()))?;
    Ok((request, key))
}

async fn trust_key(
    State(state): State<Shared>,
    _auth: Authorized,
    body: Result<Json<wire::TrustKey>, axum::extract::rejection::JsonRejection>,
) -> Result<Wire<wire::KeyTrusted>, ApiError> {
    let (request, key) = trust_request(&state.data_dir, body)?;
    state.keys.insert(request.instance_id.clone(), key);
    let store = Arc::clone(&state.store);
    let instance = request.instance_id.clone();
    let (verified, invalid) = blocking(move || store.retrust(&instance, &key)).await?;
    Ok(Wire(wire::KeyTrusted {
        instance_id: request.instance_id,
        events_verified: verified,
        events_invalid: invalid,
    }))
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/keys", post(trust_key))
}
