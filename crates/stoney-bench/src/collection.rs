//! List queries over a large directory: deep pages sorted by customerName and by a billing
//! field, a filter with a sort, and a full-text search, at concurrency 1 and 8, next to
//! the straightforward LDAP translation of each (server-side sort + VLV for that page).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, Scope};
use stoney_gateway::directory::controls::{server_side_sort, virtual_list_view, SortKey};
use stoney_gateway::directory::escape::filter_value;
use stoney_gateway::mapping::resources::{CUSTOMERS, RESELLERS};
use stoney_slapd::{ldif_line, Slapd, SlapdOptions};

use crate::common::*;

const PER_PAGE: u64 = 30;
pub(crate) const SEARCH_TERM: &str = "müll";

pub(crate) const GIVEN: &[&str] = &[
    "Anna", "Jürg", "Zoë", "Lukas", "Käthi", "Émile", "Noah", "Léa", "Björn", "Chloé", "Ida", "Mia", "Luca", "Élodie",
    "Sören", "Ana", "José", "Paul", "Eva", "Nils",
];
pub(crate) const SURNAMES: &[&str] = &[
    "Müller",
    "Meier",
    "Schmid",
    "Keller",
    "Weber",
    "Huber",
    "Brunner",
    "Gerber",
    "Baumann",
    "Frei",
    "Zimmermann",
    "Moser",
    "Roth",
    "Graf",
    "Fischer",
    "Dubois",
    "Rossi",
    "García",
    "Nowak",
    "Öztürk",
];
const COMPANY_WORDS: &[&str] = &[
    "Alpen", "Berg", "Café", "Daten", "Energie", "Garten", "Holz", "Immo", "Kraft", "Licht", "Medien", "Nord", "Ost",
    "Reise", "Sonnen", "Technik", "Uhren", "Wasser", "Zahn", "Ärzte",
];
const COMPANY_KINDS: &[&str] = &["AG", "GmbH", "Sàrl", "& Co", "SA", "Genossenschaft"];
const PLACES: &[(&str, &str, &str)] = &[
    ("CH", "3011", "Bern"),
    ("CH", "8001", "Zürich"),
    ("CH", "1201", "Genève"),
    ("CH", "4051", "Basel"),
    ("CH", "6003", "Luzern"),
    ("DE", "10115", "Berlin"),
    ("DE", "80331", "München"),
    ("DE", "20095", "Hamburg"),
    ("AT", "1010", "Wien"),
    ("FR", "75001", "Paris"),
    ("IT", "20121", "Milano"),
    ("US", "10001", "New York"),
];

/// Customers 6000001.. spread over the demo resellers, each with a billing address and
/// every fourth with a shipping address, as LDIF for slapadd.
pub(crate) fn generate(n: u64, suffix: &str) -> String {
    let mut s = String::with_capacity(n as usize * 900);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as usize
    };
    for i in 0..n {
        let id = 6_000_001 + i;
        let reseller = 4_000_001 + i % 3;
        let company = next(2) == 0;
        let given = GIVEN[next(GIVEN.len())];
        let surname = SURNAMES[next(SURNAMES.len())];
        let (c, pc, l) = PLACES[next(PLACES.len())];
        let dn = format!("uid={id},{}", CUSTOMERS.container_dn(suffix, reseller));
        let _ = write!(
            s,
            "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: {id}\n\
             sstIsCompany: {}\nsstIsActive: {}\nsstBelongsToResellerUID: {reseller}\n",
            if company { "TRUE" } else { "FALSE" },
            if next(10) == 0 { "FALSE" } else { "TRUE" },
        );
        let name = format!(
            "{}{} {}",
            COMPANY_WORDS[next(COMPANY_WORDS.len())],
            ["", "tech", "haus", "werk", "zentrum"][next(5)],
            COMPANY_KINDS[next(COMPANY_KINDS.len())]
        );
        if company {
            s.push_str(&ldif_line("o", &name));
        } else {
            s.push_str(&ldif_line("givenName", given));
            s.push_str(&ldif_line("sn", surname));
        }
        if next(3) == 0 {
            let _ = writeln!(s, "sstExternalID: CRM-{id}");
        }
        s.push('\n');
        for ou in ["address", "shipping"] {
            if ou == "shipping" && i % 4 != 0 {
                continue;
            }
            let _ = write!(
                s,
                "dn: ou={ou},{dn}\nobjectClass: top\nobjectClass: organizationalUnit\nobjectClass: sstAddress\n\
                 ou: {ou}\nsstGender: {}\nc: {c}\npostalCode: {}\npreferredLanguage: de-CH\n\
                 mail: customer{id}@example.com\npostalAddress: Hauptgasse {}\ntelephoneNumber: +41 31 {:03} {:02} {:02}\n",
                ["f", "m", "n"][next(3)],
                postal_code(id, pc),
                1 + next(200),
                next(1000),
                next(100),
                next(100),
            );
            s.push_str(&ldif_line("givenName", given));
            s.push_str(&ldif_line("sn", surname));
            s.push_str(&ldif_line("l", l));
            if company {
                s.push_str(&ldif_line("o", &name));
            }
            if c == "US" {
                s.push_str("st: NY\n");
            }
            s.push('\n');
        }
    }
    s
}

