//! `POST /v1/bundles`: one correlation as a proof bundle.

use super::*;

/// Exports one correlation as a proof bundle (`.proof.tar.zst` bytes).
async fn export_bundle(
    State(state): State<Shared>,
    _auth: Authorized,
    body: Result<Json<wire::ExportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use crate::export::{self, ExportError};
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "{}; send {{\"correlation_id\": \"...\", \"profile\": \"full\"}}",
                e.body_text()
            ),
        )
    })?;
    let worker = Arc::clone(&state);
    let exported = tokio::task::spawn_blocking(move || {
        export::export_bundle(&worker, &request.correlation_id, &request.profile)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match &e {
        ExportError::UnsupportedProfile(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_profile",
            e.to_string(),
        ),
        ExportError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
        }
        ExportError::KeyUnknown { .. } => {
            ApiError::new(StatusCode::CONFLICT, "key_unknown", e.to_string())
        }
        ExportError::Store(_) | ExportError::Internal(_) => ApiError::internal(e),
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zstd".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.proof.tar.zst\"",
                    exported.bundle_id
                ),
            ),
        ],
        exported.bytes,
    )
        .into_response())
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/bundles", post(export_bundle))
}
