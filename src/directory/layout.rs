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

/// The reseller id of a customer DN `uid=C,ou=customers,uid=R,ou=reseller,...`.
pub fn reseller_of(customer_dn: &str) -> Option<u64> {
    let mut rdns = customer_dn.splitn(4, ',');
    let _customer = rdns.next()?;
    let customers = rdns.next()?;
    if !customers.trim().eq_ignore_ascii_case("ou=customers") {
        return None;
    }
    rdn_value(rdns.next()?, "uid")?.parse().ok()
}

/// How many RDNs deep a DN is (for deleting children before parents).
pub fn depth(dn: &str) -> usize {
    dn.split(',').count()
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
}
