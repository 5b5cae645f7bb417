//! Handlers of `/v1/<resource>` for every resource definition: they parse the request,
//! call the resource's service and shape the response; they never see LDAP.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::{ApiError, JSON_UTF8};
use super::extract::{ElementId, IfMatch, JsonBody};
use super::state::AppState;
use crate::collection::Page;
use crate::mapping::query::ListQuery;
use crate::mapping::resource::{Related, ResourceDef};
use crate::mapping::Problem;
use crate::service::auth::{AuthError, Principal};
use crate::service::resources::Update;
use crate::service::ServiceError;

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
            let etag = app.service(def).update(&scope, id, Update::Replace(&body), pre.as_ref()).await;
            ended_logins(&app, def, id);
            Ok::<_, ApiError>(empty_ok(Some(&etag?)))
        },
    )
    .patch(
        move |State(app): State<AppState>,
              Caller(scope): Caller,
              ElementId(id): ElementId,
              IfMatch(pre): IfMatch,
              JsonBody(body): JsonBody| async move {
            let etag = app.service(def).update(&scope, id, Update::MergePatch(&body), pre.as_ref()).await;
            ended_logins(&app, def, id);
            Ok::<_, ApiError>(empty_ok(Some(&etag?)))
        },
    )
    .delete(
        move |State(app): State<AppState>, Caller(scope): Caller, ElementId(id): ElementId, IfMatch(pre): IfMatch| async move {
            let done = app.service(def).delete(&scope, id, pre.as_ref()).await;
            ended_logins(&app, def, id);
            done?;
            Ok::<_, ApiError>(empty_ok(None))
        },
    )
}

/// After a write to a login (a person), its remembered logins end on this gateway, so a
/// deactivation, a new password or a change of scope counts from the next request. It
/// runs whatever the write answered: a write that failed late may have changed it.
fn ended_logins(app: &AppState, def: &'static ResourceDef, id: u64) {
    if def.logins {
        app.auth.forget_person(id);
    }
}

/// `GET /v1/<resource>/{id}/<related>`: the elements of another resource that name this
/// one (a customer's `users` and `employees`), listed like their own collection; 404 if
/// the caller does not see this element.
pub fn related(def: &'static ResourceDef, rel: &'static Related) -> MethodRouter<AppState> {
    get(
        move |State(app): State<AppState>,
              Caller(scope): Caller,
              ElementId(id): ElementId,
              OriginalUri(uri): OriginalUri| async move {
            app.service(def).check_visible(&scope, id).await?;
            let service = app.service(rel.resource);
            let (q, page) = service.list_where(&scope, uri.query(), Some((rel.field, id))).await?;
            Ok::<_, ApiError>(page_response(&q, page, &format!("{}/{}", app.service(def).location(id), rel.name)))
        },
    )
}

/// `POST /v1/<resource>/{id}/password` `{"newPassword": …, "oldPassword": …}`: sets a
/// person's password. A person changing its own gives the old one too. Every
/// remembered login of the person ends.
pub fn password(def: &'static ResourceDef) -> MethodRouter<AppState> {
    post(
        move |State(app): State<AppState>,
              p: Principal,
              Caller(caller): Caller,
              ElementId(id): ElementId,
              JsonBody(body): JsonBody| async move {
            let Some(obj) = body.as_object() else {
                return Err(ApiError::from(ServiceError::Invalid(vec![Problem::new(
                    "",
                    "the body must be a JSON object",
                )])));
            };
            let mut problems: Vec<Problem> = obj
                .keys()
                .filter(|k| !["newPassword", "oldPassword"].contains(&k.as_str()))
                .map(|k| Problem::new(k.clone(), "unknown attribute"))
                .collect();
            let new = obj.get("newPassword").cloned().unwrap_or(Value::Null);
            if new.is_null() {
                problems.push(Problem::new("newPassword", "is required"));
            }
            if caller.uid == id {
                match obj.get("oldPassword").and_then(Value::as_str) {
                    None => problems.push(Problem::new("oldPassword", "is required to change one's own password")),
                    Some(old) => match app.auth.authenticate(&p.mail, old).await {
                        Ok(who) if who.uid == id => {}
                        Ok(_) | Err(AuthError::Invalid) => {
                            problems.push(Problem::new("oldPassword", "is not the current password"))
                        }
                        Err(AuthError::Throttled(_)) => {
                            return Err(ApiError::new(
                                StatusCode::TOO_MANY_REQUESTS,
                                "too_many_requests",
                                "too many failed logins for this user; try again later",
                            ))
                        }
                        Err(AuthError::Unavailable) => return Err(ApiError::unavailable()),
                        Err(AuthError::Internal(m)) => return Err(ServiceError::Internal(m).into()),
                    },
                }
            }
            if !problems.is_empty() {
                return Err(ServiceError::Invalid(problems).into());
            }
            let done = app.service(def).set_password(&caller, id, &new).await;
            ended_logins(&app, def, id);
            done?;
            Ok(StatusCode::NO_CONTENT.into_response())
        },
    )
}

/// The most hits per resource `/v1/search` answers.
const SEARCH_MAX_ENTRIES: u64 = 15;
const SEARCH_DEFAULT_ENTRIES: u64 = 5;

/// `GET /v1/search?q=…&entries=…`: the first hits of `q=` in every collection the caller
/// may list, each in its collection's item form, with a link to the whole list.
pub async fn search(
    State(app): State<AppState>,
    Caller(scope): Caller,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let pairs = crate::mapping::query::pairs(uri.query().unwrap_or_default()).map_err(ApiError::bad_request)?;
    let mut q = None;
    let mut entries = SEARCH_DEFAULT_ENTRIES;
    let mut problems = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "q" if q.is_none() => q = Some(v),
            "entries" => match v.parse::<u64>() {
                Ok(n) if (1..=SEARCH_MAX_ENTRIES).contains(&n) => entries = n,
                _ => problems.push(Problem::new("entries", format!("must be a number from 1 to {SEARCH_MAX_ENTRIES}"))),
            },
            "q" => return Err(ApiError::bad_request("q is given more than once")),
            other => problems.push(Problem::new(other, "unknown parameter")),
        }
    }
    let Some(q) = q else {
        problems.push(Problem::new("q", "is required"));
        return Err(ServiceError::Invalid(problems).into());
    };
    if !problems.is_empty() {
        return Err(ServiceError::Invalid(problems).into());
    }
    let mut out = serde_json::Map::new();
    for (service, page) in crate::service::search(app.resources(), &scope, &q, entries).await? {
        let location = format!("{}?q={}", service.collection_url(), crate::mapping::query::encode(&q));
        out.insert(service.def().name.to_string(), json!({"resources": page.items, "location": location}));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(out)))
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
    Ok(page_response(&q, page, &service.collection_url()))
}

/// A page as the answer of a list: the items, `Link` and `X-Total-Count`.
fn page_response(q: &ListQuery, page: Page, url: &str) -> Response {
    let (total, position) = (page.total, page.position);
    let mut res = json_response(StatusCode::OK, &Value::Array(page.items));
    let links = q.links(url, total);
    if let Ok(v) = HeaderValue::from_str(&links) {
        res.headers_mut().insert(header::LINK, v);
    }
    res.headers_mut().insert("x-total-count", HeaderValue::from(total));
    if let Some(p) = position.and_then(|p| HeaderValue::from_str(&p.to_string()).ok()) {
        res.headers_mut().insert("x-changes-position", p);
    }
    res
}

fn empty_ok(etag: Option<&str>) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, v);
    }
    (StatusCode::OK, headers).into_response()
}
