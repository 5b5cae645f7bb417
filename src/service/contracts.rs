//! Orders and contracts of the subscriptions facade (seed 002): an order makes one
//! contract per item; a contract is activated, terminated, given options, or revoked by
//! a return of its order. Every change is one LDAP transaction guarded by the entries'
//! `entryCSN` as read, so of two concurrent changes of one contract exactly one applies,
//! and the other is decided again on what it made.

use ldap3::Mod;
use ldap3::Scope as LdapScope;
use serde_json::{json, Value};

use super::subscriptions::Subscriptions;
use super::ServiceError;
use crate::directory::error::rc;
use crate::directory::escape::filter_value;
use crate::directory::reconcile::rfc3339;
use crate::directory::{Directory, Entry, Guarded, Op};
use crate::mapping::contracts::{self as c, Status};
use crate::mapping::document::Stored;
use crate::mapping::resources::CUSTOMERS;

/// How often a change is decided again when another one came first.
const ATTEMPTS: usize = 8;

#[derive(Clone)]
pub struct Contracts {
    subscriptions: Subscriptions,
    dir: Directory,
    /// Without a requested date, a termination takes effect this many days from today.
    notice_days: i64,
}

/// What a lifecycle call makes of a contract as read.
enum Step {
    /// Nothing to write: the answer.
    Answer(Value),
    /// These modifications (none: nothing), then the answer.
    Write(Vec<Mod<String>>, Value),
}

/// The merchant's customer that a path names.
struct Customer {
    id: u64,
    number: String,
    dn: String,
}

fn today() -> String {
    rfc3339(std::time::SystemTime::now())[..10].to_string()
}

fn conflict(m: &str) -> ServiceError {
    ServiceError::Conflict(m.to_string())
}

fn invalid(field: &str, m: &str) -> ServiceError {
    ServiceError::Invalid(vec![crate::mapping::Problem::new(field, m)])
}

impl Contracts {
    pub fn new(subscriptions: Subscriptions, dir: Directory, notice_days: u64) -> Contracts {
        Contracts { subscriptions, dir, notice_days: notice_days.min(3650) as i64 }
    }

    async fn customer(&self, reseller: u64, number: &str) -> Result<Customer, ServiceError> {
        let id = self.subscriptions.id_of(reseller, number).await?.ok_or(ServiceError::NotFound)?;
        let dn = CUSTOMERS.root_dn(&self.dir.base_dn, id, reseller);
        Ok(Customer { id, number: number.to_string(), dn })
    }

    async fn contracts(&self, cu: &Customer, filter: &str) -> Result<Vec<Entry>, ServiceError> {
        let base = c::container_dn(c::CONTRACTS, &cu.dn);
        let mut all = self.dir.search(&base, LdapScope::OneLevel, filter, c::CONTRACT_ATTRS).await?;
        all.sort_by(|a, b| a.first("sgwContractId").cmp(&b.first("sgwContractId")));
        Ok(all)
    }

    /// The contract an id or the merchant's reference names.
    async fn contract(&self, cu: &Customer, name: &str) -> Result<Entry, ServiceError> {
        if name.is_empty() || name.len() > 64 {
            return Err(ServiceError::NotFound);
        }
        let filter =
            format!("(&(objectClass=sgwContract)(sgwContractKey={}))", filter_value(&c::contract_key(cu.id, name)));
        self.contracts(cu, &filter).await?.into_iter().next().ok_or(ServiceError::NotFound)
    }

    async fn order_entry(&self, cu: &Customer, reference: &str) -> Result<Option<Entry>, ServiceError> {
        let dn = c::order_dn(reference, &cu.dn);
        Ok(self.dir.search(&dn, LdapScope::Base, "(objectClass=sgwOrder)", c::ORDER_ATTRS).await?.into_iter().next())
    }

    /// The sign-up summary with every contract of the customer.
    async fn summary(&self, cu: &Customer) -> Result<Value, ServiceError> {
        let today = today();
        let contracts: Vec<Value> = self
            .contracts(cu, "(objectClass=sgwContract)")
            .await?
            .iter()
            .map(|e| c::contract_json(e, &today))
            .collect();
        Ok(json!({"signUpId": cu.id, "customerNumber": cu.id.to_string(), "externalCustomerReference": cu.number,
            "contracts": contracts}))
    }

