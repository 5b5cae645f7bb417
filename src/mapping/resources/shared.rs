//! Field rows that customers and resellers share, the same in both.

use super::ADDRESS;
use crate::mapping::table::{Field, Kind, Part};

/// The uid, from the counter.
pub const ID: Field =
    Field::new("id", "uid", Kind::Id).read_only().filterable().sortable().searchable().in_collection();

/// The element's URL.
pub const LOCATION: Field = Field::new("location", "", Kind::Link("{location}")).read_only().in_collection();

/// A company, or a private person.
pub const IS_COMPANY: Field =
    Field::new("isCompany", "sstiscompany", Kind::Bool).required().filterable().sortable().in_collection();

/// An identifier in another system, unique in the directory.
pub const EXTERNAL_ID: Field = Field::new("externalID", "sstexternalid", Kind::Text { max: 256 })
    .unique()
    .filterable()
    .lookup()
    .sortable()
    .searchable();

/// The `ou=address` entry.
pub const BILLING_ADDRESS: Field =
    Field::new("billingAddress", "", Kind::Object(ADDRESS)).part(Part::Billing).required();

/// The `ou=shipping` entry, only when it differs.
pub const SHIPPING_ADDRESS: Field = Field::new("shippingAddress", "", Kind::Object(ADDRESS)).part(Part::Shipping);
