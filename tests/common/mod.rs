//! Test harness: a throwaway slapd built from ldif/ and the real gateway on a free port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use stoney_gateway::app::{self, AppState};
use stoney_gateway::config::Settings;
use stoney_slapd::{Slapd, SlapdOptions};
use tokio::sync::oneshot;

pub const ADMIN: (&str, &str) = ("admin@stoney-cloud.org", "admin-secret");
pub const RESELLER1: (&str, &str) = ("reseller1@example.com", "reseller1-secret");
pub const RESELLER2: (&str, &str) = ("reseller2@example.com", "reseller2-secret");
pub const CUSTOMER: (&str, &str) = ("customer@example.com", "customer-secret");

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    pub slapd: Slapd,
    pub state: AppState,
    pub user: (String, String),
    _stop: oneshot::Sender<()>,
}

pub fn settings_for(slapd: &Slapd) -> Settings {
    let mut s = Settings::defaults();
    s.ldap.urls = vec![slapd.url.clone()];
    s.ldap.bind_dn = slapd.gateway_dn.clone();
    s.ldap.bind_password = slapd.gateway_password.clone();
    s.ldap.base_dn = slapd.suffix.clone();
    s.ldap.connect_timeout_ms = 1000;
    s.ldap.op_timeout_ms = 3000;
    s.ldap.pool_wait_ms = 1000;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |_| {}).await
}

pub async fn spawn_app_with(opts: SlapdOptions, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let slapd = tokio::task::spawn_blocking(move || Slapd::start(opts)).await.unwrap().expect("slapd starts");
    let mut settings = settings_for(&slapd);
    tweak(&mut settings);
    let gw = start_gateway(settings).await;
    TestApp {
        addr: gw.addr,
        base: gw.base,
        client: gw.client,
        slapd,
        state: gw.state,
        user: (ADMIN.0.into(), ADMIN.1.into()),
        _stop: gw.stop,
    }
}

/// The gateways' warnings and errors (or what `RUST_LOG` asks for) go into the test's
/// captured output, shown when the test fails: a 500 in an assertion then comes with
/// the error behind it.
pub fn log_to_test_output() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_test_writer().try_init();
}

/// A gateway serving on a free port, stopped when `stop` is dropped or sent.
pub struct Gateway {
    pub addr: SocketAddr,
    pub base: String,
    pub client: Client,
    pub state: AppState,
    pub stop: oneshot::Sender<()>,
    pub served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the gateway with these settings and waits until it is ready (the directory
/// answers and the customer index is loaded).
pub async fn start_gateway(mut settings: Settings) -> Gateway {
    log_to_test_output();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    settings.listen = addr.to_string();
    let state = AppState::new(settings).expect("app state");
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(app::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    let client = Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("http://{addr}/ready")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "the gateway did not get ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Gateway { addr, base: format!("http://{addr}"), client, state, stop: tx, served }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request as the default user (the provider admin).
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).basic_auth(&self.user.0, Some(&self.user.1))
    }

    pub fn req_as(&self, user: (&str, &str), method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).basic_auth(user.0, Some(user.1))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.unwrap()
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.req(method, path).json(body).send().await.unwrap()
    }

    pub async fn post_customer(&self, body: &Value) -> Response {
        self.send_json(Method::POST, "/v1/customers", body).await
    }

    /// Creates a customer and returns its id.
    pub async fn create(&self, body: &Value) -> u64 {
        let res = self.post_customer(body).await;
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "create failed: {v}");
        v["id"].as_u64().unwrap()
    }

    /// ldapsearch as the directory's root, one line per attribute (LDIF).
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        ldapsearch_on(&self.slapd, base, filter, attrs)
    }

    /// Runs ldapmodify as the directory's root with the given LDIF.
    pub fn ldapmodify(&self, ldif: &str) -> std::process::Output {
        ldapmodify_on(&self.slapd, ldif)
    }

    pub fn suffix(&self) -> &str {
        &self.slapd.suffix
    }
}

