//! `ldap.ack = "all"`: a write is answered once every server that answers holds it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ldap3::Ldap;

use super::LdapManager;

#[derive(Default)]
pub(super) enum AckConn {
    #[default]
    None,
    Up(Ldap),
    Down(std::time::Instant),
}

impl std::fmt::Debug for AckConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckConn::None => write!(f, "None"),
            AckConn::Up(_) => write!(f, "Up"),
            AckConn::Down(t) => write!(f, "Down({t:?})"),
        }
    }
}

impl LdapManager {
    /// Writes acknowledged while a server did not hold them (`ldap.ack = "all"` with a
    /// server down or too slow).
    pub fn acks_degraded(&self) -> u64 {
        self.acks_degraded.load(Ordering::Relaxed)
    }

    /// A connection to `server` for reading its `contextCSN` after a write; `None` while
    /// it cannot be reached (tried again at most once a second).
    pub(super) async fn ack_conn(&self, server: usize) -> Option<Ldap> {
        {
            let mut acks = self.acks.lock().ok()?;
            let alive = match &mut acks[server] {
                AckConn::Up(l) => (!l.is_closed()).then(|| l.clone()),
                AckConn::Down(since) if since.elapsed() < Duration::from_secs(1) => return None,
                _ => None,
            };
            if alive.is_some() {
                return alive;
            }
            acks[server] = AckConn::None;
        }
        let made = tokio::time::timeout(self.spec.connect_timeout, self.connect(&self.spec.urls[server], true)).await;
        let mut acks = self.acks.lock().ok()?;
        match made {
            Ok(Ok(l)) => {
                acks[server] = AckConn::Up(l.clone());
                Some(l)
            }
            _ => {
                acks[server] = AckConn::Down(std::time::Instant::now());
                None
            }
        }
    }

    pub(super) fn ack_lost(&self, server: usize) {
        if let Ok(mut acks) = self.acks.lock() {
            acks[server] = AckConn::Down(std::time::Instant::now());
        }
    }

    /// `ldap.ack = "all"`: returns once every other server that answers holds what the
    /// server in use holds now (its `contextCSN` covers the one the server in use has
    /// after the write), or after `timeout`. A server that does not answer, or does not
    /// get there in time, is skipped: the write is then acknowledged by fewer servers,
    /// which is counted (`stoney_ldap_acks_degraded_total`) and logged.
    pub async fn replicated(&self, timeout: Duration) {
        let n = self.spec.urls.len();
        if n < 2 {
            return;
        }
        let current = self.current_server();
        let want = match self.ack_conn(current).await {
            Some(mut l) => self.context_csns(&mut l).await,
            None => None,
        };
        let Some(want) = want else {
            self.ack_lost(current);
            self.degrade(current, "the server in use does not answer after the write");
            return;
        };
        let deadline = tokio::time::Instant::now() + timeout;
        for peer in (0..n).filter(|&s| s != current) {
            loop {
                let Some(mut l) = self.ack_conn(peer).await else {
                    self.degrade(peer, "a server is not reachable");
                    break;
                };
                match self.context_csns(&mut l).await {
                    None => {
                        self.ack_lost(peer);
                        self.degrade(peer, "a server does not answer");
                        break;
                    }
                    Some(have) if have.covers(&want) => break,
                    Some(_) if tokio::time::Instant::now() >= deadline => {
                        self.degrade(peer, "a server did not take the write in time");
                        break;
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        }
    }

    pub(super) fn degrade(&self, server: usize, why: &str) {
        self.acks_degraded.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(url = %self.spec.urls[server], why, "write acknowledged without this server holding it (ldap.ack = \"all\")");
    }
}
