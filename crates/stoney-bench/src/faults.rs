//! Replication under faults (`stoney-bench faults`): two slapd servers in multi-provider
//! replication, two gateways on them (the same order of URLs), and writers creating,
//! patching and deleting customers through REST while a server is killed (SIGKILL) and
//! restarted, wiped and re-added with `rejoin`, or both are killed one after the other.
//! After each cycle the load stops and every acknowledged write is checked on both
//! servers and through both gateways. A server that ends by itself is restarted at once,
//! as a supervisor would, and counted; one that ends again within the cycle is a crash
//! loop. With `STONEY_FAULTS_HOLD` set, the first cycle that misses a goal keeps the
//! servers and gateways up for 15 minutes, for a look at their state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use stoney_slapd::{Replication, Slapd, SlapdOptions};

use crate::common::{machine, now, start_gateway_logged, write_section, Account, Gateway};

/// What a cycle does to the servers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Fault {
    /// One server killed, restarted from its state.
    Single,
    /// One server killed, its state wiped, started again with `rejoin`.
    Rejoin,
    /// One server killed and restarted, then the other (in use by then) killed and restarted.
    Double,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Single => "kill -9 and restart",
            Fault::Rejoin => "kill -9, wipe, rejoin",
            Fault::Double => "double fault",
        }
    }
}

/// Replication under faults: servers killed and restarted, wiped and rejoined, both
/// killed one after the other, under a write load through two gateways; every
/// acknowledged write checked on both servers and through REST.
#[derive(clap::Args)]
pub struct Plan {
    /// Cycles of one server killed and restarted.
    #[arg(long, default_value_t = 50)]
    pub singles: usize,
    /// Cycles of one server killed, wiped and rejoined, with ldap.ack = "all": a wipe is
    /// the loss of a disk, and with "one" what only the wiped server held (writes it
    /// acknowledged in the moment before the kill, not yet replicated) is gone with it.
    #[arg(long, default_value_t = 5)]
    pub rejoins: usize,
    /// Double faults with ldap.ack = "all".
    #[arg(long, default_value_t = 10)]
    pub doubles: usize,
    /// Double faults with ldap.ack = "one" (not judged: what "all" prevents).
    #[arg(long, default_value_t = 5)]
    pub doubles_ack_one: usize,
    /// Seconds of load before the kill.
    #[arg(long, default_value_t = 10)]
    pub up: u64,
    /// Seconds a killed server stays down.
    #[arg(long, default_value_t = 15)]
    pub down: u64,
    /// Seconds of load after the restart.
    #[arg(long, default_value_t = 15)]
    pub after: u64,
    /// Seconds after the first restart of a double fault until the second kill.
    #[arg(long, default_value_t = 9)]
    pub second_after: u64,
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Gateways on the pair (the writers take turns).
    #[arg(long, default_value_t = 2)]
    pub gateways: usize,
    /// Milliseconds each writer pauses before each round of writes.
    #[arg(long, default_value_t = 40)]
    pub pace_ms: u64,
    /// Exit 1 when a judged cycle missed a goal.
    #[arg(long)]
    pub strict: bool,
    /// Exit 1 when a judged cycle lost or undid an acknowledged write (a create, a
    /// delete or a patch), crash-looped, left the servers apart or gave an id twice;
    /// not for orphans of unanswered creates, counts, reads or the trash.
    #[arg(long)]
    pub strict_writes: bool,
}

/// How to reach a server for reading, also while its `Slapd` is replaced.
#[derive(Clone)]
struct Reach {
    url: String,
    suffix: String,
    root_dn: String,
    root_password: String,
}

impl Reach {
    fn of(s: &Slapd) -> Reach {
        Reach {
            url: s.url.clone(),
            suffix: s.suffix.clone(),
            root_dn: s.root_dn.clone(),
            root_password: s.root_password.clone(),
        }
    }
}

/// A server of the pair, restarted or replaced by the harness.
struct Server {
    slapd: Option<Slapd>,
    reach: Reach,
    listen: std::net::SocketAddr,
    server_id: u32,
    peer: String,
    /// The state folder of a rejoined server (the first ones live in the launcher's own).
    state: Option<tempfile::TempDir>,
    /// Ends by itself within the current cycle.
    crashes_in_cycle: usize,
}

