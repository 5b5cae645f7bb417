//! `GET /v1/changes`: the change feed as Server-Sent Events (`Accept: text/event-stream`)
//! or as a JSON long poll. Positions are opaque strings; an event stream resumes after
//! `Last-Event-ID`, a poll after `?since=`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::{credentials, Caller};
use super::error::ApiError;
use super::resources::json_response;
use super::state::AppState;
use crate::feed::Position;
use crate::service::changes::{Filter, StreamSlot, Told, GONE};
use crate::service::{Scope, ServiceError};

/// The most changes looked at per answer of a poll, and the default.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
/// The longest a poll waits, and the default.
const MAX_WAIT_SECS: u64 = 60;
const DEFAULT_WAIT_SECS: u64 = 25;

const PARAMS: [&str; 5] = ["since", "wait", "limit", "resource", "id"];

fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream")))
}

fn number(params: &HashMap<String, String>, key: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if v.len() <= 20 && n <= max => Ok(n),
            _ => Err(ApiError::bad_request(format!("{key}: give a number from 0 to {max}"))),
        },
    }
}

pub async fn changes(
    State(app): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|_| ApiError::bad_request("the query string cannot be read"))?;
    if let Some(k) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown parameter {:?}; /v1/changes takes {}",
            k.chars().take(64).collect::<String>(),
            PARAMS.join(", ")
        )));
    }
    let filter = Filter::parse(params.get("resource").map(String::as_str), params.get("id").map(String::as_str))?;
    let changes = &app.changes;
    let slot = changes.open(caller.uid)?;
    if wants_stream(&headers) {
        // Reconnecting clients say where they were; that wins over the URL's `since`.
        let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
        let since = last.or(params.get("since").map(String::as_str));
        let mut res = stream(app.clone(), caller.scope, filter, since, slot, &headers).into_response();
        // Proxies that buffer answers (nginx) pass this one on as it comes.
        res.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
        return Ok(res);
    }
    let limit = number(&params, "limit", DEFAULT_LIMIT as u64, MAX_LIMIT as u64)? as usize;
    // A poll ends before the request timeout would end it.
    let longest = Duration::from_millis(app.settings.http.request_timeout_ms.saturating_sub(1000).max(1));
    let wait = Duration::from_secs(number(&params, "wait", DEFAULT_WAIT_SECS, MAX_WAIT_SECS)?).min(longest);
    let mut from = changes.start(params.get("since").map(String::as_str))?;
    let until = tokio::time::Instant::now() + wait;
    loop {
        match changes.next(&caller.scope, &filter, from, limit.max(1)) {
            Told::Gone => return Err(ServiceError::Gone(GONE.into()).into()),
            Told::Events(events, next) => {
                let now = tokio::time::Instant::now();
                if !events.is_empty() || now >= until || changes.closing() {
                    drop(slot);
                    let body = json!({"changes": events, "next": next.to_string()});
                    return Ok(json_response(StatusCode::OK, &body));
                }
                from = next;
                changes.wait(from, until - now).await;
            }
        }
    }
}

/// Where an event stream is.
struct Stream {
    app: AppState,
    scope: Scope,
    filter: Filter,
    /// The credentials, checked again while the stream is open: a person deactivated
    /// or given another scope stops receiving.
    login: Option<(String, String)>,
    at: Result<Position, ()>,
    pending: VecDeque<Value>,
    /// The `retry:` line goes first.
    started: bool,
    checked: tokio::time::Instant,
    done: bool,
    _slot: StreamSlot,
}

fn stream(
    app: AppState,
    scope: Scope,
    filter: Filter,
    since: Option<&str>,
    slot: StreamSlot,
    headers: &HeaderMap,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let c = &app.settings.changes;
    let heartbeat = Duration::from_secs(c.heartbeat_secs.max(1));
    let at = app.changes.start(since).map_err(|_| ());
    let login = credentials(headers).ok();
    let checked = tokio::time::Instant::now();
    let pending = VecDeque::new();
    let state = Stream { app, scope, filter, login, at, pending, started: false, checked, done: false, _slot: slot };
    let events = futures::stream::unfold(state, move |mut s| async move {
        if s.done {
            return None;
        }
        if !s.started {
            s.started = true;
            let retry = Duration::from_millis(s.app.settings.changes.retry_ms);
            return Some((Ok(Event::default().retry(retry).comment("stoney change feed")), s));
        }
        loop {
            if s.checked.elapsed() >= heartbeat {
                if !still_allowed(&s).await {
                    return None;
                }
                s.checked = tokio::time::Instant::now();
            }
            if let Some(e) = s.pending.pop_front() {
                let id = e["id"].as_str().unwrap_or_default().to_string();
                let event = Event::default().id(id).json_data(&e).unwrap_or_else(|_| Event::default().comment(""));
                return Some((Ok(event), s));
            }
            let Ok(from) = s.at else {
                s.done = true;
                return Some((Ok(reset()), s));
            };
            match s.app.changes.next(&s.scope, &s.filter, from, DEFAULT_LIMIT) {
                Told::Gone => s.at = Err(()),
                Told::Events(events, next) => {
                    s.at = Ok(next);
                    if events.is_empty() {
                        if s.app.changes.closing() {
                            return None;
                        }
                        s.app.changes.wait(next, heartbeat).await;
                    }
                    s.pending.extend(events);
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
}

/// Whether the stream's caller still logs in with the same scope.
async fn still_allowed(s: &Stream) -> bool {
    let Some((user, password)) = &s.login else { return false };
    match s.app.auth.authenticate(user, password).await {
        Ok(p) => p.scope == Some(s.scope),
        // The directory is away: the stream goes on; it has nothing new to send anyway.
        Err(crate::service::auth::AuthError::Unavailable) => true,
        Err(_) => false,
    }
}

/// Tells the subscriber to list again and follow from the list's position.
fn reset() -> Event {
    let body = json!({"error": {"status": 410, "code": "gone", "message": GONE, "details": []}});
    Event::default().event("reset").data(body.to_string())
}
