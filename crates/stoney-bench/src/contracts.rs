//! Orders and contracts of the subscriptions facade: order creation (three items, so
//! three contracts) and contract activation through the gateway, next to the LDAP
//! transactions that do the same work with ldap3 directly, in the same run.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::controls::{Assertion, RawControl, TxnSpec};
use ldap3::exop::{EndTxn, StartTxn};
use ldap3::{Ldap, Mod, Scope, SearchEntry};
use serde_json::{json, Value};
use stoney_gateway::mapping::contracts as c;
use stoney_slapd::{Slapd, SlapdOptions, DEMO_SUBSCRIPTION_KEY};

use crate::common::*;
use crate::subscriptions::upsert;

/// An order of three items (the seed's products), reference `r`.
fn order_body(r: &str) -> Value {
    json!({"orderReference": r, "orderDate": "2022-02-01", "currency": "EUR", "items": [
        {"productID": "A0", "description": "Shirt red", "quantity": 1, "grossUnitPrice": 19, "netUnitPrice": 15.97, "vatAmount": 3.03, "vatPercent": 19},
        {"productID": "B0", "description": "Shirt green", "quantity": 1, "grossUnitPrice": 100, "netUnitPrice": 84.03, "vatAmount": 15.97, "vatPercent": 19},
        {"productID": "S1", "description": "Gym", "quantity": 1, "grossUnitPrice": 17.99, "netUnitPrice": 15.12, "vatAmount": 2.87, "vatPercent": 0.19}]})
}

/// A merchant's customer: its number, uid and DN.
#[derive(Clone)]
struct Cust {
    number: String,
    id: u64,
    dn: String,
}

fn to_set(attrs: Vec<(String, Vec<String>)>) -> Vec<(String, HashSet<String>)> {
    attrs.into_iter().map(|(a, v)| (a, v.into_iter().collect())).collect()
}

/// One transaction on `ldap`, each operation with its controls.
async fn txn(ldap: &mut Ldap, ops: Vec<(Vec<RawControl>, TxnOp)>) -> Result<(), String> {
    let e = |e: ldap3::LdapError| e.to_string();
    let (ex, _) = ldap.extended(StartTxn).await.map_err(e)?.success().map_err(e)?;
    let id = String::from_utf8_lossy(&ex.val.unwrap_or_default()).into_owned();
    for (mut controls, op) in ops {
        controls.push(TxnSpec { txn_id: &id }.into());
        let l = ldap.with_controls(controls);
        match op {
            TxnOp::Add(dn, attrs) => l.add(&dn, to_set(attrs)).await.map_err(e)?,
            TxnOp::Modify(dn, mods) => l.modify(&dn, mods).await.map_err(e)?,
        };
    }
    let ldap3::result::ExopResult(_, res) = ldap.extended(EndTxn { txn_id: &id, commit: true }).await.map_err(e)?;
    if res.rc != 0 {
        return Err(format!("txn rc {} {}", res.rc, res.text));
    }
    Ok(())
}

enum TxnOp {
    Add(String, Vec<(String, Vec<String>)>),
    Modify(String, Vec<Mod<String>>),
}

/// The LDAP work of an order: the customer found by its number, the order looked for,
/// and one transaction adding the order and its three contracts (guarded by the
/// customer's reseller), with the entries the gateway writes.
async fn raw_order(ldap: &mut Ldap, base: &str, cu: &Cust, reference: &str) -> Result<(), String> {
    let e = |e: ldap3::LdapError| e.to_string();
    let filter = format!("(&(objectClass=sstCustomer)(sgwCustomerNumberKey=4000001/{}))", cu.number);
    ldap.search(&format!("ou=reseller,{base}"), Scope::Subtree, &filter, vec!["1.1"]).await.map_err(e)?;
    let order_dn = c::order_dn(reference, &cu.dn);
    ldap.search(&order_dn, Scope::Base, "(objectClass=*)", vec!["sgwDigest"]).await.map_err(e)?;
    let order = c::parse_order(&order_body(reference)).map_err(|p| format!("{p:?}"))?;
    let mut ops = vec![
        (vec![Assertion::new("(sstBelongsToResellerUID=4000001)")], TxnOp::Modify(cu.dn.clone(), vec![])),
        (vec![], TxnOp::Add(order_dn, c::order_entry(&order))),
    ];
    for i in 0..order.items.len() {
        ops.push((
            vec![],
            TxnOp::Add(c::contract_dn(&order.contract_id(i), &cu.dn), c::contract_entry(cu.id, &cu.number, &order, i)),
        ));
    }
    txn(ldap, ops).await?;
    // The answer lists the customer's contracts.
    let base = c::container_dn(c::CONTRACTS, &cu.dn);
    ldap.search(&base, Scope::OneLevel, "(objectClass=sgwContract)", c::CONTRACT_ATTRS.to_vec()).await.map_err(e)?;
    Ok(())
}

