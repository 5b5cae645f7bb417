//! The subscriptions facade (seed 000) against a real slapd: merchants sign customers up
//! by their own customer number, and what they write is the stoney customer.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use stoney_slapd::DEMO_SUBSCRIPTION_KEY as KEY;

/// The seed's sample request body, verbatim.
const SEED_BODY: &str = r#"{
  "customer": {
    "address": {
      "careOf": "",
      "countryCode": "DE",
      "postalCode": "97687-7791",
      "postalPlace": "Schadenville",
      "street": "Bergnaum Mountains",
      "streetNumber": "1",
      "streetNumberAdditional": "a"
    },
    "birthDate": "1984-11-11",
    "companyName": "",
    "customerCategory": "PERSON",
    "customerNumber": "c1631704458",
    "email": "Ray_Ankunding43@gmail.com",
    "firstName": "Ray",
    "identificationNumber": "700XXX651",
    "language": "de",
    "lastName": "Ankunding",
    "mobilePhone": "+37258774XXX",
    "phone": "871.790.7578 x4882",
    "salutation": "MR",
    "taxIdentificationNumber": "12345678L"
  },
  "paymentRegistration": {
    "id": "275122"
  }
}"#;

/// The seed's sample response of the GET, verbatim.
const SEED_CUSTOMER: &str = r#"{
  "customerNumber": "c1631704458",
  "salutation": "MR",
  "firstName": "Ray",
  "lastName": "Ankunding",
  "address": {
    "street": "Bergnaum Mountains",
    "postalCode": "97687-7791",
    "postalPlace": "Schadenville",
    "countryCode": "DE",
    "streetNumber": "1"
  },
  "taxIdentificationNumber": "12345678L",
  "identificationNumber": "700XXX651",
  "email": "Ray_Ankunding43@gmail.com",
  "companyName": "",
  "birthDate": "1984-11-11",
  "language": "DE",
  "customerCategory": "PERSON",
  "phone": "871.790.7578 x4882",
  "mobilePhone": "+37258774XXX"
}"#;

async fn send(app: &TestApp, key: &str, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path)).header("X-Subscription-Key", key);
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn fields(err: &Value) -> Vec<String> {
    err["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap().to_string()).collect()
}

/// Whether `actual` holds everything `expected` says.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|x| contains(x, v))),
        (a, e) => a == e,
    }
}

#[tokio::test]
async fn the_seeds_requests_work_as_written_and_read_back_through_stoney() {
    let app = spawn_app().await;
    let (status, summary) = send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(SEED_BODY)).await;
    assert_eq!(status, 200, "{summary}");
    let id: u64 = summary["customerNumber"].as_str().unwrap().parse().unwrap();
    assert!(id > 5001000);
    assert_eq!(summary["signUpId"], id);
    assert_eq!(summary["externalCustomerReference"], "c1631704458");
    assert_eq!(summary["contracts"], json!([]));
    // GET answers the seed's customer object.
    let (status, got) = send(&app, KEY, Method::GET, "/subscriptions/v1/customers/c1631704458", None).await;
    assert_eq!(status, 200);
    let want: Value = serde_json::from_str(SEED_CUSTOMER).unwrap();
    assert!(contains(&got, &want), "{got}\nlacks\n{want}");
    assert_eq!(got["address"]["streetNumberAdditional"], "a");
    // The same upsert again, and the PUT of the seed, answer the same.
    let (status, again) = send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(SEED_BODY)).await;
    assert_eq!((status, &again), (200, &summary));
    let (status, put) = send(&app, KEY, Method::PUT, "/subscriptions/v1/customers/c1631704458", Some(SEED_BODY)).await;
    assert_eq!((status, &put), (200, &summary));
    // The stoney customer, as portals and LDAP tools see it.
    let doc: Value = app.get(&format!("/v1/customers/{id}")).await.json().await.unwrap();
    assert_eq!(doc["belongsToResellerID"], 4000001);
    assert_eq!(doc["isCompany"], false);
    assert_eq!(doc["customerName"], "Ray Ankunding");
    assert_eq!(doc["merchantCustomerNumber"], "c1631704458");
    assert_eq!(doc["salutation"], "MR");
    assert_eq!(doc["paymentRegistrationID"], "275122");
    let b = &doc["billingAddress"];
    assert_eq!(b["gender"], "m");
    assert_eq!(b["postalAddress"], "Bergnaum Mountains 1a");
    assert_eq!((b["street"].clone(), b["streetNumber"].clone()), (json!("Bergnaum Mountains"), json!("1")));
    assert_eq!(b["localityName"], "Schadenville");
    assert_eq!(b["preferredLanguage"], "de");
    assert!(b.get("careOf").is_none());
    let ldif = app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), &format!("(uid={id})"), &["*"]);
    assert!(ldif.contains("objectClass: sgwSubscriptionCustomer"), "{ldif}");
    assert!(ldif.contains("sgwCustomerNumberKey: 4000001/c1631704458"), "{ldif}");
    let ldif = app.ldapsearch(
        &format!("ou=address,uid={id},ou=customers,uid=4000001,ou=reseller,{}", app.suffix()),
        "(objectClass=*)",
        &["*"],
    );
    assert!(
        ldif.contains("objectClass: sgwSubscriptionAddress") && ldif.contains("sgwStreet: Bergnaum Mountains"),
        "{ldif}"
    );

    // An update through the facade changes only what the facade shows.
    let patch = json!({"externalID": "CRM-RAY", "billingAddress": {"websiteURL": "https://ray.example.com"}});
    assert_eq!(app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &patch).await.status(), 200);
    let mut body: Value = serde_json::from_str(SEED_BODY).unwrap();
    body["customer"]["lastName"] = json!("Ankunding-Kuhn");
    body["customer"]["address"]["careOf"] = json!("Anna Kuhn");
    body["customer"].as_object_mut().unwrap().remove("mobilePhone");
    let (status, _) = send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(&body.to_string())).await;
    assert_eq!(status, 200);
    let doc: Value = app.get(&format!("/v1/customers/{id}")).await.json().await.unwrap();
    assert_eq!(doc["customerName"], "Ray Ankunding-Kuhn");
    assert_eq!(doc["billingAddress"]["postalAddress"], "c/o Anna Kuhn\nBergnaum Mountains 1a");
    assert!(doc["billingAddress"].get("mobileTelephoneNumber").is_none(), "left out: removed");
    assert_eq!(doc["externalID"], "CRM-RAY", "what the facade does not show stays");
    assert_eq!(doc["billingAddress"]["websiteURL"], "https://ray.example.com");

    // A stoney change of the postal address: the facade shows it, without stale parts.
    let patch = json!({"billingAddress": {"postalAddress": "Hauptgasse 7"}});
    assert_eq!(app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &patch).await.status(), 200);
    let (_, got) = send(&app, KEY, Method::GET, "/subscriptions/v1/customers/c1631704458", None).await;
    assert_eq!(got["address"]["street"], "Hauptgasse 7", "{got}");
    assert!(got["address"].get("streetNumber").is_none() && got["address"].get("careOf").is_none(), "{got}");
}

