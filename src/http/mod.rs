//! The HTTP layer: routes, extractors, the error type and the middleware stack.

pub mod auth;
pub mod changes;
pub mod error;
pub mod explorer;
pub mod extract;
pub mod health;
pub mod keys;
pub mod openapi;
pub mod resources;
pub mod server;
pub mod state;
pub mod subscriptions;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use tokio::sync::Semaphore;
use tower::util::MapRequestLayer;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::CorsSettings;
use error::ApiError;
use state::AppState;

async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Gives the bodiless answers of the router (405 with `Allow`) the JSON error body.
async fn error_bodies(req: Request<Body>, next: Next) -> Response {
    let res = next.run(req).await;
    if res.status() == StatusCode::METHOD_NOT_ALLOWED && !res.headers().contains_key(header::CONTENT_TYPE) {
        let allow = res.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let mut e =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this resource");
        if !allow.is_empty() {
            e = e.with_header(header::ALLOW, &allow);
        }
        return e.into_response();
    }
    res
}

/// The longest `x-request-id` a client may choose.
const REQUEST_ID_MAX: usize = 64;

/// A client's `x-request-id` is kept only if short and made of `[A-Za-z0-9._:-]`; any
/// other is dropped, and a new id is made for the request. It is echoed and logged, so
/// it must not carry anything that could read as more log fields or lines.
fn drop_unsafe_request_id(mut req: Request<Body>) -> Request<Body> {
    let safe = |v: &header::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= REQUEST_ID_MAX && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    };
    if req.headers().get_all("x-request-id").iter().any(|v| !safe(v))
        || req.headers().get_all("x-request-id").iter().count() > 1
    {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// The routes operators and orchestrators poll: never refused for the request caps, so
/// that a loaded gateway still reports how it is.
const OPERATOR_ROUTES: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Who a request counts against for the per-caller cap: the Basic user name (checked or
/// not; a wrong password ends at the login, before any body is read), else the client's
/// address.
fn caller_key(req: &Request<Body>) -> String {
    if let Some(user) = auth::basic_user(req.headers()) {
        let mut key = String::from("user:");
        key.extend(user.chars().take(256));
        return key;
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "ip:unknown".into(),
    }
}

/// Requests in flight per caller.
#[derive(Default)]
struct Callers {
    in_flight: Mutex<HashMap<String, usize>>,
}

/// One request of a caller; the count goes down when it is dropped.
struct CallerSlot {
    callers: Arc<Limits>,
    key: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.callers.callers.in_flight.lock() {
            if let Some(n) = map.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
    }
}

fn caller_slot(limits: &Arc<Limits>, key: String) -> Option<CallerSlot> {
    let mut map = limits.callers.in_flight.lock().ok()?;
    let n = map.entry(key.clone()).or_insert(0);
    if *n >= limits.per_caller {
        return None;
    }
    *n += 1;
    Some(CallerSlot { callers: limits.clone(), key })
}

/// The longest request target (path and query) served; longer ones get 414.
pub const MAX_TARGET_BYTES: usize = 8192;
/// The most header fields served; more get 431.
pub const MAX_HEADERS: usize = 100;

fn declared_length(req: &Request<Body>) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// Limits every request: a declared body over the limit is refused before it is read
/// (413); at most `max_concurrent` at once (more are answered 503 at once, not queued)
/// and at most `per_caller` of one caller (429), neither counting the operator routes;
/// and at most `timeout` each (then 503). Counts it in the metrics by route, method and
/// status.
async fn limits_and_metrics(State(limits): State<Arc<Limits>>, req: Request<Body>, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let res = admit(&limits, &route, req, next).await;
    crate::metrics::http_request(&route, method.as_str(), res.status().as_u16(), started.elapsed());
    res
}

async fn admit(limits: &Arc<Limits>, route: &str, req: Request<Body>, next: Next) -> Response {
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > MAX_TARGET_BYTES {
        return ApiError::new(StatusCode::URI_TOO_LONG, "uri_too_long", "the request target is too long")
            .into_response();
    }
    let head: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if head > limits.max_header_bytes || req.headers().len() > MAX_HEADERS {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            "the request headers are too large",
        )
        .with_header(header::CONNECTION, "close")
        .into_response();
    }
    if declared_length(&req).is_some_and(|n| n > limits.body_limit as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large")
            .with_header(header::CONNECTION, "close")
            .into_response();
    }
    let mut held = None;
    if !OPERATOR_ROUTES.contains(&route) {
        let Ok(permit) = limits.slots.clone().try_acquire_owned() else {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests at once; try again",
            )
            .with_header(header::RETRY_AFTER, "1")
            .into_response();
        };
        let Some(slot) = caller_slot(limits, caller_key(&req)) else {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_concurrent_requests",
                "too many requests of this caller at once; try again",
            )
            .with_header(header::RETRY_AFTER, "1")
            .into_response();
        };
        held = Some((permit, slot));
    }
    let res = match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(route = ?route, "request timed out");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long; try again")
                .with_header(header::RETRY_AFTER, "2")
                .into_response()
        }
    };
    drop(held);
    res
}

