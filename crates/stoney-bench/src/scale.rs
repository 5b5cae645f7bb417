//! The size curve: for each directory size, the gateway's cold start (its index loaded
//! by the sync refresh) next to a raw paged subtree search that fetches the same entries
//! and attributes, its memory, and the list queries at concurrency 8; at the largest size
//! also the lists while customers are created, patched and deleted at a steady rate.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::Scope;
use serde_json::json;
use stoney_gateway::mapping::resources::ALL;
use stoney_gateway::mapping::table;
use stoney_slapd::Slapd;

use crate::collection::generated_directory;
use crate::common::*;

const PER_PAGE: u64 = 30;
const CONCURRENCY: usize = 8;
const WRITERS: u64 = 4;
const ADMIN: (&str, &str) = ("admin@stoney-cloud.org", "admin-secret");
/// In a query, replaced by another term of four digits in each request.
pub(crate) const NEW_TERM: &str = "{new}";

/// The queries of the curve: those of the collection benchmark, `q=` with terms of 3, 4
/// and 8 characters, and a filter on a field of many distinct values.
pub(crate) fn queries(total: u64) -> Vec<(String, String)> {
    let last = total.div_ceil(PER_PAGE);
    let mut out = Vec::new();
    for sort in ["customerName", "-localityName"] {
        for (label, page) in [("page 1", 1), ("page 1000", 1000), ("last page", last)] {
            out.push((format!("{label}, sort={sort}"), format!("sort={sort}&per_page={PER_PAGE}&page={page}")));
        }
    }
    out.push((
        "countryCode=CH, sort=customerName".into(),
        format!("countryCode=CH&sort=customerName&per_page={PER_PAGE}"),
    ));
    for (term, encoded) in [("mül", "m%C3%BCl"), ("müll", "m%C3%BCll"), ("zimmerma", "zimmerma")] {
        out.push((format!("q={term}"), format!("q={encoded}&per_page={PER_PAGE}")));
    }
    // A term no request asked before (four digits, of ids, postal codes and phone
    // numbers): its candidates are checked, where a term asked again is not.
    out.push(("q=(new 4 digits)".into(), format!("q={NEW_TERM}&per_page={PER_PAGE}")));
    out.push(("postalCode=3011".into(), format!("postalCode=3011&per_page={PER_PAGE}")));
    out
}

/// The seconds a paged subtree search (pages of 1000) takes to fetch every entry below
/// the base with the attributes the gateway's synchronisation asks for, and how many.
async fn raw_fetch(slapd: &Slapd) -> (f64, u64) {
    let mut ldap = bind(slapd).await;
    let mut attrs: Vec<String> = table::all_attributes(ALL).into_iter().map(String::from).collect();
    attrs.push("objectClass".into());
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(1000))];
    let t = Instant::now();
    let mut stream = ldap
        .streaming_search_with(adapters, &slapd.suffix, Scope::Subtree, "(objectClass=*)", attrs)
        .await
        .expect("paged search");
    let mut n = 0u64;
    while let Some(e) = stream.next().await.expect("an entry") {
        std::hint::black_box(ldap3::SearchEntry::construct(e));
        n += 1;
    }
    let res = stream.finish().await;
    assert_eq!(res.rc, 0, "paged search: {}", res.text);
    let secs = t.elapsed().as_secs_f64();
    let _ = ldap.unbind().await;
    (secs, n)
}

fn create_body(i: u64) -> serde_json::Value {
    json!({
        "isCompany": true, "customerName": format!("Scale {i} AG"), "belongsToResellerID": 4000001,
        "billingAddress": {"gender": "f", "givenName": "Zoë", "surname": "Müller", "postalAddress": "Hauptgasse 1",
            "countryCode": "CH", "postalCode": "3011", "localityName": "Bern", "preferredLanguage": "de-CH",
            "mail": "zoe@example.com"}
    })
}

/// What the writer saw: its writes, those that failed, and creates that the very next
/// list did not show.
#[derive(Default)]
struct Written {
    writes: AtomicU64,
    failed: AtomicU64,
    unseen: AtomicU64,
    /// Each write's latency in microseconds.
    micros: std::sync::Mutex<Vec<u32>>,
}