#[derive(Default)]
struct Log {
    /// Acknowledged creates: id → name.
    created: BTreeMap<u64, String>,
    /// Names of creates whose answer was lost or refused: they may or may not be there.
    unacknowledged: BTreeSet<String>,
    /// Per customer, the localities tried in order, with whether the gateway said 200.
    updates: BTreeMap<u64, Vec<(String, bool)>>,
    /// Deletes tried: id → acknowledged.
    deleted: BTreeMap<u64, bool>,
    /// The customers each writer created and has not deleted.
    own: Vec<Vec<u64>>,
    /// Ids written in this cycle (checked through REST afterwards).
    touched: BTreeSet<u64>,
    requests: u64,
    /// Answers other than success and 503 (a request in flight when a server died), and
    /// requests that got no answer.
    unexpected: u64,
    errors: Vec<String>,
}

impl Log {
    fn note(&mut self, what: &str, status: Option<u16>, body: &str) {
        self.requests += 1;
        match status {
            Some(s) if s < 300 || s == 503 => {}
            _ => {
                self.unexpected += 1;
                if self.errors.len() < 20 {
                    self.errors.push(format!("{what}: {status:?} {}", body.chars().take(300).collect::<String>()));
                }
            }
        }
    }
}

/// What one cycle found.
#[derive(Default, Clone)]
struct Outcome {
    fault: Option<Fault>,
    ack: &'static str,
    crashes: usize,
    crash_loops: usize,
    lost: Vec<u64>,
    resurrected: Vec<u64>,
    lost_patches: Vec<u64>,
    orphans: Vec<u64>,
    /// Customers the servers disagree on when the comparison gave up, besides creates
    /// whose answer was lost.
    diverged: Vec<u64>,
    /// Customers on one server only from creates whose answer was lost.
    unacknowledged_extra: usize,
    duplicate_ids: Vec<u64>,
    trash_left: usize,
    rest_mismatches: Vec<String>,
    /// Lists answered 503 at first (the index waited for the directory), then asked again.
    lists_refused: usize,
    /// Seconds from the (last) restart until the servers agreed on every customer not
    /// written in the last two seconds.
    converged_secs: Option<f64>,
    acknowledged: u64,
    requests: u64,
    unexpected: u64,
    notes: Vec<String>,
}

impl Outcome {
    /// An acknowledged write lost or undone, a crash loop, servers apart, an id twice.
    fn lost_writes(&self) -> bool {
        self.crash_loops > 0
            || !self.lost.is_empty()
            || !self.resurrected.is_empty()
            || !self.lost_patches.is_empty()
            || !self.diverged.is_empty()
            || !self.duplicate_ids.is_empty()
    }

    /// Any goal missed: also an orphan, a trash leftover, a count or read through REST.
    fn failed(&self) -> bool {
        self.lost_writes() || !self.orphans.is_empty() || self.trash_left > 0 || !self.rest_mismatches.is_empty()
    }
}

/// A customer as a server holds it: name, billing locality (empty without a billing
/// entry), and the entryCSN of the customer entry.
#[derive(Clone, PartialEq, Debug)]
struct Held {
    name: String,
    locality: Option<String>,
    csn: String,
}

#[derive(Default)]
struct Snapshot {
    customers: BTreeMap<u64, Held>,
    duplicates: Vec<u64>,
    trash: usize,
}

async fn snapshot(r: &Reach) -> Result<Snapshot, String> {
    let settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(3));
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &r.url).await.map_err(|e| e.to_string())?;
    ldap3::drive!(conn);
    ldap.with_timeout(Duration::from_secs(20));
    ldap.simple_bind(&r.root_dn, &r.root_password)
        .await
        .map_err(|e| e.to_string())?
        .success()
        .map_err(|e| e.to_string())?;
    let base = format!("ou=reseller,{}", r.suffix);
    let filter = "(|(objectClass=sstCustomer)(&(objectClass=sstAddress)(ou=address)))";
    let (entries, _) = ldap
        .with_timeout(Duration::from_secs(20))
        .search(&base, Scope::Subtree, filter, vec!["uid", "o", "l", "entryCSN", "objectClass"])
        .await
        .map_err(|e| e.to_string())?
        .success()
        .map_err(|e| e.to_string())?;
    let mut snap = Snapshot::default();
    let mut localities: BTreeMap<u64, String> = BTreeMap::new();
    for e in entries {
        let e = SearchEntry::construct(e);
        let first = |a: &str| e.attrs.get(a).and_then(|v| v.first()).cloned().unwrap_or_default();
        let customer =
            e.attrs.get("objectClass").is_some_and(|v| v.iter().any(|c| c.eq_ignore_ascii_case("sstCustomer")));
        if customer {
            let Ok(id) = first("uid").parse::<u64>() else { continue };
            let held = Held { name: first("o"), locality: None, csn: first("entryCSN") };
            if snap.customers.insert(id, held).is_some() {
                snap.duplicates.push(id);
            }
        } else if let Some(id) =
            e.dn.split(',').nth(1).and_then(|r| r.strip_prefix("uid=")).and_then(|v| v.parse::<u64>().ok())
        {
            localities.insert(id, first("l"));
        }
    }
    for (id, l) in localities {
        if let Some(c) = snap.customers.get_mut(&id) {
            c.locality = Some(l);
        }
    }
    let trash = format!("ou=trash,ou=administration,{}", r.suffix);
    if let Ok(res) = ldap.search(&trash, Scope::OneLevel, "(objectClass=*)", vec!["1.1"]).await {
        if let Ok((es, _)) = res.success() {
            snap.trash = es.len();
        }
    }
    let _ = ldap.unbind().await;
    Ok(snap)
}

