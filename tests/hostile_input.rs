//! Bad and hostile input: every status code of SPEC section 5 for it, the error body,
//! and no 500, no crash, no partial write.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

async fn error_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/json; charset=UTF-8", "status {status}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["status"], status, "{body}");
    assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["details"].is_array(), "{body}");
    (status, body)
}

fn fields(body: &Value) -> Vec<String> {
    body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for raw in ["{", "{\"isCompany\": tru}", "", "   ", "[1,", "{\"a\":1}}", "\u{0}"] {
        let res = app
            .req(Method::POST, "/v1/customers")
            .header("content-type", "application/json")
            .body(raw.to_string())
            .send()
            .await
            .unwrap();
        let (status, _) = error_of(res).await;
        assert_eq!(status, 400, "{raw:?}");
    }
    let deep = "[".repeat(5000) + &"]".repeat(5000);
    let res = app
        .req(Method::POST, "/v1/customers")
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 400);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=ISO-8859-1"),
    ] {
        let mut req = app.req(Method::POST, "/v1/customers").body(company("A").to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (status, _) = error_of(req.send().await.unwrap()).await;
        assert_eq!(status, 415, "{ct:?}");
    }
    let res = app
        .req(Method::PATCH, "/v1/customers/5000001")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 415);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let mut body = company("Big AG");
    body["billingAddress"]["postalAddress"] = json!("x".repeat(200_000));
    let (status, body) = error_of(app.post_customer(&body).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = spawn_app().await;
    assert_eq!(error_of(app.get("/v1/nope").await).await.0, 404);
    let res = app.req(Method::POST, "/v1/customers/5000001").json(&json!({})).send().await.unwrap();
    let allow = res.headers().get("allow").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert_eq!(error_of(res).await.0, 405);
    for m in ["GET", "PUT", "PATCH", "DELETE"] {
        assert!(allow.contains(m), "Allow: {allow}");
    }
    let res = app.req(Method::DELETE, "/v1/customers").send().await.unwrap();
    assert!(res.headers().contains_key("allow"));
    assert_eq!(error_of(res).await.0, 405);
}

#[tokio::test]
async fn ids_that_cannot_exist_are_404_never_500() {
    let app = spawn_app().await;
    for id in [
        "*",
        "0",
        "-1",
        "5000001)(uid=*",
        "%2A",
        "%00",
        "123456789012345678901234567890",
        "5000001%29%28uid%3D%2A",
        "1e3",
        "%E2%82%AC",
        "9999999",
        "4000001",
        "5000901",
    ] {
        for m in [Method::GET, Method::DELETE] {
            let res = app.req(m.clone(), &format!("/v1/customers/{id}")).send().await.unwrap();
            assert_eq!(error_of(res).await.0, 404, "{m} {id}");
        }
        let res = app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"isActive": true})).await;
        assert_eq!(error_of(res).await.0, 404, "PATCH {id}");
        let res = app.send_json(Method::PUT, &format!("/v1/customers/{id}"), &company("X")).await;
        assert_eq!(error_of(res).await.0, 404, "PUT {id}");
    }
}

#[tokio::test]
async fn every_invalid_field_is_reported_at_once() {
    let app = spawn_app().await;
    let body = json!({
        "id": 1,
        "isCompany": "yes",
        "isActive": null,
        "customerName": 42,
        "externalID": "x".repeat(257),
        "belongsToResellerID": "4000001",
        "hidden": "attribute",
        "billingAddress": {
            "gender": "x", "givenName": "", "surname": "a\u{7}b", "postalAddress": "a\n\nb",
            "countryCode": "ch", "postalCode": 3011, "localityName": null,
            "preferredLanguage": "german", "mail": "zoë@example.com", "telephoneNumber": "call me",
            "websiteURL": "javascript:alert(1)", "userPassword": "x"
        },
        "shippingAddress": "none"
    });
    let (status, err) = error_of(app.post_customer(&body).await).await;
    assert_eq!(status, 422);
    assert_eq!(err["error"]["code"], "validation_failed");
    let f = fields(&err);
    for want in [
        "id",
        "isCompany",
        "externalID",
        "belongsToResellerID",
        "hidden",
        "shippingAddress",
        "billingAddress.gender",
        "billingAddress.givenName",
        "billingAddress.surname",
        "billingAddress.postalAddress",
        "billingAddress.countryCode",
        "billingAddress.postalCode",
        "billingAddress.localityName",
        "billingAddress.preferredLanguage",
        "billingAddress.mail",
        "billingAddress.telephoneNumber",
        "billingAddress.websiteURL",
        "billingAddress.userPassword",
    ] {
        assert!(f.contains(&want.to_string()), "{want} not in {f:?}");
    }
}

#[tokio::test]
async fn required_fields_and_nulls_are_422() {
    let app = spawn_app().await;
    let (status, err) = error_of(app.post_customer(&json!({})).await).await;
    assert_eq!(status, 422);
    let f = fields(&err);
    for want in ["isCompany", "belongsToResellerID", "billingAddress"] {
        assert!(f.contains(&want.to_string()), "{want} not in {f:?}");
    }
    for body in [json!(null), json!([]), json!("customer"), json!(5)] {
        assert_eq!(error_of(app.post_customer(&body).await).await.0, 422, "{body}");
    }
    let mut us = company("US Inc.");
    us["billingAddress"]["countryCode"] = json!("US");
    let (_, err) = error_of(app.post_customer(&us).await).await;
    assert_eq!(fields(&err), vec!["billingAddress.stateOrProvinceName"]);
    let mut no_name = company("x");
    no_name.as_object_mut().unwrap().remove("customerName");
    assert_eq!(fields(&error_of(app.post_customer(&no_name).await).await.1), vec!["customerName"]);
    let mut unknown_reseller = company("Nowhere AG");
    unknown_reseller["belongsToResellerID"] = json!(4999999);
    assert_eq!(fields(&error_of(app.post_customer(&unknown_reseller).await).await.1), vec!["belongsToResellerID"]);
    // A customer id is not a reseller.
    unknown_reseller["belongsToResellerID"] = json!(5000001);
    assert_eq!(error_of(app.post_customer(&unknown_reseller).await).await.0, 422);
}

