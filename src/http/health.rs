//! `/health` (the process is up) and `/ready` (the directory answers and the customer
//! index is loaded).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::customers::json_response;
use super::error::ApiError;
use crate::app::AppState;

pub async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn ready(State(app): State<AppState>) -> Result<Response, ApiError> {
    let timeout = app.ready_timeout;
    match tokio::time::timeout(timeout, app.directory.ping()).await {
        Ok(Ok(())) if !app.customers.index().is_loaded() => {
            tracing::info!("not ready: the customer index is loading");
            Err(ApiError::unavailable())
        }
        Ok(Ok(())) => Ok(json_response(StatusCode::OK, &json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready");
            Err(ApiError::unavailable())
        }
        Err(_) => Err(ApiError::unavailable()),
    }
}