/// The time a CSN names, as seconds since the epoch (`YYYYmmddHHMMSS.ffffffZ#...`).
fn csn_secs(csn: &str) -> Option<f64> {
    let t = csn.get(..14)?;
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (num(0..4)?, num(4..6)?, num(6..8)?, num(8..10)?, num(10..12)?, num(12..14)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s) as f64)
}

fn epoch_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Customers the two servers disagree on, leaving out those written in the last `quiet`
/// seconds on either (still on their way); with `quiet` zero, every difference.
fn differences(a: &Snapshot, b: &Snapshot, quiet: f64) -> Vec<u64> {
    let recent = |h: &Held| quiet > 0.0 && csn_secs(&h.csn).is_none_or(|t| t > epoch_secs() - quiet - 1.0);
    let ids: BTreeSet<u64> = a.customers.keys().chain(b.customers.keys()).copied().collect();
    ids.into_iter()
        .filter(|id| {
            let (x, y) = (a.customers.get(id), b.customers.get(id));
            if x.is_some_and(recent) || y.is_some_and(recent) {
                return false;
            }
            match (x, y) {
                (Some(x), Some(y)) => x.name != y.name || x.locality != y.locality,
                _ => true,
            }
        })
        .collect()
}

/// The writers: each creates a customer, changes the locality of one of its own, and,
/// once it has more than `KEEP`, deletes its oldest (so the directory stays as large).
const KEEP: usize = 12;

struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_load(writers: usize, pace_ms: u64, gateways: &[Gateway], log: &Arc<Mutex<Log>>, seq: &Arc<AtomicU64>) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let base = gateways[w % gateways.len()].base.clone();
        let (client, log, stop, seq, pace) = (client.clone(), log.clone(), stop.clone(), seq.clone(), pace_ms);
        tasks.push(tokio::spawn(async move {
            let auth = ("admin@stoney-cloud.org", "admin-secret");
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(pace)).await;
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let name = format!("Fault {w} {n} AG");
                let res = client
                    .post(format!("{base}/v1/customers"))
                    .basic_auth(auth.0, Some(auth.1))
                    .json(&crate::element::customer_body(0).as_object().cloned().map(|mut o| {
                        o.insert("customerName".into(), name.clone().into());
                        o
                    }))
                    .send()
                    .await;
                let (status, body) = answer(res).await;
                {
                    let mut l = log.lock().unwrap();
                    l.note("POST", status, &body);
                    match (status, serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["id"].as_u64()))
                    {
                        (Some(201), Some(id)) => {
                            l.created.insert(id, name.clone());
                            l.own[w].push(id);
                            l.touched.insert(id);
                        }
                        _ => {
                            l.unacknowledged.insert(name);
                        }
                    }
                }
                let target = {
                    let l = log.lock().unwrap();
                    let own = &l.own[w];
                    (!own.is_empty()).then(|| own[n as usize % own.len()])
                };
                if let Some(id) = target {
                    let place = format!("Ort {w}-{n}");
                    let res = client
                        .patch(format!("{base}/v1/customers/{id}"))
                        .basic_auth(auth.0, Some(auth.1))
                        .json(&serde_json::json!({"billingAddress": {"localityName": place}}))
                        .send()
                        .await;
                    let (status, body) = answer(res).await;
                    let mut l = log.lock().unwrap();
                    l.note(&format!("PATCH {id}"), status, &body);
                    l.updates.entry(id).or_default().push((place, status == Some(200)));
                    l.touched.insert(id);
                }
                let doomed = {
                    let mut l = log.lock().unwrap();
                    (l.own[w].len() > KEEP).then(|| l.own[w].remove(0))
                };
                if let Some(id) = doomed {
                    let res = client
                        .delete(format!("{base}/v1/customers/{id}"))
                        .basic_auth(auth.0, Some(auth.1))
                        .send()
                        .await;
                    let (status, body) = answer(res).await;
                    let mut l = log.lock().unwrap();
                    l.note(&format!("DELETE {id}"), status, &body);
                    l.deleted.insert(id, status == Some(200));
                    l.touched.insert(id);
                }
            }
        }));
    }
    Load { stop, tasks }
}

