//! A resource as data: which entries make it, where they live, which fields it has and
//! who may write them. Everything generic (documents, the collection index, the
//! service, the handlers, the OpenAPI document) walks a [`ResourceDef`]; a resource is
//! one definition in `mapping/resources/`.

use std::sync::OnceLock;

use super::row::{Column, Columns};
use super::table::{Field, Kind, Part};
use crate::directory::escape::dn_value;

/// One RDN of the template of a root entry's DN, read from the entry up to the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdn {
    /// `uid=<id>`: the entry's own id.
    Id,
    /// `uid=<id>` of the parent resource (the reseller a customer lives under).
    Parent,
    /// A fixed RDN such as `ou=customers`.
    Fixed(&'static str, &'static str),
}

/// Whose the resource is, for the caller's scope: the reseller named by its parent in the
/// DN (customers) or the resource itself (resellers). Either way the entry repeats that
/// reseller in `sstBelongsToResellerUID`, and it belongs to nobody while the two disagree.
/// A resource without a parent in its DN (people) names its reseller only in
/// `sstBelongsToResellerUID` (`Attr`), and belongs to nobody without exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant {
    Parent,
    Own,
    Attr,
}

/// Which customer's users see the resource: the customer itself, the customer an
/// attribute names (a person's `sstBelongsToCustomerUID`), or none (resellers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CustomerOf {
    Itself,
    Attr(&'static str),
    Nobody,
}

/// Whom an element belongs to, for the caller's scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// The reseller it is committed to (see `Tenant`).
    pub tenant: Option<u64>,
    /// The customer whose users see it (see `CustomerOf`).
    pub customer: Option<u64>,
}

/// A collection below an element: the elements of another resource whose field names it
/// (`/v1/customers/{id}/users`: the people whose `belongsToCustomerID` is the customer).
#[derive(Debug)]
pub struct Related {
    pub name: &'static str,
    pub resource: &'static ResourceDef,
    pub field: &'static str,
}

/// The roles of callers (see `service::Scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Provider,
    Reseller,
    Customer,
}

impl Role {
    /// Who they are, in messages.
    pub fn users(self) -> &'static str {
        match self {
            Role::Provider => "provider users",
            Role::Reseller => "reseller users",
            Role::Customer => "customer users",
        }
    }
}

/// Where an entry of a resource sits, read from its DN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub id: u64,
    /// The parent's id, or 0 for a resource without a parent.
    pub parent: u64,
    pub part: Part,
}

pub struct ResourceDef {
    /// The collection's name in URLs (`/v1/<name>`), metrics and logs.
    pub name: &'static str,
    /// One of them, in messages ("customer").
    pub singular: &'static str,
    /// The OpenAPI schema of the element (`Customer`).
    pub schema: &'static str,
    /// The structural class that tells a root entry, and the classes a new one gets.
    pub structural: &'static str,
    pub classes: &'static [&'static str],
    /// The root entry's DN, from the entry up to the base.
    pub dn: &'static [Rdn],
    /// The resource the parent in the DN is (customers: resellers).
    pub parent: Option<&'static ResourceDef>,
    /// The fixed child entries (`ou=address`, `ou=shipping`).
    pub children: &'static [Part],
    /// The fields in response order.
    pub fields: &'static [Field],
    /// Attributes a new root entry repeats its own id in (besides its `uid`).
    pub own_id_attrs: &'static [&'static str],
    pub tenant: Tenant,
    pub customer_of: CustomerOf,
    /// Collections below each element.
    pub related: &'static [Related],
    /// Its entries are logins (people): a write to one ends its remembered logins.
    pub logins: bool,
    /// A read takes the root's whole subtree in one search; otherwise only the root and
    /// its fixed children (a reseller's subtree holds its customers).
    pub read_subtree: bool,
    /// Who may create and delete.
    pub create_by: &'static [Role],
    pub delete_by: &'static [Role],
    /// A delete is refused (409) while the subtree holds an entry of this class.
    pub delete_blocked_by: Option<(&'static str, &'static str)>,
    /// Derived lookups, built once.
    pub columns: OnceLock<Columns>,
}

impl ResourceDef {
    /// The URL of an element.
    pub fn location(&self, public_url: &str, id: u64) -> String {
        format!("{}/v1/{}/{id}", public_url.trim_end_matches('/'), self.name)
    }

