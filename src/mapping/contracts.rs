//! Orders and contracts of the subscriptions facade (seed 002): what each request may
//! hold, money as exact decimals, and the entries they are kept in, under their
//! customer: `sgwOrderReference=<ref>,ou=orders,<customer>` and
//! `sgwContractId=<id>,ou=contracts,<customer>` (classes `sgwOrder` and `sgwContract`
//! of `ldif/gateway-schema.ldif`). Pure: no I/O.

use serde_json::{json, Map, Number, Value};
use sha2::{Digest, Sha256};

use super::Problem;
use crate::directory::escape::dn_value;
use crate::directory::Entry;

pub const ORDERS: &str = "orders";
pub const CONTRACTS: &str = "contracts";

/// The most items of one order (each is a contract).
pub const MAX_ITEMS: usize = 100;
/// The most options one request adds.
pub const MAX_OPTIONS: usize = 50;

/// The largest amount, in cents (a trillion).
const MAX_CENTS: i128 = 100_000_000_000_000;

/// Every attribute of a contract entry the facade reads.
pub const CONTRACT_ATTRS: &[&str] = &[
    "sgwContractId",
    "sgwContractReference",
    "sgwOrderReference",
    "sgwOrderDate",
    "sgwProductID",
    "sgwContractStatus",
    "sgwActivationDate",
    "sgwTerminationDate",
    "sgwTerminationReason",
    "sgwOption",
    "sgwReturnReference",
    "sgwCustomerNumber",
    "entryCSN",
];

pub const ORDER_ATTRS: &[&str] = &["sgwOrderReference", "sgwOrderDate", "sgwDigest", "sgwReturn", "entryCSN"];

/// How a contract stands, as stored (`Terminated` is read from the termination date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ordered,
    Active,
    Terminated,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ordered => "ORDERED",
            Status::Active => "ACTIVE",
            Status::Terminated => "TERMINATED",
            Status::Revoked => "REVOKED",
        }
    }
}

/// A JSON number's exact text, or a problem.
fn number_text<'a>(v: Option<&'a Value>, field: &str, problems: &mut Vec<Problem>) -> Option<&'a str> {
    match v {
        Some(Value::Number(n)) => Some(n.as_str()),
        None | Some(Value::Null) => {
            problems.push(Problem::new(field, "is required"));
            None
        }
        Some(_) => {
            problems.push(Problem::new(field, "must be a number"));
            None
        }
    }
}

/// An amount: at least 0, at most two decimals, as cents, with the text it was sent as.
fn money(v: Option<&Value>, field: &str, problems: &mut Vec<Problem>) -> Option<(i128, String)> {
    let text = number_text(v, field, problems)?;
    match cents(text) {
        Ok(c) => Some((c, text.to_string())),
        Err(m) => {
            problems.push(Problem::new(field, m));
            None
        }
    }
}

/// The cents of a decimal text (`15.97`, `19`, `0.5`); exponents, signs and more than two
/// decimals are refused.
pub fn cents(text: &str) -> Result<i128, &'static str> {
    if text.starts_with('-') {
        return Err("must not be negative");
    }
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !plain(int) || !plain(frac) || (text.contains('.') && frac.is_empty()) {
        return Err("must be a plain decimal number such as 15.97");
    }
    if frac.len() > 2 {
        return Err("must have at most 2 decimals");
    }
    if int.len() > 13 {
        return Err("is too large");
    }
    let c = int.parse::<i128>().map_err(|_| "is too large")? * 100
        + format!("{frac:0<2}").parse::<i128>().map_err(|_| "must be a plain decimal number such as 15.97")?;
    if c > MAX_CENTS {
        return Err("is too large");
    }
    Ok(c)
}

/// A VAT percent, kept as sent (`19` or `0.19`): a plain decimal from 0 to 100.
fn percent(v: Option<&Value>, field: &str, problems: &mut Vec<Problem>) -> Option<String> {
    let text = number_text(v, field, problems)?;
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = !int.is_empty()
        && plain(int)
        && plain(frac)
        && frac.len() <= 6
        && !(text.contains('.') && frac.is_empty())
        && int.parse::<u32>().is_ok_and(|i| i < 100 || (i == 100 && frac.bytes().all(|b| b == b'0')));
    if !ok {
        problems.push(Problem::new(field, "must be a plain decimal from 0 to 100"));
        return None;
    }
    Some(text.to_string())
}

