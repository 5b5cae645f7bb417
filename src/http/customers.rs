//! Handlers of `/v1/customers`: they parse the request, call the service and shape the
//! response; they never see LDAP.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, JSON_UTF8};
use super::extract::{CustomerId, IfMatch, JsonBody};
use crate::app::AppState;
use crate::service::customers::Update;

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, JSON_UTF8)], body.to_string()).into_response()
}

fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

pub async fn create(
    State(app): State<AppState>,
    Caller(scope): Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let id = app.customers.create(&scope, &body).await?;
    let location = app.customers.location(id);
    let mut res = json_response(StatusCode::CREATED, &json!({"id": id, "location": location}));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET /v1/customers`: a page of the collection with `Link` and `X-Total-Count`.
pub async fn list(
    State(app): State<AppState>,
    Caller(scope): Caller,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let (q, page) = app.customers.list(&scope, uri.query()).await?;
    let mut res = json_response(StatusCode::OK, &Value::Array(page.items));
    let links = q.links(&app.customers.collection_url(), page.total);
    if let Ok(v) = HeaderValue::from_str(&links) {
        res.headers_mut().insert(header::LINK, v);
    }
    res.headers_mut().insert("x-total-count", HeaderValue::from(page.total));
    Ok(res)
}

pub async fn read(
    State(app): State<AppState>,
    Caller(scope): Caller,
    CustomerId(id): CustomerId,
) -> Result<Response, ApiError> {
    let (doc, etag) = app.customers.get(&scope, id).await?;
    Ok(with_etag(json_response(StatusCode::OK, &doc), &etag))
}

fn empty_ok(etag: Option<&str>) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, v);
    }
    (StatusCode::OK, headers).into_response()
}

pub async fn replace(
    State(app): State<AppState>,
    Caller(scope): Caller,
    CustomerId(id): CustomerId,
    IfMatch(pre): IfMatch,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let etag = app.customers.update(&scope, id, Update::Replace(&body), pre.as_ref()).await?;
    Ok(empty_ok(Some(&etag)))
}

pub async fn patch(
    State(app): State<AppState>,
    Caller(scope): Caller,
    CustomerId(id): CustomerId,
    IfMatch(pre): IfMatch,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let etag = app.customers.update(&scope, id, Update::MergePatch(&body), pre.as_ref()).await?;
    Ok(empty_ok(Some(&etag)))
}

pub async fn delete(
    State(app): State<AppState>,
    Caller(scope): Caller,
    CustomerId(id): CustomerId,
    IfMatch(pre): IfMatch,
) -> Result<Response, ApiError> {
    app.customers.delete(&scope, id, pre.as_ref()).await?;
    Ok(empty_ok(None))
}