#[tokio::test]
async fn put_of_a_missing_number_is_404_and_bad_input_names_the_facades_fields() {
    let app = spawn_app().await;
    let (status, err) = send(&app, KEY, Method::PUT, "/subscriptions/v1/customers/nobody-1", Some(SEED_BODY)).await;
    assert_eq!(status, 422, "the body's number is not the path's: {err}");
    let body = SEED_BODY.replace("c1631704458", "nobody-1");
    let (status, err) = send(&app, KEY, Method::PUT, "/subscriptions/v1/customers/nobody-1", Some(&body)).await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")), "{err}");
    assert_eq!(send(&app, KEY, Method::GET, "/subscriptions/v1/customers/nobody-1", None).await.0, 404);
    assert_eq!(send(&app, KEY, Method::GET, "/subscriptions/v1/customers/a%2Fb", None).await.0, 404);

    let mut bad: Value = serde_json::from_str(SEED_BODY).unwrap();
    bad["customer"]["email"] = json!("not-a-mail");
    bad["customer"]["address"]["postalPlace"] = json!("x".repeat(41));
    bad["customer"]["customerCategory"] = json!("ROBOT");
    bad["customer"]["birthDate"] = json!("1984-13-45");
    bad["customer"]["nickname"] = json!("Ray");
    bad["coupon"] = json!("FREE");
    let (status, err) = send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(&bad.to_string())).await;
    assert_eq!(status, 422, "{err}");
    let named = fields(&err);
    for f in ["customer.address.postalPlace", "customer.customerCategory", "customer.nickname", "coupon"] {
        assert!(named.contains(&f.to_string()), "{f} in {named:?}");
    }
    // What the stoney mapping refuses is named as the facade names it.
    let mut bad: Value = serde_json::from_str(SEED_BODY).unwrap();
    bad["customer"]["email"] = json!("not-a-mail");
    bad["customer"]["birthDate"] = json!("1984-13-45");
    bad["customer"].as_object_mut().unwrap().remove("lastName");
    let (status, err) = send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(&bad.to_string())).await;
    assert_eq!(status, 422, "{err}");
    let named = fields(&err);
    for f in ["customer.email", "customer.birthDate", "customer.lastName"] {
        assert!(named.contains(&f.to_string()), "{f} in {named:?}");
    }
    assert_eq!(send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some("{\"customer\": 5}")).await.0, 422);
    assert_eq!(send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some("{")).await.0, 400);
    // Nothing was created by any of these.
    let ldif = app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), "(sgwCustomerNumber=*)", &["1.1"]);
    assert!(ldif.trim().is_empty(), "{ldif}");
    // No key, a wrong key, or a Basic login: 401.
    let res = app.client.get(app.url("/subscriptions/v1/customers/c1")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(send(&app, "sk_wrong", Method::GET, "/subscriptions/v1/customers/c1", None).await.0, 401);
    let res = app.req(Method::GET, "/subscriptions/v1/customers/c1").send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn ten_concurrent_upserts_of_a_new_number_make_one_customer() {
    let app = spawn_app().await;
    let body = SEED_BODY.replace("c1631704458", "race-1");
    let all = futures::future::join_all(
        (0..10).map(|_| send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(&body))),
    )
    .await;
    let ids: Vec<Value> = all
        .iter()
        .map(|(s, v)| {
            assert_eq!(*s, 200, "{v}");
            v["signUpId"].clone()
        })
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let ldif = app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), "(sgwCustomerNumber=race-1)", &["1.1"]);
    assert_eq!(ldif.matches("dn: ").count(), 1, "{ldif}");
}

