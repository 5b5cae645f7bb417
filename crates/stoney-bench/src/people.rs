//! People over a large directory: sorted pages, an exact mail filter, a full-text search,
//! a customer's users and employees and the global search, as the provider admin and as a
//! reseller, at concurrency 1 and 8, next to the straightforward LDAP translation of the
//! people lists (server-side sort + VLV for the page, an equality search for the mail).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, Scope};
use stoney_gateway::directory::controls::{server_side_sort, virtual_list_view, SortKey};
use stoney_gateway::directory::escape::filter_value;
use stoney_gateway::mapping::resources::PEOPLE;
use stoney_slapd::{ldif_line, Slapd, SlapdOptions};

use crate::collection::{generate, settle, GIVEN, SEARCH_TERM, SURNAMES};
use crate::common::*;

const PER_PAGE: u64 = 30;
/// The generated customers' first uid (as `collection::generate` numbers them).
const FIRST_CUSTOMER: u64 = 6_000_001;
/// The generated people's first uid, clear of the customers' range.
const FIRST_PERSON: u64 = 8_000_001;
/// The reseller the reseller caller works for.
const RESELLER: u64 = 4_000_001;
/// Any `{SSHA}` value (this one is demo-secret): the schema makes userPassword MUST.
const PASSWORD: &str = "{SSHA}Hbs/LIr0neAxpp0GMcSUz+JueX99gMPb";
/// Targets at concurrency 8 for the people lists and the search, in ms.
const TARGET_P50: f64 = 10.0;
const TARGET_P99: f64 = 50.0;

/// Who calls the gateway, and the scope of what it sees as an LDAP filter.
struct Caller {
    label: &'static str,
    user: &'static str,
    password: &'static str,
    scope: &'static str,
}

const CALLERS: &[Caller] = &[
    Caller {
        label: "provider admin",
        user: "admin@stoney-cloud.org",
        password: "admin-secret",
        scope: "(objectClass=sstPerson)",
    },
    Caller {
        label: "reseller",
        user: "reseller1@example.com",
        password: "reseller1-secret",
        scope: "(&(objectClass=sstPerson)(sstBelongsToResellerUID=4000001))",
    },
];

/// For each of the `n` customers of `collection::generate` a user (sstBelongsToCustomerUID)
/// and an employee (sstEmployeeOfUID), both of the customer's reseller, uids 8000001..,
/// as LDIF for slapadd.
fn generate_people(n: u64, suffix: &str) -> String {
    let container = PEOPLE.container_dn(suffix, 0);
    let mut s = String::with_capacity(n as usize * 2 * 480);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    for i in 0..n {
        let customer = FIRST_CUSTOMER + i;
        let reseller = RESELLER + i % 3;
        for (k, role) in ["user", "employee"].into_iter().enumerate() {
            let uid = FIRST_PERSON + 2 * i + k as u64;
            let given = GIVEN[next(GIVEN.len())];
            let surname = SURNAMES[next(SURNAMES.len())];
            let _ = write!(
                s,
                "dn: uid={uid},{container}\nobjectClass: top\nobjectClass: sstPerson\nuid: {uid}\n\
                 sstGender: {}\nmail: {role}{uid}@example.com\npreferredLanguage: {}\nsstTimeZoneOffset: UTC+01\n\
                 sstIsActive: {}\nuserPassword: {PASSWORD}\ntelephoneNumber: +41 31 {:03} {:02} {:02}\n",
                ["f", "m", "n"][next(3)],
                ["de-CH", "fr-CH", "it-CH", "en-GB"][next(4)],
                if next(20) == 0 { "FALSE" } else { "TRUE" },
                next(1000),
                next(100),
                next(100),
            );
            s.push_str(&ldif_line("cn", &format!("{given} {surname}")));
            s.push_str(&ldif_line("givenName", given));
            s.push_str(&ldif_line("sn", surname));
            if next(3) == 0 {
                let _ = writeln!(s, "mobile: +41 79 {:03} {:02} {:02}", next(1000), next(100), next(100));
            }
            let _ = writeln!(s, "sstBelongsToResellerUID: {reseller}");
            if role == "user" {
                let _ = writeln!(s, "sstBelongsToCustomerUID: {customer}");
            } else {
                let _ = writeln!(s, "sstEmployeeOfUID: {customer}");
            }
            s.push('\n');
        }
    }
    s
}