    /// The customer summary for the upsert of part 1.
    pub async fn summary_of(&self, reseller: u64, number: &str) -> Result<Value, ServiceError> {
        let cu = self.customer(reseller, number).await?;
        self.summary(&cu).await
    }

    /// `POST …/orders`: one contract per item, all in one transaction with the order.
    pub async fn order(&self, reseller: u64, number: &str, body: &Value) -> Result<Value, ServiceError> {
        let order = c::parse_order(body).map_err(ServiceError::Invalid)?;
        let cu = self.customer(reseller, number).await?;
        let digest = c::digest(&order.canonical());
        for _ in 0..ATTEMPTS {
            if let Some(existing) = self.order_entry(&cu, &order.reference).await? {
                if existing.first("sgwDigest") == Some(digest.as_str()) {
                    return self.summary(&cu).await;
                }
                return Err(conflict("an order with this orderReference and other content exists"));
            }
            let have: Vec<String> = self
                .dir
                .search(&cu.dn, LdapScope::OneLevel, "(objectClass=organizationalUnit)", &["ou"])
                .await?
                .iter()
                .filter_map(|e| e.first("ou").map(str::to_ascii_lowercase))
                .collect();
            // The customer must still be there (and the merchant's) when it commits.
            let mut ops: Vec<Guarded> = vec![Guarded {
                op: Op::Modify { dn: cu.dn.clone(), mods: vec![] },
                assertion: Some(format!("(sstBelongsToResellerUID={reseller})")),
            }];
            for ou in [c::ORDERS, c::CONTRACTS] {
                if !have.iter().any(|h| h == ou) {
                    ops.push(Op::Add { dn: c::container_dn(ou, &cu.dn), attrs: c::container_entry(ou) }.into());
                }
            }
            ops.push(Op::Add { dn: c::order_dn(&order.reference, &cu.dn), attrs: c::order_entry(&order) }.into());
            for i in 0..order.items.len() {
                ops.push(
                    Op::Add {
                        dn: c::contract_dn(&order.contract_id(i), &cu.dn),
                        attrs: c::contract_entry(cu.id, &cu.number, &order, i),
                    }
                    .into(),
                );
            }
            match self.dir.apply_atomic(ops).await {
                Ok(()) => return self.summary(&cu).await,
                // Another request added the containers or this order first: decide again.
                Err(e) if e.rc() == Some(rc::ALREADY_EXISTS) => continue,
                Err(e) if e.rc() == Some(rc::CONSTRAINT_VIOLATION) => {
                    return Err(conflict("a contractReference of the order names another contract of this customer"))
                }
                Err(e) if matches!(e.rc(), Some(rc::ASSERTION_FAILED | rc::NO_SUCH_OBJECT)) => {
                    return Err(ServiceError::NotFound)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict("the order kept changing; try again"))
    }

    /// `GET …/contracts`: a page of the customer's contracts (by id), and how many there are.
    pub async fn list(
        &self,
        reseller: u64,
        number: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Value>, u64), ServiceError> {
        let cu = self.customer(reseller, number).await?;
        let all = self.contracts(&cu, "(objectClass=sgwContract)").await?;
        let today = today();
        let page = all.iter().skip(offset as usize).take(limit as usize).map(|e| c::contract_json(e, &today)).collect();
        Ok((page, all.len() as u64))
    }

    /// `GET …/contracts/{contractId}`.
    pub async fn get(&self, reseller: u64, number: &str, contract: &str) -> Result<Value, ServiceError> {
        let cu = self.customer(reseller, number).await?;
        Ok(c::contract_json(&self.contract(&cu, contract).await?, &today()))
    }

    /// Writes `mods` to the contract as read (its `entryCSN`); `false` when another
    /// change came first.
    async fn change(&self, e: &Entry, mods: Vec<Mod<String>>) -> Result<bool, ServiceError> {
        let op = Guarded { op: Op::Modify { dn: e.dn.clone(), mods }, assertion: Stored::unchanged(e) };
        match self.dir.apply_atomic(vec![op]).await {
            Ok(()) => Ok(true),
            Err(err) if err.rc() == Some(rc::ASSERTION_FAILED) => Ok(false),
            Err(err) if err.rc() == Some(rc::NO_SUCH_OBJECT) => Err(ServiceError::NotFound),
            Err(err) => Err(err.into()),
        }
    }

    /// One lifecycle call: reads the contract, lets `decide` answer at once or name the
    /// modifications (none: nothing to write) and the answer once they are written, and
    /// decides again on what another call wrote first.
    async fn lifecycle(
        &self,
        cu: &Customer,
        contract: &str,
        decide: impl Fn(&Entry) -> Result<Step, ServiceError>,
    ) -> Result<Value, ServiceError> {
        for _ in 0..ATTEMPTS {
            let e = self.contract(cu, contract).await?;
            match decide(&e)? {
                Step::Answer(v) => return Ok(v),
                Step::Write(mods, v) => {
                    if mods.is_empty() || self.change(&e, mods).await? {
                        return Ok(v);
                    }
                }
            }
        }
        Err(conflict("the contract kept changing; try again"))
    }

    /// `POST …/contracts/{contractId}/activate`: `ORDERED` → `ACTIVE` on the date asked
    /// for; answers that date (again for the same date once active).
    pub async fn activate(
        &self,
        reseller: u64,
        number: &str,
        contract: &str,
        body: &Value,
    ) -> Result<Value, ServiceError> {
        let when = c::parse_activation(body).map_err(ServiceError::Invalid)?;
        let cu = self.customer(reseller, number).await?;
        let echo = json!({"requestedActivationDate": when});
        self.lifecycle(&cu, contract, |e| {
            match c::status(e, &today()) {
                Status::Revoked => return Err(conflict("the contract was revoked")),
                Status::Terminated => return Err(conflict("the contract is terminated")),
                Status::Active if e.first("sgwActivationDate") == Some(when.as_str()) => {
                    return Ok(Step::Answer(echo.clone()))
                }
                Status::Active => return Err(conflict("the contract is active from another date")),
                Status::Ordered => {}
            }
            if e.first("sgwOrderDate").is_some_and(|d| when.as_str() < d) {
                return Err(invalid("requestedActivationDate", "must not be before the order date"));
            }
            let mods = vec![
                Mod::Replace("sgwContractStatus".into(), [Status::Active.as_str().to_string()].into()),
                Mod::Replace("sgwActivationDate".into(), [when.clone()].into()),
            ];
            Ok(Step::Write(mods, echo.clone()))
        })
        .await
    }

    /// `POST …/contracts/{contractId}/terminate`: an active contract ends on the date
    /// asked for, or after the notice period; answers the date.
    pub async fn terminate(
        &self,
        reseller: u64,
        number: &str,
        contract: &str,
        body: &Value,
    ) -> Result<Value, ServiceError> {
        let (asked, reason) = c::parse_termination(body).map_err(ServiceError::Invalid)?;
        let cu = self.customer(reseller, number).await?;
        self.lifecycle(&cu, contract, |e| {
            if let (Some(date), Some(had)) = (e.first("sgwTerminationDate"), e.first("sgwTerminationReason")) {
                if had == reason && asked.as_deref().is_none_or(|a| a == date) {
                    return Ok(Step::Answer(json!({"terminationDate": date})));
                }
                return Err(conflict("the contract is terminated with another date or reason"));
            }
            match c::status(e, &today()) {
                Status::Revoked => return Err(conflict("the contract was revoked")),
                Status::Ordered => {
                    return Err(conflict("the contract is not active; an order not yet active is revoked by a return"))
                }
                _ => {}
            }
            let activated = e.first("sgwActivationDate").unwrap_or_default().to_string();
            let date = match &asked {
                Some(d) if d.as_str() < activated.as_str() => {
                    return Err(invalid("requestedTerminationDate", "must not be before the activation date"))
                }
                Some(d) => d.clone(),
                None => {
                    let notice = c::plus_days(&today(), self.notice_days).unwrap_or_else(today);
                    notice.max(activated)
                }
            };
            let mods = vec![
                Mod::Replace("sgwTerminationDate".into(), [date.clone()].into()),
                Mod::Replace("sgwTerminationReason".into(), [reason.clone()].into()),
            ];
            Ok(Step::Write(mods, json!({"terminationDate": date})))
        })
        .await
    }

    /// `POST …/contracts/{contractId}/options`: one-time or recurring fees kept with an
    /// ordered or active contract.
    pub async fn options(
        &self,
        reseller: u64,
        number: &str,
        contract: &str,
        body: &Value,
    ) -> Result<Value, ServiceError> {
        let options = c::parse_options(body).map_err(ServiceError::Invalid)?;
        let cu = self.customer(reseller, number).await?;
        self.lifecycle(&cu, contract, |e| {
            match c::status(e, &today()) {
                Status::Ordered | Status::Active => {}
                _ => return Err(conflict("options are added to an ordered or active contract only")),
            }
            if e.values("sgwOption").len() + options.len() > 4 * c::MAX_OPTIONS {
                return Err(conflict("the contract has as many options as it may"));
            }
            let fresh: Vec<String> = options.iter().filter(|o| !e.values("sgwOption").contains(o)).cloned().collect();
            let mods =
                if fresh.is_empty() { vec![] } else { vec![Mod::Add("sgwOption".into(), fresh.into_iter().collect())] };
            Ok(Step::Write(mods, Value::Null))
        })
        .await?;
        self.summary(&cu).await
    }

    /// `POST …/orders/{orderReference}/returns`: the order's contracts of the returned
    /// products (all of them without a list) are revoked, with the return recorded on the
    /// order; the same return again answers the same.
    pub async fn give_back(
        &self,
        reseller: u64,
        number: &str,
        order: &str,
        body: &Value,
    ) -> Result<Value, ServiceError> {
        let ret = c::parse_return(body).map_err(ServiceError::Invalid)?;
        let cu = self.customer(reseller, number).await?;
        let stored = ret.stored();
        for _ in 0..ATTEMPTS {
            let Some(o) = self.order_entry(&cu, order).await? else { return Err(ServiceError::NotFound) };
            if let Some((_, had)) = c::returns_of(&o).into_iter().find(|(r, _)| *r == ret.reference) {
                if had == stored {
                    return self.summary(&cu).await;
                }
                return Err(conflict("a return with this returnReference and other content exists"));
            }
            let filter = format!("(&(objectClass=sgwContract)(sgwOrderReference={}))", filter_value(order));
            let of_order = self.contracts(&cu, &filter).await?;
            for (i, p) in ret.products.iter().enumerate() {
                if !of_order.iter().any(|e| e.first("sgwProductID") == Some(p.as_str())) {
                    return Err(invalid(&format!("returnItems[{i}].productID"), "is not a product of the order"));
                }
            }
            let today = today();
            let returned: Vec<&Entry> = of_order
                .iter()
                .filter(|e| {
                    ret.products.is_empty() || ret.products.iter().any(|p| e.first("sgwProductID") == Some(p.as_str()))
                })
                .collect();
            let mut ops: Vec<Guarded> = Vec::new();
            for e in &returned {
                match c::status(e, &today) {
                    Status::Revoked => return Err(conflict("a returned contract was revoked by another return")),
                    Status::Terminated => return Err(conflict("a returned contract is terminated")),
                    _ => {}
                }
                ops.push(Guarded {
                    op: Op::Modify {
                        dn: e.dn.clone(),
                        mods: vec![
                            Mod::Replace("sgwContractStatus".into(), [Status::Revoked.as_str().to_string()].into()),
                            Mod::Replace("sgwReturnReference".into(), [ret.reference.clone()].into()),
                        ],
                    },
                    assertion: Stored::unchanged(e),
                });
            }
            ops.push(Guarded {
                op: Op::Modify { dn: o.dn.clone(), mods: vec![Mod::Add("sgwReturn".into(), [stored.clone()].into())] },
                assertion: Stored::unchanged(&o),
            });
            match self.dir.apply_atomic(ops).await {
                Ok(()) => return self.summary(&cu).await,
                Err(e) if e.rc() == Some(rc::ASSERTION_FAILED) => continue,
                Err(e) if e.rc() == Some(rc::NO_SUCH_OBJECT) => return Err(ServiceError::NotFound),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict("the order kept changing; try again"))
    }
}
