//! The gateway on a real throwaway slapd: health, readiness, the directory tree of
//! SPEC section 1 with the demo data, and the launcher's clean-up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use stoney_slapd::{Slapd, SlapdOptions};

#[tokio::test]
async fn health_and_ready_answer_200() {
    let app = spawn_app().await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    let res = app.get("/ready").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json; charset=UTF-8");
}

#[tokio::test]
async fn the_directory_has_the_spec_layout_and_the_demo_data() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let out = app.ldapsearch(&s, "(objectClass=*)", &["dn"]);
    for dn in [
        format!("dn: ou=administration,{s}"),
        format!("dn: cn=nextfreeuid,ou=administration,{s}"),
        format!("dn: ou=people,{s}"),
        format!("dn: ou=reseller,{s}"),
        format!("dn: uid=4000001,ou=reseller,{s}"),
        format!("dn: ou=customers,uid=4000001,ou=reseller,{s}"),
        format!("dn: uid=5000001,ou=customers,uid=4000001,ou=reseller,{s}"),
        format!("dn: ou=address,uid=5000001,ou=customers,uid=4000001,ou=reseller,{s}"),
    ] {
        assert!(out.lines().any(|l| l == dn), "{dn} missing");
    }
    let customers = app.ldapsearch(&format!("ou=reseller,{s}"), "(objectClass=sstCustomer)", &["dn"]);
    assert_eq!(customers.lines().filter(|l| l.starts_with("dn: ")).count(), 60);
    let resellers = app.ldapsearch(&format!("ou=reseller,{s}"), "(objectClass=sstReseller)", &["dn"]);
    assert_eq!(resellers.lines().filter(|l| l.starts_with("dn: ")).count(), 3);
    let shipping = app.ldapsearch(&format!("ou=reseller,{s}"), "(ou=shipping)", &["dn"]);
    assert!(shipping.lines().filter(|l| l.starts_with("dn: ")).count() >= 10);
    let counter = app.ldapsearch(&format!("cn=nextfreeuid,ou=administration,{s}"), "(objectClass=*)", &["uidNumber"]);
    assert!(counter.contains("uidNumber: 5001000"), "{counter}");
}

#[tokio::test]
async fn ready_answers_503_quickly_when_the_directory_is_down() {
    let mut app = spawn_app().await;
    assert_eq!(app.get("/ready").await.status(), 200);
    app.slapd.stop();
    let started = Instant::now();
    let res = app.get("/ready").await;
    let took = started.elapsed();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["status"], 503);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // A data request fails the same way, never with a 500.
    assert_eq!(app.get("/v1/customers/5000001").await.status(), 503);
}

#[test]
fn the_launcher_leaves_no_process_or_folder_behind() {
    let slapd = Slapd::start(SlapdOptions::default()).expect("slapd starts");
    let pid = slapd.pid().expect("pid");
    let dir = slapd.dir.clone();
    assert!(dir.exists());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(slapd);
    assert!(!dir.exists(), "temp folder removed");
    // The process is reaped: no /proc entry (not even a zombie).
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "slapd {pid} still there");
}

#[test]
fn two_launchers_run_side_by_side_on_different_ports() {
    let a = Slapd::start(SlapdOptions::default()).expect("a");
    let b = Slapd::start(SlapdOptions::default()).expect("b");
    assert_ne!(a.port, b.port);
    assert!(a.startup < Duration::from_secs(5) && b.startup < Duration::from_secs(5));
}

#[test]
fn a_value_the_gateway_cannot_work_with_stops_it_at_start_naming_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stoney-gateway"))
        .arg("serve")
        .env("STONEY__LDAP__POOL_SIZE", "0")
        .env("STONEY__LISTEN", "127.0.0.1:0")
        .output()
        .expect("the gateway runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ldap.pool_size must be at least 1"), "{err}");
}
