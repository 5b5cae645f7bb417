//! The subscriptions facade: GET and POST (upsert) of a merchant's customer by its
//! customer number through the gateway, next to the same LDAP work done with ldap3
//! directly.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, Scope, SearchEntry};
use serde_json::{json, Value};
use stoney_gateway::mapping::resources::CUSTOMERS;
use stoney_gateway::mapping::table;
use stoney_slapd::{Slapd, SlapdOptions, DEMO_SUBSCRIPTION_KEY};

use crate::common::*;
use crate::element::{attrs, raw_create_with};

/// The seed's sample request body (tests/subscriptions.rs) with the customer number `number`.
pub fn subscription_body(number: &str) -> Value {
    json!({
        "customer": {
            "address": {"careOf": "", "countryCode": "DE", "postalCode": "97687-7791", "postalPlace": "Schadenville",
                "street": "Bergnaum Mountains", "streetNumber": "1", "streetNumberAdditional": "a"},
            "birthDate": "1984-11-11", "companyName": "", "customerCategory": "PERSON", "customerNumber": number,
            "email": "Ray_Ankunding43@gmail.com", "firstName": "Ray", "identificationNumber": "700XXX651",
            "language": "de", "lastName": "Ankunding", "mobilePhone": "+37258774XXX", "phone": "871.790.7578 x4882",
            "salutation": "MR", "taxIdentificationNumber": "12345678L"
        },
        "paymentRegistration": {"id": "275122"}
    })
}

fn existing(customers: u64, w: usize, i: u64, concurrency: usize) -> String {
    format!("bench-{}", (i * concurrency as u64 + w as u64) % customers)
}

/// What a lookup by customer number amounts to in LDAP: the equality search for the
/// number under `ou=reseller`, then a subtree read of the customer found.
async fn raw_find_and_read(ldap: &mut Ldap, base: &str, number: &str, attrs: &[&str]) -> Result<(), String> {
    let e = |e: ldap3::LdapError| e.to_string();
    let (found, _) = ldap
        .search(
            &format!("ou=reseller,{base}"),
            Scope::Subtree,
            &format!("(&(objectClass=sstCustomer)(sgwCustomerNumber={number}))"),
            vec!["1.1"],
        )
        .await
        .map_err(e)?
        .success()
        .map_err(e)?;
    let [entry] = found.as_slice() else { return Err(format!("{number}: {} customers", found.len())) };
    let dn = SearchEntry::construct(entry.clone()).dn;
    let (es, _) = ldap.search(&dn, Scope::Subtree, "(objectClass=*)", attrs).await.map_err(e)?.success().map_err(e)?;
    if es.len() < 2 {
        return Err(format!("{number}: {} entries", es.len()));
    }
    Ok(())
}

/// The customer and the address entry the gateway writes for `subscription_body(number)`.
async fn raw_create(ldap: &mut Ldap, base: &str, number: &str) -> Result<(), String> {
    let key = format!("4000001/{number}");
    raw_create_with(ldap, base, |id| {
        let root = attrs(&[
            ("objectClass", &["top", "sstCustomer", "sstRelationship", "sgwSubscriptionCustomer"]),
            ("uid", &[&id.to_string()]),
            ("sstIsCompany", &["FALSE"]),
            ("sstIsActive", &["TRUE"]),
            ("sstBelongsToResellerUID", &["4000001"]),
            ("givenName", &["Ray"]),
            ("sn", &["Ankunding"]),
            ("sgwCustomerNumber", &[number]),
            ("sgwCustomerNumberKey", &[&key]),
            ("sgwSalutation", &["MR"]),
            ("sgwBirthDate", &["1984-11-11"]),
            ("sgwTaxIdentificationNumber", &["12345678L"]),
            ("sgwIdentificationNumber", &["700XXX651"]),
            ("sgwPaymentRegistrationID", &["275122"]),
        ]);
        let address = attrs(&[
            ("objectClass", &["top", "organizationalUnit", "sstAddress", "sgwSubscriptionAddress"]),
            ("ou", &["address"]),
            ("sstGender", &["m"]),
            ("givenName", &["Ray"]),
            ("sn", &["Ankunding"]),
            ("c", &["DE"]),
            ("postalCode", &["97687-7791"]),
            ("l", &["Schadenville"]),
            ("mail", &["Ray_Ankunding43@gmail.com"]),
            ("preferredLanguage", &["de"]),
            ("postalAddress", &["Bergnaum Mountains 1a"]),
            ("telephoneNumber", &["871.790.7578 x4882"]),
            ("mobile", &["+37258774XXX"]),
            ("sgwStreet", &["Bergnaum Mountains"]),
            ("sgwStreetNumber", &["1"]),
            ("sgwStreetNumberAdditional", &["a"]),
        ]);
        (root, address)
    })
    .await
}