#[tokio::test]
async fn lengths_count_characters_not_bytes() {
    let app = spawn_app().await;
    let ok = company(&"ä".repeat(64));
    assert_eq!(app.post_customer(&ok).await.status(), 201);
    let too_long = company(&"ä".repeat(65));
    assert_eq!(error_of(app.post_customer(&too_long).await).await.0, 422);
    let huge = company(&"x".repeat(10_000));
    assert_eq!(error_of(app.post_customer(&huge).await).await.0, 422);
}

#[tokio::test]
async fn hostile_strings_round_trip_or_are_refused_cleanly() {
    let app = spawn_app().await;
    let tricky = [
        "*)(uid=*",
        "a,b=c+d;e<f>g\\\\h\"i#j",
        "\\\\00 \\\\2a",
        "#leading hash",
        "trailing space ",
        "Ünïcödé ✓ 中文 🚀",
        "$dollar$ and \\\\ back\\\\slash",
    ];
    for (i, t) in tricky.iter().enumerate() {
        let mut body = company(t);
        body["externalID"] = json!(format!("{t}-{i}"));
        body["billingAddress"]["postalAddress"] = json!(format!("{t}\nline 2 $ \\\\"));
        body["billingAddress"]["localityName"] = json!(t);
        let res = app.post_customer(&body).await;
        assert_eq!(res.status(), 201, "{t}: {}", res.text().await.unwrap());
        let id = res.json::<Value>().await.unwrap_or_default()["id"].as_u64();
        let Some(id) = id else { continue };
        let got: Value = app.get(&format!("/v1/customers/{id}")).await.json().await.unwrap();
        // Text is stored without the white space around it.
        assert_eq!(got["customerName"], t.trim());
        assert_eq!(got["externalID"], format!("{t}-{i}"));
        assert_eq!(got["billingAddress"]["postalAddress"], format!("{t}\nline 2 $ \\\\"));
        assert_eq!(got["billingAddress"]["localityName"], t.trim());
    }
    // Control characters are refused, not stored.
    for bad in ["a\u{0}b", "tab\there", "new\nline", "\u{1b}[31m"] {
        let res = app.post_customer(&company(bad)).await;
        assert_eq!(error_of(res).await.0, 422, "{bad:?}");
    }
    // Non-ASCII mail cannot be stored in an IA5 attribute.
    let mut body = company("Mail AG");
    body["billingAddress"]["mail"] = json!("jürg@exämple.ch");
    assert_eq!(error_of(app.post_customer(&body).await).await.0, 422);
}

#[tokio::test]
async fn wrong_types_in_patch_and_put_are_422_and_change_nothing() {
    let app = spawn_app().await;
    let id = app.create(&company("Typed AG")).await;
    let path = format!("/v1/customers/{id}");
    let before: Value = app.get(&path).await.json().await.unwrap();
    for patch in [
        json!({"isActive": "false"}),
        json!({"billingAddress": "Bern"}),
        json!({"billingAddress": {"countryCode": 7}}),
        json!({"billingAddress": {"gender": null}}),
        json!({"isCompany": null}),
        json!({"belongsToResellerID": -1}),
        json!({"id": 1}),
        json!({"location": "http://evil.example/"}),
        json!({"nope": 1}),
        json!([{"op": "replace", "path": "/isActive", "value": false}]),
        json!("string"),
    ] {
        let res = app.send_json(Method::PATCH, &path, &patch).await;
        assert_eq!(error_of(res).await.0, 422, "{patch}");
    }
    let res = app.send_json(Method::PUT, &path, &json!({"isCompany": true})).await;
    assert_eq!(error_of(res).await.0, 422);
    let after: Value = app.get(&path).await.json().await.unwrap();
    assert_eq!(before, after);
    // The read-only fields may be sent back with their current value.
    let res = app.send_json(Method::PUT, &path, &before).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_request_id_is_kept_only_when_short_and_plain() {
    let app = spawn_app().await;
    let id_of = |sent: &str| {
        let req = app.client.get(app.url("/health")).header("x-request-id", sent);
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            res.headers()["x-request-id"].to_str().unwrap().to_string()
        }
    };
    for ok in ["abc-123", "A.b_c:d-e", &"x".repeat(64)] {
        assert_eq!(id_of(ok).await, ok);
    }
    for bad in ["fake method=DELETE", "a\"b", &"x".repeat(65), "", "ä", "a/b", "a;b"] {
        let got = id_of(bad).await;
        assert_ne!(got, bad);
        assert!(!got.is_empty() && got.len() <= 64, "{got}");
        assert!(got.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)), "{got}");
    }
}

#[tokio::test]
async fn a_long_target_is_414_and_large_headers_431_with_the_error_body() {
    let app = spawn_app().await;
    let res = app.get(&format!("/v1/customers?q={}", "a".repeat(9000))).await;
    assert_eq!(error_of(res).await.0, 414);
    let res = app.req(Method::GET, "/v1/customers/5000001").header("x-large", "y".repeat(20_000)).send().await.unwrap();
    assert_eq!(error_of(res).await.0, 431);
    let mut req = app.req(Method::GET, "/health");
    for i in 0..150 {
        req = req.header(format!("x-h{i}"), "1");
    }
    assert_eq!(error_of(req.send().await.unwrap()).await.0, 431);
}
