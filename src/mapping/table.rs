//! The customer resource as data. Each row names a JSON field, the entry it lives in,
//! its LDAP attribute, its value type and its flags; validation, the attribute lists of
//! searches, (de)serialisation, filters and sort keys are all derived from these rows.

/// Which entry of a customer a field is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// `uid=<id>,ou=customers,uid=<reseller>,ou=reseller,<base>`
    Customer,
    /// `ou=address,<customer>`: the billing address, mandatory.
    Billing,
    /// `ou=shipping,<customer>`: the shipping address, only when it differs.
    Shipping,
}

impl Part {
    /// The RDN value of the child entry (`ou=address`, `ou=shipping`).
    pub fn ou(self) -> Option<&'static str> {
        match self {
            Part::Customer => None,
            Part::Billing => Some("address"),
            Part::Shipping => Some("shipping"),
        }
    }

    /// The part a child entry holds, by its RDN value (`address`, `shipping`, any case).
    pub fn of_child(ou: &str) -> Option<Part> {
        [Part::Billing, Part::Shipping].into_iter().find(|p| p.ou().is_some_and(|o| o.eq_ignore_ascii_case(ou)))
    }
}

/// The value type of a field: how JSON is validated and how it is written to LDAP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// The entry's numeric uid; an integer in JSON, a string in LDAP.
    Id,
    /// The reseller the customer belongs to: the parent subtree plus an attribute.
    ResellerRef,
    /// LDAP Boolean (`TRUE`/`FALSE`).
    Bool,
    /// UTF-8 text without control characters, 1 to `max` characters.
    Text { max: usize },
    /// Company: stored in `o`; private person: `givenName` + `sn` of the billing address.
    CustomerName,
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
    /// A read-only URI of the response (`location`, `employees`, `users`).
    Link(&'static str),
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
    pub filterable: bool,
    pub sortable: bool,
    pub searchable: bool,
    /// Shown in the items of `GET /v1/customers` (address fields: from the billing address).
    pub in_collection: bool,
    /// Required only when `(field, values)` of the same object has one of the values.
    pub required_if: Option<(&'static str, &'static [&'static str])>,
    /// Value written when a create or a full replace leaves the field out.
    pub default: Option<bool>,
    /// LDAP ordering rule for server-side sort.
    pub ordering: Option<&'static str>,
}

impl Field {
    pub const fn new(name: &'static str, attr: &'static str, kind: Kind) -> Field {
        Field {
            name,
            part: Part::Customer,
            attr,
            kind,
            required: false,
            read_only: false,
            filterable: false,
            sortable: false,
            searchable: false,
            in_collection: false,
            required_if: None,
            default: None,
            ordering: None,
        }
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
    pub const fn filterable(mut self) -> Field {
        self.filterable = true;
        self
    }
    pub const fn sortable(mut self, ordering: &'static str) -> Field {
        self.sortable = true;
        self.ordering = Some(ordering);
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

    pub fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }
}

const CASE_IGNORE_ORDERING: &str = "caseIgnoreOrderingMatch";
const INTEGER_ORDERING: &str = "integerOrderingMatch";
const BOOLEAN_ORDERING: &str = "caseIgnoreOrderingMatch";

/// An address object (`billingAddress`, `shippingAddress`); rows take their part from
/// the object field that holds them.
pub const ADDRESS: &[Field] = &[
    Field::new("organizationName", "o", Kind::Text { max: 64 })
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable(),
    Field::new("gender", "sstgender", Kind::Gender).required().filterable(),
    Field::new("givenName", "givenname", Kind::Text { max: 64 })
        .required()
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable(),
    Field::new("surname", "sn", Kind::Text { max: 64 })
        .required()
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable(),
    Field::new("postalAddress", "postaladdress", Kind::Postal).required().filterable().searchable(),
    Field::new("postOfficeBox", "postofficebox", Kind::Text { max: 40 }).filterable(),
    Field::new("stateOrProvinceName", "st", Kind::Text { max: 128 })
        .required_if("countryCode", &["US", "CA"])
        .filterable()
        .sortable(CASE_IGNORE_ORDERING),
    Field::new("countryCode", "c", Kind::Country)
        .required()
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .in_collection(),
    Field::new("postalCode", "postalcode", Kind::Text { max: 40 })
        .required()
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable()
        .in_collection(),
    Field::new("localityName", "l", Kind::Text { max: 128 })
        .required()
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable()
        .in_collection(),
    Field::new("preferredLanguage", "preferredlanguage", Kind::Language).required().filterable(),
    Field::new("mail", "mail", Kind::Mail).required().filterable().sortable(CASE_IGNORE_ORDERING).searchable(),
    Field::new("telephoneNumber", "telephonenumber", Kind::Phone).filterable(),
    Field::new("mobileTelephoneNumber", "mobile", Kind::Phone).filterable(),
    Field::new("websiteURL", "sstwebsiteurl", Kind::Url).filterable(),
];

/// The customer resource (SPEC section 3), in response order.
pub const CUSTOMER: &[Field] = &[
    Field::new("id", "uid", Kind::Id).read_only().filterable().sortable(INTEGER_ORDERING).searchable().in_collection(),
    Field::new("location", "", Kind::Link("")).read_only().in_collection(),
    Field::new("isCompany", "sstiscompany", Kind::Bool)
        .required()
        .filterable()
        .sortable(BOOLEAN_ORDERING)
        .in_collection(),
    Field::new("isActive", "sstisactive", Kind::Bool)
        .default_bool(true)
        .filterable()
        .sortable(BOOLEAN_ORDERING)
        .in_collection(),
    Field::new("customerName", "o", Kind::CustomerName)
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable()
        .in_collection(),
    Field::new("externalID", "sstexternalid", Kind::Text { max: 256 })
        .filterable()
        .sortable(CASE_IGNORE_ORDERING)
        .searchable(),
    Field::new("belongsToResellerID", "sstbelongstoreselleruid", Kind::ResellerRef)
        .required()
        .filterable()
        .sortable(INTEGER_ORDERING)
        .in_collection(),
    Field::new("billingAddress", "", Kind::Object(ADDRESS)).part(Part::Billing).required(),
    Field::new("shippingAddress", "", Kind::Object(ADDRESS)).part(Part::Shipping),
    Field::new("employees", "", Kind::Link("employees")).read_only(),
    Field::new("users", "", Kind::Link("users")).read_only(),
];

/// Object classes of the entries the gateway writes.
pub const CUSTOMER_CLASSES: &[&str] = &["top", "sstCustomer", "sstRelationship"];
pub const ADDRESS_CLASSES: &[&str] = &["top", "organizationalUnit", "sstAddress"];

/// Private customers carry the billing holder's names on the customer entry.
pub const PERSON_NAME_ATTRS: (&str, &str) = ("givenname", "sn");

/// The field of a table by JSON name.
pub fn field(table: &'static [Field], name: &str) -> Option<&'static Field> {
    table.iter().find(|f| f.name == name)
}

/// A field by dotted path (`billingAddress.localityName`), with the part it lives in.
pub fn resolve(path: &str) -> Option<(Part, &'static Field)> {
    match path.split_once('.') {
        None => field(CUSTOMER, path).filter(|f| !f.is_object()).map(|f| (f.part, f)),
        Some((obj, rest)) => {
            let o = field(CUSTOMER, obj)?;
            match o.kind {
                Kind::Object(sub) => field(sub, rest).map(|f| (o.part, f)),
                _ => None,
            }
        }
    }
}

/// Every LDAP attribute a part needs to be read (plus what each entry needs for ETags).
pub fn attributes(part: Part) -> Vec<&'static str> {
    let mut out = vec!["objectClass", "entryCSN"];
    match part {
        Part::Customer => {
            out.push(PERSON_NAME_ATTRS.0);
            out.push(PERSON_NAME_ATTRS.1);
            out.extend(CUSTOMER.iter().filter(|f| !f.attr.is_empty()).map(|f| f.attr));
        }
        Part::Billing | Part::Shipping => {
            out.push("ou");
            out.extend(ADDRESS.iter().map(|f| f.attr));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The attribute list of a search that reads a whole customer (all parts).
pub fn all_attributes() -> Vec<&'static str> {
    let mut out = attributes(Part::Customer);
    out.extend(attributes(Part::Billing));
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_resolve_to_their_part() {
        let (p, f) = resolve("billingAddress.localityName").unwrap();
        assert_eq!((p, f.attr), (Part::Billing, "l"));
        let (p, f) = resolve("shippingAddress.countryCode").unwrap();
        assert_eq!((p, f.attr), (Part::Shipping, "c"));
        assert!(resolve("billingAddress").is_none());
        assert!(resolve("billingAddress.nope").is_none());
        assert!(resolve("nope").is_none());
    }

    #[test]
    fn attribute_lists_come_from_the_table() {
        let a = attributes(Part::Billing);
        for f in ADDRESS {
            assert!(a.contains(&f.attr), "{}", f.name);
        }
        assert!(attributes(Part::Customer).contains(&"sstexternalid"));
    }

    #[test]
    fn every_attribute_is_canonical() {
        for f in CUSTOMER.iter().chain(ADDRESS) {
            assert_eq!(crate::directory::entry::canonical_attr(f.attr), f.attr, "{}", f.name);
        }
    }
}