pub async fn upsert(client: &reqwest::Client, url: &str, number: &str) -> Result<(), String> {
    let req = client
        .post(format!("{url}/subscriptions/v1/customers"))
        .header("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY)
        .json(&subscription_body(number));
    expect_status(req, 200).await
}

async fn lookup(client: &reqwest::Client, url: &str, number: &str) -> Result<(), String> {
    let req = client
        .get(format!("{url}/subscriptions/v1/customers/{number}"))
        .header("X-Subscription-Key", DEMO_SUBSCRIPTION_KEY);
    expect_status(req, 200).await
}

pub async fn subscriptions(out: &Path, customers: u64, concurrency: usize, seconds: u64, rounds: usize) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let slapd = Arc::new(slapd);
    let gw = start_gateway(&slapd).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().unwrap();
    let d = Duration::from_secs(seconds);
    let attrs: Arc<Vec<&'static str>> = Arc::new(table::all_attributes(&[&CUSTOMERS]));
    let base = slapd.suffix.clone();

    // The merchant's customers bench-0 … bench-<customers - 1>, created through the facade,
    // and found by the lookup before the runs start.
    let setup = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency as u64 {
        let (client, url) = (client.clone(), gw.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while n < customers {
                let number = format!("bench-{n}");
                upsert(&client, &url, &number).await.unwrap_or_else(|e| panic!("create {number}: {e}"));
                n += concurrency as u64;
            }
        }));
    }
    for t in tasks {
        t.await.expect("setup");
    }
    for n in 0..customers {
        let number = format!("bench-{n}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = lookup(&client, &gw.base, &number).await {
            assert!(Instant::now() < deadline, "GET {number}: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let setup = setup.elapsed().as_secs_f64();

    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(bind(&slapd).await);
    }
    let conns = Arc::new(conns);
    let (mut raw_get, mut gw_get, mut gw_update, mut raw_create_s, mut gw_create) =
        (Series::new(), Series::new(), Series::new(), Series::new(), Series::new());
    let seq = Arc::new(AtomicU64::new(0));
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        {
            let (conns, attrs, base) = (conns.clone(), attrs.clone(), base.clone());
            raw_get.add(
                load(concurrency, d, move |w, i| {
                    let mut ldap = conns[w].clone();
                    let (attrs, base) = (attrs.clone(), base.clone());
                    let number = existing(customers, w, i, concurrency);
                    Box::pin(async move { raw_find_and_read(&mut ldap, &base, &number, attrs.as_slice()).await })
                        as BoxFut
                })
                .await,
            );
        }
        {
            let (client, url) = (client.clone(), gw.base.clone());
            gw_get.add(
                load(concurrency, d, move |w, i| {
                    let (client, url) = (client.clone(), url.clone());
                    let number = existing(customers, w, i, concurrency);
                    Box::pin(async move { lookup(&client, &url, &number).await }) as BoxFut
                })
                .await,
            );
        }
        {
            let (client, url) = (client.clone(), gw.base.clone());
            gw_update.add(
                load(concurrency, d, move |w, i| {
                    let (client, url) = (client.clone(), url.clone());
                    let number = existing(customers, w, i, concurrency);
                    Box::pin(async move { upsert(&client, &url, &number).await }) as BoxFut
                })
                .await,
            );
        }
        {
            let (conns, base, seq) = (conns.clone(), base.clone(), seq.clone());
            raw_create_s.add(
                load(concurrency, d, move |w, _| {
                    let mut ldap = conns[w].clone();
                    let base = base.clone();
                    let number = format!("raw-{}", seq.fetch_add(1, Ordering::Relaxed));
                    Box::pin(async move { raw_create(&mut ldap, &base, &number).await }) as BoxFut
                })
                .await,
            );
        }
        {
            let (client, url, seq) = (client.clone(), gw.base.clone(), seq.clone());
            gw_create.add(
                load(concurrency, d, move |_, _| {
                    let (client, url) = (client.clone(), url.clone());
                    let number = format!("new-{}", seq.fetch_add(1, Ordering::Relaxed));
                    Box::pin(async move { upsert(&client, &url, &number).await }) as BoxFut
                })
                .await,
            );
        }
    }
    let rss = |g: &Gateway| memory_mib(g.child.id()).0;
    let body = format!(
        "## Subscriptions facade: GET and POST by customer number (`stoney-bench subscriptions`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. \
         Concurrency {concurrency}, {rounds} rounds of {seconds} s per workload, interleaved; \
         throughput is the median over rounds, latencies over all requests. Authenticated with \
         `X-Subscription-Key` (the demo key of reseller 4000001).\n\n\
         | workload | req/s | p50 ms | p99 ms | vs raw LDAP | errors |\n|---|---|---|---|---|---|\n\
         {}\n{}\n{}\n{}\n{}\n\n\
         Before the runs, {customers} customers `bench-0` … `bench-{last}` were created through the facade \
         with the seed's request body ({setup:.1} s, with the GETs that found them all). GET and the update \
         pick one of them per request; the update POSTs the same body again (an upsert that changes \
         nothing); the create POSTs that body with a new customer number each time. \
         Raw LDAP find and read (the baseline of GET and of the update): the equality search \
         `(&(objectClass=sstCustomer)(sgwCustomerNumber=bench-<i>))` under `ou=reseller` (subtree), then \
         one subtree search at the customer's DN with the mapping's attributes, one connection per worker; \
         that is what an upsert must at least do before it finds there is nothing to change. Raw LDAP \
         create: as in `stoney-bench element` (the two reseller checks, the counter's Modify-Increment \
         with Post-Read and a transaction adding the customer and its address entry), with the entries \
         the gateway writes for the seed's body (`sgwSubscriptionCustomer`, `sgwSubscriptionAddress`, \
         `sgwCustomerNumberKey` checked unique by slapd). The directory grows by every create, about \
         {created} customers in all. Gateway peak RSS: {} MiB.\n",
        row("raw LDAP: find and read one customer by number", &raw_get, None),
        row("gateway: GET /subscriptions/v1/customers/{customerNumber}", &gw_get, Some(&raw_get)),
        row("gateway: POST /subscriptions/v1/customers (update, no change)", &gw_update, Some(&raw_get)),
        row("raw LDAP: create one customer", &raw_create_s, None),
        row("gateway: POST /subscriptions/v1/customers (create)", &gw_create, Some(&raw_create_s)),
        rss(&gw),
        last = customers.saturating_sub(1),
        created = customers + raw_create_s.all.ops + gw_create.all.ops,
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "subscriptions", &body);
}
