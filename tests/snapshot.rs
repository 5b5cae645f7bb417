//! The index snapshot (`index.snapshot_file`): a gateway that stops saves its indexes
//! with the synchronisation's cookie, and the next start loads them and resumes from
//! that cookie, exact at once (what changed while it was down comes with the resume); a
//! snapshot that does not fit the directory is discarded and the indexes load from it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::Value;
use stoney_gateway::config::Settings;
use stoney_gateway::mapping::resources::CUSTOMERS;
use stoney_slapd::{Slapd, SlapdOptions};

async fn demo_directory() -> Slapd {
    tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd starts")
}

fn with_snapshot(slapd: &Slapd, file: &Path) -> Settings {
    let mut s = settings_for(slapd);
    s.index.snapshot_file = file.display().to_string();
    // Only the one written at the stop.
    s.index.snapshot_interval_secs = 3600;
    s
}

async fn stop(gw: Gateway) {
    let _ = gw.stop.send(());
    gw.served.await.expect("the server task").expect("served");
}

async fn list(gw: &Gateway, query: &str) -> (u64, Vec<Value>) {
    let res = gw
        .client
        .request(Method::GET, format!("{}/v1/customers?{query}", gw.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let total = res.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    (total, res.json().await.unwrap())
}

async fn create(gw: &Gateway, name: &str) -> u64 {
    let res = gw
        .client
        .request(Method::POST, format!("{}/v1/customers", gw.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&company(name))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["id"].as_u64().unwrap()
}

fn dn_of(slapd: &Slapd, id: u64) -> String {
    let out = ldapsearch_on(slapd, &slapd.suffix, &format!("(&(objectClass=sstCustomer)(uid={id}))"), &["dn"]);
    out.lines().find_map(|l| l.strip_prefix("dn: ")).expect("the customer's DN").to_string()
}

fn restored(gw: &Gateway) -> bool {
    gw.state.service(&CUSTOMERS).index().restored()
}

fn snapshot_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("index.snapshot");
    (dir, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_resumes_from_its_snapshot_with_what_changed_meanwhile() {
    let slapd = demo_directory().await;
    let (_dir, file) = snapshot_path();
    let gw = start_gateway(with_snapshot(&slapd, &file)).await;
    assert!(!restored(&gw), "nothing to restore at the first start");
    let gone = create(&gw, "Gone AG").await;
    let renamed = create(&gw, "Renamed AG").await;
    let kept = create(&gw, "Kept AG").await;
    let (before, _) = list(&gw, "per_page=1").await;
    stop(gw).await;
    assert!(file.exists(), "the stop wrote a snapshot");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the snapshot is for the gateway's user only");

    // While the gateway is down, an admin deletes one, renames one and adds one.
    let (gone_dn, renamed_dn) = (dn_of(&slapd, gone), dn_of(&slapd, renamed));
    let added_dn = gone_dn.replace(&format!("uid={gone},"), "uid=6999123,");
    let out = ldapmodify_on(
        &slapd,
        &format!(
            "dn: ou=address,{gone_dn}\nchangetype: delete\n\ndn: {gone_dn}\nchangetype: delete\n\n\
             dn: {renamed_dn}\nchangetype: modify\nreplace: o\no: Offline Renamed AG\n\n\
             dn: {added_dn}\nchangetype: add\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\n\
             uid: 6999123\nsstIsCompany: TRUE\nsstIsActive: TRUE\nsstBelongsToResellerUID: 4000001\no: Added Offline AG\n"
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let gw = start_gateway(with_snapshot(&slapd, &file)).await;
    assert!(restored(&gw), "the indexes came from the snapshot");
    // Exact as soon as it is ready.
    assert_eq!(list(&gw, "per_page=1").await.0, before, "one gone, one added");
    assert_eq!(list(&gw, &format!("id={gone}")).await.0, 0);
    let (n, items) = list(&gw, "customerName=*Offline*&sort=customerName").await;
    assert_eq!(n, 2);
    let ids: Vec<u64> = items.iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [6999123, renamed]);
    assert_eq!(list(&gw, &format!("id={kept}")).await.1[0]["customerName"], "Kept AG");
    // And it goes on following the directory.
    let later = create(&gw, "After Restart AG").await;
    assert_eq!(list(&gw, &format!("id={later}")).await.0, 1);
    assert!(gw.state.resources().iter().all(|r| r.index().restored()), "every resource's index came back");
    stop(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_directory_or_a_damaged_one_is_discarded() {
    let (one, other) = (demo_directory().await, demo_directory().await);
    let (_dir, file) = snapshot_path();
    let gw = start_gateway(with_snapshot(&one, &file)).await;
    let only_there = create(&gw, "Only On One AG").await;
    stop(gw).await;
    assert!(file.exists());
    let saved = std::fs::read(&file).unwrap();

    // The same base and layout, but another directory: its content is not the saved one.
    let gw = start_gateway(with_snapshot(&other, &file)).await;
    assert!(!restored(&gw), "a snapshot of another directory is not used");
    assert_eq!(list(&gw, &format!("id={only_there}")).await.0, 0);
    let (n, _) = list(&gw, "per_page=1").await;
    stop(gw).await;

    // Damaged: cut short, or bytes changed in the middle.
    for damaged in [saved[..saved.len() / 2].to_vec(), {
        let mut d = saved.clone();
        let mid = d.len() / 3;
        for b in &mut d[mid..mid + 64] {
            *b = !*b;
        }
        d
    }] {
        std::fs::write(&file, &damaged).unwrap();
        let gw = start_gateway(with_snapshot(&one, &file)).await;
        assert!(!restored(&gw), "a damaged snapshot is not used");
        assert_eq!(list(&gw, &format!("id={only_there}")).await.0, 1);
        assert_eq!(list(&gw, "per_page=1").await.0, n + 1);
        stop(gw).await;
    }
}

/// The directory's database put back from a backup taken before the snapshot (slapcat
/// of the stopped server, then slapadd: the same entries and entryUUIDs, an older
/// state): the saved cookie is ahead of the directory, so the snapshot is not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_a_directory_put_back_from_a_backup_is_not_served() {
    let mut slapd = demo_directory().await;
    let tool = |s: &Slapd, name: &str| {
        let mut cmd = std::process::Command::new(stoney_slapd::server_tool(name).unwrap());
        cmd.arg("-F").arg(s.dir.join("slapd.d")).args(["-b", &s.suffix]);
        cmd
    };
    let (_dir, file) = snapshot_path();
    // A write, then the backup of the stopped server (which wrote its contextCSN).
    let gw = start_gateway(settings_for(&slapd)).await;
    let in_backup = create(&gw, "In Backup AG").await;
    stop(gw).await;
    slapd.stop();
    let backup = tool(&slapd, "slapcat").args(["-o", "ldif-wrap=no"]).output().expect("slapcat runs");
    assert!(backup.status.success(), "slapcat: {backup:?}");
    assert!(String::from_utf8_lossy(&backup.stdout).contains("contextCSN"), "the backup says how far it is");
    slapd.restart().expect("slapd starts again");

    let gw = start_gateway(with_snapshot(&slapd, &file)).await;
    let after_backup = [create(&gw, "After Backup AG").await, create(&gw, "Also After AG").await];
    let (with_them, _) = list(&gw, "per_page=1").await;
    stop(gw).await;
    assert!(file.exists());

    slapd.stop();
    for f in std::fs::read_dir(slapd.dir.join("db")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let out = with_input(tool(&slapd, "slapadd").arg("-q"), &String::from_utf8(backup.stdout).unwrap());
    assert!(out.status.success(), "slapadd: {out:?}");
    slapd.restart().expect("slapd starts again");

    let gw = start_gateway(with_snapshot(&slapd, &file)).await;
    assert!(!restored(&gw), "a snapshot ahead of the directory is not used");
    for id in after_backup {
        assert_eq!(list(&gw, &format!("id={id}")).await.0, 0, "customer {id} is not in the directory");
    }
    assert_eq!(list(&gw, &format!("id={in_backup}")).await.0, 1);
    assert_eq!(list(&gw, "per_page=1").await.0, with_them - 2);
    stop(gw).await;
}

/// Nothing changed while the gateway was down: the resume brings no new cookie, and the
/// lists are fresh at once with the snapshot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_nothing_changed_meanwhile_lists_at_once() {
    let slapd = demo_directory().await;
    let (_dir, file) = snapshot_path();
    let gw = start_gateway(with_snapshot(&slapd, &file)).await;
    let id = create(&gw, "Before The Stop AG").await;
    let (before, _) = list(&gw, "per_page=1").await;
    stop(gw).await;

    let gw = start_gateway(with_snapshot(&slapd, &file)).await;
    assert!(restored(&gw));
    let res = gw
        .client
        .get(format!("{}/v1/customers?per_page=1", gw.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the first list after the restart");
    assert_eq!(res.headers()["x-total-count"].to_str().unwrap(), before.to_string());
    assert_eq!(list(&gw, &format!("id={id}")).await.0, 1);
    stop(gw).await;
}

/// A restored index serves before the resume is over (a resume can take long: a present
/// phase naming every entry, when slapd restarted and lost its session log): lists the
/// snapshot is exact for are answered at once, one after a write the resume has not
/// brought yet waits for it, and that wait does not begin the resume again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_index_serves_while_the_resume_is_under_way_and_waits_for_what_it_lacks() {
    let slapd = demo_directory().await;
    let proxy = StallingProxy::start(slapd.listen).await;
    let (_dir, file) = snapshot_path();
    let settings = || {
        let mut s = with_snapshot(&slapd, &file);
        s.ldap.urls = vec![proxy.url.clone()];
        s.index.catch_up_ms = 300;
        s
    };
    let gw = start_gateway(settings()).await;
    let before_stop = create(&gw, "Before The Stop AG").await;
    let (before, _) = list(&gw, "per_page=1").await;
    stop(gw).await;

    proxy.hold_sync(true);
    let syncs = proxy.syncs_seen();
    let gw = start_gateway(settings()).await;
    assert!(restored(&gw));
    assert_eq!(list(&gw, "per_page=1").await.0, before, "served from the snapshot, the resume held back");
    assert_eq!(list(&gw, &format!("id={before_stop}")).await.0, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.syncs_seen() == syncs {
        assert!(std::time::Instant::now() < deadline, "the gateway did not send its resume");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A write the held resume cannot bring: the list waits, then says so.
    let during = create(&gw, "During The Resume AG").await;
    let res = gw
        .client
        .get(format!("{}/v1/customers?per_page=1", gw.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "never the snapshot's state after a newer write");
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["status"], 503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(proxy.syncs_seen(), syncs + 1, "the list that waited did not begin the resume again");

    proxy.hold_sync(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = gw
            .client
            .get(format!("{}/v1/customers?id={during}", gw.base))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .send()
            .await
            .unwrap();
        if res.status() == 200 && res.headers()["x-total-count"] == "1" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the resume did not bring the write ({})", res.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(list(&gw, "per_page=1").await.0, before + 1);
    stop(gw).await;
}

/// The check that follows a resume, once it is over: what it read.
async fn checked(gw: &Gateway) -> stoney_gateway::directory::sync::CheckStats {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(stats) = gw.state.sync.last_check() {
            return stats;
        }
        assert!(std::time::Instant::now() < deadline, "the check after the resume ends");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn subscriptions(gw: &Gateway, path: &str, body: &str) -> (u16, Value) {
    let res = gw
        .client
        .post(format!("{}/subscriptions/v1/customers{path}", gw.base))
        .header("X-Subscription-Key", stoney_slapd::DEMO_SUBSCRIPTION_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The check after a resume reads every entry's entryUUID and entryCSN, and in full
/// only the entries that changed since the index was last exact (a load from nothing or
/// a check; here with no margin before it) and those it lacks. The contracts are not in
/// the snapshot, so after a restore the check reads them all, and a contract's next
/// change is an update with its state before, not a creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_the_check_reads_in_full_only_what_changed_since_the_index_was_exact() {
    let mut slapd = demo_directory().await;
    let (_dir, file) = snapshot_path();
    let settings = |slapd: &Slapd| {
        let mut s = with_snapshot(slapd, &file);
        s.index.check_margin_secs = 0;
        s
    };
    let gw = start_gateway(settings(&slapd)).await;
    let signup = serde_json::json!({"customer": {"customerNumber": "c77", "salutation": "MR", "firstName": "Ray",
        "lastName": "Ankunding", "email": "ray@example.com", "language": "de", "customerCategory": "PERSON",
        "address": {"street": "Bergnaum Mountains", "streetNumber": "1", "postalCode": "97687",
            "postalPlace": "Schadenville", "countryCode": "DE"}}});
    assert_eq!(subscriptions(&gw, "", &signup.to_string()).await.0, 200);
    let order = r#"{"orderReference": "77", "orderDate": "2022-02-01", "currency": "EUR", "items": [
      {"productID": "S1", "description": "Gym", "quantity": 1, "grossUnitPrice": 17.99, "netUnitPrice": 15.12,
       "vatAmount": 2.87, "vatPercent": 0.19, "contractReference": "CON77"}]}"#;
    let (status, body) = subscriptions(&gw, "/c77/orders", order).await;
    assert_eq!(status, 200, "{body}");
    let kept = create(&gw, "Kept AG").await;
    assert!(gw.state.sync.last_check().is_none(), "no check after a load from nothing");
    stop(gw).await;

    // The first restart reads in full what was written after the load began.
    let gw = start_gateway(settings(&slapd)).await;
    assert!(restored(&gw));
    let first = checked(&gw).await;
    assert!(first.read_in_full >= 4, "the customers written and the contract: {first:?}");
    assert!(first.read_in_full * 4 < first.entries, "not the demo's entries: {first:?}");
    stop(gw).await;

    // While the gateway is down, an admin renames one, and adds one with an entryCSN of
    // long ago (as a restore of an LDIF export may): old, but unknown to the index.
    let out = ldapmodify_on(
        &slapd,
        &format!("dn: {}\nchangetype: modify\nreplace: o\no: Offline Renamed AG\n", dn_of(&slapd, kept)),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let old_dn = dn_of(&slapd, kept).replace(&format!("uid={kept},"), "uid=6999124,");
    let old = format!(
        "dn: {old_dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\n\
         uid: 6999124\nsstIsCompany: TRUE\nsstIsActive: TRUE\nsstBelongsToResellerUID: 4000001\no: Offline Old AG\n\
         entryUUID: 0f8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a99\nentryCSN: 20200101000000.000000Z#000000#000#000000\n\n"
    );
    tokio::task::block_in_place(|| {
        slapd.kill();
        // slapadd keeps the entryCSN as given.
        let mut add = std::process::Command::new(stoney_slapd::server_tool("slapadd").unwrap());
        add.arg("-F").arg(slapd.dir.join("slapd.d")).args(["-b", &slapd.suffix, "-q"]);
        let out = with_input(&mut add, &old);
        assert!(out.status.success(), "slapadd: {out:?}");
        slapd.restart().expect("slapd comes back");
    });
    let gw = start_gateway(settings(&slapd)).await;
    let second = checked(&gw).await;
    assert_eq!(second.entries, first.entries + 1);
    // The renamed entry, the old one the index lacks, and the contract, which the
    // snapshot does not hold.
    assert_eq!(second.read_in_full, 3, "{second:?}");
    let (n, items) = list(&gw, "customerName=Offline*&sort=customerName").await;
    let ids: Vec<u64> = items.iter().filter_map(|i| i["id"].as_u64()).collect();
    assert_eq!((n, ids), (2, vec![6999124, kept]));

    let res = gw.client.get(format!("{}/v1/customers?per_page=1", gw.base)).basic_auth(ADMIN.0, Some(ADMIN.1));
    let res = res.send().await.unwrap();
    let at = res.headers()["x-changes-position"].to_str().unwrap().to_string();
    let activate = r#"{"requestedActivationDate": "2022-02-15"}"#;
    assert_eq!(subscriptions(&gw, "/c77/contracts/CON77/activate", activate).await.0, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let res = gw
            .client
            .get(format!("{}/v1/changes?since={at}&wait=1&resource=contracts", gw.base))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let events = body["changes"].as_array().cloned().unwrap_or_default();
        if !events.is_empty() || std::time::Instant::now() > deadline {
            break events;
        }
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "org.stoney.contract.updated", "{events:?}");
    assert_eq!(events[0]["data"]["changed"], serde_json::json!({"status": "ACTIVE", "activationDate": "2022-02-15"}));
    stop(gw).await;

    // Verified on one server says nothing of another, which may lack a write the first
    // had: there the check reads every entry in full (here the same server under
    // another name).
    let mut elsewhere = settings(&slapd);
    elsewhere.ldap.urls = vec![slapd.url.replace("127.0.0.1", "localhost")];
    assert_ne!(elsewhere.ldap.urls[0], slapd.url);
    let gw = start_gateway(elsewhere).await;
    assert!(restored(&gw));
    let third = checked(&gw).await;
    assert_eq!(third.read_in_full, third.entries, "{third:?}");
    stop(gw).await;
}
