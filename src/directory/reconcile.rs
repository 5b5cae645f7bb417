//! Checks that a server's replication holds what the server in use wrote since a
//! disturbance (a server stopped answering, restarted, or the one in use changed).
//!
//! slapd 2.5 advances its `contextCSN` for the operations of an RFC 5805 transaction as
//! they run, before the transaction commits. A consumer that starts its refresh in that
//! moment (after its own restart, or the provider's) is told it is complete up to a CSN
//! whose entries it never got, and no later refresh sends them. The gateway finds such
//! entries by comparing what both servers hold since the disturbance and has the server
//! that holds them send them again through its own replication: a modification that
//! leaves the entry as it is but gives it a new CSN. A delete can be missed the same
//! way; the other server's write log tells a missed delete from a missed create, and the
//! gateway then deletes the entry where it is still held.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::csn::Csns;

/// How far before a disturbance the comparison starts: covers transactions in flight
/// then, and clocks of the servers a little apart.
pub const MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// An entry as the comparison sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub dn: String,
    pub uuid: String,
    pub csn: String,
}

/// The civil date and time (UTC, proleptic Gregorian calendar) of a moment: year,
/// month, day, hour, minute, second, and the microseconds.
pub fn utc(t: SystemTime) -> ([i64; 6], u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ([year, month, day, rem / 3600, rem / 60 % 60, rem % 60], d.subsec_micros())
}

/// The smallest CSN of the given time (any server id), for `(entryCSN>=…)`.
pub fn csn_at(t: SystemTime) -> String {
    let ([y, mo, d, h, mi, s], us) = utc(t);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}.{us:06}Z#000000#000#000000")
}

/// A moment as RFC 3339 writes it (UTC, microseconds).
pub fn rfc3339(t: SystemTime) -> String {
    let ([y, mo, d, h, mi, s], us) = utc(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}Z")
}

/// An entry one server has and the other lacks (`absent`) or holds in an older state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap<'a> {
    pub entry: &'a Seen,
    pub absent: bool,
}

