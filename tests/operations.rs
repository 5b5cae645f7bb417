//! What an operator relies on: metrics that count, limits that answer (request timeout,
//! concurrency cap), and a graceful shutdown on SIGTERM that finishes in-flight requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::Value;
use stoney_slapd::{Slapd, SlapdOptions};

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process of ours has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The value of one series of the exposition (0 when absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_ldap_operations_and_show_the_pools() {
    let app = spawn_app().await;
    let before = app.get("/metrics").await.text().await.unwrap();
    for _ in 0..5 {
        assert_eq!(app.get("/v1/customers/5000001").await.status(), 200);
    }
    assert_eq!(app.get("/v1/customers/99").await.status(), 404);
    let res = app.get("/metrics").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let after = res.text().await.unwrap();
    assert!(after.trim_end().ends_with("# EOF"), "the OpenMetrics text format");
    let ok = r#"stoney_http_requests_total{route="/v1/customers/{id}",method="GET",status="200"}"#;
    let missing = r#"stoney_http_requests_total{route="/v1/customers/{id}",method="GET",status="404"}"#;
    assert!(sample(&after, ok) - sample(&before, ok) >= 5.0, "{after}");
    assert!(sample(&after, missing) - sample(&before, missing) >= 1.0);
    let latency = r#"stoney_http_request_duration_seconds_count{route="/v1/customers/{id}",method="GET"}"#;
    assert!(sample(&after, latency) >= 6.0);
    let searches = r#"stoney_ldap_operations_total{op="search",outcome="ok"}"#;
    assert!(sample(&after, searches) > sample(&before, searches));
    assert!(after.contains("# TYPE stoney_ldap_operation_duration_seconds histogram"));
    assert_eq!(sample(&after, r#"stoney_ldap_pool_connections{pool="directory",state="max"}"#), 16.0);
    assert!(sample(&after, r#"stoney_ldap_pool_connections{pool="directory",state="open"}"#) >= 1.0);
    assert_eq!(sample(&after, r#"stoney_ldap_failovers_total{pool="directory"}"#), 0.0);
    assert_eq!(sample(&after, "stoney_index_customers"), 60.0);
    assert_eq!(sample(&after, r#"stoney_index_elements{resource="customers"}"#), 60.0);
    assert_eq!(sample(&after, r#"stoney_index_elements{resource="resellers"}"#), 3.0);
    assert_eq!(sample(&after, "stoney_index_loaded"), 1.0);
}

#[tokio::test]
async fn unknown_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    for i in 0..40 {
        let m = Method::from_bytes(format!("X{i}").as_bytes()).unwrap();
        let res = app.client.request(m, app.url("/health")).send().await.unwrap();
        assert_eq!(res.status(), 405);
        app.client.get(app.url(&format!("/no/such/path/{i}"))).send().await.unwrap();
    }
    let after = app.get("/metrics").await.text().await.unwrap();
    assert!(after.contains(r#"stoney_http_requests_total{route="/health",method="other",status="405"}"#), "{after}");
    assert!(after.contains(r#"stoney_http_requests_total{route="unmatched",method="GET",status="404"}"#), "{after}");
    // Every label value comes from a fixed set.
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other"];
    let routes: Vec<String> = stoney_gateway::http::paths()
        .into_iter()
        .chain(stoney_gateway::http::explorer::paths().into_iter().map(String::from))
        .chain(["unmatched".into()])
        .collect();
    for line in after.lines().filter(|l| l.starts_with("stoney_http_request")) {
        let label = |name: &str| line.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next());
        assert!(methods.contains(&label("method").unwrap()), "{line}");
        assert!(routes.iter().any(|r| r == label("route").unwrap()), "{line}");
    }
}

async fn get(gw: &Gateway, path: &str) -> reqwest::Response {
    gw.client.get(format!("{}{path}", gw.base)).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap()
}

#[tokio::test]
async fn a_request_over_the_timeout_gets_503_and_the_gateway_recovers() {
    let (gw, proxy, _slapd) = stallable(|s| s.http.request_timeout_ms = 300).await;
    assert_eq!(get(&gw, "/v1/customers/5000001").await.status(), 200);
    proxy.pause(true);
    let started = Instant::now();
    let res = get(&gw, "/v1/customers/5000002").await;
    let took = started.elapsed();
    proxy.pause(false);
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_eq!(get(&gw, "/v1/customers/5000002").await.status(), 200, "works again once the directory answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_cap_get_503_at_once() {
    let (gw, proxy, _slapd) = stallable(|s| s.http.max_concurrent_requests = 2).await;
    assert_eq!(get(&gw, "/v1/customers/5000001").await.status(), 200);
    proxy.pause(true);
    let mut slow = Vec::new();
    for id in [5000002, 5000003] {
        let req = gw.client.get(format!("{}/v1/customers/{id}", gw.base)).basic_auth(ADMIN.0, Some(ADMIN.1));
        slow.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let res = get(&gw, "/v1/customers/5000004").await;
    assert_eq!(res.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(500), "not queued");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    proxy.pause(false);
    for s in slow {
        assert_eq!(s.await.unwrap(), 200, "the requests in flight finish");
    }
    assert_eq!(get(&gw, "/v1/customers/5000004").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish() {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let proxy = StallingProxy::start(slapd.listen).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut gateway = std::process::Command::new(env!("CARGO_BIN_EXE_stoney-gateway"))
        .arg("serve")
        .env("STONEY__LISTEN", format!("127.0.0.1:{port}"))
        .env("STONEY__LDAP__URLS", &proxy.url)
        .env("STONEY__LDAP__BIND_DN", &slapd.gateway_dn)
        .env("STONEY__LDAP__BIND_PASSWORD", &slapd.gateway_password)
        .env("STONEY__LOG__LEVEL", "warn")
        .spawn()
        .expect("the gateway starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/ready")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The directory stalls, a request is in flight, then the gateway is told to stop.
    proxy.pause(true);
    let req = client.get(format!("{base}/v1/customers/5000001")).basic_auth(ADMIN.0, Some(ADMIN.1));
    let in_flight = tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(gateway.id(), libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gateway.try_wait().unwrap().is_none(), "still finishing the request in flight");
    proxy.pause(false);
    assert_eq!(in_flight.await.unwrap().expect("an answer"), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = gateway.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the gateway exits after the request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    // New connections are refused once it has stopped.
    assert!(client.get(format!("{base}/health")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_clients_cannot_forge_log_lines() {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = std::process::Command::new(env!("CARGO_BIN_EXE_stoney-gateway"))
        .arg("serve")
        .env("STONEY__LISTEN", format!("127.0.0.1:{port}"))
        .env("STONEY__LDAP__URLS", &slapd.url)
        .env("STONEY__LDAP__BIND_DN", &slapd.gateway_dn)
        .env("STONEY__LDAP__BIND_PASSWORD", &slapd.gateway_password)
        .env("STONEY__LOG__FORMAT", "text")
        .env("STONEY__LOG__LEVEL", "info")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/ready")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.get(format!("{base}/health")).header("x-request-id", "fake method=DELETE").send().await.unwrap();
    // A user name with a line break, failing until it is throttled (which is logged).
    for _ in 0..6 {
        client.get(format!("{base}/v1/auth")).basic_auth("evil\nFORGED line", Some("x")).send().await.unwrap();
    }
    signal(gateway.id(), libc::SIGTERM);
    let out = tokio::task::spawn_blocking(move || gateway.wait_with_output()).await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("too many failed logins"), "{log}");
    assert!(!log.lines().any(|l| l.trim_start().to_ascii_lowercase().starts_with("forged")), "{log}");
    assert!(!log.contains(" method=DELETE"), "{log}");
}

#[tokio::test]
async fn the_openapi_document_describes_exactly_the_routes_of_the_router() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["servers"][0]["url"], app.base);
    let documented: std::collections::BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let served: std::collections::BTreeSet<String> = stoney_gateway::http::paths().into_iter().collect();
    assert_eq!(documented, served, "every route documented, every documented route served");
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut methods: Vec<String> =
            item.as_object().unwrap().keys().filter(|k| *k != "parameters").map(|m| m.to_uppercase()).collect();
        methods.sort();
        // An unsupported method gets 405 with the methods the router has for the path.
        let url = app.url(&path.replace("{id}", "5000001"));
        let res = app.client.request(Method::TRACE, url).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
        assert_eq!(res.status(), 405, "{path}");
        let mut allowed: Vec<String> = res.headers()["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| m != "HEAD")
            .collect();
        allowed.sort();
        assert_eq!(allowed, methods, "methods of {path}");
        for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| *k != "parameters") {
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{method} {path} has responses");
        }
    }
    // Every reference points at a schema that exists.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(doc["components"]["schemas"].get(name).is_some(), "schema {name}");
    }
    // A merge patch requires no field, nor does the address inside it.
    let schema_of = |r: &Value| {
        let name = r.as_str().unwrap().rsplit('/').next().unwrap().to_string();
        doc["components"]["schemas"][name].clone()
    };
    let patch = &doc["paths"]["/v1/customers/{id}"]["patch"]["requestBody"]["content"];
    for ct in ["application/merge-patch+json", "application/json"] {
        let schema = schema_of(&patch[ct]["schema"]["$ref"]);
        assert!(schema["required"].as_array().is_none_or(|r| r.is_empty()), "{schema}");
        let address = schema_of(&schema["properties"]["billingAddress"]["allOf"][0]["$ref"]);
        assert!(address["required"].as_array().is_none_or(|r| r.is_empty()), "{address}");
        assert_eq!(schema["properties"]["shippingAddress"]["nullable"], true);
    }
    // Filters of booleans and numbers are typed.
    let params = doc["paths"]["/v1/customers"]["get"]["parameters"].as_array().unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap()["schema"].to_string();
    assert!(param("isCompany").contains("\"boolean\""), "{}", param("isCompany"));
    assert!(param("belongsToResellerID").contains("\"integer\""), "{}", param("belongsToResellerID"));
    // Each resource's schema is its definition's table.
    for def in stoney_gateway::mapping::resources::ALL {
        let props = doc["components"]["schemas"][def.schema]["properties"].as_object().unwrap();
        for f in def.fields.iter().filter(|f| !f.is_hidden()) {
            assert!(props.contains_key(f.name), "{} {}", def.name, f.name);
        }
    }
}

/// The statuses `/openapi.json` documents for a method of a path.
fn documented(doc: &Value, method: &str, path: &str) -> Vec<u16> {
    doc["paths"][path][method.to_ascii_lowercase()]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is documented"))
        .keys()
        .filter_map(|k| k.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_a_route_answers_is_documented() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.max_failures = 2;
        s.http.body_timeout_ms = 300;
    })
    .await;
    let s = app.suffix().to_string();
    // A person who belongs to no provider, reseller or customer.
    let out = app.ldapmodify(&format!(
        "dn: uid=5000999,ou=people,{s}\nchangetype: add\nobjectClass: top\nobjectClass: sstPerson\nuid: 5000999\n\
         givenName: No\nsn: Scope\nmail: noscope@example.com\npreferredLanguage: en-GB\nsstTimeZoneOffset: +0100\n\
         userPassword: noscope-secret\n"
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let noscope = ("noscope@example.com", "noscope-secret");
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let id = app.create(&company("Documented AG")).await;
    let other = app.create(&company("Other AG")).await;
    let mut taken = company("Taken AG");
    taken["externalID"] = serde_json::json!("taken-1");
    app.create(&taken).await;
    let item = format!("/v1/customers/{id}");
    let current: Value = app.get(&item).await.json().await.unwrap();
    let mut seen: Vec<(String, &str, u16)> = Vec::new();
    let mut probe = |method: &str, path: &'static str, status: reqwest::StatusCode| {
        seen.push((method.to_string(), path, status.as_u16()));
    };
    let big = "x".repeat(70_000);
    let long_query = format!("?q={}", "a".repeat(9000));
    let tall = "y".repeat(20_000);
    let write_bodies = |patch: bool| {
        let valid = if patch { serde_json::json!({"isActive": false}) } else { current.clone() };
        let mut dup = current.clone();
        dup["externalID"] = serde_json::json!("taken-1");
        let invalid = if patch { serde_json::json!({"isCompany": "yes"}) } else { serde_json::json!({}) };
        (valid, dup, invalid)
    };
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        probe("GET", path, app.client.get(app.url(path)).send().await.unwrap().status());
        let url = app.url(&format!("{path}{long_query}"));
        probe("GET", path, app.client.get(url).send().await.unwrap().status());
        probe("GET", path, app.client.get(app.url(path)).header("x-tall", &tall).send().await.unwrap().status());
        probe("GET", path, app.client.get(app.url(path)).body(big.clone()).send().await.unwrap().status());
    }
    for (method, path, url) in [
        ("GET", "/v1/auth", "/v1/auth".to_string()),
        ("GET", "/v1/customers", "/v1/customers".to_string()),
        ("GET", "/v1/customers/{id}", item.clone()),
        ("DELETE", "/v1/customers/{id}", format!("/v1/customers/{other}")),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        probe(method, path, app.req(m.clone(), &url).send().await.unwrap().status());
        probe(method, path, app.client.request(m.clone(), app.url(&url)).send().await.unwrap().status());
        probe(method, path, app.req_as(noscope, m.clone(), &url).send().await.unwrap().status());
        probe(method, path, app.req_as(CUSTOMER, m.clone(), &url).send().await.unwrap().status());
        let res = app.req(m.clone(), &format!("{url}{long_query}")).send().await.unwrap();
        probe(method, path, res.status());
        probe(method, path, app.req(m.clone(), &url).header("x-tall", &tall).send().await.unwrap().status());
    }
    for q in ["?page=0", "?q=%zz", "?nope=1", "?sort=nope"] {
        probe("GET", "/v1/customers", app.get(&format!("/v1/customers{q}")).await.status());
    }
    probe("GET", "/v1/customers/{id}", app.get("/v1/customers/99").await.status());
    let bad_if_match = reqwest::header::HeaderValue::from_bytes(b"\"a\xff\"").unwrap();
    for m in ["PUT", "PATCH", "DELETE"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let res = app.req(method.clone(), &item).header("if-match", bad_if_match.clone()).json(&current).send().await;
        probe(m, "/v1/customers/{id}", res.unwrap().status());
        let res = app.req(method.clone(), &item).header("if-match", "\"stale\"").json(&current).send().await;
        probe(m, "/v1/customers/{id}", res.unwrap().status());
        probe(
            m,
            "/v1/customers/{id}",
            app.req(method.clone(), "/v1/customers/99").json(&current).send().await.unwrap().status(),
        );
    }
    for (m, path, url) in [
        ("POST", "/v1/customers", "/v1/customers".to_string()),
        ("PUT", "/v1/customers/{id}", item.clone()),
        ("PATCH", "/v1/customers/{id}", item.clone()),
    ] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let (valid, dup, invalid) = write_bodies(m == "PATCH");
        let valid = if m == "POST" { company("Probe AG") } else { valid };
        let dup = if m == "POST" { taken.clone() } else { dup };
        for body in [&valid, &dup, &invalid] {
            probe(m, path, app.send_json(method.clone(), &url, body).await.status());
        }
        probe(m, path, app.req_as(CUSTOMER, method.clone(), &url).json(&valid).send().await.unwrap().status());
        let res = app.req(method.clone(), &url).header("content-type", "application/json").body("{").send().await;
        probe(m, path, res.unwrap().status());
        let res = app.req(method.clone(), &url).header("content-type", "text/plain").body("{}").send().await;
        probe(m, path, res.unwrap().status());
        let res =
            app.req(method.clone(), &url).header("content-type", "application/json").body(big.clone()).send().await;
        probe(m, path, res.unwrap().status());
        // A body that stops half-way.
        probe(m, path, stalled_body(app.addr, m, &url).await);
    }
    // Locked out: 429 everywhere.
    for _ in 0..3 {
        app.req_as((RESELLER2.0, "wrong"), Method::GET, "/v1/auth").send().await.unwrap();
    }
    probe("GET", "/v1/auth", app.req_as(RESELLER2, Method::GET, "/v1/auth").send().await.unwrap().status());
    let mut missing = Vec::new();
    for (method, path, status) in &seen {
        if !documented(&doc, method, path).contains(status) {
            missing.push(format!("{method} {path} {status}"));
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "answered but not documented: {missing:?}");
    let statuses: std::collections::BTreeSet<u16> = seen.iter().map(|s| s.2).collect();
    for expected in [200, 201, 400, 401, 403, 404, 408, 409, 412, 413, 414, 415, 422, 429, 431] {
        assert!(statuses.contains(&expected), "no probe answered {expected}: {statuses:?}");
    }
}

/// Sends the head of a request as the admin and only the first byte of its body; the
/// status of the answer.
async fn stalled_body(addr: std::net::SocketAddr, method: &str, path: &str) -> reqwest::StatusCode {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 12 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("an answer").unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let code: u16 = String::from_utf8_lossy(&got[9..12]).parse().unwrap();
    reqwest::StatusCode::from_u16(code).unwrap()
}
