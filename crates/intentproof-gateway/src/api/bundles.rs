//! `POST /v1/bundles`: one correlation as a proof bundle.

use super::*;

use crate::export::{self, ExportError, Exported};

/// The body of `POST /v1/bundles` (the fleet view's too), or a 400 saying
/// what to send.
pub(crate) fn export_request(
    body: Result<Json<wire::ExportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<wire::ExportRequest, ApiError> {
    body.map(|Json(request)| request).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "{}; send {{\"correlation_id\": \"...\", \"profile\": \"full\"}}",
                e.body_text()
            ),
        )
    })
}

/// Why an export was refused, as the API answers it.
pub(crate) fn export_refused(e: ExportError) -> ApiError {
    match &e {
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
    }
}

/// Exports one correlation as a proof bundle (`.proof.tar.zst` bytes).
async fn export_bundle(
    State(state): State<Shared>,
    _auth: Authorized,
    body: Result<Json<wire::ExportRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let request = export_request(body)?;
    let worker = Arc::clone(&state);
    let exported = tokio::task::spawn_blocking(move || {
        export::export_bundle(&worker, &request.correlation_id, &request.profile)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(export_refused)?;
    Ok(bundle_answer(exported))
}

/// A bundle as the answer: its bytes, named `<bundle_id>.proof.tar.zst`.
pub(crate) fn bundle_answer(exported: Exported) -> Response {
    (
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
        .into_response()
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/bundles", post(export_bundle))
}
