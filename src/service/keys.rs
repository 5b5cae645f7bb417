//! Subscription keys of the merchants' facade (`/subscriptions/v1`): a key belongs to a
//! reseller, which has at most two (primary and secondary, for rotation). A key is
//! stored only as the hex SHA-256 of its text, in an entry
//! `cn=<name>,ou=subscription-keys,uid=<reseller>,ou=reseller,<base>` that only the
//! gateway's account reads. Good answers are remembered for `cache_ttl` (a key deleted
//! by someone else stops within that time; a revoke through this gateway at once);
//! failures are throttled per client address like failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use ldap3::Scope as LdapScope;
use sha2::{Digest, Sha256};

use super::auth::AuthSettings;
use super::throttle::{Admission, Refused, Throttle};
use super::ServiceError;
use crate::directory::error::rc;
use crate::directory::escape::{dn_value, filter_value};
use crate::directory::ops::Op;
use crate::directory::{layout, DirError, Directory};
use crate::mapping::Problem;

/// The most live keys of one reseller.
pub const MAX_KEYS: usize = 2;
/// The container of a reseller's keys, below the reseller entry.
pub const CONTAINER_OU: &str = "subscription-keys";
/// How a key starts.
pub const KEY_PREFIX: &str = "sk_";
const NAME_MAX: usize = 32;
const KEY_MAX: usize = 256;
const CACHE_CAP: usize = 10_000;
const WRITE_ATTEMPTS: usize = 3;

/// A key as it is listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub name: String,
    /// RFC 3339 (UTC), e.g. `2026-12-01T12:00:00Z`; empty if the entry has no date.
    pub created: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Unknown, revoked or malformed key.
    #[error("invalid subscription key")]
    Invalid,
    /// Too many failed keys from this client address; try again after this long.
    #[error("too many failed subscription keys")]
    Throttled(Duration),
    #[error("directory unavailable")]
    Unavailable,
    #[error("internal: {0}")]
    Internal(String),
}

impl From<DirError> for KeyError {
    fn from(e: DirError) -> Self {
        if e.is_unavailable() {
            KeyError::Unavailable
        } else {
            KeyError::Internal(e.to_string())
        }
    }
}

struct Remembered {
    reseller: u64,
    name: String,
    until: Instant,
}

pub struct Keys {
    dir: Directory,
    settings: AuthSettings,
    cache: Mutex<HashMap<[u8; 32], Remembered>>,
    /// Failed keys per client address.
    throttle: Throttle<IpAddr>,
}

/// The lowercase hex SHA-256 of a key: what the directory stores.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new key: `sk_` and 43 base64url characters of 32 random bytes.
pub fn new_key() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// Whether a key name is acceptable: 1 to 32 of `[a-z0-9-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Equal bytes, in a time that depends on the length only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `20261201120000Z` as `2026-12-01T12:00:00Z`; anything else as it is.
fn rfc3339(generalized: &str) -> String {
    let g = generalized.as_bytes();
    if g.len() >= 14 && g[..14].iter().all(u8::is_ascii_digit) {
        let s = |a: usize, b: usize| &generalized[a..b];
        format!("{}-{}-{}T{}:{}:{}Z", s(0, 4), s(4, 6), s(6, 8), s(8, 10), s(10, 12), s(12, 14))
    } else {
        generalized.to_string()
    }
}

/// Now as a GeneralizedTime to the second (`YYYYMMDDHHMMSSZ`).
fn generalized_now() -> String {
    let csn = crate::directory::reconcile::csn_at(SystemTime::now());
    format!("{}Z", &csn[..14])
}

impl Keys {
    pub fn new(dir: Directory, settings: AuthSettings) -> Self {
        Keys {
            dir,
            cache: Mutex::new(HashMap::new()),
            throttle: Throttle::new(&settings, false, "too many failed subscription keys; throttled"),
            settings,
        }
    }

    fn base(&self) -> &str {
        &self.dir.base_dn
    }

    fn reseller_dn(&self, reseller: u64) -> String {
        format!("{},ou=reseller,{}", layout::uid_rdn(reseller), self.base())
    }

    fn container_dn(&self, reseller: u64) -> String {
        format!("ou={CONTAINER_OU},{}", self.reseller_dn(reseller))
    }

    fn key_dn(&self, reseller: u64, name: &str) -> String {
        format!("cn={},{}", dn_value(name), self.container_dn(reseller))
    }

    /// Whether the reseller entry exists.
    async fn reseller_exists(&self, reseller: u64) -> Result<bool, DirError> {
        let found = self
            .dir
            .search(&self.reseller_dn(reseller), LdapScope::Base, "(objectClass=sstReseller)", &["1.1"])
            .await?;
        Ok(!found.is_empty())
    }

