//! `/proxy/{name}/...`: the HTTP API proxy (the `intentproof-http-proxy`
//! crate does the rest, its own authentication included).

use super::*;

/// `/proxy/<name>/...`: the HTTP API proxy (auth and everything else in
/// [`intentproof_http_proxy`]).
async fn http_proxy(State(state): State<Shared>, request: axum::extract::Request) -> Response {
    match state.http.get() {
        Some(proxy) => intentproof_http_proxy::handle(Arc::clone(proxy), request).await,
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no HTTP routes are configured; add [[http.routes]] to the config",
        )
        .into_response(),
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/proxy/{name}", any(http_proxy))
        .route("/proxy/{name}/", any(http_proxy))
        .route("/proxy/{name}/{*rest}", any(http_proxy))
}
