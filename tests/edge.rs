//! Hostile clients at the HTTP edge: declared and stalled bodies, one caller taking every
//! slot, the operator endpoints under load. Every test is bounded in count and time and
//! talks to 127.0.0.1 only.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::Value;
use stoney_gateway::config::Settings;
use stoney_slapd::SlapdOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn basic(user: (&str, &str)) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", user.0, user.1));
    format!("Basic {token}")
}

/// The head of a POST of a customer with this declared length, as `user`.
fn post_head(user: (&str, &str), length: usize) -> String {
    format!(
        "POST /v1/customers HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        basic(user)
    )
}

/// Reads one response (status and body) within `within`; `None` if none came in time.
async fn read_response(s: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).to_string();
                return Some((status, format!("{head}\r\n\r\n{body}")));
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The JSON error body of a raw response.
fn error_body(raw: &str) -> Value {
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

async fn start(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, tweak).await
}

/// Opens a connection and sends the head of a POST whose body then only starts.
async fn stalled_post(addr: SocketAddr, user: (&str, &str)) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(post_head(user, 100).as_bytes()).await.unwrap();
    s.write_all(b"{").await.unwrap();
    s
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_at_once() {
    let app = start(|_| {}).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(post_head(ADMIN, 10_000_000).as_bytes()).await.unwrap();
    let (status, raw) = read_response(&mut s, Duration::from_secs(3)).await.expect("an answer before the body");
    assert_eq!(status, 413, "{raw}");
    let body = error_body(&raw);
    assert_eq!(body["error"]["status"], 413, "{raw}");
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn a_stalled_body_is_408_long_before_the_request_timeout() {
    let app = start(|s| {
        s.http.body_timeout_ms = 500;
        s.http.request_timeout_ms = 30_000;
    })
    .await;
    let started = Instant::now();
    let mut s = stalled_post(app.addr, ADMIN).await;
    let (status, raw) = read_response(&mut s, Duration::from_secs(5)).await.expect("an answer");
    assert_eq!(status, 408, "{raw}");
    assert!(started.elapsed() < Duration::from_secs(3), "after {:?}", started.elapsed());
    let body = error_body(&raw);
    assert_eq!(body["error"]["status"], 408, "{raw}");
    assert_eq!(body["error"]["code"], "request_timeout");
    // The gateway still serves.
    assert_eq!(app.get("/v1/customers/5000001").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_take_every_slot() {
    let app = start(|s| {
        s.http.max_concurrent_per_caller = 2;
        s.http.max_concurrent_requests = 10;
        s.http.body_timeout_ms = 10_000;
    })
    .await;
    let _held = [stalled_post(app.addr, ADMIN).await, stalled_post(app.addr, ADMIN).await];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = app.get("/v1/customers/5000001").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_concurrent_requests", "{body}");
    // Another login, and the operator endpoints, are still served.
    assert_eq!(
        app.req_as(RESELLER1, reqwest::Method::GET, "/v1/customers/5000001").send().await.unwrap().status(),
        200
    );
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_are_outside_the_request_cap() {
    // The held requests must outlast every check below, however slow the machine: long
    // timeouts keep them (and any connection they open) waiting on the stalled directory
    // instead of failing.
    let (gw, proxy, _slapd) = stallable(|s| {
        s.http.max_concurrent_requests = 2;
        s.ldap.op_timeout_ms = 60_000;
        s.ldap.connect_timeout_ms = 60_000;
    })
    .await;
    proxy.pause(true);
    let mut slow = Vec::new();
    for (user, id) in [(ADMIN, 5000002), (RESELLER1, 5000003)] {
        let req = gw.client.get(format!("{}/v1/customers/{id}", gw.base)).basic_auth(user.0, Some(user.1));
        slow.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let res = gw.client.get(format!("{}/v1/customers/5000004", gw.base)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert_eq!(gw.client.get(format!("{}/health", gw.base)).send().await.unwrap().status(), 200);
    assert_eq!(gw.client.get(format!("{}/metrics", gw.base)).send().await.unwrap().status(), 200);
    // /ready asks the stalled directory and waits for it; a refusal for the cap would come
    // at once.
    let ready = gw.client.get(format!("{}/ready", gw.base)).timeout(Duration::from_millis(1500)).send().await;
    match ready {
        Err(e) => assert!(e.is_timeout(), "{e}"),
        Ok(res) => {
            let body: Value = res.json().await.unwrap();
            assert_ne!(body["error"]["code"], "overloaded", "{body}");
        }
    }
    proxy.pause(false);
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
}

/// Waits until the server closes the connection (`true`) or `within` passes (`false`).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 1024];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_byte_by_byte_is_cut_off_and_others_are_served() {
    let app = start(|s| {
        s.http.header_read_timeout_ms = 500;
        s.http.idle_timeout_ms = 5000;
    })
    .await;
    let s = TcpStream::connect(app.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        let _ = w.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if w.write_all(b"X").await.is_err() {
                break;
            }
        }
    });
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    let mut chunk = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), r.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => {}
            Err(_) => break false,
        }
    };
    trickle.abort();
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let app = start(|s| {
        s.http.idle_timeout_ms = 300;
        s.http.header_read_timeout_ms = 10_000;
    })
    .await;
    // Opened and never used.
    let mut fresh = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut fresh, Duration::from_secs(2)).await);
    // Kept alive after an answer.
    let mut used = TcpStream::connect(app.addr).await.unwrap();
    used.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut used, Duration::from_secs(2)).await.map(|r| r.0), Some(200));
    assert!(closed_within(&mut used, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = start(|s| {
        s.http.max_connections = 3;
        s.http.idle_timeout_ms = 30_000;
        s.http.header_read_timeout_ms = 30_000;
    })
    .await;
    // The harness's client may hold one connection of its own.
    let mut answered = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
        match read_response(&mut s, Duration::from_millis(400)).await {
            Some((200, _)) => answered.push(s),
            Some((status, raw)) => panic!("{status}: {raw}"),
            None => waiting.push(s),
        }
    }
    assert!((2..=3).contains(&answered.len()), "{} answered", answered.len());
    drop(answered);
    let first = &mut waiting[0];
    assert_eq!(read_response(first, Duration::from_secs(2)).await.map(|r| r.0), Some(200));
}
