//! The pool of bound LDAP connections (deadpool). A connection is created against the
//! first configured URL that answers, starting with the one that worked last, so a dead
//! server is skipped; a connection whose socket closed is noticed on recycle and replaced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};

use super::DirError;

#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub urls: Vec<String>,
    pub bind_dn: String,
    pub bind_password: String,
    pub connect_timeout: Duration,
    pub starttls: bool,
    pub tls_verify: bool,
}

#[derive(Debug)]
pub struct LdapManager {
    spec: ConnSpec,
    preferred: AtomicUsize,
}

impl LdapManager {
    pub fn new(spec: ConnSpec) -> Self {
        LdapManager { spec, preferred: AtomicUsize::new(0) }
    }

    async fn connect(&self, url: &str) -> Result<Ldap, DirError> {
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
        if !self.spec.bind_dn.is_empty() {
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
    type Type = Ldap;
    type Error = DirError;

    async fn create(&self) -> Result<Ldap, DirError> {
        let n = self.spec.urls.len();
        let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let mut last = DirError::Unavailable("no LDAP URL configured".into());
        for i in 0..n {
            let idx = (start + i) % n;
            let url = &self.spec.urls[idx];
            match self.connect(url).await {
                Ok(ldap) => {
                    if idx != start {
                        tracing::warn!(url = %url, "LDAP failover: now connecting to this server");
                    }
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(ldap);
                }
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "LDAP server not reachable");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn recycle(&self, ldap: &mut Ldap, _: &Metrics) -> RecycleResult<DirError> {
        if ldap.is_closed() {
            return Err(RecycleError::message("connection closed"));
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