/// One query of the benchmark: through the gateway and, for the people lists, as raw LDAP.
struct Workload {
    name: String,
    /// Path and query below the gateway's base.
    path: String,
    raw: Option<RawQuery>,
    /// Whether the targets apply (the people lists and the search).
    target: bool,
}

#[derive(Clone)]
struct RawQuery {
    filter: String,
    /// Server-side sort and a VLV page at this 1-based offset; none for a plain search.
    sort: Option<(SortKey, i64)>,
}

fn workloads(caller: &Caller, total: u64, customers: u64) -> Vec<Workload> {
    let last = total.div_ceil(PER_PAGE).max(1);
    let key = |attr: &str| SortKey {
        attr: attr.into(),
        ordering_rule: Some("caseIgnoreOrderingMatch".into()),
        reverse: false,
    };
    let scope = caller.scope;
    let mut out = Vec::new();
    // Page 1000, or the last one in a directory too small for it (a small trial run).
    let deep = 1000.min(last);
    for (page_label, page) in [("page 1".to_string(), 1), (format!("page {deep}"), deep), ("last page".into(), last)] {
        out.push(Workload {
            name: format!("people {page_label}, sort=surname"),
            path: format!("/v1/people?sort=surname&per_page={PER_PAGE}&page={page}"),
            raw: Some(RawQuery { filter: scope.into(), sort: Some((key("sn"), ((page - 1) * PER_PAGE + 1) as i64)) }),
            target: true,
        });
    }
    // A customer of the reseller in the middle of the range (every third is its), its user.
    let k = customers / 2 / 3 * 3;
    let customer = FIRST_CUSTOMER + k;
    let mail = format!("user{}@example.com", FIRST_PERSON + 2 * k);
    out.push(Workload {
        name: format!("people mail={mail}"),
        path: format!("/v1/people?mail={mail}"),
        raw: Some(RawQuery { filter: format!("(&{scope}(mail={}))", filter_value(&mail)), sort: None }),
        target: true,
    });
    let t = filter_value(SEARCH_TERM);
    let any: String = ["uid", "givenName", "sn", "mail"].iter().map(|a| format!("({a}=*{t}*)")).collect();
    out.push(Workload {
        name: format!("people q={SEARCH_TERM}"),
        path: format!("/v1/people?q={}&per_page={PER_PAGE}", "m%C3%BCll"),
        raw: Some(RawQuery { filter: format!("(&{scope}(|{any}))"), sort: Some((key("uid"), 1)) }),
        target: true,
    });
    for rel in ["users", "employees"] {
        out.push(Workload {
            name: format!("customers/{customer}/{rel}"),
            path: format!("/v1/customers/{customer}/{rel}"),
            raw: None,
            target: false,
        });
    }
    out.push(Workload {
        name: format!("search q={SEARCH_TERM}"),
        path: format!("/v1/search?q={}", "m%C3%BCll"),
        raw: None,
        target: true,
    });
    out
}

async fn raw_search(ldap: &mut Ldap, base: &str, q: &RawQuery) -> Result<(), String> {
    if let Some((key, offset)) = &q.sort {
        ldap.with_controls(vec![
            server_side_sort(std::slice::from_ref(key)),
            virtual_list_view(0, PER_PAGE as i64 - 1, *offset, 0),
        ]);
    }
    let (entries, _res) = ldap
        .search(
            base,
            Scope::Subtree,
            &q.filter,
            vec!["uid", "givenName", "sn", "mail", "sstIsActive", "sstBelongsToCustomerUID", "sstBelongsToResellerUID"],
        )
        .await
        .map_err(|e| e.to_string())?
        .success()
        .map_err(|e| e.to_string())?;
    if entries.is_empty() {
        return Err("no entries".into());
    }
    Ok(())
}