/// A postal code of the customer's country (of its form there), 9,000 distinct over all
/// customers: a field of many values.
fn postal_code(id: u64, of_place: &str) -> String {
    let n = 1000 + (id * 7919) % 9000;
    if of_place.len() == 5 {
        format!("{n}0")
    } else {
        n.to_string()
    }
}

/// One query of the benchmark: through the gateway and as raw LDAP.
struct Workload {
    name: String,
    query: String,
    raw: RawQuery,
}

#[derive(Clone)]
struct RawQuery {
    filter: String,
    sort: SortKey,
    /// 1-based VLV offset of the page's first entry.
    offset: i64,
}

fn workloads(total: u64) -> Vec<Workload> {
    let last = total.div_ceil(PER_PAGE);
    let key = |attr: &str, reverse| SortKey {
        attr: attr.into(),
        ordering_rule: Some("caseIgnoreOrderingMatch".into()),
        reverse,
    };
    let customers = "(objectClass=sstCustomer)".to_string();
    let billing = "(&(objectClass=sstAddress)(ou=address))".to_string();
    let mut out = Vec::new();
    for (label, sort, filter, k) in [
        ("customerName", "customerName", &customers, key("o", false)),
        ("-localityName", "-localityName", &billing, key("l", true)),
    ] {
        for (page_label, page) in [("page 1", 1), ("page 1000", 1000), ("last page", last)] {
            out.push(Workload {
                name: format!("{page_label}, sort={label}"),
                query: format!("sort={sort}&per_page={PER_PAGE}&page={page}"),
                raw: RawQuery { filter: filter.clone(), sort: k.clone(), offset: ((page - 1) * PER_PAGE + 1) as i64 },
            });
        }
    }
    out.push(Workload {
        name: "countryCode=CH, sort=customerName".into(),
        query: format!("countryCode=CH&sort=customerName&per_page={PER_PAGE}"),
        raw: RawQuery {
            filter: "(&(objectClass=sstAddress)(ou=address)(c=CH))".into(),
            sort: key("o", false),
            offset: 1,
        },
    });
    let t = filter_value(SEARCH_TERM);
    let any: String = ["uid", "o", "sstExternalID", "givenName", "sn", "mail", "postalAddress", "postalCode", "l"]
        .iter()
        .map(|a| format!("({a}=*{t}*)"))
        .collect();
    out.push(Workload {
        name: format!("q={SEARCH_TERM}"),
        query: format!("q={}&per_page={PER_PAGE}", "m%C3%BCll"),
        raw: RawQuery {
            filter: format!("(&(|(objectClass=sstCustomer)(&(objectClass=sstAddress)(ou=address)))(|{any}))"),
            sort: key("uid", false),
            offset: 1,
        },
    });
    out
}

async fn raw_page(ldap: &mut Ldap, base: &str, q: &RawQuery) -> Result<(), String> {
    let controls =
        vec![server_side_sort(std::slice::from_ref(&q.sort)), virtual_list_view(0, PER_PAGE as i64 - 1, q.offset, 0)];
    let (entries, res) = ldap
        .with_controls(controls)
        .search(
            base,
            Scope::Subtree,
            &q.filter,
            vec!["uid", "o", "givenName", "sn", "c", "postalCode", "l", "sstIsActive", "sstIsCompany"],
        )
        .await
        .map_err(|e| e.to_string())?
        .success()
        .map_err(|e| e.to_string())?;
    let _ = res;
    if entries.is_empty() {
        return Err("no entries".into());
    }
    Ok(())
}

/// Waits until slapd answers at once again: sorts of the raw runs that the clients gave
/// up on still run in slapd, and the next run must not queue behind them.
pub(crate) async fn settle(slapd: &Slapd) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let t = Instant::now();
        let mut ldap = bind(slapd).await;
        let _ = ldap.search("", Scope::Base, "(objectClass=*)", vec!["1.1"]).await;
        let _ = ldap.unbind().await;
        if t.elapsed() < Duration::from_millis(20) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A private slapd with the demo data and `customers` generated ones (`generate`), and
/// how long slapadd took.
pub(crate) async fn generated_directory(customers: u64) -> (Slapd, Duration) {
    eprintln!("generating {customers} customers");
    let ldif = generate(customers, stoney_slapd::DEFAULT_SUFFIX);
    let t = Instant::now();
    let slapd = tokio::task::spawn_blocking(move || {
        Slapd::start(SlapdOptions { demo_data: true, extra_ldif: vec![ldif], ..Default::default() })
    })
    .await
    .unwrap()
    .expect("slapd");
    (slapd, t.elapsed())
}

