//! `/mcp/{name}`: the MCP gateway over Streamable HTTP (the
//! `intentproof-mcp` crate), behind the browser guard.

use super::*;
use intentproof_mcp::http as mcp_http;

fn mcp_gateway(state: &AppState) -> Result<Arc<McpHttp>, ApiError> {
    state.mcp.get().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no MCP servers are configured; add [[mcp.servers]] to the config",
        )
    })
}

async fn mcp_post(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    Ok(mcp_http::post(mcp_gateway(&state)?, name, headers, body).await)
}

async fn mcp_get(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(mcp_http::get(mcp_gateway(&state)?, name, headers).await)
}

async fn mcp_delete(
    State(state): State<Shared>,
    Path(_name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Ok(mcp_http::delete(mcp_gateway(&state)?, headers).await)
}

pub(super) fn routes(guard: &Arc<BrowserGuard>) -> Router<Shared> {
    let guarded =
        axum::middleware::from_fn_with_state(guard.on(Surface::Mcp), browser_guard::check);
    Router::new().route(
        "/mcp/{name}",
        post(mcp_post)
            .get(mcp_get)
            .delete(mcp_delete)
            .layer(guarded),
    )
}
