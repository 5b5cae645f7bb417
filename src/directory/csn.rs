//! Change sequence numbers: how far a directory server, or a consumer of its content
//! synchronisation, has got.

use std::collections::BTreeMap;

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

    /// Whether every CSN of `target` has been reached.
    pub fn covers(&self, target: &Csns) -> bool {
        target.0.iter().all(|(sid, csn)| self.0.get(sid).is_some_and(|have| have >= csn))
    }
}