/// The LDAP work of an activation: the contract found by its key, then one transaction
/// changing its status and date, asserting its entryCSN.
async fn raw_activate(ldap: &mut Ldap, cu: &Cust, contract: &str) -> Result<(), String> {
    let e = |e: ldap3::LdapError| e.to_string();
    let filter = format!("(sgwContractKey={})", c::contract_key(cu.id, contract));
    let (es, _) = ldap
        .search(&c::container_dn(c::CONTRACTS, &cu.dn), Scope::OneLevel, &filter, vec!["entryCSN", "sgwContractStatus"])
        .await
        .map_err(e)?
        .success()
        .map_err(e)?;
    let entry = SearchEntry::construct(es.into_iter().next().ok_or("no contract")?);
    let csn = entry.attrs.get("entryCSN").and_then(|v| v.first()).ok_or("no entryCSN")?.clone();
    let mods = vec![
        Mod::Replace("sgwContractStatus".to_string(), HashSet::from(["ACTIVE".to_string()])),
        Mod::Replace("sgwActivationDate".to_string(), HashSet::from(["2022-02-15".to_string()])),
    ];
    txn(ldap, vec![(vec![Assertion::new(format!("(entryCSN={csn})"))], TxnOp::Modify(entry.dn, mods))]).await
}

pub async fn contracts(out: &Path, customers: u64, concurrency: usize, seconds: u64, rounds: usize) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let gw = start_gateway(&slapd).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().unwrap();
    let base = slapd.suffix.clone();
    // The merchant's customers, each with a first order through the gateway (which makes
    // the containers).
    let mut ldap = bind(&slapd).await;
    let mut custs = Vec::new();
    for n in 0..customers {
        let number = format!("bench-{n}");
        upsert(&client, &gw.base, &number).await.unwrap_or_else(|e| panic!("create {number}: {e}"));
        let filter = format!("(sgwCustomerNumberKey=4000001/{number})");
        let (es, _) = ldap
            .search(&format!("ou=reseller,{base}"), Scope::Subtree, &filter, vec!["uid"])
            .await
            .unwrap()
            .success()
            .unwrap();
        let e = SearchEntry::construct(es.into_iter().next().expect("the customer"));
        let id = e.attrs["uid"][0].parse().unwrap();
        let url = format!("{}/subscriptions/v1/customers/{number}/orders", gw.base);
        let first = client.post(url).header("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY).json(&order_body("first"));
        expect_status(first, 200).await.expect("first order");
        custs.push(Cust { number, id, dn: e.dn });
    }
    let custs = Arc::new(custs);
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(bind(&slapd).await);
    }
    let conns = Arc::new(conns);
    let seq = Arc::new(AtomicU64::new(0));
    // Contracts still ORDERED, for the activations: (customer index, contract id).
    let ordered: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let d = Duration::from_secs(seconds);
    let (mut raw_o, mut gw_o, mut raw_a, mut gw_a) = (Series::new(), Series::new(), Series::new(), Series::new());
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for through_gateway in [false, true] {
            let (conns, custs, seq, ordered, base) =
                (conns.clone(), custs.clone(), seq.clone(), ordered.clone(), base.clone());
            let (client, url) = (client.clone(), gw.base.clone());
            let s = load(concurrency, d, move |w, _| {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let k = n as usize % (custs.len() / 2).max(1);
                let cu = custs[k].clone();
                let reference = format!("o{n}");
                let (mut ldap, base, ordered) = (conns[w].clone(), base.clone(), ordered.clone());
                let (client, url) = (client.clone(), url.clone());
                Box::pin(async move {
                    if through_gateway {
                        let req = client
                            .post(format!("{url}/subscriptions/v1/customers/{}/orders", cu.number))
                            .header("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY)
                            .json(&order_body(&reference));
                        expect_status(req, 200).await?;
                    } else {
                        raw_order(&mut ldap, &base, &cu, &reference).await?;
                    }
                    ordered.lock().unwrap().extend((1..=3).map(|i| (k, format!("{reference}-{i}"))));
                    Ok(())
                }) as BoxFut
            })
            .await;
            if through_gateway {
                gw_o.add(s)
            } else {
                raw_o.add(s)
            }
        }
        for through_gateway in [false, true] {
            // Enough ORDERED contracts for the run, made directly (not measured).
            let want = 2500 * seconds as usize;
            let mut n = 0;
            while ordered.lock().unwrap().len() < want {
                let k = custs.len() / 2 + n % (custs.len() - custs.len() / 2);
                let reference = format!("p{}", seq.fetch_add(1, Ordering::Relaxed));
                let mut ldap = conns[0].clone();
                raw_order(&mut ldap, &base, &custs[k], &reference).await.expect("a pool order");
                ordered.lock().unwrap().extend((1..=3).map(|i| (k, format!("{reference}-{i}"))));
                n += 1;
            }
            let (conns, custs, ordered) = (conns.clone(), custs.clone(), ordered.clone());
            let (client, url) = (client.clone(), gw.base.clone());
            let s = load(concurrency, d, move |w, _| {
                let next = ordered.lock().unwrap().pop();
                let (mut ldap, custs) = (conns[w].clone(), custs.clone());
                let (client, url) = (client.clone(), url.clone());
                Box::pin(async move {
                    let (k, id) = next.ok_or("no ordered contract left")?;
                    let cu = &custs[k];
                    if through_gateway {
                        let req = client
                            .post(format!("{url}/subscriptions/v1/customers/{}/contracts/{id}/activate", cu.number))
                            .header("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY)
                            .json(&json!({"requestedActivationDate": "2022-02-15"}));
                        expect_status(req, 200).await
                    } else {
                        raw_activate(&mut ldap, cu, &id).await
                    }
                }) as BoxFut
            })
            .await;
            if through_gateway {
                gw_a.add(s)
            } else {
                raw_a.add(s)
            }
        }
    }
    let body = format!(
        "## Orders and contracts: POST …/orders and …/activate (`stoney-bench contracts`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. Concurrency {concurrency}, \
         {rounds} rounds of {seconds} s per workload, interleaved; throughput is the median over rounds, \
         latencies over all requests. {customers} customers of reseller 4000001 made through the facade, \
         each with a first order (so the `ou=orders` and `ou=contracts` containers exist); the orders go to \
         the first half of them, the activations take contracts ordered (directly, not measured) for the \
         second half. Every order has the seed's three products, so it is one order and three contract \
         entries; the answer (the customer summary) lists all the customer's contracts, which grow by three \
         with each order, {growth} per customer by the end of the run.\n\n\
         | workload | req/s | p50 ms | p99 ms | vs raw LDAP | errors |\n|---|---|---|---|---|---|\n\
         {}\n{}\n{}\n{}\n\n\
         Raw LDAP order: the customer searched by its number, the order's DN looked up, and one transaction \
         (an empty modify asserting the customer's reseller, then the order and its three contracts, the \
         entries the gateway writes, `sgwContractKey` checked unique by slapd). Raw LDAP activation: the \
         contract searched by its key under the customer, then a transaction with the modify asserting its \
         `entryCSN`. The gateway does the same and then reads the customer's contracts for its answer (the \
         order's summary; the raw order reads them too). Gateway peak RSS: {} MiB.\n",
        row("raw LDAP: an order (3 contracts)", &raw_o, None),
        row("gateway: POST …/customers/{customerNumber}/orders", &gw_o, Some(&raw_o)),
        row("raw LDAP: activate a contract", &raw_a, None),
        row("gateway: POST …/contracts/{contractId}/activate", &gw_a, Some(&raw_a)),
        memory_mib(gw.child.id()).0,
        growth = 3 * (1 + (raw_o.all.ops + gw_o.all.ops) / (customers / 2).max(1)),
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "contracts", &body);
}
