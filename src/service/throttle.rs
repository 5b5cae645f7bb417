//! Failed attempts counted per key (a login's user name, a client's address for
//! subscription keys). An attempt counts before it is checked, so that parallel guesses
//! get at most `max_failures` checks: while the failures and the attempts in flight
//! reach the limit, further attempts wait for one to end; after `max_failures` failures
//! within `failure_window` the key is refused for `lockout`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth::AuthSettings;

/// The most keys kept; past it, the settled ones are forgotten.
const CAP: usize = 100_000;

/// Attempts of one key: failures in the current window, attempts being checked, and
/// the end of a lockout.
struct Failures {
    count: u32,
    pending: u32,
    first: Instant,
    blocked_until: Option<Instant>,
}

/// Why an attempt may not go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Locked out for this long.
    Throttled(Duration),
    /// A thread panicked holding the counts.
    Poisoned,
}

/// What an admitted attempt is to do.
pub enum Admission<T> {
    /// Check it, then `end` it.
    Check,
    /// While it waited, what it asks for came to be known (an attempt of the same
    /// credentials that succeeded).
    Known(T),
}

pub struct Throttle<K> {
    failures: Mutex<HashMap<K, Failures>>,
    /// Woken whenever a counted attempt ends.
    settled: tokio::sync::Notify,
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    /// Whether a good attempt clears the key's failures (a login's right password does;
    /// one good subscription key does not clear an address's guesses).
    success_clears: bool,
    /// Logged when a key is locked out.
    message: &'static str,
}

impl<K: Hash + Eq + Clone + Debug> Throttle<K> {
    pub fn new(settings: &AuthSettings, success_clears: bool, message: &'static str) -> Self {
        Throttle {
            failures: Mutex::new(HashMap::new()),
            settled: tokio::sync::Notify::new(),
            max_failures: settings.max_failures,
            window: settings.failure_window,
            lockout: settings.lockout,
            success_clears,
            message,
        }
    }

    /// Counts an attempt: refused while the key is locked out; waits while as many
    /// attempts as may still fail are in flight, and then answers what `known` finds if
    /// it finds something (the waiting needs no check any more).
    pub async fn admit<T>(&self, key: &K, known: impl Fn() -> Option<T>) -> Result<Admission<T>, Refused> {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.begin(key)? {
                return Ok(Admission::Check);
            }
            settled.await;
            if let Some(t) = known() {
                return Ok(Admission::Known(t));
            }
        }
    }

    /// `Ok(false)`: the failures and the attempts in flight already reach the limit.
    fn begin(&self, key: &K) -> Result<bool, Refused> {
        let now = Instant::now();
        let mut map = self.failures.lock().map_err(|_| Refused::Poisoned)?;
        if map.len() >= CAP {
            map.retain(|_, f| {
                f.pending > 0 || now.duration_since(f.first) < self.window || f.blocked_until.is_some_and(|u| u > now)
            });
        }
        let f = map.entry(key.clone()).or_insert(Failures { count: 0, pending: 0, first: now, blocked_until: None });
        match f.blocked_until {
            Some(until) if until > now => return Err(Refused::Throttled(until - now)),
            Some(_) => {
                f.blocked_until = None;
                f.count = 0;
                f.first = now;
            }
            None => {}
        }
        if now.duration_since(f.first) > self.window {
            f.count = 0;
            f.first = now;
        }
        if f.count + f.pending >= self.max_failures {
            return Ok(false);
        }
        f.pending += 1;
        Ok(true)
    }

    /// Ends an admitted attempt: `Some(true)` good, `Some(false)` a failure, `None` not
    /// checked (the directory failed).
    pub fn end(&self, key: &K, good: Option<bool>) {
        let now = Instant::now();
        let Ok(mut map) = self.failures.lock() else { return };
        let Some(f) = map.get_mut(key) else { return };
        f.pending = f.pending.saturating_sub(1);
        match good {
            Some(true) if self.success_clears => {
                f.count = 0;
                f.blocked_until = None;
            }
            Some(true) | None => {}
            Some(false) => {
                if now.duration_since(f.first) > self.window {
                    f.count = 0;
                    f.first = now;
                }
                f.count += 1;
                if f.count >= self.max_failures {
                    f.blocked_until = Some(now + self.lockout);
                    f.count = 0;
                    f.first = now;
                    tracing::warn!(key = ?key, "{}", self.message);
                }
            }
        }
        if f.pending == 0 && f.count == 0 && f.blocked_until.is_none() {
            map.remove(key);
        }
        drop(map);
        self.settled.notify_waiters();
    }
}
