//! What the benchmarks share: a closed-loop load generator with latency statistics, the
//! gateway started as a separate process, and the Markdown output.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync};
use stoney_slapd::Slapd;

pub type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

#[derive(Default, Clone)]
pub struct Stats {
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    pub micros: Vec<u32>,
}

impl Stats {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
    pub fn pct(&self, p: f64) -> f64 {
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
pub async fn load<F>(concurrency: usize, duration: Duration, op: F) -> Stats
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
pub struct Series {
    pub rates: Vec<f64>,
    pub all: Stats,
}

impl Series {
    pub fn new() -> Self {
        Series { rates: Vec::new(), all: Stats::default() }
    }
    pub fn add(&mut self, s: Stats) {
        self.rates.push(s.rate());
        self.all.ops += s.ops;
        self.all.errors += s.errors;
        self.all.micros.extend(s.micros);
    }
    pub fn median_rate(&self) -> f64 {
        let mut r = self.rates.clone();
        r.sort_by(|a, b| a.total_cmp(b));
        r[r.len() / 2]
    }
}

pub struct Gateway {
    pub child: Child,
    pub base: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `STONEY_GATEWAY_BIN`, else the `stoney-gateway` beside this binary (cargo builds both
/// into one folder).
pub fn gateway_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STONEY_GATEWAY_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe().expect("current exe");
    me.parent().expect("bin dir").join("stoney-gateway")
}

pub async fn start_gateway(slapd: &Slapd) -> Gateway {
    start_gateway_with(slapd, &slapd.url, &[]).await
}

/// A gateway on the servers `urls` (comma-separated) with more environment variables.
pub async fn start_gateway_with(slapd: &Slapd, urls: &str, envs: &[(&str, &str)]) -> Gateway {
    let out = if std::env::var_os("STONEY_BENCH_GATEWAY_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
    start_gateway_to(slapd, urls, envs, out, Stdio::inherit()).await
}

/// The same, logging into `log`, with the account and base of `slapd` (any server of a
/// replicated set; they share them).
pub async fn start_gateway_logged(slapd: &Account, urls: &str, envs: &[(&str, &str)], log: &Path) -> Gateway {
    let file = std::fs::File::create(log).expect("gateway log");
    let out = file.try_clone().expect("gateway log");
    start_gateway_to(slapd.clone(), urls, envs, Stdio::from(out), Stdio::from(file)).await
}

/// The gateway's service account and the directory's base.
#[derive(Clone)]
pub struct Account {
    pub gateway_dn: String,
    pub gateway_password: String,
    pub suffix: String,
}

impl From<&Slapd> for Account {
    fn from(s: &Slapd) -> Account {
        Account {
            gateway_dn: s.gateway_dn.clone(),
            gateway_password: s.gateway_password.clone(),
            suffix: s.suffix.clone(),
        }
    }
}

async fn start_gateway_to(
    slapd: impl Into<Account>,
    urls: &str,
    envs: &[(&str, &str)],
    stdout: Stdio,
    stderr: Stdio,
) -> Gateway {
    let slapd: Account = slapd.into();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(gateway_binary());
    cmd.arg("serve")
        .env("STONEY__LISTEN", format!("127.0.0.1:{port}"))
        .env("STONEY__LDAP__URLS", urls)
        .env("STONEY__LDAP__BIND_DN", &slapd.gateway_dn)
        .env("STONEY__LDAP__BIND_PASSWORD", &slapd.gateway_password)
        .env("STONEY__LDAP__BASE_DN", &slapd.suffix)
        // `STONEY_BENCH_GATEWAY_LOG=info` shows what the gateway logs (its index's
        // footprint after a load, say) where it has no log file of its own.
        .env("STONEY__LOG__LEVEL", std::env::var("STONEY_BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(stdout)
        .stderr(stderr);
    cmd.envs(envs.iter().copied());
    // Owned by the guard at once, so a gateway that never gets ready is still stopped.
    let gateway = Gateway {
        child: cmd.spawn().expect("gateway starts (scripts/bench builds it)"),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    // Ready means the customer index is loaded, which takes a while on a big directory.
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{}/ready", gateway.base)).send().await {
            if r.status() == 200 {
                return gateway;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gateway did not become ready");
}

/// Peak and current resident memory of a process, in MiB.
pub fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

pub async fn bind(slapd: &Slapd) -> Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url).await.expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(&slapd.gateway_dn, &slapd.gateway_password).await.expect("bind").success().expect("bind ok");
    ldap
}

pub fn machine() -> String {
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
    let slapd = stoney_slapd::server_version()
        .ok()
        .map(|l| l.trim_start_matches("@(#) $OpenLDAP: ").trim_end_matches('$').trim().to_string());
    format!("{cores} cores ({cpu}), {mem} GiB RAM; {}", slapd.unwrap_or_default())
}

pub fn now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Replaces the section between `<!-- name:begin -->` and `<!-- name:end -->`.
pub fn write_section(path: &Path, name: &str, body: &str) {
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

pub fn row(name: &str, s: &Series, base: Option<&Series>) -> String {
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

/// Sends a request and reads the whole answer; an error unless it has status `want`.
pub async fn expect_status(req: reqwest::RequestBuilder, want: u16) -> Result<(), String> {
    let res = req.send().await.map_err(|e| e.to_string())?;
    if res.status().as_u16() != want {
        return Err(format!("status {}", res.status()));
    }
    res.bytes().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The `X-Total-Count` of a list, asked as the provider admin (`None` without an answer
/// that has one).
pub async fn total_count(client: &reqwest::Client, url: &str) -> Option<u64> {
    let res = client.get(url).basic_auth("admin@stoney-cloud.org", Some("admin-secret")).send().await.ok()?;
    res.headers().get("x-total-count")?.to_str().ok()?.parse().ok()
}
