//! The pool of bound LDAP connections (deadpool), with failover across the configured
//! servers. The URLs are in order of preference: new connections go to the current
//! server (the first one that answered); when it stops answering they go to the next
//! one that does, and the connections to the old one are dropped as they come back to
//! the pool. While a less preferred server is in use, `probe_failback` checks the better
//! ones and moves back as soon as one answers again. All connections of a pool so use
//! one server at a time, which keeps writes (and the id counter) on one provider of a
//! replicated set.
//!
//! The connections and the pool are here; the server choice is in `servers`, the
//! watching and comparing of replicated servers in `replication`, `ldap.ack = "all"` in
//! `ack`.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};

mod ack;
mod claim;
mod replication;
mod servers;

use super::DirError;
use ack::AckConn;
pub use claim::{raise_counter, Claim};
use replication::Unchecked;
pub use replication::WRITE_LOG;

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
    /// Whether `watch` compares the servers after a disturbance and moves back to a
    /// preferred one only once it holds what the one in use has (the pool that writes).
    pub reconcile: bool,
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
    /// Per server: whether, and since when, it is to be compared with the server in use
    /// (`watch`).
    pending: std::sync::Mutex<Vec<Option<Unchecked>>>,
    /// Counts the disturbances, so a comparison clears only what it checked.
    disturbances: AtomicU64,
    /// One connection per server, whose loss tells that it stopped or restarted.
    watchers: tokio::sync::Mutex<Vec<Option<Ldap>>>,
    /// Entries sent again through replication because a server had missed them.
    resent: AtomicU64,
    /// Entries deleted on a server that had missed their delete.
    deletes_completed: AtomicU64,
    /// Whether the comparison has found a server's write log unreadable (said once).
    log_unreadable: std::sync::atomic::AtomicBool,
    /// A write log answered with a size or time limit (said once).
    log_limited: std::sync::atomic::AtomicBool,
    /// The server in use, for those that follow this pool's choice (`follow`).
    moved: tokio::sync::watch::Sender<usize>,
    /// `ldap.ack = "all"`: per server, a connection that reads its `contextCSN` after a
    /// write, or since when it could not be reached (tried again a second later).
    acks: std::sync::Mutex<Vec<AckConn>>,
    /// Writes acknowledged with fewer servers holding them than are configured.
    acks_degraded: AtomicU64,
    /// Per server, a connection that raises its id counter (`claim_elsewhere`).
    claimers: Vec<tokio::sync::Mutex<Option<Ldap>>>,
}

impl LdapManager {
    pub fn new(spec: ConnSpec) -> Self {
        let n = spec.urls.len();
        LdapManager {
            spec,
            current: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            candidate: Default::default(),
            pending: std::sync::Mutex::new(vec![None; n]),
            disturbances: AtomicU64::new(0),
            watchers: tokio::sync::Mutex::new((0..n).map(|_| None).collect()),
            resent: AtomicU64::new(0),
            deletes_completed: AtomicU64::new(0),
            log_unreadable: Default::default(),
            log_limited: Default::default(),
            moved: tokio::sync::watch::Sender::new(0),
            acks: std::sync::Mutex::new((0..n).map(|_| AckConn::None).collect()),
            acks_degraded: AtomicU64::new(0),
            claimers: (0..n).map(|_| tokio::sync::Mutex::new(None)).collect(),
        }
    }

    pub(crate) async fn connect(&self, url: &str, bind: bool) -> Result<Ldap, DirError> {
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
