//! People (SPEC section 9): `uid=<id>,ou=people,<base>` (`sstPerson`), the persons who
//! log in (by `mail`) and who work for customers and resellers. A person belongs to the
//! reseller and the customer its attributes name; its scope follows from them.

use std::sync::OnceLock;

use super::shared::{ID, LOCATION};
use super::{CUSTOMERS, RESELLERS};
use crate::mapping::resource::{CustomerOf, Rdn, ResourceDef, Role, Tenant};
use crate::mapping::table::{Field, Kind};

pub static PEOPLE: ResourceDef = ResourceDef {
    name: "people",
    singular: "person",
    schema: "Person",
    structural: "sstPerson",
    classes: &["top", "sstPerson"],
    dn: &[Rdn::Id, Rdn::Fixed("ou", "people")],
    parent: None,
    children: &[],
    fields: &[
        ID,
        LOCATION,
        Field::new("isActive", "sstisactive", Kind::Bool).default_bool(true).filterable().sortable().in_collection(),
        Field::new("gender", "sstgender", Kind::Gender).required().filterable(),
        Field::new("givenName", "givenname", Kind::Text { max: 64 })
            .required()
            .filterable()
            .sortable()
            .searchable()
            .in_collection(),
        Field::new("surname", "sn", Kind::Text { max: 64 })
            .required()
            .filterable()
            .sortable()
            .searchable()
            .in_collection(),
        Field::new("mail", "mail", Kind::Mail)
            .required()
            .unique()
            .filterable()
            .lookup()
            .sortable()
            .searchable()
            .in_collection(),
        Field::new("password", "userpassword", Kind::Secret),
        Field::new("preferredLanguage", "preferredlanguage", Kind::Language).required().filterable(),
        Field::new("telephoneNumber", "telephonenumber", Kind::Phone).filterable(),
        Field::new("mobileTelephoneNumber", "mobile", Kind::Phone).filterable(),
        Field::new("timeZoneOffset", "ssttimezoneoffset", Kind::TimeZone).default_text("UTC+01").filterable(),
        Field::new("belongsToCustomerID", "sstbelongstocustomeruid", Kind::Ref(&[&CUSTOMERS]))
            .scoped(Role::Customer)
            .within_tenant()
            .not_by(&[Role::Customer])
            .not_by_self()
            .filterable()
            .lookup()
            .sortable()
            .in_collection(),
        Field::new("belongsToResellerID", "sstbelongstoreselleruid", Kind::Ref(&[&RESELLERS]))
            .scoped(Role::Reseller)
            .not_by(&[Role::Reseller, Role::Customer])
            .not_by_self()
            .filterable()
            .sortable()
            .in_collection(),
        Field::new("employeeOfID", "sstemployeeofuid", Kind::List(&Kind::Ref(&[&CUSTOMERS, &RESELLERS])))
            .filterable()
            .lookup(),
    ],
    own_id_attrs: &[],
    tenant: Tenant::Attr,
    customer_of: CustomerOf::Attr("sstbelongstocustomeruid"),
    related: &[],
    logins: true,
    read_subtree: true,
    create_by: &[Role::Provider, Role::Reseller, Role::Customer],
    delete_by: &[Role::Provider, Role::Reseller, Role::Customer],
    delete_blocked_by: None,
    columns: OnceLock::new(),
};
