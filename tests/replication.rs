//! Two directory servers in multi-provider replication with the gateway on top: failover
//! to the other server when one dies, fail-back when it returns, and every write the
//! gateway acknowledged present on both servers afterwards, once, with unique ids.

mod common;

use std::time::{Duration, Instant};

use stoney_slapd::{Slapd, SlapdOptions};

use common::{ldapmodify_on as ldapmodify, ldapsearch_on as ldapsearch};

#[test]
fn two_launched_servers_replicate_each_other() {
    let servers =
        Slapd::start_replicated(2, SlapdOptions { demo_data: true, ..Default::default() }).expect("two servers");
    let (a, b) = (&servers[0], &servers[1]);
    let count = |s: &Slapd| {
        ldapsearch(s, &s.suffix, "(objectClass=sstCustomer)", &["1.1"]).lines().filter(|l| l.starts_with("dn:")).count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(b) != 60 {
        assert!(Instant::now() < deadline, "the second server got the data: {}", count(b));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count(a), 60);

    // The gateway's service account reads each server's write log: a delete made on
    // the first server is there, on the second as replicated. slapd 2.6 logs it under
    // the entry's UUID, but a replicated delete sometimes only under its DN.
    let dn = format!("ou=gone,{}", a.suffix);
    let ldif = format!("dn: {dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: gone\n");
    assert!(ldapmodify(a, &ldif).status.success());
    let uuid = ldapsearch(a, &dn, "(objectClass=*)", &["entryUUID"])
        .lines()
        .find_map(|l| l.strip_prefix("entryUUID: ").map(str::to_string))
        .expect("the new entry has a UUID");
    assert!(ldapmodify(a, &format!("dn: {dn}\nchangetype: delete\n")).status.success());
    let filter = format!("(&(reqType=delete)(|(reqEntryUUID={uuid})(reqDN={dn})))");
    for s in [a, b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = std::process::Command::new("ldapsearch")
                .args(["-x", "-LLL", "-H", &s.url, "-D", &s.gateway_dn, "-w", &s.gateway_password])
                .args(["-b", "cn=accesslog", &filter, "reqDN"])
                .output()
                .expect("ldapsearch runs");
            if String::from_utf8_lossy(&out.stdout).contains(&format!("reqDN: {dn}")) {
                break;
            }
            assert!(Instant::now() < deadline, "the delete is in the write log of {}: {out:?}", s.url);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits up to `secs` seconds for `done`, and fails with `what` if it does not come.
async fn eventually(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a company customer through the gateway as the provider admin; its id.
async fn create_customer(gw: &common::Gateway, name: &str) -> u64 {
    let res = gw
        .client
        .post(format!("{}/v1/customers", gw.base))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .json(&common::company(name))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    res.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap()
}

/// Deletes a customer through the gateway as the provider admin.
async fn delete_customer(gw: &common::Gateway, id: u64) {
    let res = gw
        .client
        .delete(format!("{}/v1/customers/{id}", gw.base))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
}

/// Customer uid → (organisation name, billing locality), and uids seen more than once.
fn customers(s: &Slapd) -> (std::collections::BTreeMap<u64, (String, String)>, Vec<u64>) {
    let base = format!("ou=reseller,{}", s.suffix);
    let mut names = std::collections::BTreeMap::new();
    let mut dups = Vec::new();
    let mut current: Option<u64> = None;
    for line in ldapsearch(s, &base, "(objectClass=sstCustomer)", &["uid", "o"]).lines() {
        if let Some(v) = line.strip_prefix("uid: ") {
            let id: u64 = v.parse().unwrap();
            if names.insert(id, (String::new(), String::new())).is_some() {
                dups.push(id);
            }
            current = Some(id);
        } else if let (Some(v), Some(id)) = (line.strip_prefix("o: "), current) {
            names.get_mut(&id).unwrap().0 = v.to_string();
        } else if line.is_empty() {
            current = None;
        }
    }
    let mut dn_id: Option<u64> = None;
    for line in ldapsearch(s, &base, "(&(objectClass=sstAddress)(ou=address))", &["l"]).lines() {
        if let Some(dn) = line.strip_prefix("dn: ") {
            dn_id = dn.split(',').nth(1).and_then(|r| r.strip_prefix("uid=")).and_then(|v| v.parse().ok());
        } else if let (Some(v), Some(id)) = (line.strip_prefix("l: "), dn_id) {
            if let Some(e) = names.get_mut(&id) {
                e.1 = v.to_string();
            }
        }
    }
    (names, dups)
}

/// The customers that have a billing entry.
fn billed(s: &Slapd) -> std::collections::BTreeSet<u64> {
    let base = format!("ou=reseller,{}", s.suffix);
    ldapsearch(s, &base, "(&(objectClass=sstAddress)(ou=address))", &["1.1"])
        .lines()
        .filter_map(|l| l.strip_prefix("dn: "))
        .filter_map(|dn| dn.split(',').nth(1).and_then(|r| r.strip_prefix("uid=")).and_then(|v| v.parse().ok()))
        .collect()
}

fn context_csn(s: &Slapd) -> Vec<String> {
    let out = std::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &s.url, "-D", &s.root_dn, "-w", &s.root_password])
        .args(["-s", "base", "-b", &s.suffix, "(objectClass=*)", "contextCSN"])
        .output()
        .expect("ldapsearch runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("contextCSN: ").map(str::to_string))
        .collect()
}

#[derive(Debug, Default)]
struct Log {
    /// Acknowledged creates: id and name.
    created: Vec<(u64, String)>,
    /// Per customer, the localities tried in order, with whether the gateway said 200.
    updates: std::collections::BTreeMap<u64, Vec<(String, bool)>>,
    statuses: std::collections::BTreeMap<u16, usize>,
    /// Bodies of the answers that were not 2xx.
    errors: Vec<String>,
    /// Names of creates whose answer was lost (503): they may or may not have happened.
    unacknowledged: Vec<String>,
    /// Deleted customers, with whether the gateway said 200 (else the answer was lost).
    deleted: Vec<(u64, bool)>,
}

impl Log {
    /// Counts an answer's status and keeps the body of one that is not 2xx.
    async fn answer(log: &std::sync::Mutex<Log>, request: String, res: reqwest::Response) -> u16 {
        let status = res.status().as_u16();
        let body = if status >= 300 { res.text().await.unwrap_or_default() } else { String::new() };
        let mut l = log.lock().unwrap();
        *l.statuses.entry(status).or_default() += 1;
        if status >= 300 {
            l.errors.push(format!("{request} {status} {body}"));
        }
        status
    }
}

/// A running write load.
struct Load {
    log: std::sync::Arc<std::sync::Mutex<Log>>,
    /// Ends the load once set.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds each writer pauses before a create.
    pace: std::sync::Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Four writers creating customers and changing their localities until stopped.
fn start_load(gw: &common::Gateway) -> Load {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // A bounded load: a consumer applies each entry of a transaction on its own, so
    // writes at full speed would leave a restarted server's replication behind for as
    // long as they last. A pause between writes, rather than a fixed rate, also keeps a
    // slow machine from being loaded beyond what it answers.
    let pace = Arc::new(AtomicU64::new(40));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (client, base, log, stop) = (gw.client.clone(), gw.base.clone(), log.clone(), stop.clone());
        let pace = pace.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine: Vec<u64> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(pace.load(Ordering::Relaxed))).await;
                n += 1;
                let name = format!("Task {t} Write {n} AG");
                let res = client
                    .post(format!("{base}/v1/customers"))
                    .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                    .json(&common::company(&name))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                *log.lock().unwrap().statuses.entry(status).or_default() += 1;
                if status >= 300 {
                    let body = res.text().await.unwrap_or_default();
                    let mut l = log.lock().unwrap();
                    l.errors.push(format!("POST {status} {body}"));
                    l.unacknowledged.push(name);
                    continue;
                }
                if status == 201 {
                    let id = res.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap();
                    log.lock().unwrap().created.push((id, name));
                    mine.push(id);
                }
                if let Some(&id) = mine.get(n % 3) {
                    let place = format!("Ort {t}-{n}");
                    let res = client
                        .patch(format!("{base}/v1/customers/{id}"))
                        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                        .json(&serde_json::json!({"billingAddress": {"localityName": place}}))
                        .send()
                        .await
                        .unwrap();
                    let status = Log::answer(&log, format!("PATCH {id}"), res).await;
                    log.lock().unwrap().updates.entry(id).or_default().push((place, status == 200));
                }
                // Now and then one of the older customers goes (the first three stay
                // and take the updates).
                if n % 7 == 0 && mine.len() > 3 {
                    let id = mine.remove(3);
                    let res = client
                        .delete(format!("{base}/v1/customers/{id}"))
                        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                        .send()
                        .await
                        .unwrap();
                    let status = Log::answer(&log, format!("DELETE {id}"), res).await;
                    log.lock().unwrap().deleted.push((id, status == 200));
                }
            }
        }));
    }
    Load { log, stop, pace, tasks }
}