fn target_met(w: &Workload, c: usize, s: &Series) -> &'static str {
    if !w.target || c != 8 {
        "—"
    } else if s.all.pct(0.5) <= TARGET_P50 && s.all.pct(0.99) <= TARGET_P99 {
        "met"
    } else {
        "missed"
    }
}

pub async fn people(out: &Path, customers: u64, seconds: u64, rounds: usize) {
    let suffix = stoney_slapd::DEFAULT_SUFFIX.to_string();
    eprintln!("generating {customers} customers and {} people", customers * 2);
    let ldif = vec![generate(customers, &suffix), generate_people(customers, &suffix)];
    let t = Instant::now();
    let slapd = tokio::task::spawn_blocking(move || {
        Slapd::start(SlapdOptions { demo_data: true, extra_ldif: ldif, ..Default::default() })
    })
    .await
    .unwrap()
    .expect("slapd");
    let loaded_in = t.elapsed();
    eprintln!("slapd loaded in {loaded_in:?}");
    let t = Instant::now();
    let gw = start_gateway(&slapd).await;
    let ready_in = t.elapsed();
    let (hwm_loaded, rss_loaded) = memory_mib(gw.child.id());
    eprintln!("gateway ready in {ready_in:?}, {rss_loaded} MiB");

    let client = reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap();
    let count = |path: String, caller: &'static Caller| {
        let client = client.clone();
        let url = format!("{}{path}", gw.base);
        async move {
            let res = client.get(&url).basic_auth(caller.user, Some(caller.password)).send().await.expect("request");
            let status = res.status();
            let total = res.headers().get("x-total-count").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = res.text().await.unwrap_or_default();
            if !status.is_success() {
                eprintln!("{} GET {url}: {status} {body}", caller.label);
            }
            (status.as_u16(), total)
        }
    };
    let mut loads = Vec::new();
    let mut totals = Vec::new();
    for caller in CALLERS {
        let (_, total) = count("/v1/people?per_page=1".into(), caller).await;
        let total: u64 = total.expect("x-total-count").parse().unwrap();
        eprintln!("{}: {total} people", caller.label);
        let ws = workloads(caller, total, customers);
        // Each query once, so that a wrong one shows before the runs.
        for w in &ws {
            let (status, n) = count(w.path.clone(), caller).await;
            eprintln!("{} {}: status {status}, total {}", caller.label, w.name, n.as_deref().unwrap_or("—"));
        }
        totals.push((caller.label, total));
        loads.push((caller, ws));
    }
    let base = PEOPLE.container_dn(&suffix, 0);
    let slapd = Arc::new(slapd);
    let d = Duration::from_secs(seconds);
    let mut table = String::new();
    let (mut met, mut applicable) = (0, 0);
    for c in [1usize, 8] {
        for (caller, ws) in &loads {
            for w in ws {
                let (mut gw_series, mut raw_series) = (Series::new(), Series::new());
                for _ in 0..rounds {
                    let (client, url) = (client.clone(), format!("{}{}", gw.base, w.path));
                    let (user, password) = (caller.user, caller.password);
                    gw_series.add(
                        load(c, d, move |_, _| {
                            let req = client.get(&url).basic_auth(user, Some(password));
                            Box::pin(expect_status(req, 200)) as BoxFut
                        })
                        .await,
                    );
                    let Some(raw) = &w.raw else { continue };
                    // A connection per request, as in `collection`: sssvlv keeps a VLV's
                    // sorted list per connection and refuses a new sort on it.
                    let (db, base, raw) = (slapd.clone(), base.clone(), raw.clone());
                    raw_series.add(
                        load(c, d, move |_, _| {
                            let slapd = db.clone();
                            let (base, raw) = (base.clone(), raw.clone());
                            Box::pin(async move {
                                let mut ldap = bind(&slapd).await;
                                let res = raw_search(&mut ldap, &base, &raw).await;
                                let _ = ldap.unbind().await;
                                res
                            }) as BoxFut
                        })
                        .await,
                    );
                    settle(&slapd).await;
                }
                let verdict = target_met(w, c, &gw_series);
                if verdict != "—" {
                    applicable += 1;
                    met += (verdict == "met") as usize;
                }
                let raw_cols = if w.raw.is_some() {
                    format!(
                        "{:.1} | {:.1} | {:.0}",
                        raw_series.all.pct(0.5),
                        raw_series.all.pct(0.99),
                        raw_series.median_rate()
                    )
                } else {
                    "— | — | —".into()
                };
                eprintln!(
                    "c={c} {} {}: gateway p50 {:.1} ms p99 {:.1} ms, raw {raw_cols}",
                    caller.label,
                    w.name,
                    gw_series.all.pct(0.5),
                    gw_series.all.pct(0.99),
                );
                let _ = writeln!(
                    table,
                    "| {} | {} | {c} | {:.1} | {:.1} | {:.0} | {raw_cols} | {verdict} | {} |",
                    w.name,
                    caller.label,
                    gw_series.all.pct(0.5),
                    gw_series.all.pct(0.99),
                    gw_series.median_rate(),
                    gw_series.all.errors + raw_series.all.errors,
                );
            }
        }
    }
    let (hwm, rss) = memory_mib(gw.child.id());
    let seen: Vec<String> = totals.iter().map(|(l, t)| format!("the {l} sees {t}")).collect();
    let body = format!(
        "## People at {customers} customers (`stoney-bench people`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. {customers} generated \
         customers (as in `stoney-bench collection`: {entries} entries with their addresses) and {people} \
         generated people, for each customer a user (belongsToCustomerID) and an employee (employeeOfID), \
         both of the customer's reseller, next to the demo data; {seen} people. Each query as the provider \
         admin (`admin@stoney-cloud.org`) and as a reseller (`reseller1@example.com`, about a third of the \
         people); pages of {PER_PAGE}. For each query, caller and concurrency: {rounds} rounds of {seconds} s \
         through the gateway, then the same for its raw-LDAP translation where there is one; latencies over \
         all requests, throughput the median over rounds. Targets at concurrency 8 for the people lists and \
         `/v1/search`: p50 ≤ {TARGET_P50:.0} ms and p99 ≤ {TARGET_P99:.0} ms through the gateway \
         ({met} of {applicable} met).\n\n\
         | query | caller | concurrency | gateway p50 ms | gateway p99 ms | gateway req/s | raw LDAP p50 ms | raw LDAP p99 ms | raw LDAP req/s | target | errors |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n{table}\n\
         Raw LDAP is the straightforward translation of the people lists, one search under `ou=people` on a \
         new connection bound as the gateway (sssvlv keeps a VLV's sorted list per connection and refuses \
         another sort on it; connecting and binding take about 1 ms), with the caller's scope in the filter \
         (`(objectClass=sstPerson)`, for the reseller also `(sstBelongsToResellerUID={RESELLER})`): \
         server-side sort (RFC 2891) by `sn` and a virtual list view for the page for the sorted pages; an \
         equality search `(mail=…)` for the mail filter; an OR of substring filters over `uid`, `givenName`, \
         `sn` and `mail` sorted by `uid` (first page) for q. A customer's users and employees and \
         `/v1/search` have no raw baseline.\n\n\
         Loading: slapadd built the directory in {loaded:.1} s; the gateway was ready (indexes loaded by \
         the sync refresh) {ready:.1} s after it started, at {rss_loaded} MiB resident (peak {hwm_loaded} MiB). \
         After all runs the gateway was at {rss} MiB resident, peak {hwm} MiB.\n",
        date = now(),
        machine = machine(),
        entries = customers * 2 + customers / 4,
        people = customers * 2,
        seen = seen.join(", "),
        loaded = loaded_in.as_secs_f64(),
        ready = ready_in.as_secs_f64(),
    );
    println!("{body}");
    write_section(out, "people", &body);
}