/// A text of 1 to `max` characters of `allowed`.
fn text(
    v: Option<&Value>,
    field: &str,
    max: usize,
    allowed: fn(char) -> bool,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match v {
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max && s.chars().all(allowed) => {
            Some(s.clone())
        }
        None | Some(Value::Null) => {
            problems.push(Problem::new(field, "is required"));
            None
        }
        Some(_) => {
            problems.push(Problem::new(field, format!("must be a string of 1 to {max} allowed characters")));
            None
        }
    }
}

fn printable(c: char) -> bool {
    !c.is_control()
}

fn alphanumeric(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn reference_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

/// Days since 1970-01-01 of a valid `YYYY-MM-DD`.
pub fn days(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<i64>().ok()).flatten();
    let (y, m, d) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..])?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[m as usize - 1] || y < 1900 {
        return None;
    }
    // Days from civil (proleptic Gregorian).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The date `n` days after `date`.
pub fn plus_days(date: &str, n: i64) -> Option<String> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from((days(date)? + n) * 86_400).ok()?);
    Some(crate::directory::reconcile::rfc3339(t)[..10].to_string())
}

fn date(v: Option<&Value>, field: &str, problems: &mut Vec<Problem>) -> Option<String> {
    match v {
        Some(Value::String(s)) if days(s).is_some() => Some(s.clone()),
        None | Some(Value::Null) => {
            problems.push(Problem::new(field, "is required"));
            None
        }
        Some(_) => {
            problems.push(Problem::new(field, "must be a date YYYY-MM-DD"));
            None
        }
    }
}

fn object<'a>(
    v: &'a Value,
    field: &str,
    allowed: &[&str],
    problems: &mut Vec<Problem>,
) -> Option<&'a Map<String, Value>> {
    let Some(m) = v.as_object() else {
        problems.push(Problem::new(field, "must be an object"));
        return None;
    };
    let at = |k: &str| if field.is_empty() { k.to_string() } else { format!("{field}.{k}") };
    problems
        .extend(m.keys().filter(|k| !allowed.contains(&k.as_str())).map(|k| Problem::new(at(k), "unknown attribute")));
    Some(m)
}

/// One order item: one contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub product_id: String,
    pub description: String,
    pub quantity: String,
    pub gross: String,
    pub net: String,
    pub vat: String,
    pub vat_percent: String,
    pub contract_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub reference: String,
    pub date: String,
    pub currency: String,
    pub items: Vec<Item>,
}

const ITEM_FIELDS: &[&str] = &[
    "productID",
    "description",
    "quantity",
    "grossUnitPrice",
    "netUnitPrice",
    "vatAmount",
    "vatPercent",
    "contractReference",
];

/// Net and VAT add up to gross, to the cent.
fn adds_up(net: &Option<(i128, String)>, vat: &Option<(i128, String)>, gross: &Option<(i128, String)>) -> bool {
    match (net, vat, gross) {
        (Some(n), Some(v), Some(g)) => n.0 + v.0 == g.0,
        _ => true,
    }
}

fn item(v: &Value, at: &str, problems: &mut Vec<Problem>) -> Option<Item> {
    let m = object(v, at, ITEM_FIELDS, problems)?;
    let f = |k: &str| format!("{at}.{k}");
    let product_id = text(m.get("productID"), &f("productID"), 64, printable, problems);
    let description = match m.get("description") {
        None | Some(Value::Null) => Some(String::new()),
        v => text(v, &f("description"), 256, printable, problems),
    };
    let quantity = match m.get("quantity") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|q| (1..=1_000_000).contains(&q)) => Some(n.to_string()),
        None | Some(Value::Null) => {
            problems.push(Problem::new(f("quantity"), "is required"));
            None
        }
        Some(_) => {
            problems.push(Problem::new(f("quantity"), "must be a whole number from 1 to 1000000"));
            None
        }
    };
    let gross = money(m.get("grossUnitPrice"), &f("grossUnitPrice"), problems);
    let net = money(m.get("netUnitPrice"), &f("netUnitPrice"), problems);
    let vat = money(m.get("vatAmount"), &f("vatAmount"), problems);
    if !adds_up(&net, &vat, &gross) {
        problems.push(Problem::new(f("grossUnitPrice"), "must be netUnitPrice plus vatAmount"));
    }
    let vat_percent = percent(m.get("vatPercent"), &f("vatPercent"), problems);
    let contract_reference = match m.get("contractReference") {
        None | Some(Value::Null) => Some(None),
        v => text(v, &f("contractReference"), 64, reference_char, problems).map(Some),
    };
    Some(Item {
        product_id: product_id?,
        description: description?,
        quantity: quantity?,
        gross: gross?.1,
        net: net?.1,
        vat: vat?.1,
        vat_percent: vat_percent?,
        contract_reference: contract_reference?,
    })
}