#[tokio::test]
async fn one_number_in_two_resellers_is_two_customers_each_seen_by_its_merchant_only() {
    let app = spawn_app().await;
    let (other, _) = app.state.keys.issue(4000002, "primary").await.unwrap();
    let (_, one) = send(&app, KEY, Method::POST, "/subscriptions/v1/customers", Some(SEED_BODY)).await;
    let theirs = SEED_BODY.replace("\"Ray\"", "\"Rita\"");
    let (status, two) = send(&app, &other, Method::POST, "/subscriptions/v1/customers", Some(&theirs)).await;
    assert_eq!(status, 200, "{two}");
    assert_ne!(one["signUpId"], two["signUpId"]);
    let (_, mine) = send(&app, KEY, Method::GET, "/subscriptions/v1/customers/c1631704458", None).await;
    let (_, their) = send(&app, &other, Method::GET, "/subscriptions/v1/customers/c1631704458", None).await;
    assert_eq!((mine["firstName"].as_str(), their["firstName"].as_str()), (Some("Ray"), Some("Rita")));
    let doc: Value = app.get(&format!("/v1/customers/{}", two["signUpId"])).await.json().await.unwrap();
    assert_eq!(doc["belongsToResellerID"], 4000002);
    // A stoney customer given a number reads through the facade; its street is its
    // postal address.
    let mut c = company("Stoney Made AG");
    c["merchantCustomerNumber"] = json!("stoney-1");
    c["belongsToResellerID"] = json!(4000002);
    let id = app.create(&c).await;
    let (status, got) = send(&app, &other, Method::GET, "/subscriptions/v1/customers/stoney-1", None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["customerCategory"], "COMPANY");
    assert_eq!(got["companyName"], "Stoney Made AG");
    assert_eq!(got["address"]["street"], "Hauptgasse 1");
    assert_eq!(send(&app, KEY, Method::GET, "/subscriptions/v1/customers/stoney-1", None).await.0, 404);
    // The number is set once.
    let res = app
        .send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"merchantCustomerNumber": "other-1"}))
        .await;
    assert_eq!(res.status(), 422);
    let res =
        app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"merchantCustomerNumber": null})).await;
    assert_eq!(res.status(), 422);
    let plain = app.create(&company("Numbered Later AG")).await;
    let res = app
        .send_json(Method::PATCH, &format!("/v1/customers/{plain}"), &json!({"merchantCustomerNumber": "later-1"}))
        .await;
    assert_eq!(res.status(), 200, "a customer without a number gets one");
    // Another stoney customer of reseller 2 cannot take the number.
    let mut dup = company("Copy AG");
    dup["merchantCustomerNumber"] = json!("stoney-1");
    dup["belongsToResellerID"] = json!(4000002);
    assert_eq!(app.post_customer(&dup).await.status(), 409);
    let _ = id;
}

#[tokio::test]
async fn both_keys_of_a_reseller_work_and_a_revoked_one_stops() {
    let app = spawn_app().await;
    let res =
        app.send_json(Method::POST, "/v1/resellers/4000001/subscription-keys", &json!({"name": "secondary"})).await;
    assert_eq!(res.status(), 201);
    let second = res.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_string();
    for key in [KEY, second.as_str()] {
        let (status, _) = send(&app, key, Method::POST, "/subscriptions/v1/customers", Some(SEED_BODY)).await;
        assert_eq!(status, 200);
    }
    // Retries carry a request id, which is echoed.
    let res = app
        .client
        .get(app.url("/subscriptions/v1/customers/c1631704458"))
        .header("X-Subscription-Key", &second)
        .header("X-Request-ID", "shop-42.retry-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "shop-42.retry-1");
    // Rotation: the old key is revoked, the new one goes on.
    let res = app.req(Method::DELETE, "/v1/resellers/4000001/subscription-keys/primary").send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(send(&app, KEY, Method::GET, "/subscriptions/v1/customers/c1631704458", None).await.0, 401);
    assert_eq!(send(&app, &second, Method::GET, "/subscriptions/v1/customers/c1631704458", None).await.0, 200);
}
