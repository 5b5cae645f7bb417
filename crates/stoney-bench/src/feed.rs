//! The change feed: how long a change takes from its write to an event on an open
//! `GET /v1/changes` stream, for a write through the gateway and for one made with LDAP
//! directly, next to a raw content synchronisation consumer (ldap3, refreshAndPersist)
//! that sees the same writes in the same run; and what 100 open streams deliver while
//! writes run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::controls::{MakeCritical, RefreshMode, SyncRequest};
use ldap3::{Mod, Scope, SearchEntry};
use serde_json::{json, Value};
use stoney_slapd::{Slapd, SlapdOptions};

use crate::common::*;

/// When each write (by its number) was sent.
#[derive(Default)]
struct Sent(Mutex<HashMap<u64, Instant>>);

impl Sent {
    fn mark(&self, n: u64) {
        self.0.lock().unwrap().insert(n, Instant::now());
    }
    fn since(&self, n: u64) -> Option<Duration> {
        self.0.lock().unwrap().get(&n).map(|t| t.elapsed())
    }
}

/// The write number a value carries (`Ort-<n>`).
fn number(v: &str) -> Option<u64> {
    v.strip_prefix("Ort-")?.parse().ok()
}

/// Latencies and counts one observer saw.
#[derive(Default)]
struct Seen {
    micros: Vec<u32>,
    events: u64,
    resets: u64,
}

fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

/// Opens an event stream and records, for every event naming a write, how long after
/// its sending it came.
async fn stream(client: reqwest::Client, url: String, sent: Arc<Sent>, seen: Arc<Mutex<Seen>>, ready: Arc<AtomicU64>) {
    let mut res = client
        .get(format!("{url}/v1/changes?resource=customers"))
        .basic_auth("admin@stoney-cloud.org", Some("admin-secret"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), 200, "stream opens");
    ready.fetch_add(1, Ordering::Relaxed);
    let mut buf = String::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            if block.lines().any(|l| l == "event: reset") {
                seen.lock().unwrap().resets += 1;
                continue;
            }
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let Ok(e) = serde_json::from_str::<Value>(data) else { continue };
            let n = e["data"]["changed"]["billingAddress"]["localityName"].as_str().and_then(number);
            let mut s = seen.lock().unwrap();
            s.events += 1;
            if let Some(d) = n.and_then(|n| sent.since(n)) {
                s.micros.push(d.as_micros().min(u32::MAX as u128) as u32);
            }
        }
    }
}

/// A raw consumer of the directory's content synchronisation: for every entry whose `l`
/// names a write, how long after its sending it came.
async fn raw_consumer(slapd: &Slapd, sent: Arc<Sent>, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let mut ldap = bind(slapd).await;
    let req = SyncRequest { mode: RefreshMode::RefreshAndPersist, cookie: None, reload_hint: false };
    let mut s = ldap
        .with_controls(req.critical())
        .streaming_search(&slapd.suffix, Scope::Subtree, "(objectClass=*)", vec!["l"])
        .await
        .expect("sync search");
    // What the first refresh sends is the content before the writes, not a change.
    let mut refreshed = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Ok(Some(re))) = tokio::time::timeout(Duration::from_millis(200), s.next()).await else { continue };
        if re.is_intermediate() {
            refreshed = true;
            continue;
        }
        if !refreshed {
            continue;
        }
        let e = SearchEntry::construct(re);
        let n = e.attrs.get("l").and_then(|v| v.first()).and_then(|v| number(v));
        if let Some(d) = n.and_then(|n| sent.since(n)) {
            let mut seen = seen.lock().unwrap();
            seen.events += 1;
            seen.micros.push(d.as_micros().min(u32::MAX as u128) as u32);
        }
    }
}

