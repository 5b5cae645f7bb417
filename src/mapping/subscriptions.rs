//! The subscriptions facade's customer (seed 000): a view over the customers resource,
//! with the field names, nesting and limits webshops already integrate with. Every value
//! lives where the stoney customer keeps it; what stoney has no field for is in the
//! gateway's schema extension (see `resources/customers.rs`, `resources/address.rs`).

use serde_json::Value;

use super::resources::CUSTOMERS;
use super::view::{Conv, View, ViewField};

pub static SUBSCRIPTION_CUSTOMER: View = View {
    def: &CUSTOMERS,
    empty_is_none: true,
    aliases: &[("customerName", "billingAddress.organizationName")],
    fields: &[
        ViewField::path("customerNumber", "merchantCustomerNumber").max(64),
        ViewField::path("salutation", "salutation").max(16),
        ViewField::path("firstName", "billingAddress.givenName").max(40),
        ViewField::path("lastName", "billingAddress.surname").max(64),
        ViewField::path("companyName", "billingAddress.organizationName").max(140),
        ViewField::conv("customerCategory", "isCompany", Conv::Words("PERSON", "COMPANY")),
        ViewField::path("email", "billingAddress.mail").max(241),
        ViewField::path("phone", "billingAddress.telephoneNumber").max(20),
        ViewField::path("mobilePhone", "billingAddress.mobileTelephoneNumber").max(20),
        ViewField::conv("language", "billingAddress.preferredLanguage", Conv::UpperCase),
        ViewField::path("birthDate", "birthDate"),
        ViewField::path("taxIdentificationNumber", "taxIdentificationNumber").max(40),
        ViewField::path("identificationNumber", "identificationNumber").max(20),
        ViewField::object(
            "address",
            &[
                ViewField::path("street", "billingAddress.street").max(60),
                ViewField::path("streetNumber", "billingAddress.streetNumber").max(10),
                ViewField::path("streetNumberAdditional", "billingAddress.streetNumberAdditional").max(10),
                ViewField::path("careOf", "billingAddress.careOf").max(40),
                ViewField::path("postalCode", "billingAddress.postalCode").max(10),
                ViewField::path("postalPlace", "billingAddress.localityName").max(40),
                ViewField::path("countryCode", "billingAddress.countryCode"),
            ],
        ),
    ],
};

/// The stoney gender a salutation implies: MR → m, MRS and MS → f, any other → n.
pub fn gender_of(salutation: Option<&str>) -> &'static str {
    match salutation.map(|s| s.trim().to_ascii_uppercase()).as_deref() {
        Some("MR") => "m",
        Some("MRS" | "MS") => "f",
        _ => "n",
    }
}

/// A merchant's customer number: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn valid_number(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The facade's customer object of a stoney customer document. A customer written
/// through stoney has no street parts: its postal address lines stand in the street.
pub fn render(doc: &Value) -> Value {
    let mut v = SUBSCRIPTION_CUSTOMER.render(doc);
    let Some(obj) = v.as_object_mut() else { return v };
    // A company is named by its name; a person may have a company name of its own.
    let company =
        (doc["isCompany"] == Value::Bool(true)).then(|| doc["customerName"].clone()).filter(|n| n.is_string());
    if let Some(name) = company.filter(|_| !obj.contains_key("companyName")) {
        obj.insert("companyName".into(), name);
    }
    obj.entry("companyName").or_insert_with(|| Value::from(""));
    let address = obj.entry("address").or_insert_with(|| Value::Object(Default::default()));
    if let Some(a) = address.as_object_mut() {
        if !a.contains_key("street") {
            if let Some(lines) = doc["billingAddress"]["postalAddress"].as_str() {
                a.insert("street".into(), Value::from(lines.lines().collect::<Vec<_>>().join(", ")));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::document::{self, Mode};
    use serde_json::json;

    fn seed_customer() -> Value {
        json!({"address": {"careOf": "", "countryCode": "DE", "postalCode": "97687-7791", "postalPlace": "Schadenville",
                "street": "Bergnaum Mountains", "streetNumber": "1", "streetNumberAdditional": "a"},
               "birthDate": "1984-11-11", "companyName": "", "customerCategory": "PERSON", "customerNumber": "c1631704458",
               "email": "Ray_Ankunding43@gmail.com", "firstName": "Ray", "identificationNumber": "700XXX651",
               "language": "de", "lastName": "Ankunding", "mobilePhone": "+37258774XXX", "phone": "871.790.7578 x4882",
               "salutation": "MR", "taxIdentificationNumber": "12345678L"})
    }

    #[test]
    fn the_seed_customer_is_a_valid_stoney_customer_and_reads_back() {
        let mut doc = SUBSCRIPTION_CUSTOMER.to_document(&seed_customer()).unwrap();
        doc["belongsToResellerID"] = json!(4000001);
        doc["billingAddress"]["gender"] = json!(gender_of(Some("MR")));
        let d = document::parse(&CUSTOMERS, &doc, Mode::Create).unwrap();
        assert_eq!(d.billing.get("postaladdress").unwrap(), "Bergnaum Mountains 1a", "composed");
        assert_eq!(d.billing.get("preferredlanguage").unwrap(), "de");
        assert_eq!(d.root.get("sgwcustomernumberkey").unwrap(), "4000001/c1631704458");
        assert!(!d.billing.contains_key("sgwcareof"), "an empty care-of is none");
        assert_eq!(d.root.get("sstiscompany").unwrap(), "FALSE");
        // Rendered from the stoney document as GET shows it.
        doc["billingAddress"]["postalAddress"] = json!("Bergnaum Mountains 1a");
        let v = render(&doc);
        assert_eq!(v["customerCategory"], "PERSON");
        assert_eq!(v["language"], "DE");
        assert_eq!(v["companyName"], "");
        assert_eq!(v["address"]["street"], "Bergnaum Mountains");
        assert!(v["address"].get("careOf").is_none());
    }

    #[test]
    fn limits_and_names_are_the_facades() {
        let mut c = seed_customer();
        c["phone"] = json!("+49 171 1234567 8901234");
        c["address"]["postalPlace"] = json!("x".repeat(41));
        c["customerCategory"] = json!("ROBOT");
        c["nickname"] = json!("Ray");
        let e = SUBSCRIPTION_CUSTOMER.to_document(&c).unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        for f in ["phone", "address.postalPlace", "customerCategory", "nickname"] {
            assert!(fields.contains(&f), "{f}: {fields:?}");
        }
        assert_eq!(SUBSCRIPTION_CUSTOMER.name_of("billingAddress.localityName"), "address.postalPlace");
        assert_eq!(SUBSCRIPTION_CUSTOMER.name_of("customerName"), "companyName");
        assert_eq!(gender_of(Some("mrs")), "f");
        assert_eq!(gender_of(None), "n");
        assert!(valid_number("c1631704458") && !valid_number("a/b") && !valid_number(""));
    }

    #[test]
    fn a_replacement_removes_what_it_leaves_out_and_keeps_what_the_view_does_not_show() {
        let r = SUBSCRIPTION_CUSTOMER.to_replacement(&json!({"customerNumber": "c1", "firstName": "Ray"})).unwrap();
        assert_eq!(r["billingAddress"]["mobileTelephoneNumber"], Value::Null);
        assert_eq!(r["billingAddress"]["givenName"], "Ray");
        assert!(r.get("externalID").is_none() && r["billingAddress"].get("websiteURL").is_none());
    }
}
