//! What directory admins write by hand with LDAP tools reads back through REST, survives
//! every REST write, and never makes a request fail with 500.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn dn_of(app: &TestApp, reseller: u64, id: u64) -> String {
    format!("uid={id},ou=customers,uid={reseller},ou=reseller,{}", app.suffix())
}

fn modify(app: &TestApp, ldif: &str) {
    let out = app.ldapmodify(ldif);
    assert!(out.status.success(), "{}\n{ldif}", String::from_utf8_lossy(&out.stderr));
}

fn ldapadd(app: &TestApp, ldif: &str) {
    let s = &app.slapd;
    let mut cmd = std::process::Command::new("ldapadd");
    cmd.args(["-x", "-H", &s.url, "-D", &s.root_dn, "-w", &s.root_password]);
    let out = with_input(&mut cmd, ldif);
    assert!(out.status.success(), "{}\n{ldif}", String::from_utf8_lossy(&out.stderr));
}

async fn doc(app: &TestApp, id: u64) -> Value {
    let res = app.get(&format!("/v1/customers/{id}")).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn patch(app: &TestApp, id: u64, body: Value) -> reqwest::Response {
    app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &body).await
}

async fn total(app: &TestApp, query: &str) -> u64 {
    let res = app.get(&format!("/v1/customers?{query}")).await;
    assert_eq!(res.status(), 200, "{query}");
    res.headers()["x-total-count"].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn values_an_admin_added_survive_writes_and_are_found() {
    let app = spawn_app().await;
    let id = app.create(&company("Many Values AG")).await;
    let billing = format!("ou=address,{}", dn_of(&app, 4000001, id));
    modify(
        &app,
        &format!(
            "dn: {billing}\nchangetype: modify\nadd: mail\nmail: second.box@example.org\n-\nadd: telephoneNumber\ntelephoneNumber: +41 44 000 00 00\n"
        ),
    );
    // JSON shows the first value, every time.
    for _ in 0..5 {
        assert_eq!(doc(&app, id).await["billingAddress"]["mail"], "zoe.mueller@example.com");
    }
    // Filters and q match any value.
    assert_eq!(total(&app, &format!("id={id}&billingAddress.mail=second.box@example.org")).await, 1);
    assert_eq!(total(&app, &format!("id={id}&billingAddress.telephoneNumber=%2B41440000000")).await, 1);
    assert_eq!(total(&app, &format!("id={id}&q=second.box")).await, 1);
    // A write of another field keeps both; a write of the field replaces the value shown.
    assert_eq!(
        patch(&app, id, json!({"isActive": false, "billingAddress": {"localityName": "Thun"}})).await.status(),
        200
    );
    let out = app.ldapsearch(&billing, "(objectClass=*)", &["mail", "telephoneNumber"]);
    assert!(out.contains("mail: second.box@example.org") && out.contains("mail: zoe.mueller@example.com"), "{out}");
    assert!(out.contains("telephoneNumber: +41 44 000 00 00"), "{out}");
    assert_eq!(patch(&app, id, json!({"billingAddress": {"mail": "new@example.com"}})).await.status(), 200);
    let out = app.ldapsearch(&billing, "(objectClass=*)", &["mail"]);
    assert!(out.contains("mail: new@example.com") && out.contains("mail: second.box@example.org"), "{out}");
    assert!(!out.contains("zoe.mueller"), "{out}");
    assert_eq!(doc(&app, id).await["billingAddress"]["mail"], "new@example.com");
    // A PUT of what GET shows changes nothing.
    let got = doc(&app, id).await;
    let res = app.send_json(Method::PUT, &format!("/v1/customers/{id}"), &got).await;
    assert_eq!(res.status(), 200);
    let out = app.ldapsearch(&billing, "(objectClass=*)", &["mail", "telephoneNumber"]);
    assert!(out.contains("mail: second.box@example.org") && out.contains("+41 44 000 00 00"), "{out}");
    // Removing the field removes its values.
    assert_eq!(patch(&app, id, json!({"billingAddress": {"telephoneNumber": null}})).await.status(), 200);
    let out = app.ldapsearch(&billing, "(objectClass=*)", &["telephoneNumber"]);
    assert!(!out.contains("telephoneNumber"), "{out}");
}

#[tokio::test]
async fn language_tagged_values_are_kept_and_never_shown_for_the_plain_one() {
    let app = spawn_app().await;
    let id = app.create(&company("Plain Name AG")).await;
    let dn = dn_of(&app, 4000001, id);
    modify(&app, &format!("dn: {dn}\nchangetype: modify\nadd: o;lang-en\no;lang-en: English Name Ltd\n"));
    for _ in 0..8 {
        assert_eq!(doc(&app, id).await["customerName"], "Plain Name AG");
    }
    assert_eq!(total(&app, &format!("id={id}&customerName=Plain Name AG")).await, 1);
    assert_eq!(patch(&app, id, json!({"externalID": "TAGGED-1"})).await.status(), 200);
    assert_eq!(patch(&app, id, json!({"customerName": "Renamed AG"})).await.status(), 200);
    let out = app.ldapsearch(&dn, "(objectClass=*)", &["o"]);
    assert!(out.contains("o: Renamed AG") && out.contains("o;lang-en: English Name Ltd"), "{out}");
    assert_eq!(doc(&app, id).await["customerName"], "Renamed AG");
}

#[tokio::test]
async fn entries_without_the_auxiliary_classes_are_repaired_by_a_write() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let dn = format!("uid=5000950,ou=customers,uid=4000001,ou=reseller,{s}");
    ldapadd(
        &app,
        &format!(
            "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nuid: 5000950\nsstIsCompany: TRUE\no: Bare AG\n\n\
             dn: ou=address,{dn}\nobjectClass: top\nobjectClass: organizationalUnit\nou: address\n"
        ),
    );
    let got = doc(&app, 5000950).await;
    assert_eq!(got["customerName"], "Bare AG");
    assert_eq!(got["isActive"], true);
    // A write needs sstRelationship on the customer entry, sstAddress on the address.
    assert_eq!(patch(&app, 5000950, json!({"isActive": false})).await.status(), 200);
    assert_eq!(patch(&app, 5000950, json!({"externalID": "BARE-1"})).await.status(), 200);
    let mut full = got.clone();
    full["isActive"] = json!(false);
    full["externalID"] = json!("BARE-1");
    full["billingAddress"] = address();
    let res = app.send_json(Method::PUT, "/v1/customers/5000950", &full).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let out = app.ldapsearch(&dn, "(objectClass=*)", &["objectClass", "sstBelongsToResellerUID", "l"]);
    assert!(out.contains("objectClass: sstRelationship") && out.contains("objectClass: sstAddress"), "{out}");
    assert!(out.contains("sstBelongsToResellerUID: 4000001") && out.contains("l: Bern"), "{out}");
    assert_eq!(doc(&app, 5000950).await["billingAddress"], address());
}

