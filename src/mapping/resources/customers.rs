//! Customers (SPEC section 3): `uid=<id>,ou=customers,uid=<reseller>,ou=reseller,<base>`
//! (`sstCustomer`, `sstRelationship`) with a billing and an optional shipping address.

use std::sync::OnceLock;

use super::shared::{BILLING_ADDRESS, EXTERNAL_ID, ID, IS_COMPANY, LOCATION, SHIPPING_ADDRESS};
use crate::mapping::resource::{CustomerOf, Rdn, Related, ResourceDef, Role, Tenant};
use crate::mapping::table::{Field, Kind, Part};

/// The auxiliary class of the subscriptions facade's customer attributes.
const SUBSCRIPTION_CUSTOMER: &str = "sgwSubscriptionCustomer";

pub static CUSTOMERS: ResourceDef = ResourceDef {
    name: "customers",
    singular: "customer",
    schema: "Customer",
    structural: "sstCustomer",
    classes: &["top", "sstCustomer", "sstRelationship"],
    dn: &[Rdn::Id, Rdn::Fixed("ou", "customers"), Rdn::Parent, Rdn::Fixed("ou", "reseller")],
    parent: Some(&super::RESELLERS),
    children: &[Part::Billing, Part::Shipping],
    fields: &[
        ID,
        LOCATION,
        IS_COMPANY,
        Field::new("isActive", "sstisactive", Kind::Bool)
            .default_bool(true)
            .not_by(&[Role::Customer])
            .filterable()
            .sortable()
            .in_collection(),
        Field::new("customerName", "o", Kind::DisplayName).filterable().sortable().searchable().in_collection(),
        EXTERNAL_ID,
        Field::new("belongsToResellerID", "sstbelongstoreselleruid", Kind::ParentRef)
            .required()
            .not_by(&[Role::Customer])
            .filterable()
            .sortable()
            .in_collection(),
        BILLING_ADDRESS,
        SHIPPING_ADDRESS,
        // What the subscriptions facade keeps (schema extension, ldif/gateway-schema.ldif).
        Field::new("merchantCustomerNumber", "sgwcustomernumber", Kind::Text { max: 64 })
            .create_only()
            .class(SUBSCRIPTION_CUSTOMER)
            .filterable()
            .lookup()
            .sortable()
            .searchable(),
        Field::new("", "sgwcustomernumberkey", Kind::Qualified("merchantCustomerNumber"))
            .unique()
            .class(SUBSCRIPTION_CUSTOMER),
        Field::new("salutation", "sgwsalutation", Kind::Text { max: 16 }).class(SUBSCRIPTION_CUSTOMER).filterable(),
        Field::new("birthDate", "sgwbirthdate", Kind::Date).class(SUBSCRIPTION_CUSTOMER).filterable().sortable(),
        Field::new("taxIdentificationNumber", "sgwtaxidentificationnumber", Kind::Text { max: 40 })
            .class(SUBSCRIPTION_CUSTOMER)
            .filterable(),
        Field::new("identificationNumber", "sgwidentificationnumber", Kind::Text { max: 20 })
            .class(SUBSCRIPTION_CUSTOMER)
            .filterable(),
        Field::new("paymentRegistrationID", "sgwpaymentregistrationid", Kind::Text { max: 64 })
            .class(SUBSCRIPTION_CUSTOMER)
            .filterable(),
        Field::new("employees", "", Kind::Link("{location}/employees")).read_only(),
        Field::new("users", "", Kind::Link("{location}/users")).read_only(),
    ],
    own_id_attrs: &[],
    tenant: Tenant::Parent,
    customer_of: CustomerOf::Itself,
    related: &[
        Related { name: "users", resource: &super::PEOPLE, field: "belongsToCustomerID" },
        Related { name: "employees", resource: &super::PEOPLE, field: "employeeOfID" },
    ],
    logins: false,
    read_subtree: true,
    create_by: &[Role::Provider, Role::Reseller],
    delete_by: &[Role::Provider, Role::Reseller],
    delete_blocked_by: None,
    columns: OnceLock::new(),
};
