//! The subscriptions facade (seed 000): a merchant (a reseller) reads, creates and
//! updates its customers by its own customer number, through the subscriptions view of
//! the customers resource. Every write goes through the customers service, so it is
//! validated, scoped and stored exactly as a stoney write.

use serde_json::{json, Map, Value};

use super::resources::{Resources, Update};
use super::{Caller, Scope, ServiceError};
use crate::mapping::query;
use crate::mapping::subscriptions::{self, SUBSCRIPTION_CUSTOMER};
use crate::mapping::Problem;

/// How often an upsert looks again when another one created or changed the same
/// customer number at the same time.
const UPSERT_ATTEMPTS: usize = 5;

#[derive(Clone)]
pub struct Subscriptions {
    customers: Resources,
}

impl Subscriptions {
    pub fn new(customers: Resources) -> Self {
        Subscriptions { customers }
    }

    fn caller(reseller: u64) -> Caller {
        Caller { scope: Scope::Reseller(reseller), uid: 0 }
    }

    /// The id of the merchant's customer with this number, if there is one.
    async fn find(&self, reseller: u64, number: &str) -> Result<Option<u64>, ServiceError> {
        let raw = format!("merchantCustomerNumber={}&per_page=1", query::encode(number));
        let (_, page) = self.customers.list(&Scope::Reseller(reseller), Some(&raw)).await?;
        Ok(page.items.first().and_then(|i| i["id"].as_u64()))
    }

    /// The id of the merchant's customer with this number (none for a malformed number).
    pub async fn id_of(&self, reseller: u64, number: &str) -> Result<Option<u64>, ServiceError> {
        if !subscriptions::valid_number(number) {
            return Ok(None);
        }
        // A customer keeps its number (it is set once): a hit of the index as it is
        // stands; only a miss waits for the directory's newest change.
        let raw = format!("merchantCustomerNumber={}&per_page=1", query::encode(number));
        if let Ok(page) = self.customers.list_now(&Scope::Reseller(reseller), &raw) {
            if let Some(id) = page.items.first().and_then(|i| i["id"].as_u64()) {
                return Ok(Some(id));
            }
        }
        self.find(reseller, number).await
    }

    /// The facade's customer object.
    pub async fn get(&self, reseller: u64, number: &str) -> Result<Value, ServiceError> {
        if !subscriptions::valid_number(number) {
            return Err(ServiceError::NotFound);
        }
        let id = self.find(reseller, number).await?.ok_or(ServiceError::NotFound)?;
        let (doc, _) = self.customers.get(&Self::caller(reseller), id).await?;
        Ok(subscriptions::render(&doc))
    }

    /// `POST` (an upsert: the customer with the body's number is updated, else created)
    /// and `PUT` (`number` from the path: updated, or 404). Answers the sign-up summary.
    pub async fn upsert(&self, reseller: u64, body: &Value, number: Option<&str>) -> Result<Value, ServiceError> {
        let must_exist = number.is_some();
        let (number, patch) = self.translate(body, number)?;
        let caller = Self::caller(reseller);
        let invalid = |e: ServiceError| match e {
            ServiceError::Invalid(p) => ServiceError::Invalid(in_facade(p)),
            e => e,
        };
        for _ in 0..UPSERT_ATTEMPTS {
            let id = match self.find(reseller, &number).await? {
                Some(id) => {
                    match self.customers.update(&caller, id, Update::MergePatch(&patch), None).await {
                        // Moved away or deleted meanwhile, or changed by another write
                        // again and again: look again.
                        Err(ServiceError::NotFound | ServiceError::Conflict(_)) => continue,
                        r => r.map_err(invalid)?,
                    };
                    id
                }
                None if must_exist => return Err(ServiceError::NotFound),
                None => {
                    let mut doc = without_nulls(&patch);
                    doc["belongsToResellerID"] = json!(reseller);
                    match self.customers.create(&caller, &doc).await {
                        Ok(id) => id,
                        // Another upsert created this number first: it is updated now.
                        Err(ServiceError::Conflict(_)) => continue,
                        Err(e) => return Err(invalid(e)),
                    }
                }
            };
            return Ok(json!({"signUpId": id, "customerNumber": id.to_string(),
                "externalCustomerReference": number, "contracts": []}));
        }
        Err(ServiceError::Conflict("the customer number kept changing; try again".into()))
    }

