//! Handlers of `/v1/<resource>` for every resource definition: they parse the request,
//! call the resource's service and shape the response; they never see LDAP.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, JSON_UTF8};
use super::extract::{ElementId, IfMatch, JsonBody};
use super::state::AppState;
use crate::mapping::resource::ResourceDef;
use crate::service::resources::Update;

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, JSON_UTF8)], body.to_string()).into_response()
}

fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res
}

/// `GET` and `POST` of `/v1/<resource>`.
pub fn collection(def: &'static ResourceDef) -> MethodRouter<AppState> {
    get(move |State(app): State<AppState>, caller: Caller, OriginalUri(uri): OriginalUri| async move {
        list(def, app, caller, uri).await
    })
    .post(move |State(app): State<AppState>, caller: Caller, JsonBody(body): JsonBody| async move {
        create(def, app, caller, body).await
    })
}

/// `GET`, `PUT`, `PATCH` and `DELETE` of `/v1/<resource>/{id}`.
pub fn element(def: &'static ResourceDef) -> MethodRouter<AppState> {
    get(move |State(app): State<AppState>, Caller(scope): Caller, ElementId(id): ElementId| async move {
        let (doc, etag) = app.service(def).get(&scope, id).await?;
        Ok::<_, ApiError>(with_etag(json_response(StatusCode::OK, &doc), &etag))
    })
    .put(
        move |State(app): State<AppState>,
              Caller(scope): Caller,
              ElementId(id): ElementId,
              IfMatch(pre): IfMatch,
              JsonBody(body): JsonBody| async move {
            let etag = app.service(def).update(&scope, id, Update::Replace(&body), pre.as_ref()).await?;
            Ok::<_, ApiError>(empty_ok(Some(&etag)))
        },
    )
    .patch(
        move |State(app): State<AppState>,
              Caller(scope): Caller,
              ElementId(id): ElementId,
              IfMatch(pre): IfMatch,
              JsonBody(body): JsonBody| async move {
            let etag = app.service(def).update(&scope, id, Update::MergePatch(&body), pre.as_ref()).await?;
            Ok::<_, ApiError>(empty_ok(Some(&etag)))
        },
    )
    .delete(
        move |State(app): State<AppState>, Caller(scope): Caller, ElementId(id): ElementId, IfMatch(pre): IfMatch| async move {
            app.service(def).delete(&scope, id, pre.as_ref()).await?;
            Ok::<_, ApiError>(empty_ok(None))
        },
    )
}

async fn create(
    def: &'static ResourceDef,
    app: AppState,
    Caller(scope): Caller,
    body: Value,
) -> Result<Response, ApiError> {
    let service = app.service(def);
    let id = service.create(&scope, &body).await?;
    let location = service.location(id);
    let mut res = json_response(StatusCode::CREATED, &json!({"id": id, "location": location}));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// A page of the collection with `Link` and `X-Total-Count`.
async fn list(
    def: &'static ResourceDef,
    app: AppState,
    Caller(scope): Caller,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let service = app.service(def);
    let (q, page) = service.list(&scope, uri.query()).await?;
    let mut res = json_response(StatusCode::OK, &Value::Array(page.items));
    let links = q.links(&service.collection_url(), page.total);
    if let Ok(v) = HeaderValue::from_str(&links) {
        res.headers_mut().insert(header::LINK, v);
    }
    res.headers_mut().insert("x-total-count", HeaderValue::from(page.total));
    Ok(res)
}

fn empty_ok(etag: Option<&str>) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, v);
    }
    (StatusCode::OK, headers).into_response()
}