/// `POST …/orders`.
pub fn parse_order(body: &Value) -> Result<Order, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(m) = object(body, "", &["orderReference", "orderDate", "currency", "items"], &mut problems) else {
        return Err(problems);
    };
    let reference = text(m.get("orderReference"), "orderReference", 16, alphanumeric, &mut problems);
    let date = date(m.get("orderDate"), "orderDate", &mut problems);
    let currency = text(m.get("currency"), "currency", 3, |c| c.is_ascii_uppercase(), &mut problems).filter(|c| {
        c.len() == 3 || {
            problems.push(Problem::new("currency", "must be an ISO 4217 code such as EUR"));
            false
        }
    });
    let mut items = Vec::new();
    match m.get("items") {
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_ITEMS => {
            for (i, v) in a.iter().enumerate() {
                if let Some(it) = item(v, &format!("items[{i}]"), &mut problems) {
                    items.push(it);
                }
            }
        }
        _ => problems.push(Problem::new("items", format!("must be a list of 1 to {MAX_ITEMS} items"))),
    }
    let mut refs: Vec<&str> = items.iter().filter_map(|i| i.contract_reference.as_deref()).collect();
    refs.sort_unstable();
    if refs.windows(2).any(|w| w[0] == w[1]) {
        problems.push(Problem::new("items", "two items have the same contractReference"));
    }
    match (reference, date, currency) {
        (Some(reference), Some(date), Some(currency)) if problems.is_empty() => {
            Ok(Order { reference, date, currency, items })
        }
        _ => Err(problems),
    }
}