/// The billing entry of every demo customer, by id.
async fn billing_dns(slapd: &Slapd) -> Vec<(u64, String)> {
    let mut ldap = bind(slapd).await;
    let (es, _) = ldap
        .search(&slapd.suffix, Scope::Subtree, "(objectClass=sstCustomer)", vec!["uid"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let mut out: Vec<(u64, String)> = es
        .into_iter()
        .map(SearchEntry::construct)
        .filter_map(|e| Some((e.attrs.get("uid")?.first()?.parse().ok()?, format!("ou=address,{}", e.dn))))
        .collect();
    out.sort();
    out
}

fn row(name: &str, s: &Seen) -> String {
    format!("| {name} | {} | {:.2} | {:.2} |", s.micros.len(), pct(&s.micros, 0.5), pct(&s.micros, 0.99))
}

pub async fn feed(out: &Path, writes: u64, streams: usize, writers: usize, seconds: u64) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let slapd = Arc::new(slapd);
    let per_caller = (streams + 10).to_string();
    let max = (streams + 20).to_string();
    let gw = start_gateway_with(
        &slapd,
        &slapd.url,
        &[("STONEY__CHANGES__MAX_STREAMS_PER_CALLER", &per_caller), ("STONEY__CHANGES__MAX_STREAMS", &max)],
    )
    .await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(streams + writers * 2).build().unwrap();
    let targets = Arc::new(billing_dns(&slapd).await);
    let seq = Arc::new(AtomicU64::new(0));

    // Idle: one write at a time, seen by one stream and by the raw consumer.
    let sent = Arc::new(Sent::default());
    let (via_gw, via_gw_raw) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Mutex::new(Seen::default())));
    let (via_ldap, via_ldap_raw) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Mutex::new(Seen::default())));
    let mut ldap = bind(&slapd).await;
    for (through_gateway, seen, raw_seen) in [(true, &via_gw, &via_gw_raw), (false, &via_ldap, &via_ldap_raw)] {
        let ready = Arc::new(AtomicU64::new(0));
        let s = tokio::spawn(stream(client.clone(), gw.base.clone(), sent.clone(), seen.clone(), ready.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let raw = {
            let (slapd, sent, raw_seen, stop) = (slapd.clone(), sent.clone(), raw_seen.clone(), stop.clone());
            tokio::spawn(async move { raw_consumer(&slapd, sent, raw_seen, stop).await })
        };
        while ready.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..writes {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            let (id, dn) = &targets[i as usize % targets.len()];
            let city = format!("Ort-{n}");
            sent.mark(n);
            if through_gateway {
                let res = client
                    .patch(format!("{}/v1/customers/{id}", gw.base))
                    .basic_auth("admin@stoney-cloud.org", Some("admin-secret"))
                    .json(&json!({"billingAddress": {"localityName": city}}))
                    .send()
                    .await
                    .expect("patch");
                assert_eq!(res.status(), 200);
            } else {
                let city = city.as_str();
                ldap.modify(dn, vec![Mod::Replace("l", [city].into())]).await.unwrap().success().unwrap();
            }
            // Apart by more than the 20 ms in which the feed merges the changes of one element.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let _ = raw.await;
        s.abort();
    }

    // Under load: `streams` open streams, `writers` writers patching for `seconds`.
    let sent = Arc::new(Sent::default());
    let seen: Vec<Arc<Mutex<Seen>>> = (0..streams).map(|_| Arc::new(Mutex::new(Seen::default()))).collect();
    let ready = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = seen
        .iter()
        .map(|s| tokio::spawn(stream(client.clone(), gw.base.clone(), sent.clone(), s.clone(), ready.clone())))
        .collect();
    while ready.load(Ordering::Relaxed) < streams as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = {
        let (client, url, sent, seq, targets) =
            (client.clone(), gw.base.clone(), sent.clone(), seq.clone(), targets.clone());
        load(writers, Duration::from_secs(seconds), move |w, i| {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            // Each writer its own customers, so no two writes of one customer fall into one 20 ms.
            let (id, _) = targets[(w + writers * i as usize) % targets.len()];
            let req = client
                .patch(format!("{url}/v1/customers/{id}"))
                .basic_auth("admin@stoney-cloud.org", Some("admin-secret"))
                .json(&json!({"billingAddress": {"localityName": format!("Ort-{n}")}}));
            sent.mark(n);
            Box::pin(expect_status(req, 200)) as BoxFut
        })
        .await
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (peak, rss) = memory_mib(gw.child.id());
    for t in tasks {
        t.abort();
    }
    let mut all = Seen::default();
    let mut fewest = u64::MAX;
    for s in &seen {
        let s = s.lock().unwrap();
        all.micros.extend(&s.micros);
        all.events += s.events;
        all.resets += s.resets;
        fewest = fewest.min(s.events);
    }
    let body = format!(
        "## Change feed: write to event (`stoney-bench feed`)\n\n\
         {date}; {machine}. One slapd with the demo data, the gateway and the load generator share the \
         machine. Latency is from sending the write to the event on an open `GET /v1/changes` stream \
         (Server-Sent Events, as the provider) or to the entry at a raw content synchronisation consumer \
         (ldap3, refreshAndPersist, the gateway's account) that sees the same writes; the gateway merges \
         the changes of one element within 20 ms before it publishes them, so that figure is part of \
         every event's latency.\n\n\
         **Idle**, {writes} writes one after another (30 ms apart), each a new `localityName` of a billing address:\n\n\
         | write, seen by | events | p50 ms | p99 ms |\n|---|---|---|---|\n{}\n{}\n{}\n{}\n\n\
         **Under load**: {streams} open streams while {writers} writers PATCH customers for {seconds} s \
         ({:.0} writes/s acknowledged, {} errors): {} events delivered in all ({:.0} events/s), every stream \
         got at least {} of the {} writes' events; {} resets; write to event p50 {:.2} ms, p99 {:.2} ms \
         over all streams. Gateway memory after the run: {rss} MiB (peak {peak} MiB).\n",
        row("PATCH through the gateway → event on the stream", &via_gw.lock().unwrap()),
        row("the same PATCH → raw sync consumer (baseline)", &via_gw_raw.lock().unwrap()),
        row("ldapmodify (ldap3) → event on the stream", &via_ldap.lock().unwrap()),
        row("the same ldapmodify → raw sync consumer (baseline)", &via_ldap_raw.lock().unwrap()),
        written.rate(),
        written.errors,
        all.events,
        all.events as f64 / written.secs,
        fewest,
        written.ops,
        all.resets,
        pct(&all.micros, 0.5),
        pct(&all.micros, 0.99),
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "feed", &body);
}
