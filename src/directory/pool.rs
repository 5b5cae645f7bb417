//! The pool of bound LDAP connections (deadpool), with failover across the configured
//! servers. The URLs are in order of preference: new connections go to the current
//! server (the first one that answered); when it stops answering they go to the next
//! one that does, and the connections to the old one are dropped as they come back to
//! the pool. While a less preferred server is in use, `probe_failback` checks the better
//! ones and moves back as soon as one answers again. All connections of a pool so use
//! one server at a time, which keeps writes (and the id counter) on one provider of a
//! replicated set.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::sync::Csns;
use super::DirError;

#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub urls: Vec<String>,
    /// Base DN of the tree (whose `contextCSN` says how far a server has got).
    pub base_dn: String,
    pub bind_dn: String,
    pub bind_password: String,
    pub connect_timeout: Duration,
    pub starttls: bool,
    pub tls_verify: bool,
    /// How long a preferred server must answer and keep up before it is used again
    /// (its own replication consumers finish their refresh meanwhile).
    pub failback_after: Duration,
}

/// A pooled connection: the LDAP handle, which server it goes to, and the generation of
/// the server choice it was made in.
pub struct Conn {
    ldap: Ldap,
    /// Index of its URL in the configuration.
    pub server: usize,
    generation: u64,
}

impl Deref for Conn {
    type Target = Ldap;
    fn deref(&self) -> &Ldap {
        &self.ldap
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Ldap {
        &mut self.ldap
    }
}

#[derive(Debug)]
pub struct LdapManager {
    spec: ConnSpec,
    /// The server new connections go to.
    current: AtomicUsize,
    /// Changes whenever `current` does; connections of an older generation are dropped.
    generation: AtomicU64,
    failovers: AtomicU64,
    /// A preferred server seen answering and caught up, since when.
    candidate: std::sync::Mutex<Option<(usize, std::time::Instant)>>,
}

impl LdapManager {
    pub fn new(spec: ConnSpec) -> Self {
        LdapManager {
            spec,
            current: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            candidate: Default::default(),
        }
    }

    /// Index of the server in use.
    pub fn current_server(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// How often the server in use changed (failovers and fail-backs).
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    pub fn urls(&self) -> &[String] {
        &self.spec.urls
    }

    fn switch_to(&self, server: usize, why: &str) {
        let before = self.current.swap(server, Ordering::Relaxed);
        if before != server {
            self.generation.fetch_add(1, Ordering::Relaxed);
            self.failovers.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(from = %self.spec.urls[before], to = %self.spec.urls[server], "LDAP {why}");
        }
    }

    async fn connect(&self, url: &str, bind: bool) -> Result<Ldap, DirError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.spec.connect_timeout)
            .set_starttls(self.spec.starttls)
            .set_no_tls_verify(!self.spec.tls_verify);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, url)
            .await
            .map_err(|e| DirError::Unavailable(format!("{url}: {e}")))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        if bind && !self.spec.bind_dn.is_empty() {
            let bound = tokio::time::timeout(
                self.spec.connect_timeout,
                ldap.simple_bind(&self.spec.bind_dn, &self.spec.bind_password),
            )
            .await
            .map_err(|_| DirError::Timeout)??;
            if bound.rc != 0 {
                return Err(DirError::Other(format!(
                    "service bind as {} failed: result {} {}",
                    self.spec.bind_dn, bound.rc, bound.text
                )));
            }
        }
        Ok(ldap)
    }

    /// How far a server has got: the `contextCSN` of the base entry (empty where this
    /// identity may not read it); `None` when the server does not answer.
    async fn progress(&self, url: &str) -> Option<Csns> {
        let probe = async {
            let mut ldap = self.connect(url, true).await.ok()?;
            let res = ldap.search(&self.spec.base_dn, Scope::Base, "(objectClass=*)", vec!["contextCSN"]).await;
            let _ = ldap.unbind().await;
            let ldap3::SearchResult(entries, result) = res.ok()?;
            match result.rc {
                0 => Some(Csns::from_values(
                    entries
                        .into_iter()
                        .flat_map(|e| SearchEntry::construct(e).attrs.into_values().flatten())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                )),
                32 => Some(Csns::default()),
                _ => None,
            }
        };
        tokio::time::timeout(self.spec.connect_timeout, probe).await.ok().flatten()
    }

    /// While a less preferred server is in use, moves back to the first better one once it
    /// has answered and kept up for `failback_after`. Kept up: within a second its
    /// `contextCSN` covers the one the server in use had just before (replication lags a
    /// little behind a steady write load; what was written in that moment reaches it by
    /// replication). The wait lets the returning server's own replication finish its
    /// refresh before it takes writes again.
    pub async fn probe_failback(&self) {
        let current = self.current_server();
        if current == 0 {
            return;
        }
        let want = self.progress(&self.spec.urls[current]).await.unwrap_or_default();
        for better in 0..current {
            let url = &self.spec.urls[better];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            let mut have = None;
            while tokio::time::Instant::now() < deadline {
                have = self.progress(url).await;
                match &have {
                    None => break,
                    Some(h) if h.covers(&want) => {
                        let since = {
                            let Ok(mut c) = self.candidate.lock() else { return };
                            match *c {
                                Some((s, t)) if s == better => t,
                                _ => {
                                    let now = std::time::Instant::now();
                                    *c = Some((better, now));
                                    now
                                }
                            }
                        };
                        if since.elapsed() >= self.spec.failback_after {
                            if let Ok(mut c) = self.candidate.lock() {
                                *c = None;
                            }
                            self.switch_to(better, "fail-back: a preferred server answers again and has caught up");
                        } else {
                            tracing::info!(%url, "a preferred server answers again; using it once it has kept up for a while");
                        }
                        return;
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            if let Ok(mut c) = self.candidate.lock() {
                *c = None;
            }
            if have.is_some() {
                tracing::info!(%url, "a preferred server answers again; waiting for it to catch up");
                return;
            }
        }
    }
}

impl managed::Manager for LdapManager {
    type Type = Conn;
    type Error = DirError;

    async fn create(&self) -> Result<Conn, DirError> {
        let n = self.spec.urls.len();
        let start = self.current_server() % n.max(1);
        let mut last = DirError::Unavailable("no LDAP URL configured".into());
        for i in 0..n {
            let server = (start + i) % n;
            match self.connect(&self.spec.urls[server], true).await {
                Ok(ldap) => {
                    if server != start {
                        self.switch_to(server, "failover: now using this server");
                    }
                    // If the choice moved on meanwhile, this connection is dropped on its
                    // first return to the pool.
                    let generation = if self.current_server() == server {
                        self.generation.load(Ordering::Relaxed)
                    } else {
                        u64::MAX
                    };
                    return Ok(Conn { ldap, server, generation });
                }
                Err(e) => {
                    tracing::warn!(url = %self.spec.urls[server], error = %e, "LDAP server not reachable");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<DirError> {
        if conn.ldap.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        if conn.generation != self.generation.load(Ordering::Relaxed) {
            return Err(RecycleError::message("another server is in use now"));
        }
        Ok(())
    }
}

pub type Pool = managed::Pool<LdapManager>;

pub fn build(spec: ConnSpec, size: usize, wait: Duration) -> Result<Pool, DirError> {
    let timeouts = managed::Timeouts {
        wait: Some(wait),
        create: Some(spec.connect_timeout),
        recycle: Some(Duration::from_secs(1)),
    };
    managed::Pool::builder(LdapManager::new(spec))
        .max_size(size)
        .timeouts(timeouts)
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DirError::Other(e.to_string()))
}