/// A fingerprint of what a request asked, to tell a repeated one from another.
pub fn digest(canonical: &Value) -> String {
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl Order {
    pub fn canonical(&self) -> Value {
        json!({"orderReference": self.reference, "orderDate": self.date, "currency": self.currency,
            "items": self.items.iter().map(|i| json!([i.product_id, i.description, i.quantity, i.gross, i.net, i.vat, i.vat_percent, i.contract_reference])).collect::<Vec<_>>()})
    }

    /// The id of the contract of item `i`: unique within the customer, as the order
    /// reference is.
    pub fn contract_id(&self, i: usize) -> String {
        format!("{}-{}", self.reference, i + 1)
    }
}

fn attr(name: &str, values: &[&str]) -> (String, Vec<String>) {
    (name.to_string(), values.iter().map(|v| v.to_string()).collect())
}

pub fn container_dn(ou: &str, customer_dn: &str) -> String {
    format!("ou={ou},{customer_dn}")
}

pub fn container_entry(ou: &str) -> Vec<(String, Vec<String>)> {
    vec![attr("objectClass", &["top", "organizationalUnit"]), attr("ou", &[ou])]
}

pub fn order_dn(reference: &str, customer_dn: &str) -> String {
    format!("sgwOrderReference={},{}", dn_value(reference), container_dn(ORDERS, customer_dn))
}

pub fn contract_dn(id: &str, customer_dn: &str) -> String {
    format!("sgwContractId={},{}", dn_value(id), container_dn(CONTRACTS, customer_dn))
}

/// The key that makes an id or a reference name one contract of the customer.
pub fn contract_key(customer: u64, name: &str) -> String {
    format!("{customer}/{name}")
}

pub fn order_entry(order: &Order) -> Vec<(String, Vec<String>)> {
    vec![
        attr("objectClass", &["top", "sgwOrder"]),
        attr("sgwOrderReference", &[&order.reference]),
        attr("sgwOrderDate", &[&order.date]),
        attr("sgwCurrency", &[&order.currency]),
        attr("sgwDigest", &[&digest(&order.canonical())]),
    ]
}

/// The entry of item `i`'s contract of the customer (its uid and the merchant's number).
pub fn contract_entry(customer: u64, number: &str, order: &Order, i: usize) -> Vec<(String, Vec<String>)> {
    let it = &order.items[i];
    let id = order.contract_id(i);
    let mut keys = vec![contract_key(customer, &id)];
    let mut out = vec![
        attr("objectClass", &["top", "sgwContract"]),
        attr("sgwContractId", &[&id]),
        attr("sgwContractStatus", &[Status::Ordered.as_str()]),
        attr("sgwOrderReference", &[&order.reference]),
        attr("sgwOrderDate", &[&order.date]),
        attr("sgwCustomerNumber", &[number]),
        attr("sgwProductID", &[&it.product_id]),
        attr("sgwQuantity", &[&it.quantity]),
        attr("sgwGrossUnitPrice", &[&it.gross]),
        attr("sgwNetUnitPrice", &[&it.net]),
        attr("sgwVatAmount", &[&it.vat]),
        attr("sgwVatPercent", &[&it.vat_percent]),
    ];
    if !it.description.is_empty() {
        out.push(attr("description", &[&it.description]));
    }
    if let Some(r) = &it.contract_reference {
        out.push(attr("sgwContractReference", &[r]));
        if *r != id {
            keys.push(contract_key(customer, r));
        }
    }
    out.push(("sgwContractKey".into(), keys));
    out
}

/// What a contract's entry says its status is on `today` (`YYYY-MM-DD`).
pub fn status(e: &Entry, today: &str) -> Status {
    match e.first("sgwContractStatus") {
        Some("REVOKED") => Status::Revoked,
        Some("ACTIVE") => match e.first("sgwTerminationDate") {
            Some(t) if t <= today => Status::Terminated,
            _ => Status::Active,
        },
        _ => Status::Ordered,
    }
}

/// A contract as the facade shows it.
pub fn contract_json(e: &Entry, today: &str) -> Value {
    let s = |a: &str| e.first(a).map(|v| Value::String(v.to_string())).unwrap_or(Value::Null);
    let options: Vec<Value> = e.values("sgwOption").iter().filter_map(|o| serde_json::from_str(o).ok()).collect();
    json!({
        "contractId": s("sgwContractId"),
        "contractReference": s("sgwContractReference"),
        "orderReference": s("sgwOrderReference"),
        "productID": s("sgwProductID"),
        "status": status(e, today).as_str(),
        "activationDate": s("sgwActivationDate"),
        "terminationDate": s("sgwTerminationDate"),
        "terminationReason": s("sgwTerminationReason"),
        "options": options,
    })
}

/// `POST …/activate`: the date asked for.
pub fn parse_activation(body: &Value) -> Result<String, Vec<Problem>> {
    let mut problems = Vec::new();
    let m = object(body, "", &["requestedActivationDate"], &mut problems);
    let d = m.and_then(|m| date(m.get("requestedActivationDate"), "requestedActivationDate", &mut problems));
    match d {
        Some(d) if problems.is_empty() => Ok(d),
        _ => Err(problems),
    }
}

/// The reason codes of a termination.
pub const TERMINATION_REASONS: [&str; 4] = ["01", "02", "03", "04"];

/// `POST …/terminate`: the date (if given) and the reason.
pub fn parse_termination(body: &Value) -> Result<(Option<String>, String), Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(m) = object(body, "", &["requestedTerminationDate", "terminationReason"], &mut problems) else {
        return Err(problems);
    };
    let when = match m.get("requestedTerminationDate") {
        None | Some(Value::Null) => Some(None),
        v => date(v, "requestedTerminationDate", &mut problems).map(Some),
    };
    let reason = match m.get("terminationReason") {
        Some(Value::String(r)) if TERMINATION_REASONS.contains(&r.as_str()) => Some(r.clone()),
        None | Some(Value::Null) => {
            problems.push(Problem::new("terminationReason", "is required"));
            None
        }
        Some(_) => {
            problems.push(Problem::new(
                "terminationReason",
                "must be 01 (carrier), 02 (customer), 03 (extraordinary, carrier) or 04 (extraordinary, customer)",
            ));
            None
        }
    };
    match (when, reason) {
        (Some(w), Some(r)) if problems.is_empty() => Ok((w, r)),
        _ => Err(problems),
    }
}

const CHARGE_MONEY: [&str; 7] = [
    "amountGrossDiscounts",
    "amountNetDiscounts",
    "grossAmount",
    "netAmount",
    "unitAmountGross",
    "unitAmountNet",
    "vatAmount",
];

