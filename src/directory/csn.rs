//! Change sequence numbers: how far a directory server, or a consumer of its content
//! synchronisation, has got.

use std::collections::BTreeMap;

/// The base entry's `contextCSN` read over a connection of its own (a session's or a
/// probe's, not the pool's): the result code and, for 0, the CSNs.
pub(crate) async fn read_over(ldap: &mut ldap3::Ldap, base: &str) -> Result<(u32, Csns), ldap3::LdapError> {
    let ldap3::SearchResult(entries, result) =
        ldap.search(base, ldap3::Scope::Base, "(objectClass=*)", vec!["contextCSN"]).await?;
    let values: Vec<String> =
        entries.into_iter().flat_map(|e| ldap3::SearchEntry::construct(e).attrs.into_values().flatten()).collect();
    Ok((result.rc, Csns::from_values(values.iter().map(String::as_str))))
}

/// A set of change sequence numbers, one per server id (multi-provider replication has
/// one per provider). CSNs of one server compare as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Csns(pub BTreeMap<String, String>);

impl Csns {
    /// Reads CSNs (`20261124184611.093516Z#000000#000#000000`) keyed by their server id.
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Csns {
        let mut out = BTreeMap::new();
        for csn in values {
            let csn = csn.trim();
            if let Some(sid) = csn.split('#').nth(2) {
                let e: &mut String = out.entry(sid.to_string()).or_default();
                if csn > e.as_str() {
                    *e = csn.to_string();
                }
            }
        }
        Csns(out)
    }

    /// The CSNs of a sync cookie (`rid=000,sid=001,csn=<csn>;<csn>`).
    pub fn from_cookie(cookie: &[u8]) -> Csns {
        let text = String::from_utf8_lossy(cookie);
        let list = text.split(',').find_map(|p| p.trim().strip_prefix("csn=")).unwrap_or_default();
        Csns::from_values(list.split(';'))
    }

    /// A cookie as a consumer that is no server sends it back: without the `sid=` field.
    /// slapd writes its own server id there, and a provider sends a consumer whose
    /// cookie names a server none of the changes that server made, taking it for that
    /// server (replication does not send a server its own changes back). A consumer that
    /// resumes on another server than its cookie's would miss every change the first
    /// server makes and the second receives by replication, while the CSNs the second
    /// sends still say it is up to date.
    pub fn consumer_cookie(cookie: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(cookie.len());
        for part in cookie.split(|b| *b == b',').filter(|p| !p.trim_ascii_start().starts_with(b"sid=")) {
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(part);
        }
        out
    }

    /// Takes the newer CSN of each server id.
    pub fn merge(&mut self, other: &Csns) {
        for (sid, csn) in &other.0 {
            let e = self.0.entry(sid.clone()).or_default();
            if csn > e {
                *e = csn.clone();
            }
        }
    }

    /// Whether this CSN (of any server id) has been reached.
    pub fn covers_csn(&self, csn: &str) -> bool {
        let csn = csn.trim();
        csn.split('#').nth(2).and_then(|sid| self.0.get(sid)).is_some_and(|have| have.as_str() >= csn)
    }

    /// The same servers, none past the moment `t`: each CSN, or the first CSN of that
    /// moment where it is later.
    pub fn at_most(&self, t: std::time::SystemTime) -> Csns {
        let at = super::reconcile::csn_at(t);
        let capped = self.0.iter().map(|(sid, csn)| {
            let limit = format!("{}#000000#{sid}#000000", &at[..22]);
            (sid.clone(), if *csn <= limit { csn.clone() } else { limit })
        });
        Csns(capped.collect())
    }

    /// Whether every CSN of `target` has been reached.
    pub fn covers(&self, target: &Csns) -> bool {
        target.0.iter().all(|(sid, csn)| self.0.get(sid).is_some_and(|have| have >= csn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_csn_is_covered_by_the_csn_of_its_own_server_id_only() {
        let at =
            Csns::from_values(["20261203120000.000000Z#000000#001#000000", "20200101000000.000000Z#000000#000#000000"]);
        assert!(at.covers_csn("20261203115959.999999Z#000009#001#000000"));
        assert!(at.covers_csn("20261203120000.000000Z#000000#001#000000"));
        assert!(!at.covers_csn("20261203120000.000000Z#000001#001#000000"));
        assert!(at.covers_csn("20191231000000.000000Z#000000#000#000000"));
        assert!(!at.covers_csn("20191231000000.000000Z#000000#002#000000"), "a server id it does not name");
        assert!(!at.covers_csn("garbage"));
    }

    #[test]
    fn at_most_keeps_each_server_at_or_before_the_moment() {
        let at =
            Csns::from_values(["20261203120030.500000Z#000007#001#000000", "20260101000010.000000Z#000000#002#000000"]);
        // 2026-12-03 12:00:00 UTC
        let noon = std::time::UNIX_EPOCH + Duration::from_secs(1_796_299_200);
        let capped = at.at_most(noon);
        assert_eq!(capped.0["001"], "20261203120000.000000Z#000000#001#000000");
        assert_eq!(capped.0["002"], "20260101000010.000000Z#000000#002#000000", "earlier already");
        assert!(!capped.covers_csn("20261203120000.000001Z#000000#001#000000"));
        assert!(capped.covers_csn("20261203115959.999999Z#000003#001#000000"));
        assert_eq!(at.at_most(noon + Duration::from_secs(3600)), at);
    }
}