pub async fn collection(out: &Path, customers: u64, seconds: u64, rounds: usize) {
    let suffix = stoney_slapd::DEFAULT_SUFFIX.to_string();
    let (slapd, loaded_in) = generated_directory(customers).await;
    eprintln!("slapd loaded in {loaded_in:?}");
    let t = Instant::now();
    let gw = start_gateway(&slapd).await;
    let ready_in = t.elapsed();
    let (hwm_loaded, rss_loaded) = memory_mib(gw.child.id());
    eprintln!("gateway ready in {ready_in:?}, {rss_loaded} MiB");

    let client = reqwest::Client::builder().pool_max_idle_per_host(32).build().unwrap();
    let total = total_count(&client, &format!("{}/v1/customers?per_page=1", gw.base)).await.expect("a list");
    let base = RESELLERS.container_dn(&suffix, 0);
    let slapd = Arc::new(slapd);
    let d = Duration::from_secs(seconds);
    let loads = workloads(total);
    let mut table = String::new();
    for c in [1usize, 8] {
        for w in &loads {
            let (mut gw_series, mut raw_series) = (Series::new(), Series::new());
            for _ in 0..rounds {
                let (client, url) = (client.clone(), format!("{}/v1/customers?{}", gw.base, w.query));
                gw_series.add(
                    load(c, d, move |_, _| {
                        let (client, url) = (client.clone(), url.clone());
                        let req = client.get(&url).basic_auth("admin@stoney-cloud.org", Some("admin-secret"));
                        Box::pin(expect_status(req, 200)) as BoxFut
                    })
                    .await,
                );
                // A connection per request: sssvlv keeps a VLV's sorted list per connection
                // and refuses a new sort on it ("Other sort requests already in progress").
                let (db, base, raw) = (slapd.clone(), base.clone(), w.raw.clone());
                raw_series.add(
                    load(c, d, move |_, _| {
                        let slapd = db.clone();
                        let (base, raw) = (base.clone(), raw.clone());
                        Box::pin(async move {
                            let mut ldap = bind(&slapd).await;
                            let res = raw_page(&mut ldap, &base, &raw).await;
                            let _ = ldap.unbind().await;
                            res
                        }) as BoxFut
                    })
                    .await,
                );
                settle(&slapd).await;
            }
            eprintln!(
                "c={c} {}: gateway p50 {:.1} ms, raw p50 {:.1} ms",
                w.name,
                gw_series.all.pct(0.5),
                raw_series.all.pct(0.5)
            );
            let _ = writeln!(
                table,
                "| {} | {c} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
                w.name,
                gw_series.all.pct(0.5),
                gw_series.all.pct(0.99),
                gw_series.median_rate(),
                raw_series.all.pct(0.5),
                raw_series.all.pct(0.99),
                raw_series.median_rate(),
                gw_series.all.errors + raw_series.all.errors,
            );
        }
    }
    let (hwm, rss) = memory_mib(gw.child.id());
    let body = format!(
        "## Collections at {customers} customers (`stoney-bench collection`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. {total} customers \
         (the demo data and {customers} generated ones, each with a billing address, every fourth with a \
         shipping address: {entries} entries); pages of {PER_PAGE}. For each query and concurrency: \
         {rounds} rounds of {seconds} s through the gateway, then the same for its raw-LDAP translation; \
         latencies over all requests, throughput the median over rounds.\n\n\
         | query | concurrency | gateway p50 ms | gateway p99 ms | gateway req/s | raw LDAP p50 ms | raw LDAP p99 ms | raw LDAP req/s | errors |\n\
         |---|---|---|---|---|---|---|---|---|\n{table}\n\
         Raw LDAP is the straightforward translation, one search per page with server-side sort (RFC 2891) and \
         a virtual list view for the page, on a new connection bound as the gateway (sssvlv keeps a VLV's \
         sorted list per connection and refuses another sort on it; connecting and binding take about 1 ms): customer entries sorted by `o` for \
         customerName (which is only the companies' name); billing entries sorted by `l` for -localityName \
         (it would still have to fetch each page's customers); billing entries with `(c=CH)` sorted by their \
         `o` for the filter; an OR of substring filters over the customer and billing entries sorted by `uid` \
         for q.\n\n\
         Loading: slapadd built the directory in {loaded:.1} s; the gateway was ready (customer index loaded \
         by the sync refresh) {ready:.1} s after it started, at {rss_loaded} MiB resident (peak {hwm_loaded} MiB). \
         After all runs the gateway was at {rss} MiB resident, peak {hwm} MiB.\n",
        date = now(),
        machine = machine(),
        entries = customers * 2 + customers / 4,
        loaded = loaded_in.as_secs_f64(),
        ready = ready_in.as_secs_f64(),
    );
    println!("{body}");
    write_section(out, "collection", &body);
}
