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

/// A company customer with its billing address, in LDIF (for ldapadd or slapadd).
fn customer_ldif(suffix: &str, reseller: u64, uid: &str, name: &str) -> String {
    let dn = format!("uid={uid},ou=customers,uid={reseller},{RESELLERS},{suffix}");
    format!(
        "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: {uid}\n\
         sstIsCompany: TRUE\nsstBelongsToResellerUID: {reseller}\no: {name}\n\n\
         dn: ou=address,{dn}\nobjectClass: top\nobjectClass: organizationalUnit\nobjectClass: sstAddress\n\
         ou: address\nsstGender: f\ngivenName: Ada\nsn: Admin\npostalAddress: Handweg 1\npostalCode: 3000\n\
         l: Bern\nc: CH\npreferredLanguage: de-CH\nmail: ada@example.com\n\n"
    )
}

fn ldapadd(app: &TestApp, ldif: &str) -> std::process::Output {
    let s = &app.slapd;
    let mut cmd = std::process::Command::new("ldapadd");
    cmd.args(["-x", "-H", &s.url, "-D", &s.root_dn, "-w", &s.root_password]);
    with_input(&mut cmd, ldif)
}

#[tokio::test]
async fn a_create_skips_an_id_an_admin_took_by_hand() {
    let app = spawn_app().await;
    // The counter's next id, taken by hand under another reseller.
    let out = ldapadd(&app, &customer_ldif(app.suffix(), 4000002, "5001001", "By Hand AG"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = app.create(&company("Through REST AG")).await;
    assert_eq!(id, 5001002, "the taken id is skipped");
    for (user, id, name) in [(RESELLER2, 5001001, "By Hand AG"), (RESELLER1, 5001002, "Through REST AG")] {
        let res = app.req_as(user, Method::GET, &format!("/v1/customers/{id}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{id}");
        assert_eq!(res.json::<Value>().await.unwrap()["customerName"], name);
        let res = app.get(&format!("/v1/customers/{id}")).await;
        assert_eq!(res.status(), 200, "the provider reads {id}");
    }
}

#[tokio::test]
async fn the_directory_refuses_a_second_entry_with_a_taken_uid() {
    let app = spawn_app().await;
    for (reseller, uid) in [(4000002, "5000001"), (4000001, "4000002"), (4000003, "5000901")] {
        let out = ldapadd(&app, &customer_ldif(app.suffix(), reseller, uid, "Copy AG"));
        assert!(!out.status.success(), "uid {uid} was accepted twice");
        assert_eq!(out.status.code(), Some(19), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(stored(&app, 5000001).matches("dn: ").count(), 1);
}

#[tokio::test]
async fn ids_shared_before_the_rule_are_reported_and_stay_reachable() {
    // slapadd does not run overlays: a directory that had duplicates before.
    let s = "dc=stoney-cloud,dc=org";
    let ldif = customer_ldif(s, 4000002, "5000001", "Twin AG") + &customer_ldif(s, 4000003, "0005000002", "Zero AG");
    let app = spawn_app_with(
        stoney_slapd::SlapdOptions { demo_data: true, extra_ldif: vec![ldif], ..Default::default() },
        |_| {},
    )
    .await;
    // Each reseller reaches its own customer with that id, in lists and as an element.
    for (user, reseller, name) in [(RESELLER1, 4000001, "Müller & Co. AG"), (RESELLER2, 4000002, "Twin AG")] {
        let res = app.req_as(user, Method::GET, "/v1/customers/5000001").send().await.unwrap();
        assert_eq!(res.status(), 200, "{}", user.0);
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["belongsToResellerID"], reseller);
        if reseller == 4000002 {
            assert_eq!(doc["customerName"], name);
        }
        let res = app.req_as(user, Method::GET, "/v1/customers?id=5000001").send().await.unwrap();
        assert_eq!(res.headers()["x-total-count"], "1", "{}", user.0);
        let res =
            app.req_as(user, Method::PATCH, "/v1/customers/5000001").json(&json!({"isActive": true})).send().await;
        assert_eq!(res.unwrap().status(), 200, "{} writes its own", user.0);
    }
    // The provider sees both in lists; an element request names the clash.
    let res = app.get("/v1/customers?id=5000001&sort=belongsToResellerID").await;
    assert_eq!(res.headers()["x-total-count"], "2");
    let items: Value = res.json().await.unwrap();
    assert_eq!(items[0]["belongsToResellerID"], 4000001);
    assert_eq!(items[1]["belongsToResellerID"], 4000002);
    let res = app.get("/v1/customers/5000001").await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "shared_id");
    assert!(body["error"]["message"].as_str().unwrap().contains("4000001, 4000002"), "{body}");
    let res = app.req(Method::DELETE, "/v1/customers/5000001").send().await.unwrap();
    assert_eq!(res.status(), 409);
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("stoney_index_shared_ids 1"), "{metrics}");
    // A uid with leading zeros: not listed, not reachable, counted.
    assert!(metrics.contains("stoney_index_unserved_entries 1"), "{metrics}");
    let res = app.get("/v1/customers?per_page=100&belongsToResellerID=4000003").await;
    let items: Value = res.json().await.unwrap();
    assert!(items.as_array().unwrap().iter().all(|i| i["customerName"] != "Zero AG"), "{items}");
    assert_eq!(app.get("/v1/customers/5000002").await.json::<Value>().await.unwrap()["belongsToResellerID"], 4000001);
}