    /// The URL of the collection.
    pub fn collection(&self, public_url: &str) -> String {
        format!("{}/v1/{}", public_url.trim_end_matches('/'), self.name)
    }

    /// A link field's URL: `{location}`, `{base}` and `{id}` are replaced.
    pub fn link(&self, public_url: &str, id: u64, template: &str) -> String {
        template
            .replace("{location}", &self.location(public_url, id))
            .replace("{base}", public_url.trim_end_matches('/'))
            .replace("{id}", &id.to_string())
    }

    /// The root entry's DN.
    pub fn root_dn(&self, base: &str, id: u64, parent: u64) -> String {
        let mut out = String::new();
        for rdn in self.dn {
            let (t, v) = match rdn {
                Rdn::Id => ("uid", dn_value(&id.to_string())),
                Rdn::Parent => ("uid", dn_value(&parent.to_string())),
                Rdn::Fixed(t, v) => (*t, dn_value(v)),
            };
            out.push_str(&format!("{t}={v},"));
        }
        out.push_str(base);
        out
    }

    /// The DN of a fixed child entry of a root.
    pub fn child_dn(root_dn: &str, part: Part) -> String {
        format!("ou={},{root_dn}", dn_value(part.ou().unwrap_or_default()))
    }

    /// The entry the roots live in (`ou=customers,uid=<reseller>,…`, `ou=reseller,…`).
    pub fn container_dn(&self, base: &str, parent: u64) -> String {
        let root = self.root_dn(base, 0, parent);
        root.split_once(',').map(|(_, rest)| rest.to_string()).unwrap_or_default()
    }

    /// Whether the container depends on the parent and may have to be created with the
    /// first root in it (`ou=customers` under a reseller).
    pub fn container_is_glue(&self) -> bool {
        matches!(self.dn.get(1), Some(Rdn::Fixed(..))) && self.dn.contains(&Rdn::Parent)
    }

    /// Where to look for a root entry by id when the parent is not known: the fixed tail
    /// of the template, and whether the roots lie right below it.
    pub fn search_base(&self, base: &str) -> (String, bool) {
        let fixed = self.dn.iter().rev().take_while(|r| matches!(r, Rdn::Fixed(..))).count();
        let mut out = String::new();
        for rdn in &self.dn[self.dn.len() - fixed..] {
            if let Rdn::Fixed(t, v) = rdn {
                out.push_str(&format!("{t}={},", dn_value(v)));
            }
        }
        out.push_str(base);
        (out, fixed + 1 == self.dn.len())
    }

    /// Classifies a DN (types and fixed values compare without regard to case, as LDAP
    /// does); `None` for anything that is not a root or fixed child of this resource.
    /// Ids must be canonical (see `layout::canonical_id`).
    pub fn place(&self, dn: &str, base: &str) -> Option<Placement> {
        self.place_by(dn, base, crate::directory::layout::canonical_id)
    }

    /// Whether a DN has the shape of a root entry, whatever its uids look like.
    pub fn has_root_shape(&self, dn: &str, base: &str) -> bool {
        self.place_by(dn, base, |v| Some(u64::from(!v.is_empty()))).is_some_and(|p| p.part == Part::Root)
    }

    fn place_by(&self, dn: &str, base: &str, number: impl Fn(&str) -> Option<u64>) -> Option<Placement> {
        // Without an allocation: the index asks this of every entry it is sent.
        let n = self.dn.len();
        let (dn_len, base_len) = (dn.split(',').count(), base.split(',').count());
        if dn_len < base_len + n {
            return None;
        }
        let head_len = dn_len - base_len;
        let same =
            |(at, av): (&str, &str), (bt, bv): (&str, &str)| at.eq_ignore_ascii_case(bt) && av.eq_ignore_ascii_case(bv);
        if !dn.split(',').skip(head_len).map(rdn).zip(base.split(',').map(rdn)).all(|(a, b)| same(a, b)) {
            return None;
        }
        let mut root = dn.split(',').take(head_len).map(rdn);
        let child = match head_len - n {
            0 => None,
            1 => match root.next()? {
                (t, v) if t.eq_ignore_ascii_case("ou") => Some(v),
                _ => return None,
            },
            _ => return None,
        };
        let (mut id, mut parent) = (None, 0);
        for (template, (t, v)) in self.dn.iter().zip(root) {
            match template {
                Rdn::Id if t.eq_ignore_ascii_case("uid") => id = Some(number(v)?),
                Rdn::Parent if t.eq_ignore_ascii_case("uid") => parent = number(v)?,
                Rdn::Fixed(ft, fv) if t.eq_ignore_ascii_case(ft) && v.eq_ignore_ascii_case(fv) => {}
                _ => return None,
            }
        }
        let part = match child {
            None => Part::Root,
            Some(ou) => *self.children.iter().find(|p| p.ou().is_some_and(|o| o.eq_ignore_ascii_case(ou)))?,
        };
        Some(Placement { id: id?, parent, part })
    }