/// The entries of one server (`have`) that the other lacks or holds in an older state,
/// among those the other should hold by now. That is the case for an entry whose CSN
/// `other_reached` covers (the other server's `contextCSN`, read before its entries):
/// what is newer may still be on its way. It is also the case for an entry newer than
/// what `have_reached` (its own server's `contextCSN`, read after its entries) says for
/// the entry's server id: its server never counted it as sent, so replication will not
/// carry it unless it changes again. A server killed before it stored its `contextCSN`
/// comes back like that, with its last writes past what it claims to hold. (Entries of
/// a server id no `contextCSN` names, such as those `slapadd` loaded, are neither.)
/// Parents come before their children.
pub fn missing<'a>(have: &'a [Seen], other: &[Seen], have_reached: &Csns, other_reached: &Csns) -> Vec<Gap<'a>> {
    let theirs: HashMap<&str, &str> = other.iter().map(|s| (s.uuid.as_str(), s.csn.as_str())).collect();
    let mut out: Vec<Gap> = have
        .iter()
        .filter(|s| {
            let csn = Csns::from_values([s.csn.as_str()]);
            let stranded = csn.0.iter().any(|(sid, c)| have_reached.0.get(sid).is_some_and(|own| own < c));
            other_reached.covers(&csn) || stranded
        })
        .filter_map(|s| match theirs.get(s.uuid.as_str()) {
            None => Some(Gap { entry: s, absent: true }),
            Some(c) if *c < s.csn.as_str() => Some(Gap { entry: s, absent: false }),
            Some(_) => None,
        })
        .collect();
    out.sort_by_key(|g| super::layout::depth(&g.entry.dn));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seen(dn: &str, uuid: &str, csn: &str) -> Seen {
        Seen { dn: dn.into(), uuid: uuid.into(), csn: csn.into() }
    }

    #[test]
    fn csn_of_a_time_is_its_utc_calendar_time() {
        assert_eq!(csn_at(UNIX_EPOCH), "19700101000000.000000Z#000000#000#000000");
        // 2026-11-24 22:13:08.292630 UTC
        let t = UNIX_EPOCH + Duration::from_micros(1_795_558_388_292_630);
        assert_eq!(csn_at(t), "20261124221308.292630Z#000000#000#000000");
        assert_eq!(rfc3339(t), "2026-11-24T22:13:08.292630Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(csn_at(t), "20240229000000.000000Z#000000#000#000000");
    }

    #[test]
    fn finds_what_the_peer_lacks_or_holds_older_parents_first() {
        let c1 = "20261124221308.100000Z#000000#002#000000";
        let c2 = "20261124221308.200000Z#000000#002#000000";
        let c3 = "20261124221308.300000Z#000000#002#000000";
        let later = "20261124221309.000000Z#000000#002#000000";
        let current = vec![
            seen("ou=address,uid=2,ou=customers,dc=x", "u2a", c3),
            seen("uid=2,ou=customers,dc=x", "u2", c2),
            seen("uid=1,ou=customers,dc=x", "u1", c2),
            seen("uid=3,ou=customers,dc=x", "u3", c1),
            seen("uid=4,ou=customers,dc=x", "u4", later),
        ];
        let peer = vec![
            seen("uid=1,ou=customers,dc=x", "u1", c1),
            seen("uid=3,ou=customers,dc=x", "u3", c1),
            seen("uid=9,ou=customers,dc=x", "u9", c1),
        ];
        let covered = Csns::from_values([c3]);
        let own = Csns::from_values([later]);
        let m: Vec<(&str, bool)> =
            missing(&current, &peer, &own, &covered).iter().map(|g| (g.entry.uuid.as_str(), g.absent)).collect();
        // u3 is the same on both, u4 is newer than the peer has reached (still on its way).
        assert_eq!(m, [("u2", true), ("u1", false), ("u2a", true)]);
        // A peer that holds a newer state than the server in use is not behind.
        let peer_newer = vec![seen("uid=3,ou=customers,dc=x", "u3", c2)];
        let only_u3 = vec![seen("uid=3,ou=customers,dc=x", "u3", c1)];
        assert!(missing(&only_u3, &peer_newer, &own, &covered).is_empty());
    }

    #[test]
    fn entries_past_their_own_servers_context_csn_are_stranded_not_on_their_way() {
        // A server killed after its last writes but before it stored its contextCSN
        // (c1) comes back holding entries past it (c2, c3); the other server's
        // replication session took it up at c1 and will never be sent them.
        let c1 = "20261124230042.954850Z#000000#001#000000";
        let c2 = "20261124230042.955702Z#000000#001#000000";
        let c3 = "20261124230042.957942Z#000000#001#000000";
        let restarted = vec![
            seen("uid=1,ou=customers,dc=x", "u1", c1),
            seen("ou=address,uid=1,ou=customers,dc=x", "u1a", c2),
            seen("uid=2,ou=customers,dc=x", "u2", c3),
        ];
        let other = vec![seen("uid=1,ou=customers,dc=x", "u1", c1)];
        let reached = Csns::from_values([c1, "20261124230043.000000Z#000000#002#000000"]);
        let m: Vec<&str> =
            missing(&restarted, &other, &reached, &reached).iter().map(|g| g.entry.uuid.as_str()).collect();
        assert_eq!(m, ["u2", "u1a"]);
        // Once the restarted server counts them as its own, they are on their way again.
        let counted = Csns::from_values([c3]);
        assert!(missing(&restarted, &other, &counted, &reached).is_empty());
        // Entries loaded offline carry server id 0, which no contextCSN names.
        let loaded = vec![seen("dc=x", "u0", "20261124230041.000000Z#000000#000#000000")];
        assert!(missing(&loaded, &[], &reached, &reached).is_empty());
    }
}
