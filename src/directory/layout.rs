//! Where the gateway's own entries live in the directory tree (SPEC section 1); the
//! resources' DNs come from their definitions (`mapping/resource.rs`). Every value placed
//! in a DN goes through RDN escaping, even the numeric ids.

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

/// The RDN of a root entry named by its id (`uid=<id>`).
pub fn uid_rdn(id: u64) -> String {
    format!("uid={}", dn_value(&id.to_string()))
}

/// An id as the gateway writes it: a positive decimal number without sign, spaces or
/// leading zeros. A uid written otherwise (`0005001012`) is not an id of the API: its
/// entry is neither listed nor reachable, and the index logs it.
pub fn canonical_id(v: &str) -> Option<u64> {
    let ok = !v.is_empty() && v.len() <= 19 && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| v.parse().ok()).flatten()
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
    fn depth_counts_unescaped_commas() {
        assert_eq!(depth("dc=x"), 1);
        assert_eq!(depth("uid=1,ou=customers,dc=x"), 3);
        assert_eq!(depth("o=a\\,b,dc=x"), 2);
        assert_eq!(depth("o=a\\\\,dc=x"), 2);
    }

    #[test]
    fn ids_are_canonical_numbers() {
        assert_eq!(canonical_id("5001012"), Some(5001012));
        for bad in ["", "0", "05", "+5", " 5", "5a", "99999999999999999999"] {
            assert_eq!(canonical_id(bad), None, "{bad:?}");
        }
        assert_eq!(uid_rdn(5), "uid=5");
    }
}
