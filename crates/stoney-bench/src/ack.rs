//! What `ldap.ack = "all"` costs: POST through the gateway on two replicated servers,
//! acknowledged by the server in use and once both hold the write, next to the same
//! LDAP work done with ldap3 directly on the first server, in the same run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, Scope, SearchEntry};
use stoney_gateway::directory::sync::Csns;
use stoney_slapd::{Slapd, SlapdOptions};

use crate::common::*;
use crate::element::{customer_body, raw_create};

async fn context_csns(ldap: &mut Ldap, base: &str) -> Csns {
    let (es, _) =
        ldap.search(base, Scope::Base, "(objectClass=*)", vec!["contextCSN"]).await.unwrap().success().unwrap();
    let values: Vec<String> =
        es.into_iter().flat_map(|e| SearchEntry::construct(e).attrs.into_values().flatten()).collect();
    Csns::from_values(values.iter().map(String::as_str))
}

/// Waits until the second server holds what the first one does, so that no workload
/// starts with the replication backlog of the one before; returns how long that took.
async fn drain(a: &mut Ldap, b: &mut Ldap, base: &str) -> Duration {
    let started = std::time::Instant::now();
    let want = context_csns(a, base).await;
    while !context_csns(b, base).await.covers(&want) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

pub async fn ack(out: &Path, concurrency: usize, seconds: u64, rounds: usize) {
    let servers = tokio::task::spawn_blocking(|| {
        Slapd::start_replicated(2, SlapdOptions { demo_data: true, ..Default::default() })
    })
    .await
    .unwrap()
    .expect("two servers");
    // The second server gets the data (and the gateway's account) by replication.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (conn, mut ldap) = ldap3::LdapConnAsync::new(&servers[1].url).await.expect("connect");
        ldap3::drive!(conn);
        let bound = ldap.simple_bind(&servers[1].gateway_dn, &servers[1].gateway_password).await.expect("bind");
        if bound.rc == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the second server got the data");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let urls = format!("{},{}", servers[0].url, servers[1].url);
    let one = start_gateway_with(&servers[0], &urls, &[("STONEY__LDAP__ACK", "one")]).await;
    let all = start_gateway_with(&servers[0], &urls, &[("STONEY__LDAP__ACK", "all")]).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().unwrap();
    let d = Duration::from_secs(seconds);
    let base = servers[0].suffix.clone();
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(bind(&servers[0]).await);
    }
    let conns = Arc::new(conns);
    let (mut raw, mut gw_one, mut gw_all) = (Series::new(), Series::new(), Series::new());
    let (mut watch_a, mut watch_b) = (bind(&servers[0]).await, bind(&servers[1]).await);
    let mut backlog = Vec::new();
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        backlog.push(drain(&mut watch_a, &mut watch_b, &base).await);
        {
            let (conns, base, seq) = (conns.clone(), base.clone(), seq.clone());
            raw.add(
                load(concurrency, d, move |w, _| {
                    let mut ldap = conns[w].clone();
                    let base = base.clone();
                    let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Box::pin(async move { raw_create(&mut ldap, &base, n).await }) as BoxFut
                })
                .await,
            );
        }
        for (series, g) in [(&mut gw_one, &one), (&mut gw_all, &all)] {
            backlog.push(drain(&mut watch_a, &mut watch_b, &base).await);
            let (client, url, seq) = (client.clone(), g.base.clone(), seq.clone());
            series.add(
                load(concurrency, d, move |_, _| {
                    let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let req = client
                        .post(format!("{url}/v1/customers"))
                        .basic_auth("admin@stoney-cloud.org", Some("admin-secret"))
                        .json(&customer_body(n));
                    Box::pin(expect_status(req, 201)) as BoxFut
                })
                .await,
            );
        }
    }
    let degraded = |g: &Gateway| {
        let url = format!("{}/metrics", g.base);
        let client = client.clone();
        async move {
            let text = client.get(url).send().await.ok()?.text().await.ok()?;
            text.lines().find_map(|l| l.strip_prefix("stoney_ldap_acks_degraded_total ").map(str::to_string))
        }
    };
    let body = format!(
        "## Acknowledged by both servers: POST with `ldap.ack` (`stoney-bench ack`)\n\n\
         {date}; {machine}. Two slapd servers in multi-provider replication, two gateways on them \
         (one per setting, both using the first server), and the load generator share the machine. \
         Concurrency {concurrency}, {rounds} rounds of {seconds} s per workload, interleaved; throughput \
         is the median over rounds, latencies over all requests.\n\n\
         | workload | req/s | p50 ms | p99 ms | vs raw LDAP | errors |\n|---|---|---|---|---|---|\n\
         {}\n{}\n{}\n\n\
         Raw LDAP: the LDAP work of one create (as in `stoney-bench element`) on the first server, \
         answered once it has committed. Writes acknowledged by fewer servers (`stoney_ldap_acks_degraded_total` \
         of the `all` gateway at the end): {}. Before each workload the run waits until the second \
         server has replicated everything; the longest such wait was {:.1} s (the replication backlog \
         a workload left behind).\n",
        row("raw LDAP: create one customer (first server)", &raw, None),
        row("gateway: POST, ldap.ack = \"one\"", &gw_one, Some(&raw)),
        row("gateway: POST, ldap.ack = \"all\"", &gw_all, Some(&raw)),
        degraded(&all).await.unwrap_or_else(|| "?".into()),
        {
            backlog.push(drain(&mut watch_a, &mut watch_b, &base).await);
            backlog.iter().max().copied().unwrap_or_default().as_secs_f64()
        },
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "ack", &body);
}