/// Every route of the API: the fixed ones, then a collection and an element per
/// resource. The OpenAPI document describes exactly these (a test holds the two
/// together).
fn routes() -> Vec<(String, MethodRouter<AppState>)> {
    let mut out: Vec<(String, MethodRouter<AppState>)> = vec![
        ("/health".into(), get(health::health)),
        ("/ready".into(), get(health::ready)),
        ("/metrics".into(), get(health::metrics)),
        ("/openapi.json".into(), get(openapi::document)),
        ("/v1/auth".into(), get(auth::whoami)),
    ];
    for def in crate::mapping::resources::ALL {
        out.push((format!("/v1/{}", def.name), resources::collection(def)));
        out.push((format!("/v1/{}/{{id}}", def.name), resources::element(def)));
        for rel in def.related {
            out.push((format!("/v1/{}/{{id}}/{}", def.name, rel.name), resources::related(def, rel)));
        }
        if def.fields.iter().any(|f| f.kind == crate::mapping::table::Kind::Secret) {
            out.push((format!("/v1/{}/{{id}}/password", def.name), resources::password(def)));
        }
    }
    out.push(("/v1/resellers/{id}/subscription-keys".into(), keys::collection()));
    out.push(("/v1/resellers/{id}/subscription-keys/{name}".into(), keys::element()));
    out.push(("/subscriptions/v1/customers".into(), subscriptions::customers()));
    out.push(("/subscriptions/v1/customers/{customerNumber}".into(), subscriptions::customer()));
    out.push(("/subscriptions/v1/customers/{customerNumber}/orders".into(), subscriptions::orders()));
    out.push((
        "/subscriptions/v1/customers/{customerNumber}/orders/{orderReference}/returns".into(),
        subscriptions::returns(),
    ));
    out.push(("/subscriptions/v1/customers/{customerNumber}/contracts".into(), subscriptions::contracts()));
    out.push(("/subscriptions/v1/customers/{customerNumber}/contracts/{contractId}".into(), subscriptions::contract()));
    for call in ["activate", "terminate", "options"] {
        out.push((
            format!("/subscriptions/v1/customers/{{customerNumber}}/contracts/{{contractId}}/{call}"),
            subscriptions::lifecycle(call),
        ));
    }
    out.push(("/v1/search".into(), get(resources::search)));
    out.push(("/v1/changes".into(), get(changes::changes)));
    out
}

/// The paths the router serves.
pub fn paths() -> Vec<String> {
    routes().into_iter().map(|(p, _)| p).collect()
}

pub struct Limits {
    slots: Arc<Semaphore>,
    per_caller: usize,
    callers: Callers,
    body_limit: usize,
    max_header_bytes: usize,
    timeout: Duration,
}

/// The CORS layer for the configured origins, or none (then no CORS headers at all).
/// Credentials are allowed for exactly the listed origins; the headers a portal needs
/// from the answers are exposed.
fn cors(c: &CorsSettings) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> =
        c.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    let methods: Vec<Method> = c.allowed_methods.iter().filter_map(|m| Method::from_bytes(m.as_bytes()).ok()).collect();
    let headers: Vec<HeaderName> =
        c.allowed_headers.iter().filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok()).collect();
    let listed = origins.clone();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(AllowCredentials::predicate(move |origin, _| listed.contains(origin)))
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers([
                header::LINK,
                HeaderName::from_static("x-total-count"),
                HeaderName::from_static("x-changes-position"),
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(Duration::from_secs(c.max_age_secs)),
    )
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let cors = cors(&state.settings.cors);
    let limits = Arc::new(Limits {
        slots: Arc::new(Semaphore::new(state.settings.http.max_concurrent_requests.max(1))),
        per_caller: state.settings.http.max_concurrent_per_caller.max(1),
        callers: Callers::default(),
        body_limit,
        max_header_bytes: state.settings.http.max_header_bytes.max(1024),
        timeout: Duration::from_millis(state.settings.http.request_timeout_ms.max(1)),
    });
    let request_span = |req: &Request<Body>| {
        let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
        // Debug formatting quotes and escapes: no value can read as more fields.
        tracing::info_span!("request", id = ?id, method = ?req.method().as_str(), path = ?req.uri().path())
    };
    let mut router = Router::new();
    for (path, methods) in routes() {
        router = router.route(&path, methods);
    }
    // The pages for people: the API explorer, and `/` pointing to it.
    for (path, methods) in explorer::routes() {
        router = router.route(path, methods);
    }
    let mut router = router
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(error_bodies))
        .layer(middleware::from_fn_with_state(limits, limits_and_metrics))
        .layer(DefaultBodyLimit::max(body_limit));
    // Outside the limits: a preflight is answered here, without a slot.
    if let Some(cors) = cors {
        router = router.layer(cors);
    }
    router
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(
            |res: &Response, latency: Duration, _: &tracing::Span| {
                tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
            },
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(MapRequestLayer::new(drop_unsafe_request_id))
}
