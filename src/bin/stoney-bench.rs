//! Benchmarks: the gateway next to a raw-LDAP baseline that does the same LDAP work with
//! ldap3 directly, in the same run, on a private slapd from the launcher. The figures go
//! into docs/BENCHMARKS.md (a section per benchmark, between markers).
//!
//!     cargo run --release --features bench --bin stoney-bench -- element

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ldap3::controls::{PostRead, TxnSpec};
use ldap3::exop::{EndTxn, StartTxn};
use ldap3::{Ldap, LdapConnAsync, Mod, Scope};
use serde_json::{json, Value};
use stoney_gateway::directory::layout;
use stoney_gateway::directory::slapd::{Slapd, SlapdOptions};
use stoney_gateway::mapping::table;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// The Markdown file the figures are written into.
    #[arg(long, default_value = "docs/BENCHMARKS.md", global = true)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// GET and POST of one customer, with and without authentication, vs raw LDAP.
    Element {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

#[derive(Default, Clone)]
struct Stats {
    ops: u64,
    errors: u64,
    secs: f64,
    micros: Vec<u32>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let mut v = self.micros.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

/// Runs `concurrency` workers for `duration`; each calls `op(worker, iteration)`.
async fn load<F>(concurrency: usize, duration: Duration, op: F) -> Stats
where
    F: Fn(usize, u64) -> BoxFut + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Stats::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                // A request that hangs counts as an error instead of stalling the run.
                let res = tokio::time::timeout(Duration::from_secs(10), op(w, i))
                    .await
                    .unwrap_or_else(|_| Err("no answer within 10 s".into()));
                match res {
                    Ok(()) => {
                        s.ops += 1;
                        s.micros.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(e) => {
                        if s.errors == 0 {
                            eprintln!("worker {w}: {e}");
                        }
                        s.errors += 1;
                    }
                }
                i += 1;
            }
            s
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let s = t.await.expect("worker");
        all.ops += s.ops;
        all.errors += s.errors;
        all.micros.extend(s.micros);
    }
    all.secs = start.elapsed().as_secs_f64();
    all
}

/// Several rounds of one workload: the median throughput and the latencies of all rounds.
struct Series {
    rates: Vec<f64>,
    all: Stats,
}

impl Series {
    fn new() -> Self {
        Series { rates: Vec::new(), all: Stats::default() }
    }
    fn add(&mut self, s: Stats) {
        self.rates.push(s.rate());
        self.all.ops += s.ops;
        self.all.errors += s.errors;
        self.all.micros.extend(s.micros);
    }
    fn median_rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(|a, b| a.total_cmp(b));
        r[r.len() / 2]
    }
}

struct Gateway {
    child: Child,
    base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway_binary() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.parent().expect("bin dir").join("stoney-gateway")
}

async fn start_gateway(slapd: &Slapd, no_auth: bool) -> Gateway {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(gateway_binary());
    cmd.arg("serve")
        .env("STONEY__LISTEN", format!("127.0.0.1:{port}"))
        .env("STONEY__LDAP__URLS", &slapd.url)
        .env("STONEY__LDAP__BIND_DN", &slapd.gateway_dn)
        .env("STONEY__LDAP__BIND_PASSWORD", &slapd.gateway_password)
        .env("STONEY__LDAP__BASE_DN", &slapd.suffix)
        .env("STONEY__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if no_auth {
        cmd.env("STONEY_BENCH_NO_AUTH", "1");
    }
    // Owned by the guard at once, so a gateway that never gets ready is still stopped.
    let gateway = Gateway {
        child: cmd.spawn().expect("gateway starts (build it with --features bench --bins)"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("{}/ready", gateway.base)).send().await {
            if r.status() == 200 {
                return gateway;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gateway did not become ready");
}

async fn bind(slapd: &Slapd) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url).await.expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(&slapd.gateway_dn, &slapd.gateway_password).await.expect("bind").success().expect("bind ok");
    ldap
}

fn demo_customer(i: u64) -> (u64, u64) {
    let id = 5_000_001 + i % 60;
    (id, 4_000_001 + (id - 5_000_001) / 20)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let slapd = Command::new("/usr/sbin/slapd").arg("-VV").output().ok().map(|o| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .trim_start_matches("@(#) $OpenLDAP: ")
            .trim_end_matches('$')
            .trim()
            .to_string()
    });
    format!("{cores} cores ({cpu}), {mem} GiB RAM; {}", slapd.unwrap_or_default())
}