async fn answer(res: reqwest::Result<reqwest::Response>) -> (Option<u16>, String) {
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            (Some(status), r.text().await.unwrap_or_default())
        }
        Err(e) => (None, e.to_string()),
    }
}

impl Load {
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The timing and load of the cycles.
#[derive(Clone, Copy)]
struct Timing {
    up: f64,
    down: f64,
    after: f64,
    second_after: f64,
    writers: usize,
    pace_ms: u64,
}

struct Harness {
    gateway_count: usize,
    timing: Timing,
    account: Account,
    servers: Vec<Server>,
    gateways: Vec<Gateway>,
    ack: &'static str,
    log: Arc<Mutex<Log>>,
    seq: Arc<AtomicU64>,
    logs: tempfile::TempDir,
    client: reqwest::Client,
}

impl Harness {
    /// Restarts a server that ended by itself (as a supervisor would) and counts it.
    fn watch(&mut self, out: &mut Outcome) {
        for (i, s) in self.servers.iter_mut().enumerate() {
            let Some(slapd) = s.slapd.as_mut() else { continue };
            let Some(status) = slapd.exited() else { continue };
            let log = std::fs::read_to_string(slapd.dir.join("slapd.log")).unwrap_or_default();
            let why =
                log.lines().rev().find(|l| l.contains("Assertion") || l.contains("assert")).unwrap_or("").to_string();
            out.crashes += 1;
            s.crashes_in_cycle += 1;
            if s.crashes_in_cycle > 1 {
                out.crash_loops += 1;
            }
            out.notes.push(format!("server {} ended by itself ({status}) {why}", i + 1));
            eprintln!("server {} ended by itself ({status}) {why}", i + 1);
            if s.crashes_in_cycle <= 3 {
                if let Err(e) = slapd.restart() {
                    out.notes.push(format!("server {} did not restart: {e}", i + 1));
                }
            }
        }
    }

