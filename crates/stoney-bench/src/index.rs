//! The customer index alone, in this process: the generated customers of the collection
//! benchmark fed to it as a sync refresh, then each list query of the size curve asked
//! of it directly, one after another on one thread. No HTTP, no LDAP, no freshness
//! check: what a list costs in the index itself, to set next to the whole request.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use stoney_gateway::collection::index::CollectionIndex;
use stoney_gateway::directory::entry::{canonical_attr, Entry};
use stoney_gateway::directory::sync::{SyncEvent, SyncSink};
use stoney_gateway::mapping::query::{self, PageLimits};
use stoney_gateway::mapping::resources::CUSTOMERS;
use stoney_gateway::service::scope::Scope;

use crate::collection::generate;
use crate::common::*;
use crate::scale::{queries, NEW_TERM};

/// The entries of LDIF text (as `generate` writes it: no continuation lines).
fn entries(ldif: &str) -> impl Iterator<Item = Entry> + '_ {
    ldif.split("\n\n").filter(|r| !r.trim().is_empty()).map(|record| {
        let mut e = Entry::default();
        for line in record.lines() {
            let (name, value) = match line.split_once(":: ") {
                Some((n, b64)) => {
                    let raw = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
                    (n, String::from_utf8(raw).expect("utf-8"))
                }
                None => {
                    let (n, v) = line.split_once(": ").expect("attr: value");
                    (n, v.to_string())
                }
            };
            if name == "dn" {
                e.dn = value;
            } else {
                e.attrs.entry(canonical_attr(name)).or_default().push(value);
            }
        }
        e
    })
}

fn uuid(n: u64) -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&n.to_be_bytes());
    u[8] = 0x40;
    u
}

/// Microseconds per call of `f`, over `d` (at least 20 calls).
fn timed(d: Duration, mut f: impl FnMut(u64)) -> Stats {
    let mut micros = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < d || micros.len() < 20 {
        let t = Instant::now();
        f(i);
        micros.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        i += 1;
    }
    Stats { ops: i, errors: 0, secs: start.elapsed().as_secs_f64(), micros }
}

pub async fn index(out: &Path, customers: u64, seconds: u64) {
    let suffix = stoney_slapd::DEFAULT_SUFFIX;
    eprintln!("generating {customers} customers");
    let ldif = generate(customers, suffix);
    let index = CollectionIndex::new(&CUSTOMERS, suffix);
    let t = Instant::now();
    index.apply(SyncEvent::RefreshBegin { reload: true });
    let mut n = 0u64;
    for e in entries(&ldif) {
        n += 1;
        index.apply(SyncEvent::Entry { uuid: uuid(n), entry: e });
    }
    index.apply(SyncEvent::RefreshEnd { present: false });
    let loaded = t.elapsed();
    drop(ldif);
    let (_, rss) = memory_mib(std::process::id());
    eprintln!("{n} entries loaded in {loaded:?}, {rss} MiB");

    let limits = PageLimits { default_per_page: 30, max_per_page: 100 };
    let d = Duration::from_secs(seconds);
    let mut table = String::new();
    let mut all = queries(index.len() as u64);
    // A filter read from each record, sorted by id (runs of one key each): its walk
    // passes over many runs before the page is full.
    all.push((
        "customerName=Zahnzentrum*, sort=id, page 5".into(),
        "customerName=Zahnzentrum*&sort=id&per_page=30&page=5".into(),
    ));
    for (name, raw) in all {
        let stats = timed(d, |i| {
            let raw = raw.replace(NEW_TERM, &format!("{:04}", (i * 7919) % 10_000));
            let q = query::parse(&CUSTOMERS, Some(&raw), limits).expect("a query");
            let page = index.query(&Scope::Provider, &q, "http://gw").expect("a page");
            std::hint::black_box(serde_json::to_vec(&page.items).expect("json"));
        });
        eprintln!("{name}: p50 {:.3} ms", stats.pct(0.5));
        let _ = writeln!(table, "| {name} | {:.3} | {:.3} | {:.0} |", stats.pct(0.5), stats.pct(0.99), stats.rate());
    }
    let body = format!(
        "## The customer index alone at {customers} customers (`stoney-bench index`)\n\n\
         {}; {}. The generated customers of `stoney-bench collection` ({n} entries) fed to the \
         index as a sync refresh in this process in {:.1} s ({rss} MiB resident after), then each \
         list query of the size curve (and a filter over many runs) asked of it directly as the provider admin, one after another \
         on one thread for {seconds} s, its page serialised to JSON: no HTTP, no LDAP, no freshness \
         check, and the system's allocator (the gateway's is mimalloc).\n\n\
         | query | p50 ms | p99 ms | queries/s |\n|---|---|---|---|\n{table}\n",
        now(),
        machine(),
        loaded.as_secs_f64(),
    );
    write_section(out, "index", &body);
}
