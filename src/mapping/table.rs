//! The rows of a resource's fields. Each row names a JSON field, the entry it lives in,
//! its LDAP attribute, its value type and its flags; validation, the attribute lists of
//! searches, (de)serialisation, filters and sort keys are all derived from these rows.
//! The tables themselves are in `mapping/resources/`.

use super::resource::{ResourceDef, Role};

/// Which entry of a resource a field is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Part {
    /// The root entry (`uid=<id>,…`, see the resource's DN template).
    Root,
    /// `ou=address,<root>`: the billing address, mandatory.
    Billing,
    /// `ou=shipping,<root>`: the shipping address, only when it differs.
    Shipping,
}

impl Part {
    /// The RDN value of the child entry (`ou=address`, `ou=shipping`).
    pub fn ou(self) -> Option<&'static str> {
        match self {
            Part::Root => None,
            Part::Billing => Some("address"),
            Part::Shipping => Some("shipping"),
        }
    }
}

/// The value type of a field: how JSON is validated and how it is written to LDAP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// The entry's numeric uid; an integer in JSON, a string in LDAP.
    Id,
    /// The parent resource (a customer's reseller): the parent in the DN, repeated in an
    /// attribute.
    ParentRef,
    /// LDAP Boolean (`TRUE`/`FALSE`).
    Bool,
    /// UTF-8 text without control characters, 1 to `max` characters.
    Text { max: usize },
    /// The display name: a company's `o`; a private person's `givenName` + `sn` of the
    /// billing address.
    DisplayName,
    /// `f`, `m` or `n`.
    Gender,
    /// ISO 3166-1 alpha-2.
    Country,
    /// A language tag such as `en-GB`.
    Language,
    /// An e-mail address (IA5, so ASCII only).
    Mail,
    /// A telephone number in Printable String characters.
    Phone,
    /// An absolute http(s) URL.
    Url,
    /// Lines of text, stored in the Postal Address syntax (`$`-separated lines).
    Postal,
    /// A nested object described by another table.
    Object(&'static [Field]),
    /// Several values of one kind: a JSON array, every value of a multi-valued
    /// attribute (a set: the order is the directory's).
    List(&'static Kind),
    /// The id of another resource (a person's customer): an integer in JSON, the uid in
    /// LDAP; a write must name one of the listed resources that the caller sees.
    Ref(&'static [&'static ResourceDef]),
    /// A time zone offset such as `UTC+01` or `+0100`.
    TimeZone,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// Not shown: the parent's id and the value of the named field of the same entry,
    /// as `<parent>/<value>`, written with it, so that a value unique per parent (a
    /// merchant's customer number within its reseller) is unique in the directory.
    Qualified(&'static str),
    /// A password: only ever written (on create; changes go through the password
    /// operation), never read, listed, filtered or sorted; the directory hashes it.
    Secret,
    /// A read-only URI of the response: `{location}`, `{base}` and `{id}` are replaced
    /// (`{location}/employees`, `{base}/v1/customers?belongsToResellerID={id}`).
    Link(&'static str),
}

impl Kind {
    /// The kind of one value: a list's element kind, else the kind itself.
    pub fn element(self) -> Kind {
        match self {
            Kind::List(inner) => *inner,
            k => k,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    /// Where a top-level field lives; rows of an address table take their object's part.
    pub part: Part,
    /// The canonical LDAP attribute (short name, as OpenLDAP returns it); "" for none.
    pub attr: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub read_only: bool,
    /// Set once: given on create (or while the element has none), then kept.
    pub create_only: bool,
    pub filterable: bool,
    pub sortable: bool,
    pub searchable: bool,
    /// Shown in the items of `GET /v1/customers` (address fields: from the billing address).
    pub in_collection: bool,
    /// Required only when `(field, values)` of the same object has one of the values.
    pub required_if: Option<(&'static str, &'static [&'static str])>,
    /// Value written when a create or a full replace leaves the field out.
    pub default: Option<bool>,
    /// The same for a text field (in its LDAP form).
    pub default_text: Option<&'static str>,
    /// Roles that may not change it (their writes must repeat its current value).
    pub not_by: &'static [Role],
    /// No two entries in the directory have the same value (the `unique` overlay keeps
    /// it; a clash is 409).
    pub unique: bool,
    /// The field holds the caller's reseller (`Role::Reseller`) or customer
    /// (`Role::Customer`): a caller whose scope has one gets it by default and may give
    /// no other.
    pub scoped: Option<Role>,
    /// A reference whose resource must belong to the same reseller as this one (a
    /// person's customer); when the reseller is not given, it is taken from there.
    pub within_tenant: bool,
    /// A person may not change it on its own entry (its own scope).
    pub not_by_self: bool,
    /// An exact filter on it is answered from an index of its values (a column of many
    /// values that lists are filtered by: a person's mail, its customer).
    pub lookup: bool,
    /// The auxiliary object class its attribute needs, given to the entry with the value.
    pub class: Option<&'static str>,
    /// Composed from these fields of the same object when a write gives them (the
    /// postal address from street, number, addition and care-of); a write that changes
    /// it alone drops them, as they no longer describe it.
    pub composed_of: Option<&'static [&'static str]>,
}

impl Field {
    pub const fn new(name: &'static str, attr: &'static str, kind: Kind) -> Field {
        Field {
            name,
            part: Part::Root,
            attr,
            kind,
            required: false,
            read_only: false,
            create_only: false,
            filterable: false,
            sortable: false,
            searchable: false,
            in_collection: false,
            required_if: None,
            default: None,
            default_text: None,
            not_by: &[],
            unique: false,
            scoped: None,
            within_tenant: false,
            not_by_self: false,
            lookup: false,
            class: None,
            composed_of: None,
        }
    }
    pub const fn class(mut self, class: &'static str) -> Field {
        self.class = Some(class);
        self
    }
    pub const fn composed_of(mut self, parts: &'static [&'static str]) -> Field {
        self.composed_of = Some(parts);
        self
    }
    /// Not part of any JSON shape (derived, see `Kind::Qualified`).
    pub fn is_hidden(&self) -> bool {
        matches!(self.kind, Kind::Qualified(_))
    }
    pub const fn lookup(mut self) -> Field {
        self.lookup = true;
        self
    }
    pub const fn scoped(mut self, role: Role) -> Field {
        self.scoped = Some(role);
        self
    }
    pub const fn within_tenant(mut self) -> Field {
        self.within_tenant = true;
        self
    }
    pub const fn not_by_self(mut self) -> Field {
        self.not_by_self = true;
        self
    }
    pub const fn part(mut self, part: Part) -> Field {
        self.part = part;
        self
    }
    pub const fn required(mut self) -> Field {
        self.required = true;
        self
    }
    pub const fn read_only(mut self) -> Field {
        self.read_only = true;
        self
    }
    pub const fn create_only(mut self) -> Field {
        self.create_only = true;
        self
    }
    pub const fn filterable(mut self) -> Field {
        self.filterable = true;
        self
    }
    pub const fn sortable(mut self) -> Field {
        self.sortable = true;
        self
    }
    pub const fn searchable(mut self) -> Field {
        self.searchable = true;
        self
    }
    pub const fn in_collection(mut self) -> Field {
        self.in_collection = true;
        self
    }
    pub const fn required_if(mut self, field: &'static str, values: &'static [&'static str]) -> Field {
        self.required_if = Some((field, values));
        self
    }
    pub const fn default_bool(mut self, v: bool) -> Field {
        self.default = Some(v);
        self
    }

    pub const fn default_text(mut self, v: &'static str) -> Field {
        self.default_text = Some(v);
        self
    }

    pub const fn unique(mut self) -> Field {
        self.unique = true;
        self
    }

    pub const fn not_by(mut self, roles: &'static [Role]) -> Field {
        self.not_by = roles;
        self
    }

    pub fn is_list(&self) -> bool {
        matches!(self.kind, Kind::List(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }

    /// The resources a reference field (or a list of references) may name.
    pub fn refers_to(&self) -> Option<&'static [&'static ResourceDef]> {
        match self.kind.element() {
            Kind::Ref(defs) => Some(defs),
            _ => None,
        }
    }

    /// Whether the field is stored in an attribute the gateway reads.
    pub fn is_read(&self) -> bool {
        !self.attr.is_empty() && self.kind != Kind::Secret
    }
}

/// Object classes of the address entries the gateway writes.
pub const ADDRESS_CLASSES: &[&str] = &["top", "organizationalUnit", "sstAddress"];

/// Private persons carry the billing holder's names on their root entry.
pub const PERSON_NAME_ATTRS: (&str, &str) = ("givenname", "sn");

/// The field of a table by JSON name.
pub fn field(table: &'static [Field], name: &str) -> Option<&'static Field> {
    table.iter().find(|f| f.name == name && !f.is_hidden())
}

/// A field by dotted path (`billingAddress.localityName`), with the part it lives in.
pub fn resolve(def: &ResourceDef, path: &str) -> Option<(Part, &'static Field)> {
    match path.split_once('.') {
        None => field(def.fields, path).filter(|f| !f.is_object()).map(|f| (f.part, f)),
        Some((obj, rest)) => {
            let o = field(def.fields, obj)?;
            match o.kind {
                Kind::Object(sub) => field(sub, rest).map(|f| (o.part, f)),
                _ => None,
            }
        }
    }
}

/// The fields of a part: the root's own, or an address table.
pub fn part_fields(def: &ResourceDef, part: Part) -> &'static [Field] {
    match part {
        Part::Root => def.fields,
        _ => def
            .fields
            .iter()
            .find_map(|f| match f.kind {
                Kind::Object(sub) if f.part == part => Some(sub),
                _ => None,
            })
            .unwrap_or(&[]),
    }
}

/// Every LDAP attribute a part needs to be read (plus what each entry needs for ETags).
pub fn attributes(def: &ResourceDef, part: Part) -> Vec<&'static str> {
    let mut out = vec!["objectClass", "entryCSN"];
    match part {
        Part::Root => {
            out.push(PERSON_NAME_ATTRS.0);
            out.push(PERSON_NAME_ATTRS.1);
            out.extend(def.fields.iter().filter(|f| f.is_read()).map(|f| f.attr));
        }
        Part::Billing | Part::Shipping => {
            out.push("ou");
            out.extend(part_fields(def, part).iter().map(|f| f.attr));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The attribute list of a search that reads whole resources (all parts of all of them).
pub fn all_attributes(defs: &[&ResourceDef]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for def in defs {
        for part in std::iter::once(Part::Root).chain(def.children.iter().copied()) {
            out.extend(attributes(def, part));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mapping::resources::{ADDRESS, ALL, CUSTOMERS, RESELLERS};

    #[test]
    fn dotted_paths_resolve_to_their_part() {
        for def in ALL.iter().filter(|d| d.children.contains(&Part::Billing)) {
            let (p, f) = resolve(def, "billingAddress.localityName").unwrap();
            assert_eq!((p, f.attr), (Part::Billing, "l"));
            let (p, f) = resolve(def, "shippingAddress.countryCode").unwrap();
            assert_eq!((p, f.attr), (Part::Shipping, "c"));
            assert!(resolve(def, "billingAddress").is_none());
            assert!(resolve(def, "billingAddress.nope").is_none());
            assert!(resolve(def, "nope").is_none());
        }
        assert_eq!(resolve(&CUSTOMERS, "customerName").unwrap().1.attr, "o");
        assert_eq!(resolve(&RESELLERS, "resellerName").unwrap().1.attr, "o");
        assert!(resolve(&RESELLERS, "customerName").is_none());
    }

    #[test]
    fn attribute_lists_come_from_the_table() {
        let a = attributes(&CUSTOMERS, Part::Billing);
        for f in ADDRESS {
            assert!(a.contains(&f.attr), "{}", f.name);
        }
        assert!(attributes(&CUSTOMERS, Part::Root).contains(&"sstexternalid"));
        assert!(all_attributes(ALL).contains(&"sstbelongstoreselleruid"));
    }

    #[test]
    fn every_attribute_is_canonical() {
        for def in ALL {
            for f in def.fields.iter().chain(ADDRESS) {
                assert_eq!(crate::directory::entry::canonical_attr(f.attr), f.attr, "{}", f.name);
            }
        }
    }
}
