//! Resellers (SPEC section 9): `uid=<id>,ou=reseller,<base>` (`sstReseller`,
//! `sstRelationship`, `sstBelongsToResellerUID` = its own uid) with a billing and an
//! optional shipping address; its customers live in its subtree, under `ou=customers`.

use std::sync::OnceLock;

use super::shared::{BILLING_ADDRESS, EXTERNAL_ID, ID, IS_COMPANY, LOCATION, SHIPPING_ADDRESS};
use crate::mapping::resource::{CustomerOf, Rdn, ResourceDef, Role, Tenant};
use crate::mapping::table::{Field, Kind, Part};

pub static RESELLERS: ResourceDef = ResourceDef {
    name: "resellers",
    singular: "reseller",
    schema: "Reseller",
    structural: "sstReseller",
    classes: &["top", "sstReseller", "sstRelationship"],
    dn: &[Rdn::Id, Rdn::Fixed("ou", "reseller")],
    parent: None,
    children: &[Part::Billing, Part::Shipping],
    fields: &[
        ID,
        LOCATION,
        IS_COMPANY,
        Field::new("isActive", "sstisactive", Kind::Bool)
            .default_bool(true)
            .not_by(&[Role::Reseller, Role::Customer])
            .filterable()
            .sortable()
            .in_collection(),
        Field::new("resellerName", "o", Kind::DisplayName).filterable().sortable().searchable().in_collection(),
        EXTERNAL_ID,
        BILLING_ADDRESS,
        SHIPPING_ADDRESS,
        Field::new("customers", "", Kind::Link("{base}/v1/customers?belongsToResellerID={id}")).read_only(),
    ],
    own_id_attrs: &["sstbelongstoreselleruid"],
    tenant: Tenant::Own,
    customer_of: CustomerOf::Nobody,
    related: &[],
    logins: false,
    read_subtree: false,
    create_by: &[Role::Provider],
    delete_by: &[Role::Provider],
    delete_blocked_by: Some(("sstCustomer", "the reseller still has customers; delete or move them first")),
    columns: OnceLock::new(),
};