    /// The field that names the parent (`belongsToResellerID`), if the resource has one.
    pub fn parent_field(&self) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.kind == Kind::ParentRef)
    }

    /// The derived display name (`customerName`, `resellerName`).
    pub fn name_field(&self) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.kind == Kind::DisplayName)
    }

    /// The columns of the collection (built once).
    pub fn columns(&'static self) -> &'static Columns {
        self.columns.get_or_init(|| Columns::of(self))
    }

    /// A column by the name a list query uses.
    pub fn column(&'static self, name: &str) -> Option<Column> {
        self.columns().by_name(self, name)
    }
}

impl std::fmt::Debug for ResourceDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for ResourceDef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// An RDN's type and value, trimmed.
fn rdn(rdn: &str) -> (&str, &str) {
    let (t, v) = rdn.split_once('=').unwrap_or((rdn, ""));
    (t.trim(), v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::resources::{CUSTOMERS, RESELLERS};

    #[test]
    fn dn_templates_place_and_build_entries() {
        let base = "dc=x,dc=org";
        let c = CUSTOMERS.root_dn(base, 5, 4);
        assert_eq!(c, "uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org");
        assert_eq!(CUSTOMERS.place(&c, base), Some(Placement { id: 5, parent: 4, part: Part::Root }));
        assert_eq!(
            CUSTOMERS.place("OU=Shipping, UID=5,OU=Customers,uid=4,ou=reseller,DC=X,dc=org", base),
            Some(Placement { id: 5, parent: 4, part: Part::Shipping })
        );
        let r = RESELLERS.root_dn(base, 4, 0);
        assert_eq!(r, "uid=4,ou=reseller,dc=x,dc=org");
        assert_eq!(RESELLERS.place(&r, base), Some(Placement { id: 4, parent: 0, part: Part::Root }));
        assert_eq!(
            RESELLERS.place(&format!("ou=address,{r}"), base),
            Some(Placement { id: 4, parent: 0, part: Part::Billing })
        );
        // A customer is no reseller, and the reverse.
        assert_eq!(RESELLERS.place(&c, base), None);
        assert_eq!(CUSTOMERS.place(&r, base), None);
        for other in [
            "ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "ou=customers,uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=5,ou=people,dc=x,dc=org",
            "uid=5,ou=customers,uid=4,ou=reseller,dc=y,dc=org",
            "ou=a,ou=b,uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=05,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=+5,ou=customers,uid=4,ou=reseller,dc=x,dc=org",
            "uid=5,ou=customers,uid=04,ou=reseller,dc=x,dc=org",
        ] {
            assert_eq!(CUSTOMERS.place(other, base), None, "{other}");
        }
        assert!(CUSTOMERS.has_root_shape("uid=0005,ou=customers,uid=4,ou=reseller,dc=x,dc=org", base));
        assert!(!CUSTOMERS.has_root_shape("ou=address,uid=5,ou=customers,uid=4,ou=reseller,dc=x,dc=org", base));
    }

    #[test]
    fn containers_and_search_bases_follow_the_template() {
        let base = "dc=x";
        assert_eq!(CUSTOMERS.container_dn(base, 4), "ou=customers,uid=4,ou=reseller,dc=x");
        assert!(CUSTOMERS.container_is_glue());
        assert_eq!(RESELLERS.container_dn(base, 0), "ou=reseller,dc=x");
        assert!(!RESELLERS.container_is_glue());
        assert_eq!(CUSTOMERS.search_base(base), ("ou=reseller,dc=x".to_string(), false));
        assert_eq!(RESELLERS.search_base(base), ("ou=reseller,dc=x".to_string(), true));
        assert_eq!(CUSTOMERS.location("http://gw/", 5), "http://gw/v1/customers/5");
        assert_eq!(
            RESELLERS.link("http://gw", 4, "{base}/v1/customers?belongsToResellerID={id}"),
            "http://gw/v1/customers?belongsToResellerID=4"
        );
    }
}
