//! Where things live in the directory tree (SPEC section 1). Every value placed in a DN
//! goes through RDN escaping, even the numeric ids.

use super::entry::rdn_value;
use super::escape::dn_value;

pub fn counter_dn(base: &str) -> String {
    format!("cn=nextfreeuid,ou=administration,{base}")
}

/// Where removed entries wait to be purged (outside every reseller's subtree).
pub fn trash_dn(base: &str) -> String {
    format!("ou=trash,ou=administration,{base}")
}

pub fn people_dn(base: &str) -> String {
    format!("ou=people,{base}")
}

pub fn resellers_dn(base: &str) -> String {
    format!("ou=reseller,{base}")
}

pub fn reseller_dn(base: &str, reseller: u64) -> String {
    format!("uid={},ou=reseller,{base}", dn_value(&reseller.to_string()))
}

pub fn customers_dn(base: &str, reseller: u64) -> String {
    format!("ou=customers,{}", reseller_dn(base, reseller))
}

pub fn customer_rdn(id: u64) -> String {
    format!("uid={}", dn_value(&id.to_string()))
}

pub fn customer_dn(base: &str, reseller: u64, id: u64) -> String {
    format!("{},{}", customer_rdn(id), customers_dn(base, reseller))
}

pub fn child_dn(customer_dn: &str, ou: &str) -> String {
    format!("ou={},{customer_dn}", dn_value(ou))
}

/// An id as the gateway writes it: a positive decimal number without sign, spaces or
/// leading zeros. A uid written otherwise (`0005001012`) is not an id of the API: its
/// entry is neither listed nor reachable, and the index logs it.
pub fn canonical_id(v: &str) -> Option<u64> {
    let ok = !v.is_empty() && v.len() <= 19 && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| v.parse().ok()).flatten()
}

/// The reseller id of a customer DN `uid=C,ou=customers,uid=R,ou=reseller,...`.
pub fn reseller_of(customer_dn: &str) -> Option<u64> {
    let mut rdns = customer_dn.splitn(4, ',');
    let _customer = rdns.next()?;
    let customers = rdns.next()?;
    if !customers.trim().eq_ignore_ascii_case("ou=customers") {
        return None;
    }
    canonical_id(rdn_value(rdns.next()?, "uid")?)
}

/// Where an entry sits in the customer tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `uid=<id>,ou=customers,uid=<reseller>,ou=reseller,<base>`
    Customer { id: u64, reseller: u64 },
    /// `ou=<ou>,uid=<id>,ou=customers,...` (`ou` in lower case)
    Child { ou: String, id: u64, reseller: u64 },
}

fn rdns(dn: &str) -> Vec<(String, String)> {
    dn.split(',')
        .map(|rdn| {
            let (t, v) = rdn.split_once('=').unwrap_or((rdn, ""));
            (t.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect()
}

/// Classifies a DN relative to the base (attribute types and `ou` values compare without
/// regard to case, as LDAP does); `None` for anything outside the customer tree.
pub fn placement(dn: &str, base: &str) -> Option<Placement> {
    placement_by(dn, base, canonical_id)
}

/// Whether a DN has the shape of a customer entry, whatever its uids look like.
pub fn in_customer_tree(dn: &str, base: &str) -> bool {
    placement_by(dn, base, |v| Some(u64::from(!v.is_empty()))).is_some_and(|p| matches!(p, Placement::Customer { .. }))
}

fn placement_by(dn: &str, base: &str, id: impl Fn(&str) -> Option<u64>) -> Option<Placement> {
    let dn = rdns(dn);
    let base = rdns(base);
    if dn.len() < base.len() + 4 {
        return None;
    }
    let (head, tail) = dn.split_at(dn.len() - base.len());
    let same = |a: &(String, String), b: &(String, String)| a.0 == b.0 && a.1.eq_ignore_ascii_case(&b.1);
    if !tail.iter().zip(&base).all(|(a, b)| same(a, b)) {
        return None;
    }
    let number = |(t, v): &(String, String)| (t == "uid").then(|| id(v)).flatten();
    let ou = |(t, v): &(String, String), want: &str| t == "ou" && v.eq_ignore_ascii_case(want);
    let n = head.len();
    if !ou(&head[n - 1], "reseller") || !ou(&head[n - 3], "customers") {
        return None;
    }
    let reseller = number(&head[n - 2])?;
    let id = number(&head[n - 4])?;
    match n {
        4 => Some(Placement::Customer { id, reseller }),
        5 if head[0].0 == "ou" => Some(Placement::Child { ou: head[0].1.to_ascii_lowercase(), id, reseller }),
        _ => None,
    }
}

/// How many RDNs deep a DN is (for deleting children before parents); a comma escaped
/// with a backslash does not count.
pub fn depth(dn: &str) -> usize {
    let mut n = 1;
    let mut escaped = false;
    for c in dn.chars() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => n += 1,
            _ => escaped = false,
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_dns_round_trip() {
        let dn = customer_dn("dc=x", 4000001, 5000001);
        assert_eq!(dn, "uid=5000001,ou=customers,uid=4000001,ou=reseller,dc=x");
        assert_eq!(reseller_of(&dn), Some(4000001));
        assert_eq!(reseller_of("uid=1,ou=people,dc=x"), None);
        assert_eq!(child_dn(&dn, "address"), format!("ou=address,{dn}"));
    }

    #[test]
    fn depth_counts_unescaped_commas() {
        assert_eq!(depth("dc=x"), 1);
        assert_eq!(depth("uid=1,ou=customers,dc=x"), 3);
        assert_eq!(depth("o=a\\,b,dc=x"), 2);
        assert_eq!(depth("o=a\\\\,dc=x"), 2);
    }

    #[test]
    fn placements_in_the_customer_tree() {
        let base = "dc=x,dc=org";
        assert_eq!(
            placement("uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org", base),
            Some(Placement::Customer { id: 5, reseller: 4 })
        );
        assert_eq!(
            placement("OU=Shipping, UID=5,OU=Customers,uid=4,ou=reseller,DC=X,dc=org", base),
            Some(Placement::Child { ou: "shipping".into(), id: 5, reseller: 4 })
        );
        for other in [
            "uid=4,ou=reseller,dc=x,dc=org",
            "ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "ou=address,uid=4,ou=reseller,dc=x,dc=org",
            "uid=5,ou=people,dc=x,dc=org",
            "uid=5-1,ou=trash,ou=administration,dc=x,dc=org",
            "uid=5,ou=customers,uid=4,ou=reseller,dc=y,dc=org",
            "ou=a,ou=b,uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=05,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=+5,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=5,ou=customers,uid=04,ou=reseller,dc=x,dc=org",
        ] {
            assert_eq!(placement(other, base), None, "{other}");
        }
        assert!(in_customer_tree("uid=0005,ou=customers,uid=4,ou=reseller,dc=x,dc=org", base));
        assert!(!in_customer_tree("ou=address,uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org", base));
        assert_eq!(canonical_id("5001012"), Some(5001012));
        for bad in ["", "0", "05", "+5", " 5", "5a", "99999999999999999999"] {
            assert_eq!(canonical_id(bad), None, "{bad:?}");
        }
    }
}
