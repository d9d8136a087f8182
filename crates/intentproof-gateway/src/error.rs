//! The error every daemon route answers with: a status and the shared
//! body (`intentproof_api::ErrorBody`), with `Retry-After` on a 503.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error response.
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    /// An error answered with `status` and `{"error": message, "reason": reason}`.
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }

    /// This error as the result of line `line` of a batch.
    pub(crate) fn batch_line(self, line: usize) -> intentproof_api::wire::BatchLine {
        intentproof_api::wire::BatchLine {
            reason: Some(self.reason.to_owned()),
            error: Some(self.message),
            ..intentproof_api::wire::BatchLine::new(line, self.status.as_u16())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(intentproof_api::ErrorBody::new(self.reason, self.message)),
        )
            .into_response();
        retry_shortly(&mut response);
        response
    }
}

/// A 503 says when to come back: a full write queue drains within a
/// second or so, and senders (the gateways' delivery, SDKs, exporters)
/// wait at least this long. Every 503 the daemon builds goes through here.
pub(crate) fn retry_shortly(response: &mut Response) {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_503_tells_the_sender_when_to_retry_and_other_errors_do_not() {
        let busy =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "full").into_response();
        assert_eq!(
            busy.headers()
                .get(axum::http::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let bad = ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", "bad").into_response();
        assert!(bad.headers().get(axum::http::header::RETRY_AFTER).is_none());
        // The batch route builds its 503 itself (a body of per-line
        // results), through the same helper.
        let mut batch = (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
        retry_shortly(&mut batch);
        assert_eq!(
            batch
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
