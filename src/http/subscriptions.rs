//! The subscriptions facade (`/subscriptions/v1/…`, seed 000): merchants authenticate
//! with `X-Subscription-Key` (their reseller is the whole scope) and address customers
//! by their own customer number.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};

use super::error::ApiError;
use super::extract::JsonBody;
use super::keys::Merchant;
use super::resources::json_response;
use super::state::AppState;

/// `POST /subscriptions/v1/customers`: the upsert.
pub fn customers() -> MethodRouter<AppState> {
    post(|State(app): State<AppState>, Merchant(reseller): Merchant, JsonBody(body): JsonBody| async move {
        let summary = app.subscriptions.upsert(reseller, &body, None).await?;
        Ok::<Response, ApiError>(json_response(StatusCode::OK, &summary))
    })
}

/// `GET` and `PUT /subscriptions/v1/customers/{customerNumber}`.
pub fn customer() -> MethodRouter<AppState> {
    get(|State(app): State<AppState>, Merchant(reseller): Merchant, path: Result<Path<String>, PathRejection>| async move {
        let Ok(Path(number)) = path else { return Err(ApiError::not_found()) };
        let doc = app.subscriptions.get(reseller, &number).await?;
        Ok::<Response, ApiError>(json_response(StatusCode::OK, &doc))
    })
    .put(
        |State(app): State<AppState>,
         Merchant(reseller): Merchant,
         path: Result<Path<String>, PathRejection>,
         JsonBody(body): JsonBody| async move {
            let Ok(Path(number)) = path else { return Err(ApiError::not_found()) };
            let summary = app.subscriptions.upsert(reseller, &body, Some(&number)).await?;
            Ok::<Response, ApiError>(json_response(StatusCode::OK, &summary))
        },
    )
}