/// `POST …/options`: each option as the JSON text it is kept as (amounts as sent).
pub fn parse_options(body: &Value) -> Result<Vec<String>, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(m) = object(body, "", &["options"], &mut problems) else { return Err(problems) };
    let Some(options) = m.get("options").and_then(Value::as_array).filter(|a| !a.is_empty() && a.len() <= MAX_OPTIONS)
    else {
        problems.push(Problem::new("options", format!("must be a list of 1 to {MAX_OPTIONS} options")));
        return Err(problems);
    };
    let mut out = Vec::new();
    for (i, o) in options.iter().enumerate() {
        let at = format!("options[{i}]");
        let Some(om) = object(o, &at, &["productID", "charges"], &mut problems) else { continue };
        let product = text(om.get("productID"), &format!("{at}.productID"), 64, printable, &mut problems);
        let mut charges = Vec::new();
        match om.get("charges").and_then(Value::as_array) {
            Some(cs) if cs.len() <= MAX_OPTIONS => {
                for (j, c) in cs.iter().enumerate() {
                    let cat = format!("{at}.charges[{j}]");
                    let mut allowed: Vec<&str> = CHARGE_MONEY.to_vec();
                    allowed.push("vatPercent");
                    let Some(cm) = object(c, &cat, &allowed, &mut problems) else { continue };
                    let mut charge = Map::new();
                    let mut amounts = std::collections::HashMap::new();
                    for k in CHARGE_MONEY {
                        let v = cm.get(k);
                        // Discounts may be left out.
                        if (v.is_none() || v == Some(&Value::Null)) && k.contains("Discounts") {
                            continue;
                        }
                        if let Some((c, t)) = money(v, &format!("{cat}.{k}"), &mut problems) {
                            amounts.insert(k, (c, t.clone()));
                            charge
                                .insert(k.to_string(), Value::Number(t.parse::<Number>().expect("a checked decimal")));
                        }
                    }
                    let get = |k: &str| amounts.get(k).cloned();
                    if !adds_up(&get("netAmount"), &get("vatAmount"), &get("grossAmount")) {
                        problems.push(Problem::new(format!("{cat}.grossAmount"), "must be netAmount plus vatAmount"));
                    }
                    if let Some(p) = percent(cm.get("vatPercent"), &format!("{cat}.vatPercent"), &mut problems) {
                        charge.insert(
                            "vatPercent".into(),
                            Value::Number(p.parse::<Number>().expect("a checked decimal")),
                        );
                    }
                    charges.push(Value::Object(charge));
                }
            }
            _ => problems
                .push(Problem::new(format!("{at}.charges"), format!("must be a list of up to {MAX_OPTIONS} charges"))),
        }
        if let Some(p) = product {
            out.push(json!({"productID": p, "charges": charges}).to_string());
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A return of order items.
#[derive(Debug, Clone, PartialEq)]
pub struct Return {
    pub date: String,
    /// The products returned (none: the whole order).
    pub products: Vec<String>,
    pub reason: String,
    pub reference: String,
}

impl Return {
    /// As the order keeps it (`sgwReturn`), with the fingerprint of the request.
    pub fn stored(&self) -> String {
        let mut v = json!({"returnReference": self.reference, "returnDate": self.date, "returnReason": self.reason,
            "productIDs": self.products});
        v["digest"] = Value::String(digest(&v));
        v.to_string()
    }
}

/// `POST …/orders/{orderReference}/returns`.
pub fn parse_return(body: &Value) -> Result<Return, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(m) = object(body, "", &["returnDate", "returnItems", "returnReason", "returnReference"], &mut problems)
    else {
        return Err(problems);
    };
    let date = date(m.get("returnDate"), "returnDate", &mut problems);
    let mut products = Vec::new();
    match m.get("returnItems") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.len() <= MAX_ITEMS => {
            for (i, v) in a.iter().enumerate() {
                let at = format!("returnItems[{i}]");
                let fields: Vec<&str> = ITEM_FIELDS.iter().copied().filter(|f| *f != "contractReference").collect();
                if let Some(im) = object(v, &at, &fields, &mut problems) {
                    // The item as ordered; the product names the contracts.
                    if im.contains_key("grossUnitPrice")
                        || im.contains_key("netUnitPrice")
                        || im.contains_key("vatAmount")
                    {
                        let (g, n, t) = (
                            money(im.get("grossUnitPrice"), &format!("{at}.grossUnitPrice"), &mut problems),
                            money(im.get("netUnitPrice"), &format!("{at}.netUnitPrice"), &mut problems),
                            money(im.get("vatAmount"), &format!("{at}.vatAmount"), &mut problems),
                        );
                        if !adds_up(&n, &t, &g) {
                            problems.push(Problem::new(
                                format!("{at}.grossUnitPrice"),
                                "must be netUnitPrice plus vatAmount",
                            ));
                        }
                    }
                    if let Some(p) = text(im.get("productID"), &format!("{at}.productID"), 64, printable, &mut problems)
                    {
                        if !products.contains(&p) {
                            products.push(p);
                        }
                    }
                }
            }
        }
        Some(_) => problems.push(Problem::new("returnItems", format!("must be a list of up to {MAX_ITEMS} items"))),
    }
    let reason = match m.get("returnReason") {
        None | Some(Value::Null) => Some(String::new()),
        v => text(v, "returnReason", 256, printable, &mut problems),
    };
    let reference = text(m.get("returnReference"), "returnReference", 30, printable, &mut problems);
    match (date, reason, reference) {
        (Some(date), Some(reason), Some(reference)) if problems.is_empty() => {
            products.sort();
            Ok(Return { date, products, reason, reference })
        }
        _ => Err(problems),
    }
}

