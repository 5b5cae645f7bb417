//! GET and POST of one customer through the gateway,
//! next to the same LDAP work done with ldap3 directly.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ldap3::controls::{PostRead, TxnSpec};
use ldap3::exop::{EndTxn, StartTxn};
use ldap3::{Ldap, Mod, Scope};
use serde_json::{json, Value};
use stoney_gateway::directory::layout;
use stoney_gateway::mapping::resources::{CUSTOMERS, RESELLERS};
use stoney_gateway::mapping::table;
use stoney_slapd::{Slapd, SlapdOptions};

use crate::common::*;

fn demo_customer(i: u64) -> (u64, u64) {
    let id = 5_000_001 + i % 60;
    (id, 4_000_001 + (id - 5_000_001) / 20)
}

pub fn customer_body(i: u64) -> Value {
    json!({
        "isCompany": true, "customerName": format!("Bench {i} AG"), "belongsToResellerID": 4000001,
        "billingAddress": {"gender": "f", "givenName": "Zoë", "surname": "Müller", "postalAddress": "Hauptgasse 1",
            "countryCode": "CH", "postalCode": "3011", "localityName": "Bern", "preferredLanguage": "de-CH",
            "mail": "zoe@example.com"}
    })
}

pub async fn element(out: &Path, concurrency: usize, seconds: u64, rounds: usize) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let slapd = Arc::new(slapd);
    let gw = start_gateway(&slapd).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().unwrap();
    let d = Duration::from_secs(seconds);
    let attrs: Arc<Vec<&'static str>> =
        Arc::new(table::all_attributes(&[&stoney_gateway::mapping::resources::CUSTOMERS]));
    let base = slapd.suffix.clone();

    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(bind(&slapd).await);
    }
    let conns = Arc::new(conns);
    let (mut raw_get, mut gw_get, mut raw_post, mut gw_post) =
        (Series::new(), Series::new(), Series::new(), Series::new());
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        {
            let (conns, attrs, base) = (conns.clone(), attrs.clone(), base.clone());
            raw_get.add(
                load(concurrency, d, move |w, i| {
                    let mut ldap = conns[w].clone();
                    let attrs = attrs.clone();
                    let base = base.clone();
                    Box::pin(async move {
                        let (id, r) = demo_customer(i * 7 + w as u64);
                        let (es, _) = ldap
                            .search(
                                &CUSTOMERS.root_dn(&base, id, r),
                                Scope::Subtree,
                                "(objectClass=*)",
                                attrs.as_slice(),
                            )
                            .await
                            .map_err(|e| e.to_string())?
                            .success()
                            .map_err(|e| e.to_string())?;
                        if es.len() < 2 {
                            return Err(format!("{id}: {} entries", es.len()));
                        }
                        Ok(())
                    }) as BoxFut
                })
                .await,
            );
        }
        {
            let (client, url) = (client.clone(), gw.base.clone());
            gw_get.add(
                load(concurrency, d, move |w, i| {
                    let (id, _) = demo_customer(i * 7 + w as u64);
                    let req = client
                        .get(format!("{url}/v1/customers/{id}"))
                        .basic_auth("admin@stoney-cloud.org", Some("admin-secret"));
                    Box::pin(expect_status(req, 200)) as BoxFut
                })
                .await,
            );
        }
        {
            let (conns, base, seq) = (conns.clone(), base.clone(), seq.clone());
            raw_post.add(
                load(concurrency, d, move |w, _| {
                    let mut ldap = conns[w].clone();
                    let base = base.clone();
                    let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Box::pin(async move { raw_create(&mut ldap, &base, n).await }) as BoxFut
                })
                .await,
            );
        }
        {
            let (client, url, seq) = (client.clone(), gw.base.clone(), seq.clone());
            gw_post.add(
                load(concurrency, d, move |_, _| {
                    let client = client.clone();
                    let url = url.clone();
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
    let rss = |g: &Gateway| memory_mib(g.child.id()).0;
    let body = format!(
        "## Customer element: GET and POST (`stoney-bench element`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. \
         Concurrency {concurrency}, {rounds} rounds of {seconds} s per workload, interleaved; \
         throughput is the median over rounds, latencies over all requests.\n\n\
         | workload | req/s | p50 ms | p99 ms | vs raw LDAP | errors |\n|---|---|---|---|---|---|\n\
         {}\n{}\n{}\n{}\n\n\
         Raw LDAP GET: one subtree search at the customer's DN with the mapping's attributes, one \
         connection per worker (what the gateway does for a known id). Raw LDAP POST: the two reseller \
         checks, the counter's Modify-Increment with Post-Read and a transaction adding the customer and \
         its billing address. Gateway peak RSS: {} MiB.\n",
        row("raw LDAP: read one customer", &raw_get, None),
        row("gateway: GET /v1/customers/{id}", &gw_get, Some(&raw_get)),
        row("raw LDAP: create one customer", &raw_post, None),
        row("gateway: POST /v1/customers", &gw_post, Some(&raw_post)),
        rss(&gw),
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "element", &body);
}

/// The LDAP attributes of an entry to add.
pub type Attrs = Vec<(String, HashSet<String>)>;

pub fn attrs(list: &[(&str, &[&str])]) -> Attrs {
    list.iter().map(|(a, v)| (a.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
}

pub async fn raw_create(ldap: &mut Ldap, base: &str, n: u64) -> Result<(), String> {
    let name = format!("Raw {n} AG");
    raw_create_with(ldap, base, |id| {
        let root = attrs(&[
            ("objectClass", &["top", "sstCustomer", "sstRelationship"]),
            ("uid", &[&id.to_string()]),
            ("sstIsCompany", &["TRUE"]),
            ("sstIsActive", &["TRUE"]),
            ("o", &[&name]),
            ("sstBelongsToResellerUID", &["4000001"]),
        ]);
        let address = attrs(&[
            ("objectClass", &["top", "organizationalUnit", "sstAddress"]),
            ("ou", &["address"]),
            ("sstGender", &["f"]),
            ("givenName", &["Zoë"]),
            ("sn", &["Müller"]),
            ("postalAddress", &["Hauptgasse 1"]),
            ("c", &["CH"]),
            ("postalCode", &["3011"]),
            ("l", &["Bern"]),
            ("preferredLanguage", &["de-CH"]),
            ("mail", &["zoe@example.com"]),
        ]);
        (root, address)
    })
    .await
}

/// The LDAP work of one create of a customer of reseller 4000001: the two reseller
/// checks, the counter's Modify-Increment with Post-Read and a transaction adding the
/// customer and its billing address, as `entries(id)` gives them.
pub async fn raw_create_with(
    ldap: &mut Ldap,
    base: &str,
    entries: impl FnOnce(u64) -> (Attrs, Attrs),
) -> Result<(), String> {
    let e = |e: ldap3::LdapError| e.to_string();
    let r = 4_000_001u64;
    let (a, b) = (RESELLERS.root_dn(base, r, 0), CUSTOMERS.container_dn(base, r));
    let mut l2 = ldap.clone();
    let (x, y) = tokio::join!(
        ldap.search(&a, Scope::Base, "(objectClass=sstReseller)", vec!["1.1"]),
        l2.search(&b, Scope::Base, "(objectClass=*)", vec!["1.1"])
    );
    x.map_err(e)?.success().map_err(e)?;
    y.map_err(e)?.success().map_err(e)?;
    let res = ldap
        .with_controls(PostRead::new(vec!["uidNumber"]))
        .modify(&layout::counter_dn(base), vec![Mod::Increment("uidNumber", "1")])
        .await
        .map_err(e)?
        .success()
        .map_err(e)?;
    let id = res
        .ctrls
        .iter()
        .find_map(|c| (c.1.ctype == "1.3.6.1.1.13.2").then(|| c.1.parse::<ldap3::controls::PostReadResp>()))
        .and_then(|r| r.attrs.get("uidNumber").and_then(|v| v.first()).and_then(|v| v.parse::<u64>().ok()))
        .ok_or("no post-read")?;
    let dn = CUSTOMERS.root_dn(base, id, r);
    let (root, address) = entries(id);
    let (ex, _) = ldap.extended(StartTxn).await.map_err(e)?.success().map_err(e)?;
    let txn = String::from_utf8_lossy(&ex.val.unwrap_or_default()).into_owned();
    ldap.with_controls(TxnSpec { txn_id: &txn }).add(&dn, root).await.map_err(e)?;
    ldap.with_controls(TxnSpec { txn_id: &txn }).add(&format!("ou=address,{dn}"), address).await.map_err(e)?;
    let ldap3::result::ExopResult(_, res) = ldap.extended(EndTxn { txn_id: &txn, commit: true }).await.map_err(e)?;
    if res.rc != 0 {
        return Err(format!("txn rc {}", res.rc));
    }
    Ok(())
}