    /// Waits `secs` seconds, watching the servers.
    async fn wait(&mut self, secs: f64, out: &mut Outcome) {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        while Instant::now() < end {
            tokio::task::block_in_place(|| self.watch(out));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(s) = self.servers[i].slapd.as_mut() {
            tokio::task::block_in_place(|| s.kill());
        }
    }

    fn restart(&mut self, i: usize, out: &mut Outcome) {
        if let Some(s) = self.servers[i].slapd.as_mut() {
            if let Err(e) = tokio::task::block_in_place(|| s.restart()) {
                out.notes.push(format!("server {} did not restart: {e}", i + 1));
            }
        }
    }

    /// Replaces server `i` (killed) by one on an empty state folder that copies its peer.
    fn rejoin(&mut self, i: usize, out: &mut Outcome) {
        let s = &mut self.servers[i];
        s.slapd = None;
        s.state = None;
        let state = tempfile::Builder::new().prefix("stoney-faults-").tempdir().expect("state folder");
        let opts = SlapdOptions {
            demo_data: true,
            listen: s.listen,
            state_dir: Some(state.path().to_path_buf()),
            root_password: Some(s.reach.root_password.clone()),
            replication: Some(Replication {
                server_id: s.server_id,
                peers: vec![s.peer.clone()],
                load_data: false,
                rejoin: Some(s.peer.clone()),
            }),
            ..Default::default()
        };
        match tokio::task::block_in_place(|| Slapd::start(opts)) {
            Ok(slapd) => {
                s.reach = Reach::of(&slapd);
                s.slapd = Some(slapd);
                s.state = Some(state);
            }
            Err(e) => out.notes.push(format!("server {} did not rejoin: {e}", i + 1)),
        }
    }

    async fn start_gateways(&mut self, ack: &'static str) {
        self.gateways.clear();
        self.ack = ack;
        let urls = format!("{},{}", self.servers[0].reach.url, self.servers[1].reach.url);
        for g in 0..self.gateway_count {
            let log = self.logs.path().join(format!("gateway-{}-{ack}.log", g + 1));
            let envs = [
                ("STONEY__LDAP__ACK", ack),
                ("STONEY__LDAP__FAILBACK_INTERVAL_MS", "200"),
                ("STONEY__LDAP__FAILBACK_AFTER_MS", "2000"),
                ("STONEY__LDAP__TRASH_SWEEP_SECS", "5"),
                ("STONEY__LOG__LEVEL", "info"),
            ];
            self.gateways.push(start_gateway_logged(&self.account, &urls, &envs, &log).await);
        }
    }

    /// Polls both servers until they agree on every customer not written in the last two
    /// seconds; returns when, counted from `since`, or None if not within `secs`.
    async fn converge(&mut self, since: Instant, secs: f64, quiet: f64, out: &mut Outcome) -> Option<f64> {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        loop {
            tokio::task::block_in_place(|| self.watch(out));
            let (a, b) = (snapshot(&self.servers[0].reach).await, snapshot(&self.servers[1].reach).await);
            if let (Ok(a), Ok(b)) = (&a, &b) {
                if differences(a, b, quiet).is_empty() {
                    return Some(since.elapsed().as_secs_f64());
                }
            }
            if Instant::now() > end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn cycle(&mut self, n: usize, fault: Fault) -> Outcome {
        let mut out = Outcome { fault: Some(fault), ack: self.ack, ..Default::default() };
        for s in &mut self.servers {
            s.crashes_in_cycle = 0;
        }
        let before = {
            let mut l = self.log.lock().unwrap();
            l.touched.clear();
            (
                l.requests,
                l.unexpected,
                l.created.len() as u64 + l.updates.values().flatten().filter(|u| u.1).count() as u64,
            )
        };
        let victim = n % 2;
        let Timing { up, down, after, second_after: second, writers, pace_ms } = self.timing;
        let load = start_load(writers, pace_ms, &self.gateways, &self.log, &self.seq);
        self.wait(up, &mut out).await;
        self.kill(victim);
        self.wait(down, &mut out).await;
        match fault {
            Fault::Single => self.restart(victim, &mut out),
            Fault::Rejoin => self.rejoin(victim, &mut out),
            Fault::Double => {
                self.restart(victim, &mut out);
                self.wait(second, &mut out).await;
                self.kill(1 - victim);
                self.wait(down, &mut out).await;
                self.restart(1 - victim, &mut out);
            }
        }
        let restarted = Instant::now();
        out.converged_secs = self.converge(restarted, after, 2.0, &mut out).await;
        let spent = restarted.elapsed().as_secs_f64();
        if spent < after {
            self.wait(after - spent, &mut out).await;
        }
        load.finish().await;
        if out.converged_secs.is_none() {
            // Not under the load: the comparison with the load stopped.
            out.converged_secs = self.converge(restarted, 60.0, 2.0, &mut out).await;
        }
        // Everything has arrived: the servers agree on every customer.
        let agreed = self.converge(Instant::now(), 30.0, 0.0, &mut out).await;
        // The trash is swept every 5 s.
        let mut snaps = (Snapshot::default(), Snapshot::default());
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            tokio::task::block_in_place(|| self.watch(&mut out));
            match (snapshot(&self.servers[0].reach).await, snapshot(&self.servers[1].reach).await) {
                (Ok(a), Ok(b)) => {
                    let done = a.trash == 0 && b.trash == 0;
                    snaps = (a, b);
                    if done || Instant::now() > end {
                        break;
                    }
                }
                (a, b) => {
                    if Instant::now() > end {
                        out.notes.push(format!("servers not readable: {:?} {:?}", a.err(), b.err()));
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        out.trash_left = snaps.0.trash + snaps.1.trash;
        self.check(&snaps, agreed.is_some(), &mut out).await;
        let l = self.log.lock().unwrap();
        out.requests = l.requests - before.0;
        out.unexpected = l.unexpected - before.1;
        out.acknowledged =
            l.created.len() as u64 + l.updates.values().flatten().filter(|u| u.1).count() as u64 - before.2;
        out
    }

    async fn check(&mut self, (a, b): &(Snapshot, Snapshot), agreed: bool, out: &mut Outcome) {
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        for s in [a, b] {
            out.duplicate_ids.extend(&s.duplicates);
            out.orphans.extend(s.customers.iter().filter(|(_, h)| h.locality.is_none()).map(|(id, _)| *id));
        }
        if !agreed {
            for id in differences(a, b, 0.0) {
                let name = a.customers.get(&id).or(b.customers.get(&id)).map(|h| h.name.clone()).unwrap_or_default();
                let one_sided = a.customers.contains_key(&id) != b.customers.contains_key(&id);
                if one_sided && log.unacknowledged.contains(&name) {
                    out.unacknowledged_extra += 1;
                } else {
                    out.diverged.push(id);
                }
            }
        }
        for (id, name) in &log.created {
            if log.deleted.contains_key(id) {
                continue;
            }
            for s in [a, b] {
                if s.customers.get(id).map(|h| &h.name) != Some(name) {
                    out.lost.push(*id);
                }
            }
            if let Some(tries) = log.updates.get(id) {
                let last_ok = tries.iter().rposition(|(_, ok)| *ok);
                let mut allowed: Vec<&str> = match last_ok {
                    Some(i) => tries[i..].iter().map(|(p, _)| p.as_str()).collect(),
                    None => tries.iter().map(|(p, _)| p.as_str()).collect(),
                };
                if last_ok.is_none() {
                    allowed.push("Bern");
                }
                for s in [a, b] {
                    if let Some(l) = s.customers.get(id).and_then(|h| h.locality.as_deref()) {
                        if !allowed.contains(&l) {
                            out.lost_patches.push(*id);
                        }
                    }
                }
            }
        }
        for (id, acknowledged) in &log.deleted {
            if *acknowledged && (a.customers.contains_key(id) || b.customers.contains_key(id)) {
                out.resurrected.push(*id);
            }
        }
        for v in [&mut out.lost, &mut out.lost_patches, &mut out.orphans, &mut out.duplicate_ids] {
            v.sort();
            v.dedup();
        }
        // Through REST: each gateway's count, and every customer written in the cycle.
        let auth = ("admin@stoney-cloud.org", "admin-secret");
        for (g, gw) in self.gateways.iter().enumerate() {
            // A 503 (the index waits for the directory, or restarts its synchronisation)
            // is asked again, as a client following Retry-After would; a count that
            // differs from the servers' is a mismatch.
            let mut total = None;
            for attempt in 0..5 {
                let res = self
                    .client
                    .get(format!("{}/v1/customers?per_page=1", gw.base))
                    .basic_auth(auth.0, Some(auth.1))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        total = r
                            .headers()
                            .get("x-total-count")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<usize>().ok());
                        break;
                    }
                    Ok(r) if r.status() == 503 => {
                        if attempt == 0 {
                            out.lists_refused += 1;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    _ => break,
                }
            }
            if total != Some(a.customers.len()) {
                // Which ones: the gateway's list, page by page, against the servers'.
                let mut listed = BTreeSet::new();
                for page in 1..=100 {
                    let res = self
                        .client
                        .get(format!("{}/v1/customers?per_page=100&page={page}&sort=id", gw.base))
                        .basic_auth(auth.0, Some(auth.1))
                        .send()
                        .await;
                    let (_, body) = answer(res).await;
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let Some(items) = v.as_array().or_else(|| v["items"].as_array()).filter(|i| !i.is_empty()) else {
                        break;
                    };
                    listed.extend(items.iter().filter_map(|c| c["id"].as_u64()));
                }
                let held: BTreeSet<u64> = a.customers.keys().copied().collect();
                let only_listed: Vec<u64> = listed.difference(&held).take(10).copied().collect();
                let only_held: Vec<u64> = held.difference(&listed).take(10).copied().collect();
                out.rest_mismatches.push(format!(
                    "gateway {}: X-Total-Count {total:?}, servers {}; listed only {only_listed:?}, held only {only_held:?}",
                    g + 1,
                    a.customers.len()
                ));
            }
        }
        for (k, id) in log.touched.iter().enumerate() {
            let gw = &self.gateways[k % self.gateways.len()];
            let res =
                self.client.get(format!("{}/v1/customers/{id}", gw.base)).basic_auth(auth.0, Some(auth.1)).send().await;
            let (status, body) = answer(res).await;
            let want = a.customers.get(id);
            let ok = match (status, want) {
                (Some(200), Some(h)) => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    v["customerName"].as_str() == Some(h.name.as_str())
                        && v["billingAddress"]["localityName"].as_str() == h.locality.as_deref()
                }
                (Some(404), None) => true,
                _ => false,
            };
            if !ok && out.rest_mismatches.len() < 20 {
                out.rest_mismatches.push(format!("GET {id}: {status:?}, server holds {want:?}"));
            }
        }
        // What stays for the next cycles: the record, without this cycle's ids.
        let mut l = self.log.lock().unwrap();
        *l = log;
        l.touched.clear();
    }
}

pub async fn faults(out: &Path, plan: Plan) -> bool {
    let timing = Timing {
        up: plan.up as f64,
        down: plan.down as f64,
        after: plan.after as f64,
        second_after: plan.second_after as f64,
        writers: plan.writers,
        pace_ms: plan.pace_ms,
    };
    let started = Instant::now();
    let slapds = tokio::task::spawn_blocking(|| {
        Slapd::start_replicated(2, SlapdOptions { demo_data: true, ..Default::default() })
    })
    .await
    .unwrap()
    .expect("two servers");
    let urls: Vec<String> = slapds.iter().map(|s| s.url.clone()).collect();
    let account = Account::from(&slapds[0]);
    let servers: Vec<Server> = slapds
        .into_iter()
        .enumerate()
        .map(|(i, s)| Server {
            reach: Reach::of(&s),
            listen: s.listen,
            server_id: i as u32 + 1,
            peer: urls[1 - i].clone(),
            slapd: Some(s),
            state: None,
            crashes_in_cycle: 0,
        })
        .collect();
    let mut h = Harness {
        gateway_count: plan.gateways.max(1),
        account,
        timing,
        servers,
        gateways: Vec::new(),
        ack: "one",
        log: Arc::new(Mutex::new(Log { own: vec![Vec::new(); plan.writers], ..Default::default() })),
        seq: Arc::new(AtomicU64::new(0)),
        logs: tempfile::Builder::new().prefix("stoney-faults-logs-").tempdir().expect("log folder"),
        client: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap(),
    };
    // The second server gets the data by replication.
    let mut ignored = Outcome::default();
    if h.converge(Instant::now(), 60.0, 0.0, &mut ignored).await.is_none() {
        panic!("the second server did not get the data");
    }
    let mut cycles: Vec<(Fault, &'static str)> = Vec::new();
    cycles.extend(std::iter::repeat_n((Fault::Single, "one"), plan.singles));
    cycles.extend(std::iter::repeat_n((Fault::Rejoin, "all"), plan.rejoins));
    cycles.extend(std::iter::repeat_n((Fault::Double, "all"), plan.doubles));
    cycles.extend(std::iter::repeat_n((Fault::Double, "one"), plan.doubles_ack_one));
    let mut outcomes = Vec::new();
    for (n, (fault, ack)) in cycles.iter().copied().enumerate() {
        if h.gateways.is_empty() || h.ack != ack {
            h.start_gateways(ack).await;
        }
        let o = h.cycle(n, fault).await;
        eprintln!(
            "cycle {}/{} {} (ack {ack}): converged {:?} s, crashes {}, lost {:?}, resurrected {:?}, lost patches {:?}, \
             orphans {:?}, diverged {:?}, trash {}, REST {:?} {}",
            n + 1,
            cycles.len(),
            fault.name(),
            o.converged_secs.map(|s| (s * 10.0).round() / 10.0),
            o.crashes,
            o.lost,
            o.resurrected,
            o.lost_patches,
            o.orphans,
            o.diverged,
            o.trash_left,
            o.rest_mismatches,
            o.notes.join("; ")
        );
        let stop = o.failed() && std::env::var_os("STONEY_FAULTS_HOLD").is_some();
        outcomes.push(o);
        // The figures so far, so that a run cut short leaves them too.
        if n + 1 < cycles.len() {
            let log = h.log.lock().unwrap();
            report(out, &plan, &outcomes, &log, started.elapsed(), false);
        }
        if stop {
            // Debugging: keep the servers and gateways up for a look.
            let urls: Vec<&str> = h.servers.iter().map(|s| s.reach.url.as_str()).collect();
            eprintln!("holding: servers {urls:?}, root password {}", h.servers[0].reach.root_password);
            tokio::time::sleep(Duration::from_secs(900)).await;
        }
    }
    let log = h.log.lock().unwrap();
    let failed = report(out, &plan, &outcomes, &log, started.elapsed(), true);
    if failed {
        eprintln!("gateway logs: {}", h.logs.path().display());
        eprintln!("unexpected answers: {:#?}", log.errors);
        // Keep the gateways' logs for a look.
        let _ = std::mem::replace(&mut h.logs, tempfile::tempdir().unwrap()).keep();
    }
    // Judged as in `report`: double faults with ack "one" show what "all" prevents.
    let lost_writes = outcomes.iter().any(|o| o.lost_writes() && !(o.fault == Some(Fault::Double) && o.ack == "one"));
    !((failed && plan.strict) || (lost_writes && plan.strict_writes))
}

/// Writes the figures of `outcomes` (printed too when `last`); whether a judged cycle
/// missed a goal.
fn report(out: &Path, plan: &Plan, outcomes: &[Outcome], log: &Log, took: Duration, last: bool) -> bool {
    let mut rows = String::new();
    let mut failed = false;
    let kinds: BTreeSet<(Fault, &str)> = outcomes.iter().map(|o| (o.fault.unwrap(), o.ack)).collect();
    for (fault, ack) in kinds {
        let os: Vec<&Outcome> = outcomes.iter().filter(|o| o.fault == Some(fault) && o.ack == ack).collect();
        // Double faults with ack "one" are there to show what "all" prevents.
        let judged = !(fault == Fault::Double && ack == "one");
        let bad = os.iter().filter(|o| o.failed()).count();
        if judged && bad > 0 {
            failed = true;
        }
        let sum = |f: &dyn Fn(&Outcome) -> usize| os.iter().map(|o| f(o)).sum::<usize>();
        let mut conv: Vec<f64> = os.iter().filter_map(|o| o.converged_secs).collect();
        conv.sort_by(|a, b| a.total_cmp(b));
        let never = os.len() - conv.len();
        let med = conv.get(conv.len() / 2).map(|s| format!("{s:.1}")).unwrap_or_else(|| "—".into());
        let max = conv.last().map(|s| format!("{s:.1}")).unwrap_or_else(|| "—".into());
        let slow = conv.iter().filter(|s| **s > 10.0).count() + never;
        rows.push_str(&format!(
            "| {} | {ack} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {med} / {max} | {slow} | {} | {} |\n",
            fault.name(),
            os.len(),
            os.len() - bad,
            sum(&|o| o.crashes),
            sum(&|o| o.crash_loops),
            sum(&|o| o.lost.len()),
            sum(&|o| o.resurrected.len()),
            sum(&|o| o.lost_patches.len()),
            sum(&|o| o.orphans.len()),
            sum(&|o| o.diverged.len() + o.duplicate_ids.len()),
            sum(&|o| o.trash_left + o.rest_mismatches.len()),
            sum(&|o| o.lists_refused),
            os.iter().map(|o| o.acknowledged).sum::<u64>(),
            os.iter().map(|o| o.unexpected).sum::<u64>(),
        ));
    }
    let notes: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.failed() || o.crashes > 0 || !o.notes.is_empty())
        .map(|(i, o)| {
            format!(
                "- cycle {} ({}, ack {}): crashes {}, crash loops {}, lost {:?}, resurrected {:?}, lost patches {:?}, \
                 orphans {:?}, diverged {:?}, duplicate ids {:?}, trash {}, REST {:?}; {}",
                i + 1,
                o.fault.unwrap().name(),
                o.ack,
                o.crashes,
                o.crash_loops,
                o.lost,
                o.resurrected,
                o.lost_patches,
                o.orphans,
                o.diverged,
                o.duplicate_ids,
                o.trash_left,
                o.rest_mismatches,
                o.notes.join("; ")
            )
        })
        .take(30)
        .collect();
    let body = format!(
        "## Replication under faults (`stoney-bench faults`)\n\n\
         {date}; {machine}. Two slapd servers in multi-provider replication, two gateways on them \
         (both with the servers in the same order), {done} of {planned} cycles run, {writers} writers through the gateways (each round: a create, \
         a change of one of its customers' billing locality, and the delete of its oldest once it has more than \
         {KEEP}; {pace} ms pause per round), {requests} requests in {mins:.0} min. A cycle: \
         {up} s of load, SIGKILL of one server (alternately the first and the second), {down} s down, restart \
         (or: wipe and start with `rejoin`; or, for a double fault, restart, then {second} s later SIGKILL of the \
         other, {down} s down, restart), {after} s more load; then the load stops and every acknowledged write is \
         checked on both servers and through both gateways (`X-Total-Count`, and a GET of every customer written \
         in the cycle). Converged: seconds from the (last) restart until both servers hold the same for every \
         customer not written in the last two seconds (under the load when within {after} s). A server that ends \
         by itself is restarted at once; ending again in the same cycle is a crash loop.\n\n\
         | cycle | ack | cycles | clean | crashes | crash loops | lost | resurrected | lost patches | orphans | \
         diverged | trash / REST | lists refused | converged s (median / max) | over 10 s | acknowledged writes | \
         unexpected answers |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n{rows}\n\
         Lost: an acknowledged create missing (or another customer) on a server; resurrected: an acknowledged \
         delete undone; lost patches: a billing locality other than the last acknowledged one (or one tried after \
         it); orphans: a customer without its billing entry; diverged: a customer the servers still disagree on \
         30 s after the load stopped (not counting creates whose answer was lost: {extra}). Unexpected answers: \
         neither a success nor a 503 for a request in flight when a server died. Lists refused: a count asked \
         after the cycle answered 503 (the index waited for the directory's newest change, or restarted its \
         synchronisation) and was asked again. {verdict}\n{notes}",
        date = now(),
        machine = machine(),
        done = outcomes.len(),
        planned = plan.singles + plan.rejoins + plan.doubles + plan.doubles_ack_one,
        writers = plan.writers,
        pace = plan.pace_ms,
        requests = log.requests,
        mins = took.as_secs_f64() / 60.0,
        up = plan.up,
        down = plan.down,
        second = plan.second_after,
        after = plan.after,
        extra = outcomes.iter().map(|o| o.unacknowledged_extra).sum::<usize>(),
        verdict = if failed { "**Goals missed** in the cycles below." } else { "Every judged cycle was clean." },
        notes = if notes.is_empty() { String::new() } else { format!("\n{}\n", notes.join("\n")) },
    );
    if last {
        println!("{body}");
    }
    write_section(out, "faults", &body);
    failed
}