async fn replicated_gateway() -> (Vec<Slapd>, common::Gateway) {
    replicated_gateway_with(0).await
}

/// `bulk` more customers (with their billing entries) than the demo data, under the
/// second reseller, uids from 5100000.
fn bulk_ldif(suffix: &str, bulk: u64) -> String {
    let mut out = String::new();
    for i in 0..bulk {
        let uid = 5_100_000 + i;
        let dn = format!("uid={uid},ou=customers,uid=4000002,ou=reseller,{suffix}");
        out.push_str(&format!(
            "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: {uid}\n\
             sstIsCompany: TRUE\nsstIsActive: TRUE\nsstBelongsToResellerUID: 4000002\no: Bulk {i} AG\n\n\
             dn: ou=address,{dn}\nobjectClass: top\nobjectClass: organizationalUnit\nobjectClass: sstAddress\n\
             ou: address\nsstGender: f\ngivenName: Ada\nsn: Admin\npostalAddress: Handweg 1\npostalCode: 3000\n\
             l: Bern\nc: CH\npreferredLanguage: de-CH\nmail: ada@example.com\n\n"
        ));
    }
    out
}

async fn replicated_gateway_with(bulk: u64) -> (Vec<Slapd>, common::Gateway) {
    replicated_gateway_tweaked(bulk, |_| ()).await
}