/// Runs ldapmodify as a server's root with the given LDIF.
pub fn ldapmodify_on(slapd: &Slapd, ldif: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new("ldapmodify");
    cmd.args(["-x", "-H", &slapd.url, "-D", &slapd.root_dn, "-w", &slapd.root_password]);
    with_input(&mut cmd, ldif)
}

/// Runs a command with `input` on its standard input and collects what it printed.
pub fn with_input(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the command runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// ldapsearch against a server as its root, one line per attribute (LDIF).
pub fn ldapsearch_on(slapd: &Slapd, base: &str, filter: &str, attrs: &[&str]) -> String {
    let out = std::process::Command::new("ldapsearch")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &slapd.url, "-D", &slapd.root_dn])
        .args(["-w", &slapd.root_password, "-b", base, filter])
        .args(attrs)
        .output()
        .expect("ldapsearch runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn address() -> Value {
    json!({
        "gender": "f",
        "givenName": "Zoë",
        "surname": "Müller",
        "postalAddress": "Hauptgasse 1",
        "countryCode": "CH",
        "postalCode": "3011",
        "localityName": "Bern",
        "preferredLanguage": "de-CH",
        "mail": "zoe.mueller@example.com",
        "telephoneNumber": "+41 31 123 45 67"
    })
}

pub fn company(name: &str) -> Value {
    json!({
        "isCompany": true,
        "isActive": true,
        "customerName": name,
        "belongsToResellerID": 4000001,
        "billingAddress": address()
    })
}

pub fn person() -> Value {
    json!({
        "isCompany": false,
        "isActive": true,
        "belongsToResellerID": 4000001,
        "billingAddress": address()
    })
}

/// A TCP proxy in front of a directory server that can stall: while paused, nothing it
/// receives is passed on, as with a server that hangs (the connections stay open). It can
/// also hold back the content synchronisation's search alone (a request that carries the
/// Sync Request control) while everything else goes through.
pub struct StallingProxy {
    pub url: String,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sync: std::sync::Arc<SyncHold>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct SyncHold {
    held: std::sync::atomic::AtomicBool,
    /// Sync Request controls seen so far.
    seen: std::sync::atomic::AtomicUsize,
}

/// The OID of the Sync Request control (RFC 4533), as a request carries it.
const SYNC_REQUEST_OID: &[u8] = b"1.3.6.1.4.1.4203.1.9.1.1";

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sync: Option<std::sync::Arc<SyncHold>>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while paused.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(sync) =
            sync.as_ref().filter(|_| buf[..n].windows(SYNC_REQUEST_OID.len()).any(|w| w == SYNC_REQUEST_OID))
        {
            sync.seen.fetch_add(1, Relaxed);
            while sync.held.load(Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl StallingProxy {
    pub async fn start(target: std::net::SocketAddr) -> StallingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ldap://{}/", listener.local_addr().unwrap());
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sync = std::sync::Arc::new(SyncHold::default());
        let (p, s) = (paused.clone(), sync.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, p.clone(), Some(s.clone())));
                tokio::spawn(pipe(sr, cw, p.clone(), None));
            }
        });
        StallingProxy { url, paused, sync, _task: task }
    }

    /// Stalls (or lets through again) everything in both directions.
    pub fn pause(&self, stalled: bool) {
        self.paused.store(stalled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Holds back (or lets through again) every content synchronisation search.
    pub fn hold_sync(&self, held: bool) {
        self.sync.held.store(held, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many content synchronisation searches have been sent through it.
    pub fn syncs_seen(&self) -> usize {
        self.sync.seen.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The gateway on a directory behind a proxy that can stall it.
pub async fn stallable(tweak: impl FnOnce(&mut Settings)) -> (Gateway, StallingProxy, Slapd) {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let proxy = StallingProxy::start(slapd.listen).await;
    let mut settings = settings_for(&slapd);
    settings.ldap.urls = vec![proxy.url.clone()];
    tweak(&mut settings);
    (start_gateway(settings).await, proxy, slapd)
}
