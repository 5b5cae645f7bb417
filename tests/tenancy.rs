//! Tenant safety against a real slapd: a customer is never visible to, or writable by, a
//! reseller it was not committed to, and ids stay unique whatever an admin wrote by hand.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const RESELLERS: &str = "ou=reseller";

fn customer_dn(app: &TestApp, reseller: u64, id: u64) -> String {
    format!("uid={id},ou=customers,uid={reseller},{RESELLERS},{}", app.suffix())
}

/// What the directory holds of a customer: the DNs it is found at and their
/// `sstBelongsToResellerUID` lines.
fn stored(app: &TestApp, id: u64) -> String {
    app.ldapsearch(
        &format!("{RESELLERS},{}", app.suffix()),
        &format!("(&(objectClass=sstCustomer)(uid={id}))"),
        &["sstBelongsToResellerUID"],
    )
}

#[tokio::test]
async fn a_failed_move_is_never_visible_to_the_target_reseller() {
    let app = Arc::new(spawn_app().await);
    let id = app.create(&company("Stays Put AG")).await;
    let mut other = company("Holds The Number AG");
    other["externalID"] = json!("TAKEN-1");
    app.create(&other).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let tries = Arc::new(AtomicUsize::new(0));
    let mut raiders = Vec::new();
    for k in 0..3 {
        let (app, stop, seen, tries) = (app.clone(), stop.clone(), seen.clone(), tries.clone());
        raiders.push(tokio::spawn(async move {
            let path = format!("/v1/customers/{id}");
            while !stop.load(Ordering::Relaxed) {
                let res = match k {
                    0 => app.req_as(RESELLER2, Method::GET, &path).send().await.unwrap(),
                    1 => app
                        .req_as(RESELLER2, Method::PATCH, &path)
                        .json(&json!({"customerName": "Taken Over AG"}))
                        .send()
                        .await
                        .unwrap(),
                    _ => app.req_as(RESELLER2, Method::DELETE, &path).send().await.unwrap(),
                };
                tries.fetch_add(1, Ordering::Relaxed);
                if res.status() != 404 {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for _ in 0..25 {
        let res = app
            .send_json(
                Method::PATCH,
                &format!("/v1/customers/{id}"),
                &json!({"belongsToResellerID": 4000002, "externalID": "taken-1"}),
            )
            .await;
        assert_eq!(res.status(), 409, "{}", res.text().await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for r in raiders {
        r.await.unwrap();
    }
    assert!(tries.load(Ordering::Relaxed) > 30, "the target reseller raced the moves");
    assert_eq!(seen.load(Ordering::Relaxed), 0, "the target reseller saw or touched the customer");
    let out = stored(&app, id);
    assert!(out.contains(&format!("dn: {}", customer_dn(&app, 4000001, id))), "{out}");
    assert!(out.contains("sstBelongsToResellerUID: 4000001") && !out.contains("4000002"), "{out}");
    let (got, _) = {
        let res = app.get(&format!("/v1/customers/{id}")).await;
        assert_eq!(res.status(), 200);
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        (res.json::<Value>().await.unwrap(), etag)
    };
    assert_eq!(got["customerName"], "Stays Put AG");
    assert_eq!(got["belongsToResellerID"], 4000001);
}

#[tokio::test]
async fn a_customer_whose_dn_and_reseller_attribute_disagree_belongs_to_no_reseller() {
    let app = spawn_app().await;
    // As left by a move that is under way, or by an admin's edit of the attribute.
    let dn = customer_dn(&app, 4000002, 5000021);
    let out = app.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: sstBelongsToResellerUID\nsstBelongsToResellerUID: 4000001\n"
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = "/v1/customers/5000021";
    for user in [RESELLER1, RESELLER2] {
        for method in [Method::GET, Method::DELETE] {
            let res = app.req_as(user, method.clone(), path).send().await.unwrap();
            assert_eq!(res.status(), 404, "{} {method}", user.0);
        }
        let res = app.req_as(user, Method::PATCH, path).json(&json!({"isActive": false})).send().await.unwrap();
        assert_eq!(res.status(), 404, "{} PATCH", user.0);
        let res = app.req_as(user, Method::GET, "/v1/customers?per_page=100&id=5000021").send().await.unwrap();
        assert_eq!(res.headers()["x-total-count"], "0", "{}", user.0);
    }
    // The provider still sees it, where the directory has it.
    let res = app.get(path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["belongsToResellerID"], 4000002);
    let res = app.get("/v1/customers?id=5000021").await;
    assert_eq!(res.headers()["x-total-count"], "1");
    // Putting the attribute right gives it back to its reseller.
    let out = app.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: sstBelongsToResellerUID\nsstBelongsToResellerUID: 4000002\n"
    ));
    assert!(out.status.success());
    let res = app.req_as(RESELLER2, Method::GET, path).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.req_as(RESELLER2, Method::GET, "/v1/customers?id=5000021").send().await.unwrap();
    assert_eq!(res.headers()["x-total-count"], "1");
}
