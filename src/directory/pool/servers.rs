//! Which server the pool uses: failover to the next one that answers, fail-back to a
//! preferred one once it has kept up, and what follows the pool's choice.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::LdapManager;

impl LdapManager {
    /// The server in use, now and whenever it changes.
    pub fn follow(&self) -> tokio::sync::watch::Receiver<usize> {
        self.moved.subscribe()
    }

    /// Makes `server` the one new connections go to first, as another pool chose it.
    pub fn prefer(&self, server: usize) {
        if server < self.spec.urls.len() {
            self.set_current(server);
        }
    }

    /// Makes `server` the one new connections go to; the one before if that changed
    /// (connections to it are then dropped on their return to the pool).
    pub(super) fn set_current(&self, server: usize) -> Option<usize> {
        let before = self.current.swap(server, Ordering::Relaxed);
        (before != server).then(|| {
            self.generation.fetch_add(1, Ordering::Relaxed);
            before
        })
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

    pub(super) fn switch_to(&self, server: usize, why: &str) {
        if let Some(before) = self.set_current(server) {
            self.mark((0..self.spec.urls.len()).filter(|&s| s != server));
            self.failovers.fetch_add(1, Ordering::Relaxed);
            self.moved.send_replace(server);
            tracing::warn!(from = %self.spec.urls[before], to = %self.spec.urls[server], "LDAP {why}");
        }
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
        let want = self.progress(current).await.unwrap_or_default();
        let unchecked = self.unchecked();
        for better in 0..current {
            let url = &self.spec.urls[better];
            if unchecked.contains(&better) {
                tracing::debug!(%url, "a preferred server waits for its replication to be compared");
                return;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            let mut have = None;
            while tokio::time::Instant::now() < deadline {
                have = self.progress(better).await;
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
                                    tracing::info!(
                                        %url,
                                        "a preferred server answers again; using it once it has kept up for a while"
                                    );
                                    now
                                }
                            }
                        };
                        if since.elapsed() >= self.spec.failback_after {
                            if let Ok(mut c) = self.candidate.lock() {
                                *c = None;
                            }
                            self.switch_to(better, "fail-back: a preferred server answers again and has caught up");
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
