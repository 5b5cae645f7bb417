//! A directory entry as the rest of the gateway sees it: attribute names folded to one
//! canonical spelling (lower case, short name of aliased attributes), values as strings.

use std::collections::BTreeMap;

/// Long names that OpenLDAP answers with their short alias (core and cosine schema).
const ALIASES: &[(&str, &str)] = &[
    ("organizationname", "o"),
    ("surname", "sn"),
    ("countryname", "c"),
    ("localityname", "l"),
    ("stateorprovincename", "st"),
    ("mobiletelephonenumber", "mobile"),
    ("commonname", "cn"),
    ("userid", "uid"),
    ("organizationalunitname", "ou"),
    ("rfc822mailbox", "mail"),
];

/// The canonical form of an attribute name: lower case, aliases folded to the short name.
pub fn canonical_attr(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    // Attribute options such as `;lang-de` or `;binary` are not part of the mapping.
    let base = lower.split(';').next().unwrap_or_default().to_string();
    ALIASES.iter().find(|(long, _)| *long == base).map(|(_, short)| short.to_string()).unwrap_or(base)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl Entry {
    pub fn from_search(se: ldap3::SearchEntry) -> Self {
        let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, values) in se.attrs {
            // Values with options (`o;lang-en`, RFC 3866) are not the attribute's own: the
            // mapping never shows or writes them, and writes of `o` leave them alone.
            if name.contains(';') {
                continue;
            }
            attrs.entry(canonical_attr(&name)).or_default().extend(values);
        }
        Entry { dn: se.dn, attrs }
    }

    /// The first value of an attribute (by canonical or any alias name).
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.attrs.get(&canonical_attr(attr)).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn values(&self, attr: &str) -> &[String] {
        self.attrs.get(&canonical_attr(attr)).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn has_object_class(&self, class: &str) -> bool {
        self.values("objectclass").iter().any(|c| c.eq_ignore_ascii_case(class))
    }

    /// The value of the leftmost RDN when it is `attr=value` (no multi-valued RDNs).
    pub fn rdn_value(&self, attr: &str) -> Option<&str> {
        rdn_value(&self.dn, attr)
    }
}

/// The value of the leftmost RDN of `dn` when its type is `attr` (case-insensitive).
pub fn rdn_value<'a>(dn: &'a str, attr: &str) -> Option<&'a str> {
    let rdn = dn.split(',').next()?;
    let (t, v) = rdn.split_once('=')?;
    t.trim().eq_ignore_ascii_case(attr).then_some(v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_fold_to_short_names() {
        assert_eq!(canonical_attr("organizationName"), "o");
        assert_eq!(canonical_attr("SURNAME"), "sn");
        assert_eq!(canonical_attr("countryName"), "c");
        assert_eq!(canonical_attr("mobileTelephoneNumber"), "mobile");
        assert_eq!(canonical_attr("postalCode"), "postalcode");
        assert_eq!(canonical_attr("o;lang-de"), "o");
    }

    #[test]
    fn rdn_and_parent() {
        let dn = "uid=5000001,ou=customers,uid=4000001,ou=reseller,dc=x";
        assert_eq!(rdn_value(dn, "UID"), Some("5000001"));
        assert_eq!(rdn_value(dn, "ou"), None);
    }
}