/// Creates, patches and deletes customers at `per_second` until `stop`, each create
/// followed by a list that must show it.
async fn writer(client: reqwest::Client, base: String, per_second: u64, stop: Instant, seen: Arc<Written>) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_second.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut made: Vec<u64> = Vec::new();
    let mut i = 0u64;
    while Instant::now() < stop {
        tick.tick().await;
        i += 1;
        let req = match (i % 3, made.last().copied()) {
            (1, Some(id)) => client
                .patch(format!("{base}/v1/customers/{id}"))
                .header("content-type", "application/merge-patch+json")
                .body(json!({"customerName": format!("Scale {i} patched AG")}).to_string()),
            (2, Some(_)) => {
                let id = made.remove(0);
                client.delete(format!("{base}/v1/customers/{id}"))
            }
            _ => client.post(format!("{base}/v1/customers")).json(&create_body(i)),
        };
        seen.writes.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let sent = req.basic_auth(ADMIN.0, Some(ADMIN.1)).send().await;
        seen.micros.lock().unwrap().push(t.elapsed().as_micros() as u32);
        let res = match sent {
            Ok(r) if r.status().is_success() => r,
            _ => {
                seen.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if res.status() != 201 {
            continue;
        }
        let Some(id) = res.json::<serde_json::Value>().await.ok().and_then(|v| v["id"].as_u64()) else {
            seen.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        made.push(id);
        let listed = total_count(&client, &format!("{base}/v1/customers?id={id}")).await;
        if listed != Some(1) {
            seen.unseen.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The raw-LDAP baseline of the writer: the same creates (a customer entry and its
/// billing entry in one transaction-free pair of adds), renames and deletes, one after
/// another on one connection as the gateway's account, for `seconds`; writes per second
/// and the latencies (µs) of each.
async fn raw_writes(slapd: &Slapd, seconds: u64) -> (f64, Vec<u32>) {
    let mut ldap = bind(slapd).await;
    let container = stoney_gateway::mapping::resources::CUSTOMERS.container_dn(&slapd.suffix, 4000001);
    let stop = Instant::now() + Duration::from_secs(seconds);
    let (mut micros, mut made, mut i) = (Vec::new(), Vec::<String>::new(), 0u64);
    let start = Instant::now();
    while Instant::now() < stop {
        i += 1;
        let t = Instant::now();
        match (i % 3, made.last().cloned()) {
            (1, Some(dn)) => {
                let name = format!("Raw {i} patched AG");
                let _ = ldap
                    .modify(&dn, vec![ldap3::Mod::Replace("o", std::collections::HashSet::from([name.as_str()]))])
                    .await;
            }
            (2, Some(_)) => {
                let dn = made.remove(0);
                let _ = ldap.delete(&format!("ou=address,{dn}")).await;
                let _ = ldap.delete(&dn).await;
            }
            _ => {
                let uid = (7_900_000 + i).to_string();
                let dn = format!("uid={uid},{container}");
                let root = vec![
                    ("objectClass", std::collections::HashSet::from(["top", "sstCustomer", "sstRelationship"])),
                    ("uid", std::collections::HashSet::from([uid.as_str()])),
                    ("sstIsCompany", std::collections::HashSet::from(["TRUE"])),
                    ("sstIsActive", std::collections::HashSet::from(["TRUE"])),
                    ("sstBelongsToResellerUID", std::collections::HashSet::from(["4000001"])),
                    ("o", std::collections::HashSet::from(["Raw AG"])),
                ];
                let billing = vec![
                    ("objectClass", std::collections::HashSet::from(["top", "organizationalUnit", "sstAddress"])),
                    ("ou", std::collections::HashSet::from(["address"])),
                    ("sstGender", std::collections::HashSet::from(["f"])),
                    ("givenName", std::collections::HashSet::from(["Zoë"])),
                    ("sn", std::collections::HashSet::from(["Müller"])),
                    ("postalAddress", std::collections::HashSet::from(["Hauptgasse 1"])),
                    ("c", std::collections::HashSet::from(["CH"])),
                    ("postalCode", std::collections::HashSet::from(["3011"])),
                    ("l", std::collections::HashSet::from(["Bern"])),
                    ("preferredLanguage", std::collections::HashSet::from(["de-CH"])),
                    ("mail", std::collections::HashSet::from(["zoe@example.com"])),
                ];
                let ok = ldap.add(&dn, root).await.is_ok_and(|r| r.rc == 0)
                    && ldap.add(&format!("ou=address,{dn}"), billing).await.is_ok_and(|r| r.rc == 0);
                if ok {
                    made.push(dn);
                }
            }
        }
        micros.push(t.elapsed().as_micros() as u32);
    }
    let rate = micros.len() as f64 / start.elapsed().as_secs_f64();
    let _ = ldap.unbind().await;
    (rate, micros)
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

async fn list_series(client: &reqwest::Client, url: &str, seconds: u64, rounds: usize) -> Series {
    let mut series = Series::new();
    for _ in 0..rounds {
        let (client, url) = (client.clone(), url.to_string());
        series.add(
            load(CONCURRENCY, Duration::from_secs(seconds), move |w, i| {
                // Every worker and request its own term, spread over all 10,000.
                let term = format!("{:04}", (w as u64 * 1249 + i * 7919) % 10_000);
                let req = client.get(url.replace(NEW_TERM, &term)).basic_auth(ADMIN.0, Some(ADMIN.1));
                Box::pin(expect_status(req, 200)) as BoxFut
            })
            .await,
        );
    }
    series
}

pub async fn scale(out: &Path, sizes: &[u64], seconds: u64, rounds: usize, writes_per_second: u64) {
    let mut start_rows = String::new();
    let mut query_rows = String::new();
    let mut names: Vec<String> = Vec::new();
    let mut under_writes = String::new();
    let mut restart = String::new();
    let mut freshness = String::new();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    for &customers in sizes {
        let (slapd, built) = generated_directory(customers).await;
        let built = built.as_secs_f64();
        // Twice: the first after slapadd reads a cold database.
        let (cold, entries) = raw_fetch(&slapd).await;
        let (raw, _) = raw_fetch(&slapd).await;
        eprintln!("{customers}: raw paged fetch {cold:.1} s cold, {raw:.1} s warm");
        eprintln!("{customers}: slapadd {built:.1} s, raw paged fetch of {entries} entries {raw:.1} s");
        // Saved only when the gateway stops (SIGTERM), for the restart at the largest size.
        let snapshots = tempfile::tempdir().expect("a temporary directory");
        let snapshot = snapshots.path().join("index.snapshot").display().to_string();
        let envs =
            [("STONEY__INDEX__SNAPSHOT_FILE", snapshot.as_str()), ("STONEY__INDEX__SNAPSHOT_INTERVAL_SECS", "86400")];
        let t = Instant::now();
        let mut gw = start_gateway_with(&slapd, &slapd.url, &envs).await;
        let ready = t.elapsed().as_secs_f64();
        let (peak_loaded, rss_loaded) = memory_mib(gw.child.id());
        eprintln!("{customers}: gateway ready in {ready:.1} s at {rss_loaded} MiB");
        let client = reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap();
        let total = total_count(&client, &format!("{}/v1/customers?per_page=1", gw.base)).await.expect("a list");
        let qs = queries(total);
        if names.is_empty() {
            names = qs.iter().map(|q| q.0.clone()).collect();
        }
        let mut cells = Vec::new();
        for (name, q) in &qs {
            let s = list_series(&client, &format!("{}/v1/customers?{q}", gw.base), seconds, rounds).await;
            eprintln!("{customers} {name}: p50 {:.1} ms, p99 {:.1} ms", s.all.pct(0.5), s.all.pct(0.99));
            cells.push(format!("{:.1} / {:.1}{}", s.all.pct(0.5), s.all.pct(0.99), errors(s.all.errors)));
        }
        if customers == largest {
            let s = context_csn_reads(&slapd, seconds).await;
            let _ = write!(
                freshness,
                "### The freshness check at {customers} customers\n\n\
                 Before it answers, every list reads the directory's `contextCSN` (one base search) and waits until \
                 the index holds it. The same read alone, raw LDAP at concurrency {CONCURRENCY} on one connection \
                 each: {:.2} ms (p50) / {:.2} ms (p99), {:.0} reads/s. Lists that arrive while one such read is under \
                 way share the next one, sent after all of them arrived: a list still holds every write committed \
                 before it, and slapd serves one of these reads at a time per gateway.\n\n",
                s.pct(0.5),
                s.pct(0.99),
                s.rate(),
            );
        }
        let (peak, rss) = memory_mib(gw.child.id());
        let _ = writeln!(
            start_rows,
            "| {customers} | {entries} | {built:.1} | {raw:.1} | {ready:.1} | {:.2} | {rss_loaded} | {peak_loaded} | {rss} | {peak} |",
            ready / raw
        );
        let _ = writeln!(query_rows, "| {customers} | {} |", cells.join(" | "));

        if customers == largest && writes_per_second > 0 {
            // Long enough for every query run below.
            let writing = Duration::from_secs(seconds * rounds as u64 * 4 + 5);
            let stop = Instant::now() + writing;
            let seen = Arc::new(Written::default());
            // Several writers, so that a slow answer does not lower the rate.
            let w: Vec<_> = (0..WRITERS)
                .map(|_| {
                    let rate = writes_per_second.div_ceil(WRITERS);
                    tokio::spawn(writer(client.clone(), gw.base.clone(), rate, stop, seen.clone()))
                })
                .collect();
            let mut rows = String::new();
            const WAITS: &str = "stoney_list_freshness_wait_seconds";
            let waits_before = [
                histogram(&client, &gw.base, WAITS, "step=\"directory\"").await,
                histogram(&client, &gw.base, WAITS, "step=\"index\"").await,
            ];
            for (name, q) in qs.iter().filter(|(n, _)| {
                n.starts_with("page 1,") || n.starts_with("q=müll") || n.starts_with("last page, sort=customerName")
            }) {
                let s = list_series(&client, &format!("{}/v1/customers?{q}", gw.base), seconds, rounds).await;
                eprintln!(
                    "{customers} under writes, {name}: p50 {:.1} ms, p99 {:.1} ms",
                    s.all.pct(0.5),
                    s.all.pct(0.99)
                );
                let _ = writeln!(
                    rows,
                    "| {name} | {:.1} | {:.1} | {:.0} | {} |",
                    s.all.pct(0.5),
                    s.all.pct(0.99),
                    s.median_rate(),
                    s.all.errors
                );
            }
            let waits_after = [
                histogram(&client, &gw.base, WAITS, "step=\"directory\"").await,
                histogram(&client, &gw.base, WAITS, "step=\"index\"").await,
            ];
            let wait = |i: usize, p: f64| bucket_pct(&waits_before[i], &waits_after[i], p);
            let waits = format!(
                "Of the {n} lists answered meanwhile (the writers' included), the wait for the directory's newest \
                 change (`{WAITS}`, step `directory`: the `contextCSN` read, or the share of one) was {} (p50) / {} \
                 (p99), the wait for the index to hold it (step `index`) {} / {}.",
                wait(0, 0.5).0,
                wait(0, 0.99).0,
                wait(1, 0.5).0,
                wait(1, 0.99).0,
                n = wait(1, 0.5).1,
            );
            eprintln!("{customers} under writes: {waits}");
            for w in w {
                let _ = w.await;
            }
            // A restart from the snapshot the stop writes.
            let all = |base: &str| format!("{base}/v1/customers?per_page=1");
            let before = total_count(&client, &all(&gw.base)).await;
            let t = Instant::now();
            // SAFETY: kill only sends a signal to the gateway's process.
            unsafe { libc::kill(gw.child.id() as i32, libc::SIGTERM) };
            let _ = gw.child.wait();
            let stopped = t.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0);
            let t = Instant::now();
            gw = start_gateway_with(&slapd, &slapd.url, &envs).await;
            let again = t.elapsed().as_secs_f64();
            let (peak_again, rss_again) = memory_mib(gw.child.id());
            let after = total_count(&client, &all(&gw.base)).await;
            eprintln!("{customers}: stop with snapshot {stopped:.1} s ({bytes} bytes), restart ready in {again:.1} s at {rss_again} MiB, {before:?} -> {after:?}");
            let _ = write!(
                restart,
                "### Restart from the snapshot at {customers} customers\n\n\
                 The gateway stopped on SIGTERM in {stopped:.1} s, writing its snapshot ({mib:.0} MiB); started \
                 again on it, it was ready in **{again:.1} s** (a cold start: {ready:.1} s), at {rss_again} MiB \
                 resident (peak {peak_again} MiB). The list counted {before} customers before the stop and {after} \
                 after the restart.\n\n",
                mib = bytes as f64 / (1024.0 * 1024.0),
                before = before.map_or("?".into(), |n| n.to_string()),
                after = after.map_or("?".into(), |n| n.to_string()),
            );
            let mut w_micros = std::mem::take(&mut *seen.micros.lock().unwrap());
            let (w50, w99) = (pct(&mut w_micros, 0.5), pct(&mut w_micros, 0.99));
            let (raw_rate, mut raw_micros) = raw_writes(&slapd, seconds * 2).await;
            let (r50, r99) = (pct(&mut raw_micros, 0.5), pct(&mut raw_micros, 0.99));
            eprintln!("{customers}: gateway writes p50 {w50:.1} ms p99 {w99:.1} ms; raw LDAP writes {raw_rate:.0}/s, p50 {r50:.1} ms p99 {r99:.1} ms");
            let (writes, failed, unseen) = (
                seen.writes.load(Ordering::Relaxed),
                seen.failed.load(Ordering::Relaxed),
                seen.unseen.load(Ordering::Relaxed),
            );
            let _ = write!(
                under_writes,
                "### Lists under writes at {customers} customers\n\n\
                 {WRITERS} writers create, patch and delete customers in turn at {writes_per_second} writes/s in all \
                 through the gateway (each create followed by a list `?id=` that must show it) while the lists run at concurrency \
                 {CONCURRENCY}: {writes} writes in {secs} s ({rate:.0}/s reached), {failed} failed, {unseen} creates \
                 missing from the very next list; a write took {w50:.1} ms (p50) / {w99:.1} ms (p99). The same writes \
                 as raw LDAP (the adds, modify and deletes of the entries, one after another on one connection, while \
                 nothing else runs): {raw_rate:.0}/s, {r50:.1} ms (p50) / {r99:.1} ms (p99).\n\n\
                 | query | p50 ms | p99 ms | req/s | errors |\n|---|---|---|---|---|\n{rows}\n{waits}\n\n",
                secs = writing.as_secs(),
                rate = writes as f64 / writing.as_secs_f64(),
            );
        }
        drop(gw);
        drop(slapd);
    }
    let header: String = names.iter().map(|n| format!(" {n} |")).collect();
    let rule: String = names.iter().map(|_| "---|").collect();
    let body = format!(
        "## Size curve (`stoney-bench scale`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. For each size: the demo data and \
         that many generated customers (each with a billing address, every fourth with a shipping address, \
         9,000 distinct postal codes); pages of {PER_PAGE}.\n\n\
         **Cold start.** `raw fetch` is one paged subtree search (pages of 1000) for every entry below the base \
         with the attributes the gateway's synchronisation asks for, on one connection, the second of two runs (the \
         first after slapadd reads a cold database); `ready` is the time from \
         the gateway's start to `/ready` (its index loaded by the sync refresh of the same entries). Memory is the \
         gateway's resident set (MiB) after the load and after all query runs, with its peak.\n\n\
         | customers | entries | slapadd s | raw fetch s | ready s | ready / raw | RSS loaded | peak loaded | RSS after | peak after |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{start_rows}\n\
         **Lists**, p50 / p99 in ms at concurrency {CONCURRENCY}, {rounds} rounds of {seconds} s each (errors in brackets):\n\n\
         | customers |{header}\n|---|{rule}\n{query_rows}\n{freshness}{under_writes}{restart}",
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "scale", &body);
}

/// Base reads of the `contextCSN` at concurrency `CONCURRENCY`, each worker on its own
/// connection.
/// A histogram of the gateway's `/metrics`: the cumulative count of each bucket (by its
/// upper bound in seconds) for the series with `label`.
async fn histogram(client: &reqwest::Client, base: &str, name: &str, label: &str) -> Vec<(f64, u64)> {
    let Ok(text) = async { client.get(format!("{base}/metrics")).send().await?.text().await }.await else {
        return Vec::new();
    };
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, u64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The bucket bound (ms) below which a share `p` of what a histogram counted between two
/// readings lies ("≤ 5 ms"), and how many it counted.
fn bucket_pct(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> (String, u64) {
    let count = |h: &[(f64, u64)], le: f64| h.iter().find(|(b, _)| *b == le).map_or(0, |(_, c)| *c);
    let total = after.last().map_or(0, |(le, c)| c - count(before, *le));
    let want = (total as f64 * p).ceil() as u64;
    let bound = after.iter().find(|(le, c)| c - count(before, *le) >= want.max(1)).map(|(le, _)| *le);
    let text = match bound {
        Some(le) if le.is_finite() => format!("≤ {} ms", le * 1000.0),
        Some(_) => "> 10 s".into(),
        None => "?".into(),
    };
    (text, total)
}

async fn context_csn_reads(slapd: &Slapd, seconds: u64) -> Stats {
    let mut conns = Vec::new();
    for _ in 0..CONCURRENCY {
        conns.push(Arc::new(tokio::sync::Mutex::new(bind(slapd).await)));
    }
    let base = stoney_slapd::DEFAULT_SUFFIX.to_string();
    let conns = Arc::new(conns);
    load(CONCURRENCY, Duration::from_secs(seconds), move |w, _| {
        let (conns, base) = (conns.clone(), base.clone());
        Box::pin(async move {
            let mut ldap = conns[w].lock().await;
            let (found, _) = ldap
                .search(&base, ldap3::Scope::Base, "(objectClass=*)", vec!["contextCSN"])
                .await
                .map_err(|e| e.to_string())?
                .success()
                .map_err(|e| e.to_string())?;
            if found.is_empty() {
                return Err("no base entry".to_string());
            }
            Ok(())
        }) as BoxFut
    })
    .await
}

fn errors(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n})")
    }
}
