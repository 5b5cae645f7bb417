//! The HTTP layer: routes, extractors, the error type and the middleware stack.

pub mod auth;
pub mod customers;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use tokio::sync::Semaphore;
use tower::util::MapRequestLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use error::ApiError;

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

/// Limits every request: at most `max_concurrent` at once (more are answered 503 at
/// once, not queued) and at most `timeout` each (then 503); and counts it in the
/// metrics by route, method and status.
async fn limits_and_metrics(State(limits): State<Arc<Limits>>, req: Request<Body>, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let res = match limits.slots.clone().try_acquire_owned() {
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests at once; try again")
            .with_header(header::RETRY_AFTER, "1")
            .into_response(),
        Ok(_permit) => match tokio::time::timeout(limits.timeout, next.run(req)).await {
            Ok(res) => res,
            Err(_) => {
                tracing::warn!(route = ?route, "request timed out");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long; try again")
                    .with_header(header::RETRY_AFTER, "2")
                    .into_response()
            }
        },
    };
    crate::metrics::http_request(&route, method.as_str(), res.status().as_u16(), started.elapsed());
    res
}

/// Every route of the API. The OpenAPI document describes exactly these (a test holds
/// the two together).
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/health", get(health::health)),
        ("/ready", get(health::ready)),
        ("/metrics", get(health::metrics)),
        ("/openapi.json", get(openapi::document)),
        ("/v1/auth", get(auth::whoami)),
        ("/v1/customers", get(customers::list).post(customers::create)),
        (
            "/v1/customers/{id}",
            get(customers::read).put(customers::replace).patch(customers::patch).delete(customers::delete),
        ),
    ]
}

/// The paths the router serves.
pub fn paths() -> Vec<&'static str> {
    routes().into_iter().map(|(p, _)| p).collect()
}

pub struct Limits {
    slots: Arc<Semaphore>,
    timeout: Duration,
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.body_limit;
    let limits = Arc::new(Limits {
        slots: Arc::new(Semaphore::new(state.settings.http.max_concurrent_requests.max(1))),
        timeout: Duration::from_millis(state.settings.http.request_timeout_ms.max(1)),
    });
    let request_span = |req: &Request<Body>| {
        let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
        // Debug formatting quotes and escapes: no value can read as more fields.
        tracing::info_span!("request", id = ?id, method = ?req.method().as_str(), path = ?req.uri().path())
    };
    let mut router = Router::new();
    for (path, methods) in routes() {
        router = router.route(path, methods);
    }
    router
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(error_bodies))
        .layer(middleware::from_fn_with_state(limits, limits_and_metrics))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(
            |res: &Response, latency: Duration, _: &tracing::Span| {
                tracing::info!(status = res.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
            },
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(MapRequestLayer::new(drop_unsafe_request_id))
}