#[tokio::test]
async fn a_private_customers_name_follows_the_billing_names() {
    let app = spawn_app().await;
    let id = app.create(&person()).await;
    assert_eq!(patch(&app, id, json!({"billingAddress": {"surname": "Xu"}})).await.status(), 200);
    assert_eq!(doc(&app, id).await["customerName"], "Zoë Xu");
    // An admin edits the billing surname by hand; a PUT of what GET shows is taken.
    let billing = format!("ou=address,{}", dn_of(&app, 4000001, id));
    modify(&app, &format!("dn: {billing}\nchangetype: modify\nreplace: sn\nsn: Hand\n"));
    let got = doc(&app, id).await;
    let res = app.send_json(Method::PUT, &format!("/v1/customers/{id}"), &got).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(doc(&app, id).await["customerName"], "Zoë Hand");
    assert_eq!(patch(&app, id, json!({"isActive": false})).await.status(), 200);
    // A name that matches neither is still refused.
    let res = patch(&app, id, json!({"customerName": "Someone Else"})).await;
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn a_customer_without_is_active_is_active() {
    let app = spawn_app().await;
    let id = app.create(&company("Implicit AG")).await;
    modify(&app, &format!("dn: {}\nchangetype: modify\ndelete: sstIsActive\n", dn_of(&app, 4000001, id)));
    assert_eq!(doc(&app, id).await["isActive"], true);
    assert_eq!(total(&app, &format!("id={id}&isActive=true")).await, 1);
    assert_eq!(total(&app, &format!("id={id}&isActive=false")).await, 0);
    let res = app.get(&format!("/v1/customers?id={id}")).await;
    let items: Value = res.json().await.unwrap();
    assert_eq!(items[0]["isActive"], true);
    // Sorted with the active ones.
    let res = app.get("/v1/customers?sort=-isActive,id&per_page=100").await;
    let items: Value = res.json().await.unwrap();
    let pos = items.as_array().unwrap().iter().position(|i| i["id"] == id);
    let first_inactive = items.as_array().unwrap().iter().position(|i| i["isActive"] == false);
    if let (Some(p), Some(f)) = (pos, first_inactive) {
        assert!(p < f, "{items}");
    }
    assert!(pos.is_some() || first_inactive.is_some(), "{items}");
}

#[tokio::test]
async fn a_uid_with_leading_zeros_is_not_served() {
    let app = spawn_app().await;
    let dn = format!("uid=0005001012,ou=customers,uid=4000001,ou=reseller,{}", app.suffix());
    ldapadd(
        &app,
        &format!(
            "dn: {dn}\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: 0005001012\n\
             sstIsCompany: TRUE\nsstBelongsToResellerUID: 4000001\no: Zeros AG\n"
        ),
    );
    assert_eq!(total(&app, "customerName=Zeros AG").await, 0);
    for method in [Method::GET, Method::DELETE] {
        let res = app.req(method.clone(), "/v1/customers/5001012").send().await.unwrap();
        assert_eq!(res.status(), 404, "{method}");
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("stoney_index_unserved_entries 1"), "{metrics}");
}

#[tokio::test]
async fn bad_values_written_by_hand_read_back_and_block_no_other_write() {
    let app = spawn_app().await;
    let id = app.create(&company("Clean AG")).await;
    let dn = dn_of(&app, 4000001, id);
    let long = "L".repeat(100);
    let digits = "9".repeat(60);
    modify(&app, &format!("dn: {dn}\nchangetype: modify\nreplace: o\no: {long}\n"));
    modify(
        &app,
        &format!(
            "dn: ou=address,{dn}\nchangetype: modify\nreplace: sstGender\nsstGender: x\n-\nreplace: postalCode\npostalCode: {digits}\n-\nreplace: mail\nmail: not-an-email\n"
        ),
    );
    let got = doc(&app, id).await;
    assert_eq!(got["customerName"], long.as_str());
    assert_eq!(got["billingAddress"]["gender"], "x");
    assert_eq!(got["billingAddress"]["postalCode"], digits.as_str());
    assert_eq!(got["billingAddress"]["mail"], "not-an-email");
    // Writes of other fields go through and leave the stored values as they are.
    for p in [
        json!({"externalID": "BAD-1"}),
        json!({"billingAddress": {"localityName": "Thun"}}),
        json!({"isActive": false}),
    ] {
        let res = patch(&app, id, p.clone()).await;
        assert_eq!(res.status(), 200, "{p}: {}", res.text().await.unwrap());
    }
    let out = app.ldapsearch(&dn, "(objectClass=*)", &["o", "sstGender", "postalCode", "mail", "l"]);
    assert!(out.contains(&format!("o: {long}")) && out.contains("sstGender: x") && out.contains("l: Thun"), "{out}");
    // Writing a bad value is refused, and so is a PUT that carries one.
    let res = patch(&app, id, json!({"billingAddress": {"gender": "y"}})).await;
    assert_eq!(res.status(), 422);
    let res = app.send_json(Method::PUT, &format!("/v1/customers/{id}"), &doc(&app, id).await).await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    let fields: Vec<&str> =
        body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    for f in ["customerName", "billingAddress.gender", "billingAddress.postalCode", "billingAddress.mail"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }
    // Correcting the values through REST works.
    let res = patch(
        &app,
        id,
        json!({"customerName": "Clean Again AG", "billingAddress": {"gender": "f", "postalCode": "3000", "mail": "ok@example.com"}}),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn text_is_stored_without_surrounding_white_space() {
    let app = spawn_app().await;
    let mut body = company("  Spaced AG ");
    body["billingAddress"]["localityName"] = json!(" Bern  ");
    let id = app.create(&body).await;
    let got = doc(&app, id).await;
    assert_eq!(got["customerName"], "Spaced AG");
    assert_eq!(got["billingAddress"]["localityName"], "Bern");
}

#[tokio::test]
async fn a_write_leaves_the_address_entries_it_does_not_change_alone() {
    let app = spawn_app().await;
    let mut body = company("Siblings AG");
    body["shippingAddress"] = address();
    let id = app.create(&body).await;
    let shipping = format!("ou=shipping,{}", dn_of(&app, 4000001, id));
    let before = app.ldapsearch(&shipping, "(objectClass=*)", &["entryCSN", "modifiersName"]);
    modify(&app, &format!("dn: {shipping}\nchangetype: modify\nreplace: l\nl: Basel\n"));
    let by_admin = app.ldapsearch(&shipping, "(objectClass=*)", &["entryCSN", "modifiersName"]);
    assert_ne!(before, by_admin);
    assert_eq!(patch(&app, id, json!({"billingAddress": {"localityName": "Thun"}})).await.status(), 200);
    assert_eq!(patch(&app, id, json!({"externalID": "SIB-1"})).await.status(), 200);
    let after = app.ldapsearch(&shipping, "(objectClass=*)", &["entryCSN", "modifiersName"]);
    assert_eq!(by_admin, after, "the shipping entry was not changed");
    assert!(after.contains("modifiersName: cn=Manager"), "{after}");
    assert_eq!(doc(&app, id).await["shippingAddress"]["localityName"], "Basel");
}

/// An admin who sets externalIDs with plain LDAP writes while the gateway writes
/// externalIDs in transactions: both keep working (the unique overlay's `serialize`
/// lock deadlocked slapd 2.5 between the two), and each value stays unique.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_plain_writes_of_external_ids_and_the_gateways_transactions_both_go_on() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let admin = {
        let (url, root, pw) = (app.slapd.url.clone(), app.slapd.root_dn.clone(), app.slapd.root_password.clone());
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            let mut n = 0u32;
            while std::time::Instant::now() < until {
                let ldif = format!(
                    "dn: uid=5000002,ou=customers,uid=4000001,ou=reseller,{s}\nchangetype: modify\nreplace: sstExternalID\nsstExternalID: ADMIN-{n}\n"
                );
                // A write that hangs is cut off after 10 s (and fails the test).
                let mut cmd = std::process::Command::new("timeout");
                cmd.args(["10", "ldapmodify", "-x", "-H", &url, "-D", &root, "-w", &pw]);
                let out = with_input(&mut cmd, &ldif);
                assert!(out.status.success(), "admin write {n}: {}", String::from_utf8_lossy(&out.stderr));
                n += 1;
            }
            n
        })
    };
    let mut created = 0;
    while std::time::Instant::now() < until {
        let mut body = company(&format!("Parallel {created} AG"));
        body["externalID"] = json!(format!("GW-{created}"));
        let res = tokio::time::timeout(std::time::Duration::from_secs(5), app.post_customer(&body)).await;
        let res = res.expect("the gateway's create answers");
        assert_eq!(res.status(), 201);
        created += 1;
    }
    let writes = tokio::time::timeout(std::time::Duration::from_secs(10), admin).await.expect("the admin's writes end");
    assert!(writes.unwrap() > 0 && created > 0);
    // The directory still answers and still refuses a taken value.
    let mut dup = company("Duplicate AG");
    dup["externalID"] = json!("GW-0");
    assert_eq!(app.post_customer(&dup).await.status(), 409);
}
