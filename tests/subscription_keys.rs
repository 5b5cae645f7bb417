//! Subscription keys of the merchants' facade: issued, listed and revoked by the provider
//! (REST and `stoney-gateway keys`), stored only as SHA-256, checked by the `Merchant`
//! extractor with a short cache and throttling per client address.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::IntoResponse;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stoney_gateway::http::keys::Merchant;
use stoney_gateway::service::keys::KeyError;
use stoney_slapd::{SlapdOptions, DEMO_SUBSCRIPTION_KEY};

fn keys_path(reseller: u64) -> String {
    format!("/v1/resellers/{reseller}/subscription-keys")
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

async fn issue(app: &TestApp, reseller: u64, name: &str) -> (StatusCode, Value) {
    let res = app.send_json(Method::POST, &keys_path(reseller), &json!({ "name": name })).await;
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Runs the `Merchant` extractor on a request with these headers from `client`.
async fn merchant(app: &TestApp, headers: &[(&str, &str)], client: IpAddr) -> Result<u64, (u16, Value, String)> {
    let mut req = axum::http::Request::builder().uri("/subscriptions/v1/customers/x");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (mut parts, _) = req.body(()).unwrap().into_parts();
    parts.extensions.insert(ConnectInfo(SocketAddr::new(client, 40000)));
    match Merchant::from_request_parts(&mut parts, &app.state).await {
        Ok(Merchant(r)) => Ok(r),
        Err(e) => {
            let res = e.into_response();
            let status = res.status().as_u16();
            let challenge = res.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
            Err((status, serde_json::from_slice(&body).unwrap(), challenge.unwrap_or_default()))
        }
    }
}

#[tokio::test]
async fn the_provider_issues_lists_and_revokes_at_most_two_keys() {
    let app = spawn_app().await;
    let (status, primary) = issue(&app, 4000002, "primary").await;
    assert_eq!(status, 201, "{primary}");
    let key = primary["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk_") && key.len() == 46, "{key}");
    assert!(primary["created"].as_str().unwrap().ends_with('Z'), "{primary}");
    let (status, secondary) = issue(&app, 4000002, "secondary").await;
    assert_eq!(status, 201, "{secondary}");
    let second_key = secondary["key"].as_str().unwrap().to_string();
    assert_ne!(key, second_key);

    let res = app.get(&keys_path(4000002)).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let listed: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["primary", "secondary"]);
    assert!(listed.as_array().unwrap().iter().all(|k| k["created"].is_string() && k.get("key").is_none()));
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    assert!(!text.contains(&key) && !text.contains(&second_key) && !text.contains(&hash), "{text}");

    let (status, body) = issue(&app, 4000002, "third").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    // The demo data gives reseller 4000001 a key named primary.
    assert_eq!(issue(&app, 4000001, "primary").await.0, 409);
    assert_eq!(issue(&app, 4000001, "Not A Name").await.0, 422);
    let res = app.send_json(Method::POST, &keys_path(4000001), &json!({"name": "x", "key": "mine"})).await;
    assert_eq!(res.status(), 422, "a key cannot be chosen");
    assert_eq!(issue(&app, 4999999, "primary").await.0, 404);
    assert_eq!(app.get(&keys_path(4999999)).await.status(), 404);
    assert_eq!(app.get(&keys_path(4000003)).await.text().await.unwrap(), "[]");

    assert_eq!(app.state.keys.authenticate(&key, ip(1)).await, Ok(4000002));
    assert_eq!(app.state.keys.authenticate(&second_key, ip(1)).await, Ok(4000002));
    let res = app.req(Method::DELETE, &format!("{}/primary", keys_path(4000002))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // Revoked through this gateway: it stops at once, the other key goes on.
    assert_eq!(app.state.keys.authenticate(&key, ip(1)).await, Err(KeyError::Invalid));
    assert_eq!(app.state.keys.authenticate(&second_key, ip(1)).await, Ok(4000002));
    let res = app.req(Method::DELETE, &format!("{}/primary", keys_path(4000002))).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // A free place again: a new primary for the rotation.
    assert_eq!(issue(&app, 4000002, "primary").await.0, 201);
}

#[tokio::test]
async fn only_the_provider_manages_keys_and_keys_do_not_open_v1() {
    let app = spawn_app().await;
    let path = keys_path(4000001);
    for who in [RESELLER1, CUSTOMER] {
        let s = app.req_as(who, Method::GET, &path).send().await.unwrap().status();
        assert!(s == 403 || s == 404, "{who:?} lists: {s}");
        let s = app.req_as(who, Method::POST, &path).json(&json!({"name": "mine"})).send().await.unwrap().status();
        assert!(s == 403 || s == 404, "{who:?} issues: {s}");
        let s = app.req_as(who, Method::DELETE, &format!("{path}/primary")).send().await.unwrap().status();
        assert!(s == 403 || s == 404, "{who:?} revokes: {s}");
    }
    assert_eq!(app.req_as(RESELLER1, Method::GET, &path).send().await.unwrap().status(), 403);
    assert_eq!(app.req_as(RESELLER1, Method::GET, &keys_path(4000002)).send().await.unwrap().status(), 404);
    assert_eq!(app.client.get(app.url(&path)).send().await.unwrap().status(), 401);
    // A key is no login on /v1.
    let res = app
        .client
        .get(app.url("/v1/customers"))
        .header("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(app.get(&path).await.status(), 200, "the key is still there");
}

#[tokio::test]
async fn the_merchant_extractor_wants_a_good_key_and_no_basic_login() {
    let app = spawn_app().await;
    assert_eq!(merchant(&app, &[("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY)], ip(1)).await, Ok(4000001));
    for headers in [
        vec![],
        vec![("X-Subscription-Key", "")],
        vec![("X-Subscription-Key", "sk_unknown")],
        vec![("Authorization", "Basic YWRtaW5Ac3RvbmV5LWNsb3VkLm9yZzphZG1pbi1zZWNyZXQ=")],
    ] {
        let (status, body, challenge) = merchant(&app, &headers, ip(2)).await.unwrap_err();
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert_eq!(body["error"]["status"], 401);
        assert_eq!(challenge, "SubscriptionKey");
    }
    for _ in 0..5 {
        assert_eq!(merchant(&app, &[("X-Subscription-Key", "sk_guess")], ip(3)).await.unwrap_err().0, 401);
    }
    let (status, body, _) = merchant(&app, &[("X-Subscription-Key", "sk_guess")], ip(3)).await.unwrap_err();
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("too_many_requests")));
}

#[tokio::test]
async fn unknown_keys_are_throttled_per_client_address() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.max_failures = 3;
        s.auth.lockout_secs = 1;
    })
    .await;
    let keys = &app.state.keys;
    for guess in ["sk_a", "sk_b", "not-even-a-key"] {
        assert_eq!(keys.authenticate(guess, ip(7)).await, Err(KeyError::Invalid), "{guess}");
    }
    assert!(matches!(keys.authenticate("sk_c", ip(7)).await, Err(KeyError::Throttled(_))));
    assert!(
        matches!(keys.authenticate(DEMO_SUBSCRIPTION_KEY, ip(7)).await, Err(KeyError::Throttled(_))),
        "even a good key waits"
    );
    assert_eq!(keys.authenticate("sk_d", ip(8)).await, Err(KeyError::Invalid), "another address is not throttled");
    assert_eq!(keys.authenticate(DEMO_SUBSCRIPTION_KEY, ip(8)).await, Ok(4000001));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(keys.authenticate(DEMO_SUBSCRIPTION_KEY, ip(7)).await, Ok(4000001), "not forever");
}

#[tokio::test]
async fn a_key_deleted_in_the_directory_stops_within_the_cache_time() {
    let app =
        spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| s.auth.cache_ttl_secs = 1).await;
    assert_eq!(app.state.keys.authenticate(DEMO_SUBSCRIPTION_KEY, ip(1)).await, Ok(4000001));
    let dn = format!("cn=primary,ou=subscription-keys,uid=4000001,ou=reseller,{}", app.suffix());
    let out = app.ldapmodify(&format!("dn: {dn}\nchangetype: delete\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.state.keys.authenticate(DEMO_SUBSCRIPTION_KEY, ip(1)).await, Err(KeyError::Invalid));
}

#[tokio::test]
async fn keys_are_stored_as_their_sha256_only() {
    let app = spawn_app().await;
    let (status, body) = issue(&app, 4000003, "primary").await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap();
    let all = app.ldapsearch(app.suffix(), "(objectClass=*)", &["*", "+"]);
    assert!(!all.contains(key), "the key is nowhere in the directory");
    let stored = app.ldapsearch(
        &format!("ou=subscription-keys,uid=4000003,ou=reseller,{}", app.suffix()),
        "(cn=primary)",
        &["sgwKeyHash", "sgwKeyCreated", "objectClass"],
    );
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    assert!(stored.contains(&format!("sgwKeyHash: {hash}\n")), "{stored}");
    assert!(stored.contains("objectClass: sgwSubscriptionKey"), "{stored}");
    let created = stored.lines().find_map(|l| l.strip_prefix("sgwKeyCreated: ")).unwrap();
    assert!(created.len() == 15 && created.ends_with('Z'), "{created}");
    // The demo key too.
    let demo = app.ldapsearch(
        &format!("ou=subscription-keys,uid=4000001,ou=reseller,{}", app.suffix()),
        "(cn=primary)",
        &["sgwKeyHash"],
    );
    assert!(demo.contains(&hex::encode(Sha256::digest(DEMO_SUBSCRIPTION_KEY.as_bytes()))), "{demo}");
    assert!(!all.contains(DEMO_SUBSCRIPTION_KEY));
}

fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stoney-gateway"))
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("STONEY_CONFIG")
        .output()
        .expect("the gateway binary runs")
}

#[tokio::test]
async fn the_cli_issues_lists_and_revokes_keys() {
    let app =
        spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| s.auth.cache_ttl_secs = 0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let s = &app.slapd;
    std::fs::write(
        &config,
        format!(
            "[ldap]\nurls = [\"{}\"]\nbind_dn = \"{}\"\nbind_password = \"{}\"\nbase_dn = \"{}\"\n",
            s.url, s.gateway_dn, s.gateway_password, s.suffix
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let config = config.clone();
        move || cli(&config, &["issue", "--reseller", "4000003", "--name", "primary"])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("sk_") && key.len() == 46, "{key}");
    assert_eq!(app.state.keys.authenticate(&key, ip(1)).await, Ok(4000003));

    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || cli(&config, args))
    };
    let out = run(&["list", "--reseller", "4000003"]).await.unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(listed.starts_with("primary\t20") && !listed.contains(&key), "{listed}");
    let out = run(&["issue", "--reseller", "4000003", "--name", "primary"]).await.unwrap();
    assert!(!out.status.success(), "the name is taken");
    let out = run(&["list", "--reseller", "4999999"]).await.unwrap();
    assert!(!out.status.success(), "no such reseller");
    let out = run(&["revoke", "--reseller", "4000003", "--name", "primary"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(app.state.keys.authenticate(&key, ip(1)).await, Err(KeyError::Invalid));
    let out = run(&["list", "--reseller", "4000003"]).await.unwrap();
    assert!(out.status.success() && out.stdout.is_empty());
}