async fn replicated_gateway_tweaked(
    bulk: u64,
    tweak: impl FnOnce(&mut stoney_gateway::config::Settings),
) -> (Vec<Slapd>, common::Gateway) {
    let servers = tokio::task::spawn_blocking(move || {
        let extra = if bulk > 0 { vec![bulk_ldif(stoney_slapd::DEFAULT_SUFFIX, bulk)] } else { vec![] };
        Slapd::start_replicated(2, SlapdOptions { demo_data: true, extra_ldif: extra, ..Default::default() })
    })
    .await
    .unwrap()
    .expect("two servers");
    let want = 60 + bulk as usize;
    eventually(60, "the second server got the data", || customers(&servers[1]).0.len() == want).await;
    let mut settings = common::settings_for(&servers[0]);
    settings.ldap.urls = vec![servers[0].url.clone(), servers[1].url.clone()];
    settings.ldap.failback_interval_ms = 200;
    settings.ldap.failback_after_ms = 2000;
    tweak(&mut settings);
    let gw = common::start_gateway(settings).await;
    assert_eq!(gw.state.directory.current_server(), 0);
    (servers, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_server_dies_writes_go_on_against_the_other_with_unique_ids() {
    use std::sync::atomic::Ordering;
    let (mut servers, gw) = replicated_gateway().await;
    let Load { log, stop, tasks, .. } = start_load(&gw);
    let written = || log.lock().unwrap().created.len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    tokio::task::block_in_place(|| servers[0].kill());
    let at_kill = written();
    eventually(10, "writes go on after the failover", || written() >= at_kill + 40).await;
    assert_eq!(gw.state.directory.current_server(), 1);
    assert_eq!(gw.state.directory.failovers(), 1);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let log = std::sync::Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    let unexpected: Vec<_> = log.statuses.iter().filter(|(s, _)| ![200, 201, 503].contains(*s)).collect();
    assert!(unexpected.is_empty(), "only in-flight failures (503): {:?} {:#?}", log.statuses, log.errors);
    let mut ids: Vec<u64> = log.created.iter().map(|(id, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), log.created.len(), "every acknowledged create got its own id");
    // What was acknowledged after the failover is on the surviving server (what the
    // dead one acknowledged just before may not have reached it yet; the four writers may
    // each have had one answer from it in flight when it died).
    let (b, dups) = customers(&servers[1]);
    assert!(dups.is_empty(), "no uid twice: {dups:?}");
    for (id, name) in &log.created[at_kill + 4..] {
        if log.deleted.iter().any(|(d, _)| d == id) {
            continue;
        }
        assert_eq!(b.get(id).map(|e| &e.0), Some(name), "customer {id} acknowledged after the failover");
    }
    let _ = gw.stop.send(());
}

/// The whole cycle: a server dies in the middle of a write load, comes back, the gateway
/// moves back to it, and every acknowledged write is on both servers, once, with unique
/// ids. In about one run in four the returning server's replication misses a customer
/// created on the other one while it started (slapd 2.5 with transactions, see
/// `directory::reconcile`); the gateway's comparison finds it and has it sent again
/// before it moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_every_acknowledged_write_once_on_both_servers() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    let (mut servers, gw) = replicated_gateway().await;
    let Load { log, stop, pace, tasks } = start_load(&gw);
    let written = || log.lock().unwrap().created.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = written();
    tokio::task::block_in_place(|| servers[0].kill());
    assert!(std::net::TcpStream::connect(servers[0].listen).is_err(), "the first server is down");
    // Writes go on against the other server.
    eventually(10, "writes go on after the failover", || written() >= before_kill + 20).await;
    assert_eq!(gw.state.directory.current_server(), 1);
    eventually(10, "the index's synchronisation goes to the other server too", || gw.state.sync.server() == 1).await;
    // The first server comes back under a lighter load, which a slow machine's
    // replication can catch up with: the gateway moves back only to a server that keeps up.
    pace.store(150, Ordering::Relaxed);
    tokio::task::block_in_place(|| servers[0].restart()).expect("the first server comes back");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.state.directory.current_server() != 0 {
        if Instant::now() > deadline {
            let pool = gw.state.directory.pool().manager();
            panic!(
                "the gateway moves back to the first server; not yet compared: {:?}, entries sent again: {}, \
                 contextCSN of the first: {:?}, of the second: {:?}",
                pool.unchecked(),
                pool.resent(),
                context_csn(&servers[0]),
                context_csn(&servers[1])
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The customer index's synchronisation moves back with the gateway.
    eventually(10, "the index follows the gateway back to the first server", || gw.state.sync.server() == 0).await;
    let after_failback = written();
    eventually(10, "writes go on after the fail-back", || written() >= after_failback + 20).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    let unexpected: Vec<_> = log.statuses.iter().filter(|(s, _)| ![200, 201, 503].contains(*s)).collect();
    assert!(unexpected.is_empty(), "only in-flight failures (503): {:?} {:#?}", log.statuses, log.errors);
    assert!(gw.state.directory.failovers() >= 2);

    // Both servers converge on the same customers, except for creates whose answer was
    // lost: slapd 2.5 hands a transaction's operations to its syncrepl consumers as they
    // run, before the commit, so a server that dies in the middle of a commit can leave
    // its peer with a customer it never committed itself (and never acknowledged).
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a, b) = loop {
        let (a, b) = (customers(&servers[0]), customers(&servers[1]));
        let only_a: Vec<_> = a.0.iter().filter(|(k, v)| b.0.get(k) != Some(v)).collect();
        let only_b: Vec<_> = b.0.iter().filter(|(k, v)| a.0.get(k) != Some(v)).collect();
        let unexplained: Vec<_> =
            only_a.iter().chain(&only_b).filter(|(_, (name, _))| !log.unacknowledged.contains(name)).collect();
        if unexplained.is_empty() {
            if !only_a.is_empty() || !only_b.is_empty() {
                eprintln!("on one server only, from creates whose answer was lost: {only_a:?} {only_b:?}");
            }
            break (a, b);
        }
        if Instant::now() > deadline {
            panic!("the servers converge: only on the first {only_a:?}, only on the second {only_b:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(a.1.is_empty() && b.1.is_empty(), "no uid twice: {:?} {:?}", a.1, b.1);
    let mut ids: Vec<u64> = log.created.iter().map(|(id, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), log.created.len(), "every acknowledged create got its own id");
    for (id, acknowledged) in &log.deleted {
        assert_eq!(a.0.get(id), b.0.get(id), "deleted customer {id} is the same on both servers");
        if *acknowledged {
            assert!(!a.0.contains_key(id), "customer {id}, deleted, is gone");
        }
    }
    for (id, name) in &log.created {
        assert_eq!(a.0.get(id), b.0.get(id), "acknowledged customer {id} is the same on both servers");
        if log.deleted.iter().any(|(d, _)| d == id) {
            continue;
        }
        let (o, l) = a.0.get(id).unwrap_or_else(|| panic!("acknowledged customer {id} is missing"));
        assert_eq!(o, name, "customer {id} is the one that was created");
        if let Some(tries) = log.updates.get(id) {
            // The last acknowledged locality, or one tried after it whose answer was lost.
            let last_ok = tries.iter().rposition(|(_, ok)| *ok);
            let mut allowed: Vec<String> = match last_ok {
                Some(i) => tries[i..].iter().map(|(p, _)| p.clone()).collect(),
                None => tries.iter().map(|(p, _)| p.clone()).collect(),
            };
            if last_ok.is_none() {
                allowed.push("Bern".into());
            }
            assert!(allowed.iter().any(|p| p == l), "customer {id}: locality {l}, expected one of {allowed:?}");
        }
    }
    let _ = gw.stop.send(());
}

/// Makes a stopped server believe its replication has reached `csns` (its `contextCSN`,
/// which its consumer resumes from), as slapd's own fault does when a refresh starts
/// in the middle of a transaction: the changes up to there that it lacks never come.
fn claim_context_csn(s: &Slapd, csns: &[String]) {
    let mut ldif = format!("dn: {}\nchangetype: modify\nreplace: contextCSN\n", s.suffix);
    for c in csns {
        ldif.push_str(&format!("contextCSN: {c}\n"));
    }
    let mut cmd = std::process::Command::new(stoney_slapd::server_tool("slapmodify").unwrap());
    cmd.arg("-F").arg(s.dir.join("slapd.d")).args(["-b", &s.suffix]);
    let out = common::with_input(&mut cmd, &ldif);
    assert!(out.status.success(), "slapmodify: {out:?}");
}

/// A server comes back told it has every change of the server in use, yet lacks a
/// customer created and still holds one deleted while it was down. The gateway's
/// comparison has the first sent again and deletes the second there, as the write log
/// of the server in use says it was deleted; only then does the server count as checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_comparison_repairs_a_create_and_a_delete_a_server_missed() {
    let (mut servers, gw) = replicated_gateway().await;
    let doomed = create_customer(&gw, "Doomed AG").await;
    eventually(10, "the customer reached the second server", || {
        customers(&servers[1]).0.get(&doomed).is_some_and(|c| c.1 == "Bern")
    })
    .await;
    tokio::task::block_in_place(|| servers[1].kill());
    let missed = create_customer(&gw, "Missed AG").await;
    delete_customer(&gw, doomed).await;
    assert_eq!(gw.state.directory.current_server(), 0);
    let claimed = context_csn(&servers[0]);
    tokio::task::block_in_place(|| {
        claim_context_csn(&servers[1], &claimed);
        servers[1].restart()
    })
    .expect("the second server comes back");
    let pool = gw.state.directory.pool().manager();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (b, _) = customers(&servers[1]);
        let repaired = b.get(&missed).is_some_and(|c| c.1 == "Bern") && !b.contains_key(&doomed);
        if repaired && pool.unchecked().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second server gets the missed customer and loses the deleted one: {:?}, not yet compared: {:?}",
            (b.get(&missed), b.get(&doomed)),
            pool.unchecked()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Sent again: the customer and its address, and the id counter, which id claims now
    // write on both servers (three or four entries in all: seen both); deleted: the other
    // customer and its address.
    assert!((3..=4).contains(&pool.resent()), "entries sent again: {}", pool.resent());
    assert_eq!(pool.deletes_completed(), 2);
    // The deleted customer's entries are gone below it too, and did not come back on the
    // server in use.
    let doomed_dn = format!("uid={doomed},ou=customers,uid=4000001,ou=reseller,{}", servers[1].suffix);
    for s in &servers {
        assert!(!ldapsearch(s, &doomed_dn, "(objectClass=*)", &["1.1"]).contains("dn:"), "{} holds {doomed_dn}", s.url);
    }
    let _ = gw.stop.send(());
}

/// A server that comes back holding entries the server in use deleted while it was away,
/// in a state older than the compared span and with no delete in its own write log, as a
/// rejoin copy taken while the customers were being deleted holds them (simulated: the
/// stopped server's entries of a customer get an entryCSN of an hour ago, and it is told
/// it has every change of the server in use, so its own replication does not replay the
/// delete). The comparison reads the write log of the server in use too and deletes the
/// customer there, with its billing entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_a_returning_server_kept_from_before_a_delete_are_deleted_there() {
    let (mut servers, gw) = replicated_gateway().await;
    let id = create_customer(&gw, "Copied AG").await;
    let dn = format!("uid={id},ou=customers,uid=4000001,ou=reseller,{}", servers[1].suffix);
    eventually(10, "the customer reached the second server", || billed(&servers[1]).contains(&id)).await;
    tokio::task::block_in_place(|| servers[1].kill());
    delete_customer(&gw, id).await;
    assert!(!customers(&servers[0]).0.contains_key(&id));
    let claimed = context_csn(&servers[0]);
    let old = stoney_gateway::directory::reconcile::csn_at(std::time::SystemTime::now() - Duration::from_secs(3600))
        .replace("#000#", "#002#");
    tokio::task::block_in_place(|| {
        let target = [format!("dn: {dn}"), format!("dn: ou=address,{dn}")];
        let changed = rewrite_offline(&servers[1], "", |record| {
            if !target.iter().any(|t| record.lines().next() == Some(t.as_str())) {
                return None;
            }
            let lines: Vec<String> = record
                .lines()
                .map(|l| if l.starts_with("entryCSN: ") { format!("entryCSN: {old}") } else { l.to_string() })
                .collect();
            Some(Some(lines.join("\n")))
        });
        assert_eq!(changed, 2, "both entries were in the dump");
        claim_context_csn(&servers[1], &claimed);
        servers[1].restart()
    })
    .expect("the second server comes back");
    let held = ldapsearch(&servers[1], &dn, "(objectClass=*)", &["entryCSN"]);
    assert!(held.contains(&format!("entryCSN: {old}")) || !held.contains("dn:"), "{held}");
    eventually(30, "the second server loses the customer the first one deleted", || {
        !customers(&servers[1]).0.contains_key(&id) && !billed(&servers[1]).contains(&id)
    })
    .await;
    assert!(!customers(&servers[0]).0.contains_key(&id), "the first server did not get it back");
    let _ = gw.stop.send(());
}

/// Rewrites a stopped server's database offline: dumped (slapcat), each record (LDIF,
/// unwrapped) replaced where `f` says so (`Some(None)`: left out), and loaded again
/// (slapadd keeps entryCSN and entryUUID as given; slapmodify would set its own). The
/// number of records `f` changed or left out.
fn rewrite_offline(s: &Slapd, extra: &str, f: impl Fn(&str) -> Option<Option<String>>) -> usize {
    let tool = |name: &str| {
        let mut cmd = std::process::Command::new(stoney_slapd::server_tool(name).unwrap());
        cmd.arg("-F").arg(s.dir.join("slapd.d")).args(["-b", &s.suffix]);
        cmd
    };
    let dump = tool("slapcat").args(["-o", "ldif-wrap=no"]).output().expect("slapcat runs");
    assert!(dump.status.success(), "slapcat: {dump:?}");
    let (mut edited, mut changed) = (String::new(), 0);
    for record in String::from_utf8(dump.stdout).unwrap().split("\n\n").filter(|r| !r.trim().is_empty()) {
        match f(record) {
            None => edited.push_str(record),
            Some(new) => {
                changed += 1;
                let Some(new) = new else { continue };
                edited.push_str(&new);
            }
        }
        edited.push_str("\n\n");
    }
    edited.push_str(extra);
    let db = s.dir.join("db");
    for file in std::fs::read_dir(&db).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    let out = common::with_input(tool("slapadd").arg("-q"), &edited);
    assert!(out.status.success(), "slapadd: {out:?}");
    changed
}

/// Both servers stop, lose a customer without any record of its delete and gain one
/// nobody wrote through them (changed offline, with CSNs of server id 0 as the demo
/// data's, which no comparison looks at), and come back: the collection index, which
/// resumes its synchronisation from its cookie, is told of neither, and checks what it
/// holds against the server once the refresh is over. The list then holds what the
/// servers hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resume_the_index_holds_what_the_server_holds() {
    let (mut servers, gw) = replicated_gateway().await;
    let (held, _) = customers(&servers[1]);
    let gone = *held.keys().next().unwrap();
    let found = ldapsearch(&servers[1], &servers[1].suffix, &format!("(uid={gone})"), &["1.1"]);
    let dn = found.lines().find_map(|l| l.strip_prefix("dn: ")).unwrap().to_string();
    let count = |gw: &common::Gateway| {
        let (client, base) = (gw.client.clone(), gw.base.clone());
        async move {
            let res = client
                .get(format!("{base}/v1/customers?per_page=1"))
                .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                .send()
                .await
                .unwrap();
            if res.status() != 200 {
                return None;
            }
            res.headers().get("x-total-count").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok())
        }
    };
    assert_eq!(count(&gw).await, Some(60));
    // And one it holds that nobody told the index of: loaded offline with a CSN of
    // before the start (server id 0, as slapadd's), so no refresh sends it.
    let mut found_offline = String::new();
    for (i, record) in bulk_ldif(&servers[1].suffix, 1).replace("5100000", "5199999").split("\n\n").enumerate() {
        if record.trim().is_empty() {
            continue;
        }
        let (dn, rest) = record.split_once('\n').unwrap();
        found_offline.push_str(&format!(
            "{dn}\nentryUUID: 0f8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a{i:02}\nentryCSN: 20200101000000.000000Z#000000#000#000000\n{rest}\n\n"
        ));
    }
    tokio::task::block_in_place(|| {
        for s in servers.iter_mut() {
            s.kill();
            let left_out = rewrite_offline(s, &found_offline, |record| {
                let first = record.lines().next().unwrap_or_default();
                first.strip_prefix("dn: ").is_some_and(|d| d.ends_with(&dn)).then_some(None)
            });
            assert!(left_out >= 1);
        }
        for s in servers.iter_mut() {
            s.restart().expect("the server comes back");
        }
    });
    for s in &servers {
        let held = customers(s).0;
        assert!(held.len() == 60 && !held.contains_key(&gone) && held.contains_key(&5_199_999), "{}", s.url);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = count(&gw).await;
        let listed = gw
            .client
            .get(format!("{}/v1/customers?customerName=Bulk%200%20AG", gw.base))
            .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap_or_default();
        if n == Some(60) && listed.contains("5199999") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the list holds what the servers hold (60, with 5199999 but not {gone}): {n:?}, {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = gw.stop.send(());
}

/// slapd's cookies name the server that gave them (`sid=`), and a provider sends a
/// consumer nothing of what the server a cookie names made, as it would to that server
/// itself. The index resumes on another server than its cookie's after every failover
/// and fail-back, and it is no server: what the other server makes and replicates must
/// still reach it. Here the index fails over to the second server; the first comes back
/// and an admin adds a customer there by LDAP, which the second receives by
/// replication; a list (still on the second server) shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_index_gets_what_the_other_server_replicates() {
    let (mut servers, gw) = replicated_gateway_tweaked(0, |s| s.ldap.failback_after_ms = 3_600_000).await;
    tokio::task::block_in_place(|| servers[0].kill());
    eventually(15, "the index's synchronisation goes to the second server", || gw.state.sync.server() == 1).await;
    tokio::task::block_in_place(|| servers[0].restart()).expect("the first server comes back");
    let ldif: String = bulk_ldif(&servers[0].suffix, 1)
        .replace("5100000", "5188888")
        .lines()
        .flat_map(|l| {
            let add = l.starts_with("dn: ").then_some("changetype: add");
            std::iter::once(l).chain(add)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let out = ldapmodify(&servers[0], &ldif);
    assert!(out.status.success(), "{out:?}");
    eventually(20, "the second server got the customer by replication", || {
        customers(&servers[1]).0.contains_key(&5_188_888)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let res = gw
            .client
            .get(format!("{}/v1/customers?customerName=Bulk%200%20AG", gw.base))
            .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
            .send()
            .await
            .unwrap();
        let total = res.headers().get("x-total-count").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = res.text().await.unwrap_or_default();
        if body.contains("5188888") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a list on the second server holds the customer it got from the first: {total:?} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gw.state.sync.server(), 1, "the index was on the second server all along");
    let _ = gw.stop.send(());
}

/// Re-adding a server: wiped (its state gone, as after a lost disk) and started again
/// with `rejoin`, it loads a full copy of its peer before it serves, under a write load
/// through the gateway. Afterwards no acknowledged customer is missing on either server,
/// none is left without its billing entry, and both hold the same. Started empty
/// instead, it serves before it holds the 3,000 customers (its own replication brings
/// them later), and a peer's consumer it serves meanwhile may delete what it lacks.
const BULK: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_server_rejoins_without_losing_anything_on_either_server() {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use stoney_slapd::Replication;

    let (mut servers, gw) = replicated_gateway_with(BULK).await;
    let Load { log, stop, pace, tasks } = start_load(&gw);
    let written = || log.lock().unwrap().created.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (listen, root_password, peer) = (servers[1].listen, servers[1].root_password.clone(), servers[0].url.clone());
    tokio::task::block_in_place(|| servers[1].kill());
    let before = written();
    eventually(10, "writes go on while the second server is gone", || written() >= before + 20).await;
    pace.store(100, Ordering::Relaxed);
    let state = tempfile::tempdir().unwrap();
    let rejoined = tokio::task::block_in_place(|| {
        Slapd::start(SlapdOptions {
            demo_data: true,
            listen,
            state_dir: Some(state.path().to_path_buf()),
            root_password: Some(root_password),
            replication: Some(Replication {
                server_id: 2,
                peers: vec![peer.clone()],
                load_data: false,
                rejoin: Some(peer),
            }),
            ..Default::default()
        })
    })
    .expect("the wiped server rejoins");
    // It serves holding the copy already: every customer of the demo data and the bulk
    // (the load never deletes those), as the same entries (entryUUID) as on its peer.
    let (held, _) = customers(&rejoined);
    let kept = held.keys().filter(|id| **id < 5_001_000 || **id >= 5_100_000).count();
    assert_eq!(kept, 60 + BULK as usize, "the rejoined server holds the copy when it starts to serve");
    let uuid = |s: &Slapd| {
        let dn = format!("uid=5100007,ou=customers,uid=4000002,ou=reseller,{}", s.suffix);
        ldapsearch(s, &dn, "(objectClass=*)", &["entryUUID"])
            .lines()
            .find(|l| l.starts_with("entryUUID"))
            .map(str::to_string)
    };
    assert!(uuid(&rejoined).is_some());
    assert_eq!(uuid(&rejoined), uuid(&servers[0]), "the copy keeps the entries' identity");
    // Dropping the old handle removes its (wiped) folder.
    servers[1] = rejoined;
    let after = written();
    eventually(20, "writes go on after the rejoin", || written() >= after + 30).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    let unexpected: Vec<_> = log.statuses.iter().filter(|(s, _)| ![200, 201, 503].contains(*s)).collect();
    assert!(unexpected.is_empty(), "only in-flight failures (503): {:?} {:#?}", log.statuses, log.errors);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (a, b) = loop {
        let (a, b) = (customers(&servers[0]), customers(&servers[1]));
        if a.0 == b.0 {
            break (a, b);
        }
        let only_a: Vec<_> = a.0.iter().filter(|(k, v)| b.0.get(k) != Some(v)).collect();
        let only_b: Vec<_> = b.0.iter().filter(|(k, v)| a.0.get(k) != Some(v)).collect();
        assert!(
            Instant::now() < deadline,
            "the servers converge: only on the first {only_a:?}, only on the second {only_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(a.1.is_empty() && b.1.is_empty(), "no uid twice: {:?} {:?}", a.1, b.1);
    for s in &servers {
        let billed = billed(s);
        let orphans: Vec<_> = a.0.keys().filter(|id| !billed.contains(id)).collect();
        assert!(orphans.is_empty(), "every customer on {} has its billing entry: {orphans:?}", s.url);
    }
    let mut lost = Vec::new();
    for (id, name) in &log.created {
        if log.deleted.iter().any(|(d, _)| d == id) {
            continue;
        }
        if a.0.get(id).map(|c| &c.0) != Some(name) {
            lost.push(*id);
        }
    }
    assert!(lost.is_empty(), "acknowledged customers lost: {lost:?} of {}", log.created.len());
    for (id, acknowledged) in &log.deleted {
        if *acknowledged {
            assert!(!a.0.contains_key(id), "customer {id}, deleted, is gone");
        }
    }
    // The customers of the demo data and the bulk are there too.
    assert_eq!(a.0.keys().filter(|id| **id < 5_001_000).count(), 60, "the demo customers are kept");
    assert_eq!(a.0.keys().filter(|id| **id >= 5_100_000).count(), BULK as usize, "the bulk customers are kept");
    let _ = gw.stop.send(());
}

/// `ldap.ack = "all"`: a write is answered only once the other server holds it. With
/// that server stalled, a create waits for it; with it dead, a create is answered at
/// once, counted as acknowledged by fewer servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ack_all_a_write_is_answered_once_every_server_holds_it() {
    let mut servers = tokio::task::spawn_blocking(|| {
        Slapd::start_replicated(2, SlapdOptions { demo_data: true, ..Default::default() })
    })
    .await
    .unwrap()
    .expect("two servers");
    eventually(30, "the second server got the data", || customers(&servers[1]).0.len() == 60).await;
    let mut settings = common::settings_for(&servers[0]);
    settings.ldap.urls = vec![servers[0].url.clone(), servers[1].url.clone()];
    settings.ldap.ack = "all".into();
    settings.ldap.ack_timeout_ms = 10_000;
    let gw = common::start_gateway(settings).await;
    let post = |name: String| {
        let (client, base) = (gw.client.clone(), gw.base.clone());
        async move {
            let res = client
                .post(format!("{base}/v1/customers"))
                .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                .json(&common::company(&name))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status().as_u16(), 201);
            res.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap()
        }
    };
    let on = |s: &Slapd, id: u64| {
        ldapsearch(
            s,
            &format!("ou=reseller,{}", s.suffix),
            &format!("(&(objectClass=sstCustomer)(uid={id}))"),
            &["1.1"],
        )
        .contains("dn: ")
    };
    for i in 0..5 {
        let id = post(format!("Both {i} AG")).await;
        assert!(on(&servers[1], id), "acknowledged customer {id} is on the second server at once");
    }
    // The second server stalls: the create is committed on the first one, but not
    // answered until the second holds it.
    let stalled = servers[1].pid().unwrap() as libc::pid_t;
    // SAFETY: kill(2) on a child of this process has no memory-safety preconditions.
    unsafe { libc::kill(stalled, libc::SIGSTOP) };
    let pending = tokio::spawn(post("Waited For AG".into()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let waited = !pending.is_finished();
    // SAFETY: as above.
    unsafe { libc::kill(stalled, libc::SIGCONT) };
    assert!(waited, "the create was answered while the second server was stalled");
    let id = pending.await.unwrap();
    assert!(on(&servers[1], id), "the waited-for customer {id} is on the second server");
    let pool = gw.state.directory.pool().manager();
    assert_eq!(pool.acks_degraded(), 0);
    // The second server dies: writes are answered at once, by one server.
    tokio::task::block_in_place(|| servers[1].kill());
    let started = Instant::now();
    let id = post("Alone AG".into()).await;
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(on(&servers[0], id));
    assert!(pool.acks_degraded() >= 1);
    let metrics = gw.client.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("stoney_ldap_acks_degraded_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let _ = gw.stop.send(());
}

/// The entries below `dn` as the server holds them, with their identity (entryUUID) and
/// creation time, parents first, as LDIF adds (slapd does not let a client set entryCSN).
fn as_replicated_adds(s: &Slapd, dn: &str) -> String {
    let text = ldapsearch(s, dn, "(objectClass=*)", &["*", "entryUUID", "createTimestamp", "creatorsName"]);
    let mut records: Vec<String> =
        text.split("\n\n").map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect();
    records.sort_by_key(|r| r.lines().next().map(|l| l.matches(',').count()).unwrap_or_default());
    records
        .iter()
        .map(|r| {
            let mut lines = r.lines();
            let first = lines.next().unwrap_or_default();
            format!("{first}\nchangetype: add\n{}\n", lines.collect::<Vec<_>>().join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A delete made while the other server was down, undone by replication: that server,
/// still holding the customer, hands it back in a refresh, and slapd, which keeps no
/// record of deleted entries but the write log, adds it again (simulated here by adding
/// the same entries, with the same entryUUID, as replication would). The gateway's
/// comparison finds the customer in the server's own write log as deleted and deletes it
/// again, with its billing entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_that_replication_undid_is_made_again() {
    let (mut servers, gw) = replicated_gateway().await;
    let id = create_customer(&gw, "Undone AG").await;
    let dn = format!("uid={id},ou=customers,uid=4000001,ou=reseller,{}", servers[0].suffix);
    eventually(10, "the customer reached the second server", || billed(&servers[1]).contains(&id)).await;
    let adds = as_replicated_adds(&servers[0], &dn);
    assert!(adds.contains("entryUUID: ") && adds.matches("changetype: add").count() == 2, "{adds}");
    tokio::task::block_in_place(|| servers[1].kill());
    // A busy write log: more deletes since the disturbance than slapd's default size
    // limit (500) lets a search return, the customer's last.
    let mut busy = String::new();
    for i in 0..510 {
        let other = format!("cn=busy-{i},ou=administration,{}", servers[0].suffix);
        busy.push_str(&format!(
            "dn: {other}\nchangetype: add\nobjectClass: applicationProcess\ncn: busy-{i}\n\ndn: {other}\nchangetype: delete\n\n"
        ));
    }
    assert!(ldapmodify(&servers[0], &busy).status.success());
    delete_customer(&gw, id).await;
    assert!(!customers(&servers[0]).0.contains_key(&id));
    // Back on the first server as a replicated add would bring it (relax: the
    // operational attributes are kept).
    let mut cmd = std::process::Command::new("ldapmodify");
    cmd.args(["-x", "-e", "relax", "-H", &servers[0].url, "-D", &servers[0].root_dn, "-w", &servers[0].root_password]);
    let out = common::with_input(&mut cmd, &adds);
    assert!(out.status.success(), "the entries come back: {out:?}");
    assert!(customers(&servers[0]).0.contains_key(&id));
    let pool = gw.state.directory.pool().manager();
    let before = pool.deletes_completed();
    // The second server returns: a disturbance, so the servers are compared.
    tokio::task::block_in_place(|| servers[1].restart()).expect("the second server comes back");
    eventually(30, "the undone delete is made again on the first server", || {
        !customers(&servers[0]).0.contains_key(&id) && !billed(&servers[0]).contains(&id)
    })
    .await;
    assert!(pool.deletes_completed() > before);
    eventually(30, "and the second server has it deleted too", || !customers(&servers[1]).0.contains_key(&id)).await;
    let res = gw
        .client
        .get(format!("{}/v1/customers/{id}", gw.base))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let _ = gw.stop.send(());
}

/// Two gateways writing to different servers at the same time (as for a moment when one
/// has moved back to the preferred server and the other not yet; here each prefers
/// another server): every create gets an id of its own, and both servers end up with
/// every acknowledged customer. Each server's counter is raised on the other one before
/// an id counts as taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_different_servers_never_hand_out_the_same_id() {
    let (servers, first) = replicated_gateway().await;
    let mut settings = common::settings_for(&servers[1]);
    settings.ldap.urls = vec![servers[1].url.clone(), servers[0].url.clone()];
    let second = common::start_gateway(settings).await;
    assert_eq!(second.state.directory.current_server(), 0, "the second gateway uses the second server");
    let mut tasks = Vec::new();
    for (g, gw) in [&first, &second].into_iter().enumerate() {
        for t in 0..3 {
            let (client, base) = (gw.client.clone(), gw.base.clone());
            tasks.push(tokio::spawn(async move {
                let mut made = Vec::new();
                for n in 0..40 {
                    let name = format!("Gateway {g} Task {t} Create {n} AG");
                    let res = client
                        .post(format!("{base}/v1/customers"))
                        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                        .json(&common::company(&name))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status().as_u16(), 201, "{}", res.text().await.unwrap_or_default());
                    made.push((res.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap(), name));
                }
                made
            }));
        }
    }
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.unwrap());
    }
    let mut ids: Vec<u64> = made.iter().map(|(id, _)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), made.len(), "every create got its own id");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, b) = (customers(&servers[0]).0, customers(&servers[1]).0);
        let differ: Vec<_> = made
            .iter()
            .filter(|(id, name)| a.get(id).map(|c| &c.0) != Some(name) || b.get(id).map(|c| &c.0) != Some(name))
            .map(|(id, name)| (id, name, a.get(id).map(|c| c.0.clone()), b.get(id).map(|c| c.0.clone())))
            .collect();
        if differ.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both servers hold every acknowledged customer; (id, name, first server, second server): {differ:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = first.stop.send(());
    let _ = second.stop.send(());
}

/// Re-adding each server in turn: the second is wiped and rejoins from the first, then
/// the first is wiped and rejoins from the second, which is itself a copy (its base entry
/// then carries what the first server's write log adds to it, which must not be copied
/// a second time).
#[test]
fn a_rejoined_server_can_be_the_copy_of_the_next_rejoin() {
    use stoney_slapd::Replication;
    let mut servers =
        Slapd::start_replicated(2, SlapdOptions { demo_data: true, ..Default::default() }).expect("two servers");
    let deadline = Instant::now() + Duration::from_secs(30);
    while customers(&servers[1]).0.len() != 60 {
        assert!(Instant::now() < deadline, "the second server got the data");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut states = Vec::new();
    for (wiped, from) in [(1usize, 0usize), (0, 1)] {
        let (listen, root_password, peer) =
            (servers[wiped].listen, servers[wiped].root_password.clone(), servers[from].url.clone());
        servers[wiped].kill();
        let state = tempfile::tempdir().unwrap();
        let rejoined = Slapd::start(SlapdOptions {
            demo_data: true,
            listen,
            state_dir: Some(state.path().to_path_buf()),
            root_password: Some(root_password),
            replication: Some(Replication {
                server_id: wiped as u32 + 1,
                peers: vec![peer.clone()],
                load_data: false,
                rejoin: Some(peer),
            }),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("server {} rejoins from server {}: {e}", wiped + 1, from + 1));
        assert_eq!(customers(&rejoined).0.len(), 60, "server {} holds the copy", wiped + 1);
        servers[wiped] = rejoined;
        states.push(state);
    }
}

/// The changes after `since` as a long poll of the provider admin: the events, the next
/// position; `None` when the position is gone (410).
async fn changes_after(gw: &common::Gateway, since: &str) -> Option<(Vec<serde_json::Value>, String)> {
    let res = gw
        .client
        .get(format!("{}/v1/changes?since={since}&wait=1", gw.base))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .send()
        .await
        .unwrap();
    if res.status() == 410 {
        return None;
    }
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    Some((body["changes"].as_array().unwrap().clone(), body["next"].as_str().unwrap().to_string()))
}

/// A failover in the middle of following the change feed: the feed goes on from the other
/// server without a gap (every customer created after the kill arrives, once, positions
/// growing), or says the position is gone, never skips silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_goes_on_across_a_failover_or_says_reset() {
    let (mut servers, gw) = replicated_gateway().await;
    let res = gw
        .client
        .get(format!("{}/v1/customers?per_page=1", gw.base))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .send()
        .await
        .unwrap();
    let mut at = res.headers()["x-changes-position"].to_str().unwrap().to_string();
    let before = create_customer(&gw, "Before Failover AG").await;
    let mut seen: Vec<(u64, String)> = Vec::new();
    let (got, next) = changes_after(&gw, &at).await.expect("the position holds");
    seen.extend(got.iter().map(|e| (e["data"]["id"].as_u64().unwrap(), e["type"].as_str().unwrap().to_string())));
    at = next;
    assert!(seen.iter().any(|(id, _)| *id == before), "{seen:?}");
    tokio::task::block_in_place(|| servers[0].kill());
    // Creates go on against the other server (a write in flight at the kill may be 503).
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while after.len() < 5 {
        assert!(Instant::now() < deadline, "writes go on after the failover");
        let res = gw
            .client
            .post(format!("{}/v1/customers", gw.base))
            .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
            .json(&common::company(&format!("After Failover {}", after.len())))
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            201 => after.push(res.json::<serde_json::Value>().await.unwrap()["id"].as_u64().unwrap()),
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            s => panic!("create answered {s}"),
        }
    }
    let mut positions = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut reset = false;
    while !after.iter().all(|id| seen.iter().any(|(s, t)| s == id && t == "org.stoney.customer.created")) {
        assert!(Instant::now() < deadline, "every create after the kill arrives: {after:?} {seen:?}");
        let Some((got, next)) = changes_after(&gw, &at).await else {
            reset = true;
            break;
        };
        for e in got {
            positions.push(e["id"].as_str().unwrap().rsplit('-').next().unwrap().parse::<u64>().unwrap());
            seen.push((e["data"]["id"].as_u64().unwrap(), e["type"].as_str().unwrap().to_string()));
        }
        at = next;
    }
    if reset {
        // Gone: listing again shows every acknowledged create.
        for id in &after {
            let res = gw
                .client
                .get(format!("{}/v1/customers/{id}", gw.base))
                .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    } else {
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "positions grow: {positions:?}");
        let created: Vec<&u64> =
            seen.iter().filter(|(_, t)| t == "org.stoney.customer.created").map(|(id, _)| id).collect();
        for id in &after {
            assert_eq!(created.iter().filter(|c| **c == id).count(), 1, "{id} created once: {seen:?}");
        }
    }
    let _ = gw.stop.send(());
}
