//! Orders and contracts of the subscriptions facade (seed 002) against a real slapd: the
//! seed's sample requests verbatim, every transition and every refused one, repeated
//! calls, the activation race, money edge cases, and scope.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use stoney_slapd::DEMO_SUBSCRIPTION_KEY as KEY;

const CUSTOMER: &str = "/subscriptions/v1/customers/c1631704458";

/// The seed's samples, verbatim.
const SEED_ACTIVATE: &str = r#"{
"requestedActivationDate": "2022-02-15"
}"#;
const SEED_RETURN: &str = r#"{
"returnDate": "2022-02-15",
"returnItems": [
{
"description": "Shirt red",
"grossUnitPrice": 19,
"netUnitPrice": 15.97,
"productID": "A0",
"quantity": 1,
"vatAmount": 3.03,
"vatPercent": 19
},
{
"description": "Shirt green",
"grossUnitPrice": 100,
"netUnitPrice": 84.03,
"productID": "B0",
"quantity": 1,
"vatAmount": 15.97,
"vatPercent": 19
}
],
"returnReason": "string",
"returnReference": "string"
}"#;
const SEED_TERMINATE: &str = r#"{
"requestedTerminationDate": "2022-02-15",
"terminationReason": "02"
}"#;
const SEED_OPTIONS: &str = r#"{
"options": [
{
"productID": "S1",
"charges": [
{
"amountGrossDiscounts": 0,
"amountNetDiscounts": 0,
"grossAmount": 17.99,
"netAmount": 15.12,
"unitAmountGross": 17.99,
"unitAmountNet": 15.12,
"vatAmount": 2.87,
"vatPercent": 0.19
}
]
}
]
}"#;

/// Order 123 with the seed's products: the shirts A0 and B0, and the subscription S1 as
/// contract CON123.
const ORDER_123: &str = r#"{"orderReference": "123", "orderDate": "2022-02-01", "currency": "EUR", "items": [
  {"productID": "A0", "description": "Shirt red", "quantity": 1, "grossUnitPrice": 19, "netUnitPrice": 15.97, "vatAmount": 3.03, "vatPercent": 19},
  {"productID": "B0", "description": "Shirt green", "quantity": 1, "grossUnitPrice": 100, "netUnitPrice": 84.03, "vatAmount": 15.97, "vatPercent": 19},
  {"productID": "S1", "description": "Gym", "quantity": 1, "grossUnitPrice": 17.99, "netUnitPrice": 15.12, "vatAmount": 2.87, "vatPercent": 0.19, "contractReference": "CON123"}]}"#;

async fn call(app: &TestApp, key: &str, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).header("X-Subscription-Key", key);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    call(app, KEY, Method::POST, &format!("{CUSTOMER}{path}"), Some(body)).await
}

/// The seed's customer, signed up through the facade, with order 123.
async fn with_order() -> TestApp {
    let app = spawn_app().await;
    let signup = json!({"customer": {"customerNumber": "c1631704458", "salutation": "MR", "firstName": "Ray",
        "lastName": "Ankunding", "email": "ray@example.com", "language": "de", "customerCategory": "PERSON",
        "address": {"street": "Bergnaum Mountains", "streetNumber": "1", "postalCode": "97687",
            "postalPlace": "Schadenville", "countryCode": "DE"}}});
    let (s, _) = call(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(&signup.to_string())).await;
    assert_eq!(s, 200);
    let (s, body) = post(&app, "/orders", ORDER_123).await;
    assert_eq!(s, 200, "{body}");
    app
}

fn contract<'a>(summary: &'a Value, product: &str) -> &'a Value {
    summary["contracts"].as_array().unwrap().iter().find(|c| c["productID"] == product).expect("the contract")
}

