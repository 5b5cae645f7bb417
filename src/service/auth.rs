//! Authentication of API callers (SPEC section 7): the user name is a person's `mail`
//! under `ou=people`, the password is checked by an LDAP bind as that person. A
//! successful login is remembered for a short time under a salted hash of the
//! credentials (never the password itself); failed logins per user name are throttled.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ldap3::Scope as LdapScope;
use sha2::{Digest, Sha256};

use super::throttle::{Admission, Refused, Throttle};
use super::Scope;
use crate::directory::error::rc;
use crate::directory::escape::filter_value;
use crate::directory::pool::Pool;
use crate::directory::{layout, DirError, Directory};

/// An authenticated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub uid: u64,
    pub mail: String,
    pub dn: String,
    /// `None`: the person belongs to no provider, reseller or customer.
    pub scope: Option<Scope>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("invalid credentials")]
    Invalid,
    #[error("too many failed logins")]
    Throttled(Duration),
    #[error("directory unavailable")]
    Unavailable,
    #[error("internal: {0}")]
    Internal(String),
}

impl From<DirError> for AuthError {
    fn from(e: DirError) -> Self {
        if e.is_unavailable() {
            AuthError::Unavailable
        } else {
            AuthError::Internal(e.to_string())
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub cache_ttl: Duration,
    pub max_failures: u32,
    pub failure_window: Duration,
    pub lockout: Duration,
}

const CACHE_CAP: usize = 50_000;
const PERSON_ATTRS: &[&str] =
    &["uid", "mail", "sstIsActive", "sstBelongsToUID", "sstBelongsToResellerUID", "sstBelongsToCustomerUID"];

pub struct Authenticator {
    dir: Directory,
    /// Connections used only to bind as the people who log in.
    binds: Pool,
    settings: AuthSettings,
    salt: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    /// Failed logins per user name.
    throttle: Throttle<String>,
}

fn random_salt() -> [u8; 32] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn first_number(e: &crate::directory::Entry, attr: &str) -> Option<u64> {
    e.values(attr).iter().find_map(|v| v.trim().parse().ok())
}

/// The scope a person entry grants.
pub fn scope_of(e: &crate::directory::Entry) -> Option<Scope> {
    if e.values("sstBelongsToUID").iter().any(|v| v.trim() == "1") {
        return Some(Scope::Provider);
    }
    let reseller = first_number(e, "sstBelongsToResellerUID");
    match (first_number(e, "sstBelongsToCustomerUID"), reseller) {
        (Some(customer), r) => Some(Scope::Customer { reseller: r.unwrap_or(0), customer }),
        (None, Some(r)) => Some(Scope::Reseller(r)),
        (None, None) => None,
    }
}

impl Authenticator {
    pub fn new(dir: Directory, binds: Pool, settings: AuthSettings) -> Self {
        Authenticator {
            dir,
            binds,
            salt: random_salt(),
            cache: Mutex::new(HashMap::new()),
            throttle: Throttle::new(&settings, true, "too many failed logins; throttled"),
            settings,
        }
    }

    /// The connections used to check passwords.
    pub fn pool(&self) -> &Pool {
        &self.binds
    }

    fn key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(user.as_bytes());
        h.update([0u8]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// A remembered good login: the principal, and whether it is still fresh (then no
    /// bind is needed). Stale ones are kept for `lockout` more (see `authenticate`).
    fn cached(&self, key: &[u8; 32]) -> Option<(Principal, bool)> {
        let now = Instant::now();
        let cache = self.cache.lock().ok()?;
        let (p, until) = cache.get(key)?;
        if *until > now {
            Some((p.clone(), true))
        } else if *until + self.settings.lockout > now {
            Some((p.clone(), false))
        } else {
            None
        }
    }

    fn forget(&self, key: &[u8; 32]) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(key);
        }
    }

    /// Ends every remembered login of a person (after its password, activity or scope
    /// changed): its next request logs in again.
    pub fn forget_person(&self, uid: u64) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (p, _)| p.uid != uid);
        }
    }

    fn remember(&self, key: [u8; 32], p: &Principal) {
        let Ok(mut cache) = self.cache.lock() else { return };
        if cache.len() >= CACHE_CAP {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until + self.settings.lockout > now);
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
        }
        cache.insert(key, (p.clone(), Instant::now() + self.settings.cache_ttl));
    }

    /// Checks a user name and password.
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        let user = user.trim().to_ascii_lowercase();
        let key = self.key(&user, password);
        // A login that succeeded moments ago is served from memory, so an attacker who
        // fails on purpose cannot lock the real user out while it works.
        let remembered = match self.cached(&key) {
            Some((p, true)) => return Ok(p),
            Some((_, false)) => true,
            None => false,
        };
        // Credentials that logged in before are not a guess: during a lockout (which can
        // outlast the cache time) they are checked again without counting, so the real
        // user keeps working while others guess.
        if !remembered {
            // While as many attempts as may still fail are in flight, this one waits for
            // one to end; if it was these credentials and good, they are remembered now.
            let fresh = || self.cached(&key).filter(|(_, fresh)| *fresh).map(|(p, _)| p);
            match self.throttle.admit(&user, fresh).await {
                Ok(Admission::Check) => {}
                Ok(Admission::Known(p)) => return Ok(p),
                Err(Refused::Throttled(wait)) => return Err(AuthError::Throttled(wait)),
                Err(Refused::Poisoned) => return Err(AuthError::Internal("lock poisoned".into())),
            }
        }
        let res = self.verify(&user, password).await;
        match &res {
            Ok(p) => self.remember(key, p),
            Err(AuthError::Invalid) if remembered => self.forget(&key),
            _ => {}
        }
        if !remembered {
            let good = match &res {
                Ok(_) => Some(true),
                Err(AuthError::Invalid) => Some(false),
                Err(_) => None,
            };
            self.throttle.end(&user, good);
        }
        res
    }

    async fn verify(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        // An empty password would be an unauthenticated bind (RFC 4513 5.1.2), which
        // succeeds without proving anything.
        if user.is_empty()
            || password.is_empty()
            || user.len() > 256
            || password.len() > 1024
            || user.chars().any(char::is_control)
        {
            return Err(AuthError::Invalid);
        }
        let filter = format!("(&(objectClass=sstPerson)(mail={}))", filter_value(user));
        let found =
            self.dir.search(&layout::people_dn(&self.dir.base_dn), LdapScope::Subtree, &filter, PERSON_ATTRS).await?;
        let [person] = found.as_slice() else {
            return Err(AuthError::Invalid);
        };
        if person.first("sstIsActive").is_some_and(|v| v.eq_ignore_ascii_case("FALSE")) {
            return Err(AuthError::Invalid);
        }
        let uid = first_number(person, "uid").ok_or(AuthError::Invalid)?;
        let started = std::time::Instant::now();
        let mut conn = self.binds.get().await.map_err(|_| {
            crate::directory::ops::observe("bind", started, Some(&DirError::Unavailable("no connection".into())));
            AuthError::Unavailable
        })?;
        let res = conn.simple_bind(&person.dn, password).await;
        let failed = match &res {
            Ok(r) if r.rc == 0 || r.rc == rc::INVALID_CREDENTIALS => None,
            Ok(r) => Some(DirError::Result { rc: r.rc, text: r.text.clone() }),
            Err(e) => Some(DirError::Unavailable(e.to_string())),
        };
        crate::directory::ops::observe("bind", started, failed.as_ref());
        match res {
            Ok(r) if r.rc == 0 => {}
            Ok(r) if r.rc == rc::INVALID_CREDENTIALS => return Err(AuthError::Invalid),
            Ok(r) => return Err(DirError::from(r).into()),
            Err(e) => {
                let _ = deadpool::managed::Object::take(conn);
                return Err(DirError::from(e).into());
            }
        }
        Ok(Principal {
            uid,
            mail: person.first("mail").unwrap_or(user).to_string(),
            dn: person.dn.clone(),
            scope: scope_of(person),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Entry;

    fn person(pairs: &[(&str, &str)]) -> Entry {
        let mut e = Entry::default();
        for (k, v) in pairs {
            e.attrs.entry(k.to_ascii_lowercase()).or_default().push(v.to_string());
        }
        e
    }

    #[test]
    fn scope_comes_from_the_person_entry() {
        assert_eq!(scope_of(&person(&[("sstBelongsToUID", "1")])), Some(Scope::Provider));
        assert_eq!(scope_of(&person(&[("sstBelongsToResellerUID", "4000001")])), Some(Scope::Reseller(4000001)));
        assert_eq!(
            scope_of(&person(&[("sstBelongsToResellerUID", "4000001"), ("sstBelongsToCustomerUID", "5000001")])),
            Some(Scope::Customer { reseller: 4000001, customer: 5000001 })
        );
        assert_eq!(scope_of(&person(&[("sstBelongsToUID", "7")])), None);
    }
}