fn now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Replaces the section between `<!-- name:begin -->` and `<!-- name:end -->`.
fn write_section(path: &Path, name: &str, body: &str) {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{begin}\n{body}\n{end}");
    let new = match (text.find(&begin), text.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &text[..a], section, &text[b + end.len()..]),
        _ => format!("{}\n{}\n", text.trim_end(), section),
    };
    std::fs::write(path, new).expect("write benchmarks");
}

fn row(name: &str, s: &Series, base: Option<&Series>) -> String {
    let ratio =
        base.map(|b| format!("{:.0}%", 100.0 * s.median_rate() / b.median_rate())).unwrap_or_else(|| "—".into());
    format!(
        "| {name} | {:.0} | {:.2} | {:.2} | {ratio} | {} |",
        s.median_rate(),
        s.all.pct(0.5),
        s.all.pct(0.99),
        s.all.errors
    )
}

fn customer_body(i: u64) -> Value {
    json!({
        "isCompany": true, "customerName": format!("Bench {i} AG"), "belongsToResellerID": 4000001,
        "billingAddress": {"gender": "f", "givenName": "Zoë", "surname": "Müller", "postalAddress": "Hauptgasse 1",
            "countryCode": "CH", "postalCode": "3011", "localityName": "Bern", "preferredLanguage": "de-CH",
            "mail": "zoe@example.com"}
    })
}

async fn element(out: &Path, concurrency: usize, seconds: u64, rounds: usize) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let slapd = Arc::new(slapd);
    let gw = start_gateway(&slapd, false).await;
    let gw_open = start_gateway(&slapd, true).await;
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build().unwrap();
    let d = Duration::from_secs(seconds);
    let attrs: Arc<Vec<&'static str>> = Arc::new(table::all_attributes());
    let base = slapd.suffix.clone();

    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(bind(&slapd).await);
    }
    let conns = Arc::new(conns);
    let (mut raw_get, mut gw_get, mut gw_get_open, mut raw_post, mut gw_post) =
        (Series::new(), Series::new(), Series::new(), Series::new(), Series::new());
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
                                &layout::customer_dn(&base, r, id),
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
        for (series, g, auth) in [(&mut gw_get, &gw, true), (&mut gw_get_open, &gw_open, false)] {
            let (client, url) = (client.clone(), g.base.clone());
            series.add(
                load(concurrency, d, move |w, i| {
                    let client = client.clone();
                    let url = url.clone();
                    Box::pin(async move {
                        let (id, _) = demo_customer(i * 7 + w as u64);
                        let mut req = client.get(format!("{url}/v1/customers/{id}"));
                        if auth {
                            req = req.basic_auth("admin@stoney-cloud.org", Some("admin-secret"));
                        }
                        let res = req.send().await.map_err(|e| e.to_string())?;
                        if res.status() != 200 {
                            return Err(format!("status {}", res.status()));
                        }
                        res.bytes().await.map_err(|e| e.to_string())?;
                        Ok(())
                    }) as BoxFut
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
                    Box::pin(async move {
                        let res = client
                            .post(format!("{url}/v1/customers"))
                            .basic_auth("admin@stoney-cloud.org", Some("admin-secret"))
                            .json(&customer_body(n))
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if res.status() != 201 {
                            return Err(format!("status {}", res.status()));
                        }
                        res.bytes().await.map_err(|e| e.to_string())?;
                        Ok(())
                    }) as BoxFut
                })
                .await,
            );
        }
    }
    let rss = |g: &Gateway| {
        std::fs::read_to_string(format!("/proc/{}/status", g.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM"))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024)
            })
            .unwrap_or(0)
    };
    let body = format!(
        "## Customer element: GET and POST (`stoney-bench element`)\n\n\
         {date}; {machine}. slapd, gateway and load generator share the machine. \
         Concurrency {concurrency}, {rounds} rounds of {seconds} s per workload, interleaved; \
         throughput is the median over rounds, latencies over all requests.\n\n\
         | workload | req/s | p50 ms | p99 ms | vs raw LDAP | errors |\n|---|---|---|---|---|---|\n\
         {}\n{}\n{}\n{}\n{}\n\n\
         Raw LDAP GET: one subtree search at the customer's DN with the mapping's attributes, one \
         connection per worker (what the gateway does for a known id). Raw LDAP POST: the two reseller \
         checks, the counter's Modify-Increment with Post-Read and a transaction adding the customer and \
         its billing address. Gateway peak RSS: {} MiB (with auth), {} MiB (without).\n",
        row("raw LDAP: read one customer", &raw_get, None),
        row("gateway: GET /v1/customers/{id}", &gw_get, Some(&raw_get)),
        row("gateway: GET without authentication", &gw_get_open, Some(&raw_get)),
        row("raw LDAP: create one customer", &raw_post, None),
        row("gateway: POST /v1/customers", &gw_post, Some(&raw_post)),
        rss(&gw),
        rss(&gw_open),
        date = now(),
        machine = machine(),
    );
    println!("{body}");
    write_section(out, "element", &body);
}

