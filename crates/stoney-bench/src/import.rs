//! Import throughput: `stoney-gateway import` of many customers through the REST API,
//! next to `ldapadd` of the same entries (each customer and its billing address) on the
//! same server, in the same run.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde_json::json;
use stoney_slapd::{Slapd, SlapdOptions};

use crate::common::*;

fn customer(i: u64) -> serde_json::Value {
    json!({"isCompany": true, "isActive": true, "customerName": format!("Import {i} AG"), "externalID": format!("IMP-{i}"),
        "belongsToResellerID": 4000001 + i % 3,
        "billingAddress": {"gender": "f", "givenName": "Ada", "surname": "Admin", "postalAddress": "Handweg 1",
            "countryCode": "CH", "postalCode": format!("{}", 1000 + i % 9000), "localityName": "Bern",
            "preferredLanguage": "de-CH", "mail": format!("ada{i}@example.com")}})
}

/// The entries the gateway writes for `customer(i)`, as LDIF, with uid `uid`.
fn ldif(i: u64, uid: u64, suffix: &str) -> String {
    let r = 4000001 + i % 3;
    let dn = format!("uid={uid},ou=customers,uid={r},ou=reseller,{suffix}");
    format!(
        "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: {uid}\n\
         sstIsCompany: TRUE\nsstIsActive: TRUE\nsstBelongsToResellerUID: {r}\no: Import {i} AG\nsstExternalID: RAW-{i}\n\n\
         dn: ou=address,{dn}\nobjectClass: top\nobjectClass: organizationalUnit\nobjectClass: sstAddress\nou: address\n\
         sstGender: f\ngivenName: Ada\nsn: Admin\npostalAddress: Handweg 1\nc: CH\npostalCode: {}\nl: Bern\n\
         preferredLanguage: de-CH\nmail: ada{i}@example.com\n\n",
        1000 + i % 9000
    )
}

pub async fn import(out: &Path, customers: u64, concurrency: usize) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let gw = start_gateway(&slapd).await;
    let dir = tempfile::tempdir().unwrap();

    // Raw: ldapadd of the same entries, one connection, as the gateway's account.
    let raw_file = dir.path().join("raw.ldif");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&raw_file).unwrap());
    for i in 0..customers {
        f.write_all(ldif(i, 7_000_000 + i, &slapd.suffix).as_bytes()).unwrap();
    }
    drop(f);
    eprintln!("ldapadd of {customers} customers");
    let started = Instant::now();
    let status = std::process::Command::new("ldapadd")
        .args(["-x", "-H", &slapd.url, "-D", &slapd.gateway_dn, "-w", &slapd.gateway_password, "-f"])
        .arg(&raw_file)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ldapadd runs");
    assert!(status.success(), "ldapadd");
    let raw_secs = started.elapsed().as_secs_f64();

    // The gateway: the import command on a JSON Lines file.
    let file = dir.path().join("customers.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for i in 0..customers {
        writeln!(f, "{}", customer(i)).unwrap();
    }
    drop(f);
    eprintln!("stoney-gateway import of {customers} customers");
    let started = Instant::now();
    let res = tokio::process::Command::new(gateway_binary())
        .args(["import", "--url", &gw.base, "--concurrency", &concurrency.to_string(), "--report"])
        .arg(dir.path().join("rejected.jsonl"))
        .arg(&file)
        .env("STONEY_USER", "admin@stoney-cloud.org")
        .env("STONEY_PASSWORD", "admin-secret")
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .expect("the import runs");
    let gw_secs = started.elapsed().as_secs_f64();
    let said = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "import: {said}");
    let summary = said.lines().last().unwrap_or_default().to_string();
    let (peak, _) = memory_mib(gw.child.id());
    let body = format!(
        "## Import: `stoney-gateway import` of {customers} customers (`stoney-bench import`)\n\n\
         {date}; {machine}. slapd (with the demo data), the gateway and the import command share the \
         machine. Each customer is a company with a billing address, spread over the three demo resellers, \
         each with an externalID.\n\n\
         | run | time s | customers/s | vs raw |\n|---|---|---|---|\n\
         | raw: `ldapadd` of the same entries (customer and billing address, one connection) | {raw_secs:.1} | {:.0} | — |\n\
         | `stoney-gateway import --concurrency {concurrency}` (each customer one POST: validation, the reseller checked, the id counter, a transaction of both entries) | {gw_secs:.1} | {:.0} | {:.0}% |\n\n\
         The import said: `{summary}`. Gateway peak RSS: {peak} MiB.\n",
        customers as f64 / raw_secs,
        customers as f64 / gw_secs,
        100.0 * raw_secs / gw_secs,
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "import", &body);
}