#[tokio::test]
async fn the_seeds_samples_work_verbatim_through_a_whole_lifecycle() {
    let app = with_order().await;
    // The order made one ORDERED contract per item.
    let (s, summary) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts"), None).await;
    assert_eq!(s, 200);
    assert_eq!(summary.as_array().unwrap().len(), 3);
    let (_, s1) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts/CON123"), None).await;
    assert_eq!(s1["status"], "ORDERED");
    assert_eq!(s1["contractReference"], "CON123");
    assert_eq!(s1["orderReference"], "123");
    let id = s1["contractId"].as_str().unwrap().to_string();
    let (s, by_id) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts/{id}"), None).await;
    assert_eq!((s, &by_id), (200, &s1), "the gateway's id and the merchant's reference name one contract");

    let (s, body) = post(&app, "/contracts/CON123/activate", SEED_ACTIVATE).await;
    assert_eq!((s, body), (200, json!({"requestedActivationDate": "2022-02-15"})));
    let (s, summary) = post(&app, "/contracts/CON123/options", SEED_OPTIONS).await;
    assert_eq!(s, 200, "{summary}");
    let s1 = contract(&summary, "S1");
    assert_eq!(s1["status"], "ACTIVE");
    assert_eq!(s1["options"][0]["charges"][0]["netAmount"], json!(15.12));
    assert_eq!(s1["options"][0]["charges"][0]["vatPercent"].to_string(), "0.19", "kept as sent");
    assert_eq!(summary["externalCustomerReference"], "c1631704458");

    let (s, summary) = post(&app, "/orders/123/returns", SEED_RETURN).await;
    assert_eq!(s, 200, "{summary}");
    for p in ["A0", "B0"] {
        assert_eq!(contract(&summary, p)["status"], "REVOKED", "{p}");
    }
    assert_eq!(contract(&summary, "S1")["status"], "ACTIVE", "not returned");

    let (s, body) = post(&app, "/contracts/CON123/terminate", SEED_TERMINATE).await;
    assert_eq!((s, body), (200, json!({"terminationDate": "2022-02-15"})));
    let (_, s1) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts/CON123"), None).await;
    assert_eq!(s1["status"], "TERMINATED", "from the termination date on");
    assert_eq!(s1["terminationReason"], "02");

    // The stoney customer is untouched by all of it, and its ETag with it.
    let number = app.get("/v1/customers?merchantCustomerNumber=c1631704458").await.json::<Value>().await.unwrap()[0]
        ["id"]
        .as_u64()
        .unwrap();
    let res = app.get(&format!("/v1/customers/{number}")).await;
    assert_eq!(res.status(), 200);
    // What an admin sees: the entries under the customer.
    let ldif = app.ldapsearch(app.suffix(), "(objectClass=sgwContract)", &["sgwContractStatus", "sgwProductID"]);
    assert_eq!(ldif.matches("dn: sgwContractId=").count(), 3, "{ldif}");
    assert!(ldif.contains(&format!("ou=contracts,uid={number},ou=customers")), "{ldif}");
    // Deleting the customer removes them with it.
    assert_eq!(app.req(Method::DELETE, &format!("/v1/customers/{number}")).send().await.unwrap().status(), 200);
    let ldif = app.ldapsearch(app.suffix(), "(|(objectClass=sgwContract)(objectClass=sgwOrder))", &["1.1"]);
    assert!(!ldif.contains("dn:"), "{ldif}");
}