/// The returns an order's entry holds, by reference, with their stored form.
pub fn returns_of(order: &Entry) -> Vec<(String, String)> {
    order
        .values("sgwReturn")
        .iter()
        .filter_map(|v| {
            let j: Value = serde_json::from_str(v).ok()?;
            Some((j["returnReference"].as_str()?.to_string(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Value {
        Value::Number(s.parse().unwrap())
    }

    #[test]
    fn money_is_exact_with_at_most_two_decimals() {
        assert_eq!(cents("15.97"), Ok(1597));
        assert_eq!(cents("19"), Ok(1900));
        assert_eq!(cents("0.1"), Ok(10));
        assert_eq!(cents("0"), Ok(0));
        assert!(cents("1.005").is_err());
        assert!(cents("-1").is_err());
        assert!(cents("1e20").is_err());
        assert!(cents("1E2").is_err());
        assert!(cents("100000000000000000000").is_err());
        assert!(cents("1.").is_err());
        // 0.1 + 0.2 is 0.3 to the cent, as it is not in binary floating point.
        assert_eq!(cents("0.1").unwrap() + cents("0.2").unwrap(), cents("0.3").unwrap());
    }

    #[test]
    fn the_seeds_items_and_charges_add_up_and_others_do_not() {
        let item = |net: &str, vat: &str, gross: &str| {
            json!({"orderReference": "123", "orderDate": "2022-02-01", "currency": "EUR", "items": [{
                "productID": "A0", "description": "Shirt red", "quantity": 1, "grossUnitPrice": n(gross),
                "netUnitPrice": n(net), "vatAmount": n(vat), "vatPercent": 19}]})
        };
        let o = parse_order(&item("15.97", "3.03", "19")).unwrap();
        assert_eq!((o.items[0].net.as_str(), o.items[0].gross.as_str()), ("15.97", "19"));
        assert!(parse_order(&item("0.1", "0.2", "0.3")).is_ok());
        let e = parse_order(&item("15.97", "3.04", "19")).unwrap_err();
        assert_eq!(e[0].field, "items[0].grossUnitPrice");
        let e = parse_order(&item("15.975", "3.025", "19")).unwrap_err();
        assert!(e.iter().any(|p| p.field == "items[0].netUnitPrice"), "{e:?}");
        let opts = json!({"options": [{"productID": "S1", "charges": [{"amountGrossDiscounts": 0, "amountNetDiscounts": 0,
            "grossAmount": n("17.99"), "netAmount": n("15.12"), "unitAmountGross": n("17.99"), "unitAmountNet": n("15.12"),
            "vatAmount": n("2.87"), "vatPercent": n("0.19")}]}]});
        let kept = parse_options(&opts).unwrap();
        assert!(kept[0].contains("\"grossAmount\":17.99") && kept[0].contains("\"vatPercent\":0.19"), "{}", kept[0]);
    }

    #[test]
    fn orders_refuse_what_the_facade_does_not_know() {
        let e = parse_order(&json!({"orderReference": "has space", "orderDate": "2022-02-30", "currency": "eur",
            "items": [], "extra": 1}))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|p| p.field.as_str()).collect();
        for f in ["extra", "orderReference", "orderDate", "currency", "items"] {
            assert!(fields.contains(&f), "{f}: {fields:?}");
        }
    }

    #[test]
    fn dates_count_days_and_leap_years() {
        assert_eq!(days("1970-01-01"), Some(0));
        assert_eq!(days("2024-02-29").map(|d| d - days("2024-02-28").unwrap()), Some(1));
        assert_eq!(days("2023-02-29"), None);
        assert_eq!(plus_days("2022-02-15", 30).as_deref(), Some("2022-03-17"));
        assert_eq!(plus_days("2024-12-31", 1).as_deref(), Some("2025-01-01"));
    }
}
