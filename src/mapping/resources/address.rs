//! The address object of customers and resellers (`billingAddress`, `shippingAddress`):
//! an `ou=address` or `ou=shipping` entry with `sstAddress`.

use crate::mapping::table::{Field, Kind};

/// The auxiliary class of the street parts.
const SUBSCRIPTION_ADDRESS: &str = "sgwSubscriptionAddress";

/// Rows take their part from the object field that holds them.
pub const ADDRESS: &[Field] = &[
    Field::new("organizationName", "o", Kind::Text { max: 64 }).filterable().sortable().searchable(),
    Field::new("gender", "sstgender", Kind::Gender).required().filterable(),
    Field::new("givenName", "givenname", Kind::Text { max: 64 }).required().filterable().sortable().searchable(),
    Field::new("surname", "sn", Kind::Text { max: 64 }).required().filterable().sortable().searchable(),
    Field::new("postalAddress", "postaladdress", Kind::Postal)
        .required()
        .composed_of(&["careOf", "street", "streetNumber", "streetNumberAdditional"])
        .filterable()
        .searchable(),
    // The street parts of the subscriptions facade (schema extension); the postal
    // address is composed of them when a write gives them.
    Field::new("careOf", "sgwcareof", Kind::Text { max: 40 }).class(SUBSCRIPTION_ADDRESS).filterable(),
    Field::new("street", "sgwstreet", Kind::Text { max: 60 }).class(SUBSCRIPTION_ADDRESS).filterable(),
    Field::new("streetNumber", "sgwstreetnumber", Kind::Text { max: 10 }).class(SUBSCRIPTION_ADDRESS).filterable(),
    Field::new("streetNumberAdditional", "sgwstreetnumberadditional", Kind::Text { max: 10 })
        .class(SUBSCRIPTION_ADDRESS)
        .filterable(),
    Field::new("postOfficeBox", "postofficebox", Kind::Text { max: 40 }).filterable(),
    Field::new("stateOrProvinceName", "st", Kind::Text { max: 128 })
        .required_if("countryCode", &["US", "CA"])
        .filterable()
        .sortable(),
    Field::new("countryCode", "c", Kind::Country).required().filterable().sortable().in_collection(),
    Field::new("postalCode", "postalcode", Kind::Text { max: 40 })
        .required()
        .filterable()
        .lookup()
        .sortable()
        .searchable()
        .in_collection(),
    Field::new("localityName", "l", Kind::Text { max: 128 })
        .required()
        .filterable()
        .sortable()
        .searchable()
        .in_collection(),
    Field::new("preferredLanguage", "preferredlanguage", Kind::Language).required().filterable(),
    Field::new("mail", "mail", Kind::Mail).required().filterable().lookup().sortable().searchable(),
    Field::new("telephoneNumber", "telephonenumber", Kind::Phone).filterable(),
    Field::new("mobileTelephoneNumber", "mobile", Kind::Phone).filterable(),
    Field::new("faxNumber", "facsimiletelephonenumber", Kind::Phone).filterable(),
    Field::new("websiteURL", "sstwebsiteurl", Kind::Url).filterable(),
];