async fn raw_create(ldap: &mut Ldap, base: &str, n: u64) -> Result<(), String> {
    let e = |e: ldap3::LdapError| e.to_string();
    let r = 4_000_001u64;
    let (a, b) = (layout::reseller_dn(base, r), layout::customers_dn(base, r));
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
    let dn = layout::customer_dn(base, r, id);
    let (ex, _) = ldap.extended(StartTxn).await.map_err(e)?.success().map_err(e)?;
    let txn = String::from_utf8_lossy(&ex.val.unwrap_or_default()).into_owned();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<String>>();
    let name = format!("Raw {n} AG");
    ldap.with_controls(TxnSpec { txn_id: &txn })
        .add(
            &dn,
            vec![
                ("objectClass".to_string(), set(&["top", "sstCustomer", "sstRelationship"])),
                ("uid".to_string(), set(&[&id.to_string()])),
                ("sstIsCompany".to_string(), set(&["TRUE"])),
                ("sstIsActive".to_string(), set(&["TRUE"])),
                ("o".to_string(), set(&[&name])),
                ("sstBelongsToResellerUID".to_string(), set(&["4000001"])),
            ],
        )
        .await
        .map_err(e)?;
    ldap.with_controls(TxnSpec { txn_id: &txn })
        .add(
            &format!("ou=address,{dn}"),
            vec![
                ("objectClass".to_string(), set(&["top", "organizationalUnit", "sstAddress"])),
                ("ou".to_string(), set(&["address"])),
                ("sstGender".to_string(), set(&["f"])),
                ("givenName".to_string(), set(&["Zoë"])),
                ("sn".to_string(), set(&["Müller"])),
                ("postalAddress".to_string(), set(&["Hauptgasse 1"])),
                ("c".to_string(), set(&["CH"])),
                ("postalCode".to_string(), set(&["3011"])),
                ("l".to_string(), set(&["Bern"])),
                ("preferredLanguage".to_string(), set(&["de-CH"])),
                ("mail".to_string(), set(&["zoe@example.com"])),
            ],
        )
        .await
        .map_err(e)?;
    let ldap3::result::ExopResult(_, res) = ldap.extended(EndTxn { txn_id: &txn, commit: true }).await.map_err(e)?;
    if res.rc != 0 {
        return Err(format!("txn rc {}", res.rc));
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    match cli.command {
        Cmd::Element { concurrency, seconds, rounds } => rt.block_on(element(&cli.out, concurrency, seconds, rounds)),
    }
}
