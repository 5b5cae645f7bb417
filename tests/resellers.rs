//! `/v1/resellers` against a real slapd: the same machinery as customers, with the
//! resellers' own entries, fields and rules.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn reseller(name: &str) -> Value {
    json!({"isCompany": true, "isActive": true, "resellerName": name, "billingAddress": address()})
}

async fn status_as(app: &TestApp, user: (&str, &str), method: Method, path: &str, body: Option<Value>) -> u16 {
    let mut req = app.req_as(user, method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn listed(app: &TestApp, user: (&str, &str), query: &str) -> (u64, Vec<u64>) {
    let res = app.req_as(user, Method::GET, &format!("/v1/resellers?{query}")).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    let total = res.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    let items: Value = res.json().await.unwrap();
    (total, items.as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect())
}

#[tokio::test]
async fn resellers_read_back_with_their_own_fields_and_links() {
    let app = spawn_app().await;
    let res = app.get("/v1/resellers/4000001").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("etag"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["id"], 4000001);
    assert_eq!(doc["location"], app.url("/v1/resellers/4000001"));
    assert_eq!(doc["resellerName"], "Alpine Hosting AG");
    assert_eq!(doc["isCompany"], true);
    assert_eq!(doc["billingAddress"]["localityName"], "Bern");
    assert_eq!(doc["customers"], app.url("/v1/customers?belongsToResellerID=4000001"));
    assert!(doc.get("belongsToResellerID").is_none() && doc.get("customerName").is_none(), "{doc}");
    // The link lists the reseller's customers.
    let res = app.client.get(doc["customers"].as_str().unwrap()).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await;
    let total: u64 = res.unwrap().headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    assert!(total > 0);
    // Lists: page, sort, filter and q from the index.
    let (total, ids) = listed(&app, ADMIN, "sort=-id").await;
    assert_eq!((total, ids), (3, vec![4000003, 4000002, 4000001]));
    let res = app.get("/v1/resellers?per_page=1&sort=resellerName").await;
    assert!(res.headers()["link"].to_str().unwrap().contains("rel=\"next\""));
    let items: Value = res.json().await.unwrap();
    assert_eq!(items[0]["resellerName"], "Alpine Hosting AG");
    assert_eq!(listed(&app, ADMIN, "q=alpine").await.1, [4000001]);
    assert_eq!(listed(&app, ADMIN, "billingAddress.localityName=Bern").await.1, [4000001]);
    let res = app.get("/v1/resellers?customerName=x").await;
    assert_eq!(res.status(), 422, "customers' fields are not resellers'");
}

#[tokio::test]
async fn each_role_reaches_what_it_may_of_the_resellers() {
    let app = spawn_app().await;
    // A reseller user: its own reseller only, and it may not change isActive.
    assert_eq!(listed(&app, RESELLER1, "").await, (1, vec![4000001]));
    assert_eq!(status_as(&app, RESELLER1, Method::GET, "/v1/resellers/4000001", None).await, 200);
    for method in [Method::GET, Method::DELETE] {
        assert_eq!(status_as(&app, RESELLER1, method, "/v1/resellers/4000002", None).await, 404);
    }
    let rename = json!({"resellerName": "Alpine Hosting & Co. AG"});
    assert_eq!(status_as(&app, RESELLER1, Method::PATCH, "/v1/resellers/4000002", Some(rename.clone())).await, 404);
    assert_eq!(status_as(&app, RESELLER1, Method::PATCH, "/v1/resellers/4000001", Some(rename)).await, 200);
    let deactivate = json!({"isActive": false});
    assert_eq!(status_as(&app, RESELLER1, Method::PATCH, "/v1/resellers/4000001", Some(deactivate)).await, 403);
    assert_eq!(status_as(&app, RESELLER1, Method::DELETE, "/v1/resellers/4000001", None).await, 403);
    assert_eq!(status_as(&app, RESELLER1, Method::POST, "/v1/resellers", Some(reseller("Mine AG"))).await, 403);
    // A customer user sees no reseller.
    assert_eq!(listed(&app, CUSTOMER, "").await, (0, vec![]));
    assert_eq!(status_as(&app, CUSTOMER, Method::GET, "/v1/resellers/4000001", None).await, 404);
    assert_eq!(status_as(&app, CUSTOMER, Method::POST, "/v1/resellers", Some(reseller("Mine AG"))).await, 403);
    // The provider changes what it likes.
    let (doc, _) = {
        let res = app.get("/v1/resellers/4000002").await;
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        (res.json::<Value>().await.unwrap(), etag)
    };
    let mut put = doc.clone();
    put["isActive"] = json!(false);
    put["externalID"] = json!("RES-2");
    let res = app.send_json(Method::PUT, "/v1/resellers/4000002", &put).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let got: Value = app.get("/v1/resellers/4000002").await.json().await.unwrap();
    assert_eq!((got["isActive"].clone(), got["externalID"].clone()), (json!(false), json!("RES-2")));
    assert_eq!(listed(&app, ADMIN, "isActive=false").await.1, [4000002]);
}

#[tokio::test]
async fn a_reseller_is_created_used_and_deleted_once_it_has_no_customers() {
    let app = spawn_app().await;
    let mut body = reseller("New Reseller AG");
    body["shippingAddress"] = address();
    let res = app.send_json(Method::POST, "/v1/resellers", &body).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_u64().unwrap();
    assert!(id > 5001000, "ids come from the counter: {id}");
    assert_eq!(created["location"], app.url(&format!("/v1/resellers/{id}")));
    let dn = format!("uid={id},ou=reseller,{}", app.suffix());
    let out = app.ldapsearch(&dn, "(objectClass=*)", &["objectClass", "sstBelongsToResellerUID", "o"]);
    assert!(
        out.contains("objectClass: sstReseller") && out.contains(&format!("sstBelongsToResellerUID: {id}")),
        "{out}"
    );
    assert_eq!(out.matches("dn: ").count(), 3, "the reseller, its billing and shipping address: {out}");
    let got: Value = app.get(&format!("/v1/resellers/{id}")).await.json().await.unwrap();
    assert_eq!(got["resellerName"], "New Reseller AG");
    assert_eq!(got["shippingAddress"], address());
    assert_eq!(listed(&app, ADMIN, &format!("id={id}")).await.0, 1);
    // A customer under it: the reseller cannot go while it has one.
    let mut c = company("Under New AG");
    c["belongsToResellerID"] = json!(id);
    let customer = app.create(&c).await;
    let res = app.req(Method::DELETE, &format!("/v1/resellers/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 409);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["error"]["code"], "conflict");
    assert_eq!(app.get(&format!("/v1/customers/{customer}")).await.status(), 200);
    assert_eq!(app.get(&format!("/v1/resellers/{id}")).await.status(), 200);
    // Reading the reseller does not take its customers for its children.
    let got: Value = app.get(&format!("/v1/resellers/{id}")).await.json().await.unwrap();
    assert_eq!(got["billingAddress"], address());
    assert_eq!(app.req(Method::DELETE, &format!("/v1/customers/{customer}")).send().await.unwrap().status(), 200);
    assert_eq!(app.req(Method::DELETE, &format!("/v1/resellers/{id}")).send().await.unwrap().status(), 200);
    assert_eq!(app.get(&format!("/v1/resellers/{id}")).await.status(), 404);
    assert_eq!(app.ldapsearch(&dn, "(objectClass=*)", &["dn"]).trim(), "");
    assert_eq!(listed(&app, ADMIN, &format!("id={id}")).await.0, 0);
}

#[tokio::test]
async fn an_admins_second_mail_on_a_reseller_survives_a_patch() {
    let app = spawn_app().await;
    let billing = format!("ou=address,uid=4000003,ou=reseller,{}", app.suffix());
    let out = app.ldapmodify(&format!("dn: {billing}\nchangetype: modify\nadd: mail\nmail: second@example.org\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let res = app.send_json(Method::PATCH, "/v1/resellers/4000003", &json!({"externalID": "R3"})).await;
    assert_eq!(res.status(), 200);
    let out = app.ldapsearch(&billing, "(objectClass=*)", &["mail"]);
    assert_eq!(out.matches("mail: ").count(), 2, "{out}");
    assert_eq!(listed(&app, ADMIN, "billingAddress.mail=second@example.org").await.1, [4000003]);
}

#[tokio::test]
async fn a_field_added_to_the_address_works_for_every_resource_that_has_one() {
    let app = spawn_app().await;
    for (path, mut body) in [("/v1/customers", company("Fax AG")), ("/v1/resellers", reseller("Fax Reseller AG"))] {
        body["billingAddress"]["faxNumber"] = json!("+41 31 123 45 68");
        let res = app.send_json(Method::POST, path, &body).await;
        assert_eq!(res.status(), 201, "{path}");
        let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
        let got: Value = app.get(&format!("{path}/{id}")).await.json().await.unwrap();
        assert_eq!(got["billingAddress"]["faxNumber"], "+41 31 123 45 68", "{path}");
        let res = app.get(&format!("{path}?id={id}&billingAddress.faxNumber=%2B41311234568")).await;
        assert_eq!(res.headers()["x-total-count"], "1", "{path}");
        let res = app
            .send_json(Method::PATCH, &format!("{path}/{id}"), &json!({"billingAddress": {"faxNumber": null}}))
            .await;
        assert_eq!(res.status(), 200);
        let got: Value = app.get(&format!("{path}/{id}")).await.json().await.unwrap();
        assert!(got["billingAddress"].get("faxNumber").is_none(), "{got}");
        let res = app
            .send_json(Method::PATCH, &format!("{path}/{id}"), &json!({"billingAddress": {"faxNumber": "fax me"}}))
            .await;
        assert_eq!(res.status(), 422);
    }
}