    /// The key entries of a reseller; `None` without a container.
    async fn entries(&self, reseller: u64) -> Result<Option<Vec<KeyInfo>>, DirError> {
        // The container comes with its keys (a missing base is an empty answer).
        let container = self.container_dn(reseller);
        let found = self
            .dir
            .search(
                &container,
                LdapScope::Subtree,
                "(|(objectClass=sgwSubscriptionKey)(objectClass=organizationalUnit))",
                &["objectClass", "cn", "sgwKeyCreated"],
            )
            .await?;
        if found.is_empty() {
            return Ok(None);
        }
        let mut out: Vec<KeyInfo> = found
            .iter()
            .filter(|e| e.has_object_class("sgwSubscriptionKey"))
            .filter_map(|e| {
                let name = e.rdn_value("cn")?.to_string();
                Some(KeyInfo { name, created: e.first("sgwKeyCreated").map(rfc3339).unwrap_or_default() })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(out))
    }

    /// The keys of a reseller, by name and creation date (never the key).
    pub async fn list(&self, reseller: u64) -> Result<Vec<KeyInfo>, ServiceError> {
        match self.entries(reseller).await? {
            Some(keys) => Ok(keys),
            None if self.reseller_exists(reseller).await? => Ok(Vec::new()),
            None => Err(ServiceError::NotFound),
        }
    }

    /// Issues a key named `name` to a reseller: the key (shown this once) and when it was
    /// created. 409 if the reseller has a key of that name, or already two.
    pub async fn issue(&self, reseller: u64, name: &str) -> Result<(String, KeyInfo), ServiceError> {
        if !valid_name(name) {
            return Err(ServiceError::Invalid(vec![Problem::new(
                "name",
                format!("must be 1 to {NAME_MAX} of a-z, 0-9 and -, e.g. primary or secondary"),
            )]));
        }
        for attempt in 1..=WRITE_ATTEMPTS {
            let existing = self.entries(reseller).await?;
            if existing.is_none() && !self.reseller_exists(reseller).await? {
                return Err(ServiceError::NotFound);
            }
            let keys = existing.as_deref().unwrap_or_default();
            if keys.iter().any(|k| k.name == name) {
                return Err(ServiceError::Conflict(format!("the reseller has a key named {name}; revoke it first")));
            }
            if keys.len() >= MAX_KEYS {
                return Err(ServiceError::Conflict(format!(
                    "the reseller has {MAX_KEYS} keys already; revoke one first"
                )));
            }
            let key = new_key()?;
            let created = generalized_now();
            let mut ops = Vec::new();
            if existing.is_none() {
                ops.push(
                    Op::Add {
                        dn: self.container_dn(reseller),
                        attrs: vec![
                            ("objectClass".into(), vec!["top".into(), "organizationalUnit".into()]),
                            ("ou".into(), vec![CONTAINER_OU.into()]),
                        ],
                    }
                    .into(),
                );
            }
            let dn = self.key_dn(reseller, name);
            ops.push(
                Op::Add {
                    dn: dn.clone(),
                    attrs: vec![
                        ("objectClass".into(), vec!["top".into(), "sgwSubscriptionKey".into()]),
                        ("cn".into(), vec![name.into()]),
                        ("sgwKeyHash".into(), vec![key_hash(&key)]),
                        ("sgwKeyCreated".into(), vec![created.clone()]),
                    ],
                }
                .into(),
            );
            match self.dir.apply_atomic(ops).await {
                Ok(()) => {}
                // Another issue created the container or this name meanwhile: look again.
                Err(e) if e.rc() == Some(rc::ALREADY_EXISTS) && attempt < WRITE_ATTEMPTS => continue,
                Err(e) if e.rc() == Some(rc::ALREADY_EXISTS) => {
                    return Err(ServiceError::Conflict("the keys of the reseller changed meanwhile; try again".into()))
                }
                Err(e) if e.rc() == Some(rc::NO_SUCH_OBJECT) => return Err(ServiceError::NotFound),
                Err(e) => return Err(e.into()),
            }
            // Two issues at once may each have seen one key: the one that makes three
            // goes again.
            if self.entries(reseller).await?.is_some_and(|k| k.len() > MAX_KEYS) {
                let _ = self.dir.apply(vec![Op::Delete { dn }.into()]).await;
                return Err(ServiceError::Conflict(format!(
                    "the reseller has {MAX_KEYS} keys already; revoke one first"
                )));
            }
            tracing::info!(reseller, name = ?name, "subscription key issued");
            return Ok((key, KeyInfo { name: name.to_string(), created: rfc3339(&created) }));
        }
        Err(ServiceError::Conflict("the keys of the reseller changed meanwhile; try again".into()))
    }

    /// Revokes (deletes) a reseller's key; it stops on this gateway at once.
    pub async fn revoke(&self, reseller: u64, name: &str) -> Result<(), ServiceError> {
        if !valid_name(name) {
            return Err(ServiceError::NotFound);
        }
        let res = self.dir.apply(vec![Op::Delete { dn: self.key_dn(reseller, name) }.into()]).await;
        // Whatever the answer: a delete that failed late may have happened.
        self.forget(reseller, name);
        match res {
            Ok(()) => {
                tracing::info!(reseller, name = ?name, "subscription key revoked");
                Ok(())
            }
            Err(e) if e.rc() == Some(rc::NO_SUCH_OBJECT) => Err(ServiceError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends the remembered answers for a reseller's key.
    pub fn forget(&self, reseller: u64, name: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, r| !(r.reseller == reseller && r.name == name));
        }
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<u64> {
        let cache = self.cache.lock().ok()?;
        cache.get(hash).filter(|r| r.until > Instant::now()).map(|r| r.reseller)
    }

    fn remember(&self, hash: [u8; 32], reseller: u64, name: String) {
        let Ok(mut cache) = self.cache.lock() else { return };
        if cache.len() >= CACHE_CAP {
            let now = Instant::now();
            cache.retain(|_, r| r.until > now);
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
        }
        cache.insert(hash, Remembered { reseller, name, until: Instant::now() + self.settings.cache_ttl });
    }

    /// The reseller a key belongs to. Unknown, revoked and malformed keys are
    /// `KeyError::Invalid`, and count as failures of `client`.
    pub async fn authenticate(&self, key: &str, client: IpAddr) -> Result<u64, KeyError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(reseller) = self.cached(&digest) {
            return Ok(reseller);
        }
        match self.throttle.admit(&client, || self.cached(&digest)).await {
            Ok(Admission::Check) => {}
            Ok(Admission::Known(reseller)) => return Ok(reseller),
            Err(Refused::Throttled(wait)) => return Err(KeyError::Throttled(wait)),
            Err(Refused::Poisoned) => return Err(KeyError::Internal("lock poisoned".into())),
        }
        let res = self.lookup(key, &digest).await;
        if let Ok((reseller, name)) = &res {
            self.remember(digest, *reseller, name.clone());
        }
        let good = match &res {
            Ok(_) => Some(true),
            Err(KeyError::Invalid) => Some(false),
            Err(_) => None,
        };
        self.throttle.end(&client, good);
        res.map(|(reseller, _)| reseller)
    }

    /// Looks a key's hash up in the directory: its reseller and name.
    async fn lookup(&self, key: &str, digest: &[u8; 32]) -> Result<(u64, String), KeyError> {
        if !key.starts_with(KEY_PREFIX) || key.len() > KEY_MAX || key.chars().any(char::is_control) {
            return Err(KeyError::Invalid);
        }
        let hash = hex::encode(digest);
        let filter = format!("(&(objectClass=sgwSubscriptionKey)(sgwKeyHash={}))", filter_value(&hash));
        let resellers = format!("ou=reseller,{}", self.base());
        let found = self.dir.search(&resellers, LdapScope::Subtree, &filter, &["cn", "sgwKeyHash"]).await?;
        for entry in &found {
            let Some(stored) = entry.first("sgwKeyHash").and_then(|h| hex::decode(h.trim().to_ascii_lowercase()).ok())
            else {
                continue;
            };
            if !constant_time_eq(&stored, digest) {
                continue;
            }
            let Some((reseller, name)) = self.place(&entry.dn) else { continue };
            if !self.reseller_exists(reseller).await? {
                continue;
            }
            return Ok((reseller, name));
        }
        Err(KeyError::Invalid)
    }

    /// The reseller and name of a key entry's DN,
    /// `cn=<name>,ou=subscription-keys,uid=<reseller>,ou=reseller,<base>`.
    fn place(&self, dn: &str) -> Option<(u64, String)> {
        let parts: Vec<&str> = dn.splitn(4, ',').collect();
        let [cn, ou, uid, rest] = parts.as_slice() else { return None };
        let name = cn.split_once('=').filter(|(t, _)| t.trim().eq_ignore_ascii_case("cn"))?.1.trim();
        let ou_ok = ou
            .split_once('=')
            .is_some_and(|(t, v)| t.trim().eq_ignore_ascii_case("ou") && v.trim().eq_ignore_ascii_case(CONTAINER_OU));
        let reseller = uid
            .split_once('=')
            .filter(|(t, _)| t.trim().eq_ignore_ascii_case("uid"))
            .and_then(|(_, v)| layout::canonical_id(v.trim()))?;
        let norm = |s: &str| s.split(',').map(|p| p.trim().to_ascii_lowercase()).collect::<Vec<_>>();
        let rest_ok = norm(rest) == norm(&format!("ou=reseller,{}", self.base()));
        (ou_ok && rest_ok && valid_name(name)).then(|| (reseller, name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_base64url_of_32_bytes() {
        let k = new_key().unwrap();
        assert!(k.starts_with("sk_"));
        assert_eq!(k.len(), 3 + 43);
        assert!(k[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(k, new_key().unwrap());
        assert_eq!(key_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn names_and_dates() {
        assert!(valid_name("primary") && valid_name("key-2"));
        for bad in ["", "Primary", "a b", "x,y", "ä", &"a".repeat(33)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(rfc3339("20261201120304Z"), "2026-12-01T12:03:04Z");
        assert_eq!(generalized_now().len(), 15);
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"a", b"ab")
        );
    }
}