    /// The body as a merge patch of the stoney customer: every field of the view (those
    /// left out removed), the payment registration, the gender of the salutation and,
    /// for a company, its name.
    fn translate(&self, body: &Value, path_number: Option<&str>) -> Result<(String, Value), ServiceError> {
        let invalid = |field: &str, msg: &str| ServiceError::Invalid(vec![Problem::new(field, msg)]);
        let Some(obj) = body.as_object() else { return Err(invalid("", "the body must be a JSON object")) };
        let mut problems: Vec<Problem> = obj
            .keys()
            .filter(|k| !["customer", "paymentRegistration"].contains(&k.as_str()))
            .map(|k| Problem::new(k.clone(), "unknown attribute"))
            .collect();
        let mut customer = match obj.get("customer") {
            Some(Value::Object(c)) => c.clone(),
            Some(_) => return Err(invalid("customer", "must be an object")),
            None => return Err(invalid("customer", "is required")),
        };
        let payment = match obj.get("paymentRegistration") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Object(p)) => {
                problems.extend(
                    p.keys()
                        .filter(|k| *k != "id")
                        .map(|k| Problem::new(format!("paymentRegistration.{k}"), "unknown attribute")),
                );
                match p.get("id") {
                    Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Value::from(s.clone()),
                    Some(Value::Number(n)) => Value::from(n.to_string()),
                    None | Some(Value::Null) => Value::Null,
                    Some(_) => {
                        problems
                            .push(Problem::new("paymentRegistration.id", "must be a string of up to 64 characters"));
                        Value::Null
                    }
                }
            }
            Some(_) => return Err(invalid("paymentRegistration", "must be an object")),
        };
        let given = customer.get("customerNumber").and_then(Value::as_str).map(str::to_string);
        let number = match (path_number, given) {
            (Some(p), Some(g)) if p != g => {
                problems.push(Problem::new("customer.customerNumber", "must be the customer number of the path"));
                p.to_string()
            }
            (Some(p), _) => p.to_string(),
            (None, Some(g)) => g,
            (None, None) => {
                problems.push(Problem::new("customer.customerNumber", "is required"));
                String::new()
            }
        };
        if !number.is_empty() && !subscriptions::valid_number(&number) {
            problems.push(Problem::new("customer.customerNumber", "must be 1 to 64 letters, digits, . _ or -"));
        }
        customer.insert("customerNumber".into(), Value::from(number.clone()));
        let salutation = customer.get("salutation").and_then(Value::as_str).map(str::to_string);
        let mut patch = match SUBSCRIPTION_CUSTOMER.to_replacement(&Value::Object(customer.clone())) {
            Ok(p) => p,
            Err(p) => {
                problems.extend(p.into_iter().map(|p| Problem { field: format!("customer.{}", p.field), ..p }));
                Value::Object(Map::new())
            }
        };
        if !problems.is_empty() {
            return Err(ServiceError::Invalid(problems));
        }
        patch["paymentRegistrationID"] = payment;
        patch["billingAddress"]["gender"] = json!(subscriptions::gender_of(salutation.as_deref()));
        // A company is named by its company name; a person by its names.
        patch["customerName"] = if patch["isCompany"] == json!(true) {
            patch["billingAddress"]["organizationName"].clone()
        } else {
            Value::Null
        };
        Ok((number, patch))
    }
}

/// The mapping's problems in the facade's names (`customer.address.postalPlace`).
fn in_facade(problems: Vec<Problem>) -> Vec<Problem> {
    SUBSCRIPTION_CUSTOMER
        .problems(problems)
        .into_iter()
        .map(|p| {
            let field = match p.field.as_str() {
                "paymentRegistrationID" => "paymentRegistration.id".to_string(),
                "" => String::new(),
                f => format!("customer.{f}"),
            };
            Problem { field, ..p }
        })
        .collect()
}

/// A document without its `null` values (what a create leaves out).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), without_nulls(v))).collect())
        }
        v => v.clone(),
    }
}
