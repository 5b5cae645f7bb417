//! `stoney-gateway export` and `import` against real gateways: a round trip (export,
//! import into a directory without customers, export again) gives the same customers,
//! as JSON Lines and as CSV; an interrupted import run again skips what it created;
//! `--dry-run` writes nothing and reports what a create would refuse.

mod common;

use std::io::Cursor;

use serde_json::{json, Value};
use stoney_gateway::mapping::resources::CUSTOMERS;
use stoney_gateway::tools::transfer::{self, Format, ImportOptions, Remote};
use stoney_slapd::SlapdOptions;

use common::*;

fn remote(app: &TestApp) -> Remote {
    Remote { url: app.base.clone(), user: ADMIN.0.into(), password: ADMIN.1.into() }
}

/// The demo directory without its customers: the resellers (with their address and
/// customers container) and the logins.
fn without_customers() -> String {
    let demo = include_str!("../ldif/demo.ldif");
    demo.split("\n\n")
        .filter(|b| !b.contains(",ou=customers,uid=") && b.contains("dn: "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

async fn empty_app() -> TestApp {
    spawn_app_with(SlapdOptions { extra_ldif: vec![without_customers()], ..Default::default() }, |_| {}).await
}

async fn export(app: &TestApp, format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    transfer::export(&remote(app), &CUSTOMERS, format, &mut out).await.expect("export");
    out
}

async fn import(app: &TestApp, format: Format, input: Vec<u8>, dry_run: bool) -> (transfer::Imported, String) {
    let mut report = Vec::new();
    let opts = ImportOptions { format, concurrency: 4, dry_run };
    let n = transfer::import(&remote(app), &CUSTOMERS, Box::new(Cursor::new(input)), opts, &mut report)
        .await
        .expect("import");
    (n, String::from_utf8(report).unwrap())
}

/// The customers of a JSON Lines export as a write would give them (no ids, locations or
/// links), in a stable order.
fn comparable(jsonl: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(jsonl)
        .lines()
        .map(|l| transfer::writable(&CUSTOMERS, &serde_json::from_str::<Value>(l).unwrap()).to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imported_into_a_directory_without_customers_exports_the_same() {
    let source = spawn_app().await;
    let first = export(&source, Format::Jsonl).await;
    assert_eq!(String::from_utf8_lossy(&first).lines().count(), 60, "every demo customer");
    let target = empty_app().await;
    assert_eq!(export(&target, Format::Jsonl).await.len(), 0, "no customers yet");
    let (n, report) = import(&target, Format::Jsonl, first.clone(), false).await;
    assert_eq!(n, transfer::Imported { created: 60, skipped: 0, rejected: 0 }, "{report}");
    let again = export(&target, Format::Jsonl).await;
    assert_eq!(comparable(&again), comparable(&first));

    // The same as CSV.
    let csv = export(&source, Format::Csv).await;
    let target = empty_app().await;
    let (n, report) = import(&target, Format::Csv, csv.clone(), false).await;
    assert_eq!(n.created, 60, "{report}");
    let mut a: Vec<&str> = std::str::from_utf8(&csv).unwrap().lines().collect();
    let again = export(&target, Format::Csv).await;
    let mut b: Vec<&str> = std::str::from_utf8(&again).unwrap().lines().collect();
    assert_eq!(a.remove(0), b.remove(0), "the same columns");
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

fn customers_with_external_ids(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let mut c = company(&format!("Import {i} AG"));
            c["externalID"] = json!(format!("IMP-{i}"));
            format!("{c}\n")
        })
        .collect::<String>()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_run_again_creates_only_what_is_missing() {
    let app = empty_app().await;
    let all = customers_with_external_ids(30);
    let first_ten: Vec<u8> =
        String::from_utf8_lossy(&all).lines().take(10).map(|l| format!("{l}\n")).collect::<String>().into_bytes();
    let (n, _) = import(&app, Format::Jsonl, first_ten, false).await;
    assert_eq!(n.created, 10);
    // The whole file again, through the command.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("customers.jsonl");
    std::fs::write(&file, &all).unwrap();
    let report = dir.path().join("rejected.jsonl");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_stoney-gateway"))
        .args(["import", "--url", &app.base, "--report"])
        .arg(&report)
        .arg(&file)
        .env("STONEY_USER", ADMIN.0)
        .env("STONEY_PASSWORD", ADMIN.1)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("20 created, 10 there already, 0 rejected"), "{said}");
    let res = app.get("/v1/customers?externalID=IMP-*&per_page=1").await;
    assert_eq!(res.headers()["x-total-count"], "30");
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_reports_what_a_create_refuses() {
    let app = empty_app().await;
    let mut input = customers_with_external_ids(3);
    input.extend_from_slice(
        b"{\"isCompany\": true, \"customerName\": \"\", \"belongsToResellerID\": 4000001}\nnot json\n",
    );
    let (n, report) = import(&app, Format::Jsonl, input.clone(), true).await;
    assert_eq!(n, transfer::Imported { created: 3, skipped: 0, rejected: 2 });
    let lines: Vec<Value> = report.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["line"], 4);
    assert_eq!(lines[0]["error"]["error"]["code"], "validation_failed");
    assert!(
        lines[0]["error"]["error"]["details"].as_array().unwrap().iter().any(|d| d["field"] == "billingAddress"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1]["line"], 5);
    assert_eq!(app.get("/v1/customers?per_page=1").await.headers()["x-total-count"], "0", "nothing written");
    // For real, the gateway refuses the same line with the same kind of answer.
    let (n, report) = import(&app, Format::Jsonl, input, false).await;
    assert_eq!((n.created, n.rejected), (3, 2), "{report}");
    let first: Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["status"].clone(), first["error"]["error"]["code"].clone()),
        (json!(422), json!("validation_failed"))
    );
}