#[tokio::test]
async fn repeated_calls_answer_the_same_and_other_ones_conflict() {
    let app = with_order().await;
    // The same order again: the same answer; another body under its reference: 409.
    let (s, _) = post(&app, "/orders", ORDER_123).await;
    assert_eq!(s, 200);
    let other = ORDER_123.replace("\"2022-02-01\"", "\"2022-02-02\"");
    assert_eq!(post(&app, "/orders", &other).await.0, 409);
    // A contractReference another contract of the customer has: 409.
    let clash = r#"{"orderReference": "124", "orderDate": "2022-02-01", "currency": "EUR", "items": [
      {"productID": "X", "quantity": 1, "grossUnitPrice": 1, "netUnitPrice": 1, "vatAmount": 0, "vatPercent": 0, "contractReference": "CON123"}]}"#;
    assert_eq!(post(&app, "/orders", clash).await.0, 409);

    // Activation: not before the order date; again the same; another date 409.
    let (s, body) = post(&app, "/contracts/CON123/activate", r#"{"requestedActivationDate": "2022-01-31"}"#).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "requestedActivationDate");
    assert_eq!(post(&app, "/contracts/CON123/activate", SEED_ACTIVATE).await.0, 200);
    assert_eq!(post(&app, "/contracts/CON123/activate", SEED_ACTIVATE).await.0, 200);
    assert_eq!(post(&app, "/contracts/CON123/activate", r#"{"requestedActivationDate": "2022-02-16"}"#).await.0, 409);

    // Termination: reasons are codes; not before the activation; only an active one.
    assert_eq!(post(&app, "/contracts/CON123/terminate", r#"{"terminationReason": "05"}"#).await.0, 422);
    let early = r#"{"requestedTerminationDate": "2022-02-14", "terminationReason": "02"}"#;
    assert_eq!(post(&app, "/contracts/CON123/terminate", early).await.0, 422);
    let a0 = {
        let (_, all) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts"), None).await;
        all.as_array().unwrap().iter().find(|c| c["productID"] == "A0").unwrap()["contractId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(post(&app, &format!("/contracts/{a0}/terminate"), SEED_TERMINATE).await.0, 409, "not active yet");
    // Without a date: after the notice period, from today.
    let (s, body) = post(&app, "/contracts/CON123/terminate", r#"{"terminationReason": "01"}"#).await;
    assert_eq!(s, 200, "{body}");
    let date = body["terminationDate"].as_str().unwrap().to_string();
    assert!(date.as_str() > "2026-01-01", "{date}");
    let (_, s1) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts/CON123"), None).await;
    assert_eq!(s1["status"], "ACTIVE", "until the termination date");
    assert_eq!(
        post(&app, "/contracts/CON123/terminate", r#"{"terminationReason": "01"}"#).await.1,
        body,
        "again the same"
    );
    assert_eq!(post(&app, "/contracts/CON123/terminate", SEED_TERMINATE).await.0, 409, "another date and reason");

    // A return revokes; the same return again answers the same; a revoked contract takes
    // no further call.
    let ret = r#"{"returnDate": "2022-02-15", "returnItems": [{"productID": "A0"}], "returnReference": "R1"}"#;
    assert_eq!(post(&app, "/orders/123/returns", ret).await.0, 200);
    assert_eq!(post(&app, "/orders/123/returns", ret).await.0, 200);
    let other_ret = r#"{"returnDate": "2022-02-16", "returnItems": [{"productID": "A0"}], "returnReference": "R1"}"#;
    assert_eq!(post(&app, "/orders/123/returns", other_ret).await.0, 409);
    let again = r#"{"returnDate": "2022-02-15", "returnItems": [{"productID": "A0"}], "returnReference": "R2"}"#;
    assert_eq!(post(&app, "/orders/123/returns", again).await.0, 409, "already revoked");
    assert_eq!(post(&app, &format!("/contracts/{a0}/activate"), SEED_ACTIVATE).await.0, 409);
    assert_eq!(post(&app, &format!("/contracts/{a0}/options"), SEED_OPTIONS).await.0, 409);
    let unknown = r#"{"returnDate": "2022-02-15", "returnItems": [{"productID": "ZZ"}], "returnReference": "R3"}"#;
    assert_eq!(post(&app, "/orders/123/returns", unknown).await.0, 422);
    assert_eq!(post(&app, "/orders/999/returns", ret).await.0, 404);
    assert_eq!(post(&app, "/contracts/NOPE/activate", SEED_ACTIVATE).await.0, 404);
}

#[tokio::test]
async fn money_is_exact_and_must_add_up() {
    let app = with_order().await;
    let order = |r: &str, net: &str, vat: &str, gross: &str| {
        format!(
            r#"{{"orderReference": "{r}", "orderDate": "2022-02-01", "currency": "EUR", "items": [{{"productID": "M",
            "quantity": 1, "grossUnitPrice": {gross}, "netUnitPrice": {net}, "vatAmount": {vat}, "vatPercent": 19}}]}}"#
        )
    };
    assert_eq!(post(&app, "/orders", &order("m1", "0.1", "0.2", "0.3")).await.0, 200, "0.1 + 0.2 is 0.3");
    let refused = [
        ("m2", "-1", "1", "0", "netUnitPrice"),
        ("m3", "1.005", "0", "1.005", "netUnitPrice"),
        ("m4", "1e20", "0", "1e20", "netUnitPrice"),
        ("m5", "15.97", "3.04", "19", "grossUnitPrice"),
        ("m6", "1", "0", "\"1\"", "grossUnitPrice"),
    ];
    for (r, net, vat, gross, field) in refused {
        let (s, body) = post(&app, "/orders", &order(r, net, vat, gross)).await;
        assert_eq!(s, 422, "{r}: {body}");
        let fields: Vec<&str> =
            body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert!(fields.contains(&format!("items[0].{field}").as_str()), "{r}: {fields:?}");
    }
    // Stored and answered as sent: 15.97 stays 15.97.
    let ldif = app.ldapsearch(app.suffix(), "(sgwProductID=A0)", &["sgwNetUnitPrice", "sgwGrossUnitPrice"]);
    assert!(ldif.contains("sgwNetUnitPrice: 15.97") && ldif.contains("sgwGrossUnitPrice: 19"), "{ldif}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_activations_with_different_dates_exactly_one_wins() {
    let app = with_order().await;
    let (a, b) = tokio::join!(
        post(&app, "/contracts/CON123/activate", r#"{"requestedActivationDate": "2022-02-15"}"#),
        post(&app, "/contracts/CON123/activate", r#"{"requestedActivationDate": "2022-02-20"}"#),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let won = if a.0 == 200 { a.1 } else { b.1 };
    let (_, s1) = call(&app, KEY, Method::GET, &format!("{CUSTOMER}/contracts/CON123"), None).await;
    assert_eq!(s1["activationDate"], won["requestedActivationDate"]);
}

#[tokio::test]
async fn another_merchants_key_finds_nothing() {
    let app = with_order().await;
    // A key of reseller 4000002, issued by the provider.
    let res = app
        .req(Method::POST, "/v1/resellers/4000002/subscription-keys")
        .json(&json!({"name": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let other: Value = res.json().await.unwrap();
    let other = other["key"].as_str().unwrap().to_string();
    for (method, path, body) in [
        (Method::GET, format!("{CUSTOMER}/contracts"), None),
        (Method::GET, format!("{CUSTOMER}/contracts/CON123"), None),
        (Method::POST, format!("{CUSTOMER}/orders"), Some(ORDER_123)),
        (Method::POST, format!("{CUSTOMER}/contracts/CON123/activate"), Some(SEED_ACTIVATE)),
        (Method::POST, format!("{CUSTOMER}/contracts/CON123/terminate"), Some(SEED_TERMINATE)),
        (Method::POST, format!("{CUSTOMER}/contracts/CON123/options"), Some(SEED_OPTIONS)),
        (Method::POST, format!("{CUSTOMER}/orders/123/returns"), Some(SEED_RETURN)),
    ] {
        let (s, _) = call(&app, &other, method.clone(), &path, body).await;
        assert_eq!(s, 404, "{method} {path}");
    }
    // Without a key, or with a Basic login: 401.
    let res = app.req(Method::GET, &format!("{CUSTOMER}/contracts")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

/// The changes after `since` as the given Basic login sees them, polled until `n` came.
async fn changes(app: &TestApp, user: (&str, &str), since: &str, n: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut at = since.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while all.len() < n && std::time::Instant::now() < deadline {
        let res = app
            .req_as(user, Method::GET, &format!("/v1/changes?since={at}&wait=1&resource=contracts"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        all.extend(body["changes"].as_array().unwrap().iter().cloned());
        at = body["next"].as_str().unwrap().to_string();
    }
    all
}

#[tokio::test]
async fn contract_changes_are_events_of_the_change_feed() {
    let app = spawn_app().await;
    let signup = json!({"customer": {"customerNumber": "c1631704458", "salutation": "MR", "firstName": "Ray",
        "lastName": "Ankunding", "email": "ray@example.com", "language": "de", "customerCategory": "PERSON",
        "address": {"street": "Bergnaum Mountains", "streetNumber": "1", "postalCode": "97687",
            "postalPlace": "Schadenville", "countryCode": "DE"}}});
    assert_eq!(call(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(&signup.to_string())).await.0, 200);
    let start = app.get("/v1/customers?per_page=1").await.headers()["x-changes-position"].to_str().unwrap().to_string();
    assert_eq!(post(&app, "/orders", ORDER_123).await.0, 200);
    let created = changes(&app, ADMIN, &start, 3).await;
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(created.iter().all(|e| e["type"] == "org.stoney.contract.created"), "{created:?}");
    let s1 = created.iter().find(|e| e["data"]["changed"]["productID"] == "S1").unwrap();
    assert_eq!(s1["subject"], app.url(&format!("{CUSTOMER}/contracts/123-3")));
    assert_eq!(s1["data"]["reseller"], 4000001);
    assert_eq!(s1["data"]["changed"]["status"], "ORDERED");
    let at = created
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .max_by_key(|p| p.rsplit('-').next().unwrap().parse::<u64>().unwrap())
        .unwrap();

    assert_eq!(post(&app, "/contracts/CON123/activate", SEED_ACTIVATE).await.0, 200);
    let got = changes(&app, ADMIN, &at, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "org.stoney.contract.updated");
    assert_eq!(got[0]["data"]["id"], "123-3");
    assert_eq!(got[0]["data"]["changed"], json!({"status": "ACTIVE", "activationDate": "2022-02-15"}));
    // The customer's reseller sees them; another reseller does not.
    assert_eq!(changes(&app, RESELLER1, &start, 4).await.len(), 4);
    let res = app
        .req_as(RESELLER2, Method::GET, &format!("/v1/changes?since={start}&wait=0&resource=contracts"))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["changes"], json!([]));
}
