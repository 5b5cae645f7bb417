//! The customer element resource against a real slapd: round trips, every status code of
//! SPEC section 5, atomic writes, concurrency, and hostile input.

mod common;

use std::collections::HashSet;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use stoney_slapd::SlapdOptions;

async fn get_json(app: &TestApp, id: u64) -> (Value, String) {
    let res = app.get(&format!("/v1/customers/{id}")).await;
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    (res.json().await.unwrap(), etag)
}

fn without_links(mut v: Value) -> Value {
    for k in ["id", "location", "employees", "users"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v
}

#[tokio::test]
async fn post_returns_201_with_location_and_get_returns_what_was_sent() {
    let app = spawn_app().await;
    let mut body = company("Gödel & Söhne AG");
    body["externalID"] = json!("ERP-1");
    body["billingAddress"]["postalAddress"] = json!("c/o Kasse $1\\2\nHauptgasse 1");
    body["billingAddress"]["websiteURL"] = json!("https://www.example.com/");
    body["billingAddress"]["organizationName"] = json!("Gödel & Söhne AG");
    let mut ship = address();
    ship["countryCode"] = json!("US");
    ship["stateOrProvinceName"] = json!("NY");
    ship["localityName"] = json!("New York");
    ship["postalCode"] = json!("10001");
    body["shippingAddress"] = ship;
    let res = app.post_customer(&body).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "application/json; charset=UTF-8");
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let created: Value = res.json().await.unwrap();
    let id = created["id"].as_u64().unwrap();
    assert!(id > 5001000, "ids come from the counter: {id}");
    assert_eq!(created["location"], location);
    assert_eq!(location, app.url(&format!("/v1/customers/{id}")));

    let (got, etag) = get_json(&app, id).await;
    assert!(etag.starts_with('"'));
    assert_eq!(got["id"], id);
    assert_eq!(got["location"], location);
    assert_eq!(got["employees"], format!("{location}/employees"));
    assert_eq!(without_links(got), body);
}

#[tokio::test]
async fn a_private_customer_reads_back_with_the_billing_names() {
    let app = spawn_app().await;
    let id = app.create(&person()).await;
    let (got, _) = get_json(&app, id).await;
    assert_eq!(got["customerName"], "Zoë Müller");
    assert_eq!(got["isCompany"], false);
    let entry =
        app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), &format!("(uid={id})"), &["givenName", "sn", "o"]);
    assert!(entry.contains("givenName:: ") || entry.contains("givenName: "), "{entry}");
    assert!(!entry.contains("\no:"), "no o on a private customer: {entry}");
}

#[tokio::test]
async fn the_entries_are_schema_valid_and_where_the_spec_puts_them() {
    let app = spawn_app().await;
    let id = app.create(&company("Layout AG")).await;
    let s = app.suffix();
    let dn = format!("uid={id},ou=customers,uid=4000001,ou=reseller,{s}");
    let out =
        app.ldapsearch(&dn, "(objectClass=*)", &["objectClass", "sstBelongsToResellerUID", "sstIsActive", "c", "ou"]);
    assert!(out.contains(&format!("dn: {dn}")));
    assert!(out.contains(&format!("dn: ou=address,{dn}")));
    assert!(!out.contains("ou=shipping"));
    assert!(out.contains("objectClass: sstCustomer") && out.contains("objectClass: sstRelationship"));
    assert!(out.contains("objectClass: sstAddress"));
    assert!(out.contains("sstBelongsToResellerUID: 4000001"));
    assert!(out.contains("sstIsActive: TRUE"));
    assert!(out.contains("c: CH"));
}

#[tokio::test]
async fn put_replaces_the_whole_record_and_removes_missing_optionals() {
    let app = spawn_app().await;
    let mut body = company("Replace AG");
    body["externalID"] = json!("R-1");
    body["shippingAddress"] = address();
    let id = app.create(&body).await;
    let (_, etag0) = get_json(&app, id).await;

    let mut new = company("Replace AG (renamed)");
    new["billingAddress"]["localityName"] = json!("Thun");
    new["billingAddress"].as_object_mut().unwrap().remove("telephoneNumber");
    let res = app.send_json(Method::PUT, &format!("/v1/customers/{id}"), &new).await;
    assert_eq!(res.status(), 200);
    let etag1 = res.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(etag0, etag1);
    assert_eq!(res.text().await.unwrap(), "");
    let (got, etag2) = get_json(&app, id).await;
    assert_eq!(etag1, etag2, "PUT returns the ETag a GET then shows");
    assert_eq!(without_links(got), new);
    let shipping = app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), "(ou=shipping)", &["dn"]);
    assert!(!shipping.contains(&format!("uid={id},")), "shipping entry removed");
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_and_null_removes() {
    let app = spawn_app().await;
    let mut body = company("Patch AG");
    body["externalID"] = json!("P-1");
    body["shippingAddress"] = address();
    let id = app.create(&body).await;
    let path = format!("/v1/customers/{id}");

    let res = app
        .send_json(
            Method::PATCH,
            &path,
            &json!({"externalID": null, "billingAddress": {"localityName": "Biel/Bienne"}, "isActive": false}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (got, _) = get_json(&app, id).await;
    let mut want = body.clone();
    want.as_object_mut().unwrap().remove("externalID");
    want["billingAddress"]["localityName"] = json!("Biel/Bienne");
    want["isActive"] = json!(false);
    assert_eq!(without_links(got), want);

    let res = app.send_json(Method::PATCH, &path, &json!({"shippingAddress": null})).await;
    assert_eq!(res.status(), 200);
    let (got, _) = get_json(&app, id).await;
    assert!(got.get("shippingAddress").is_none());

    // Adding a shipping address back through PATCH creates the entry.
    let res = app.send_json(Method::PATCH, &path, &json!({"shippingAddress": address()})).await;
    assert_eq!(res.status(), 200);
    let (got, _) = get_json(&app, id).await;
    assert_eq!(got["shippingAddress"], address());

    // Switching to a private customer drops o and takes the billing names.
    let res = app.send_json(Method::PATCH, &path, &json!({"isCompany": false, "customerName": null})).await;
    assert_eq!(res.status(), 200);
    let (got, _) = get_json(&app, id).await;
    assert_eq!(got["customerName"], "Zoë Müller");
}

#[tokio::test]
async fn delete_removes_the_customer_and_everything_under_it() {
    let app = spawn_app().await;
    let mut body = company("Delete AG");
    body["shippingAddress"] = address();
    let id = app.create(&body).await;
    let dn = format!("uid={id},ou=customers,uid=4000001,ou=reseller,{}", app.suffix());
    // An admin adds an entry the mapping does not know under the customer.
    let out =
        app.ldapmodify(&format!("dn: ou=notes,{dn}\nchangetype: add\nobjectClass: organizationalUnit\nou: notes\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let res = app.req(Method::DELETE, &format!("/v1/customers/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "");
    assert_eq!(app.get(&format!("/v1/customers/{id}")).await.status(), 404);
    assert_eq!(
        app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), &format!("(|(uid={id})(ou=notes))"), &["dn"]).trim(),
        ""
    );
    let res = app.req(Method::DELETE, &format!("/v1/customers/{id}")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let trash = app.ldapsearch(&format!("ou=trash,ou=administration,{}", app.suffix()), "(objectClass=*)", &["dn"]);
    assert_eq!(trash.lines().filter(|l| l.starts_with("dn: ")).count(), 1, "trash purged: {trash}");
}

#[tokio::test]
async fn leftovers_in_the_trash_are_swept_at_start() {
    let app = spawn_app().await;
    let t = format!("ou=trash,ou=administration,{}", app.suffix());
    let out = app.ldapmodify(&format!("dn: ou=old,{t}\nchangetype: add\nobjectClass: organizationalUnit\nou: old\n\ndn: ou=kid,ou=old,{t}\nchangetype: add\nobjectClass: organizationalUnit\nou: kid\n"));
    assert!(out.status.success());
    app.state.service(&stoney_gateway::mapping::resources::CUSTOMERS).sweep_trash().await.unwrap();
    let left = app.ldapsearch(&t, "(objectClass=*)", &["dn"]);
    assert_eq!(left.lines().filter(|l| l.starts_with("dn: ")).count(), 1, "{left}");
}

/// A create whose answer was lost can leave part of its entries (a peer handed the
/// customer entry of a transaction its server never committed): what is there under the
/// id is looked at, and a customer without its billing entry is removed; a whole one,
/// or nothing, is left as it is.
#[tokio::test]
async fn what_an_unanswered_create_left_in_part_is_removed_and_a_whole_one_kept() {
    use stoney_gateway::service::resources::Settled;
    let app = spawn_app().await;
    let customers = app.state.service(&stoney_gateway::mapping::resources::CUSTOMERS);
    let dn = |uid: u64| format!("uid={uid},ou=customers,uid=4000002,ou=reseller,{}", app.suffix());
    let root = |uid: u64| {
        format!(
            "dn: {}\nchangetype: add\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\n\
             uid: {uid}\nsstIsCompany: TRUE\nsstIsActive: TRUE\nsstBelongsToResellerUID: 4000002\no: Halb AG\n\n",
            dn(uid)
        )
    };
    let billing = |uid: u64| {
        format!(
            "dn: ou=address,{}\nchangetype: add\nobjectClass: top\nobjectClass: organizationalUnit\n\
             objectClass: sstAddress\nou: address\nsstGender: f\ngivenName: Ada\nsn: Admin\n\
             postalAddress: Handweg 1\npostalCode: 3000\nl: Bern\nc: CH\npreferredLanguage: de-CH\nmail: ada@example.com\n\n",
            dn(uid)
        )
    };
    let entries = |uid: u64| vec![dn(uid), format!("ou=address,{}", dn(uid))];
    // Two looks: in part at both is what is removed.
    let now = [std::time::Duration::ZERO, std::time::Duration::from_millis(20)];
    let held = |uid: u64| {
        app.ldapsearch(&dn(uid), "(objectClass=*)", &["1.1"]).lines().filter(|l| l.starts_with("dn: ")).count()
    };

    // Only the customer entry: removed, with nothing left in the trash.
    assert!(app.ldapmodify(&root(5_177_001)).status.success());
    assert_eq!(customers.settle_unanswered(&entries(5_177_001), &now).await, Settled::Removed);
    assert_eq!(held(5_177_001), 0);
    let trash = app.ldapsearch(&format!("ou=trash,ou=administration,{}", app.suffix()), "(objectClass=*)", &["1.1"]);
    assert_eq!(trash.lines().filter(|l| l.starts_with("dn: ")).count(), 1, "trash purged: {trash}");
    // Both entries: the create happened; kept.
    assert!(app.ldapmodify(&format!("{}{}", root(5_177_002), billing(5_177_002))).status.success());
    assert_eq!(customers.settle_unanswered(&entries(5_177_002), &now).await, Settled::Whole);
    assert_eq!(held(5_177_002), 2);
    // Nothing at any look.
    let twice = [std::time::Duration::ZERO, std::time::Duration::from_millis(50)];
    assert_eq!(customers.settle_unanswered(&entries(5_177_003), &twice).await, Settled::Nothing);
    // In part at the last look only: it may still be on its way; left.
    assert!(app.ldapmodify(&root(5_177_005)).status.success());
    assert_eq!(customers.settle_unanswered(&entries(5_177_005), &[std::time::Duration::ZERO]).await, Settled::InPart);
    assert_eq!(held(5_177_005), 1);
    // Nothing at the first look, in part at the next two (replication brought it late).
    let late = {
        let ldif = root(5_177_004);
        let (url, root_dn, pw) = (app.slapd.url.clone(), app.slapd.root_dn.clone(), app.slapd.root_password.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tokio::task::spawn_blocking(move || {
                let mut cmd = std::process::Command::new("ldapmodify");
                cmd.args(["-x", "-H", &url, "-D", &root_dn, "-w", &pw]);
                with_input(&mut cmd, &ldif).status.success()
            })
            .await
            .unwrap()
        })
    };
    let looks = [std::time::Duration::ZERO, std::time::Duration::from_secs(2), std::time::Duration::from_millis(20)];
    assert_eq!(customers.settle_unanswered(&entries(5_177_004), &looks).await, Settled::Removed);
    assert!(late.await.unwrap());
    assert_eq!(held(5_177_004), 0);
}

/// A delete cut short by a fault leaves its subtree in the trash; the gateway sweeps it
/// periodically, not only when it starts.
#[tokio::test]
async fn leftovers_in_the_trash_disappear_without_a_restart() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.ldap.trash_sweep_secs = 1;
    })
    .await;
    let t = format!("ou=trash,ou=administration,{}", app.suffix());
    // The sweep at start made the trash; a leftover comes after it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.ldapsearch(&t, "(objectClass=*)", &["dn"]).contains("dn: ") {
        assert!(std::time::Instant::now() < deadline, "the sweep at start made the trash");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = app.ldapmodify(&format!("dn: ou=cut,{t}\nchangetype: add\nobjectClass: organizationalUnit\nou: cut\n\ndn: ou=kid,ou=cut,{t}\nchangetype: add\nobjectClass: organizationalUnit\nou: kid\n"));
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = app.ldapsearch(&t, "(objectClass=*)", &["dn"]);
        if left.lines().filter(|l| l.starts_with("dn: ")).count() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the leftover is swept: {left}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn changing_the_reseller_moves_the_customer_subtree() {
    let app = spawn_app().await;
    let mut body = company("Move AG");
    body["shippingAddress"] = address();
    let id = app.create(&body).await;
    let res =
        app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"belongsToResellerID": 4000002})).await;
    assert_eq!(res.status(), 200);
    let (got, _) = get_json(&app, id).await;
    assert_eq!(got["belongsToResellerID"], 4000002);
    assert_eq!(got["shippingAddress"], address());
    let s = app.suffix();
    let moved = app.ldapsearch(
        &format!("uid={id},ou=customers,uid=4000002,ou=reseller,{s}"),
        "(objectClass=*)",
        &["sstBelongsToResellerUID"],
    );
    assert!(moved.contains("sstBelongsToResellerUID: 4000002"), "{moved}");
    assert_eq!(moved.lines().filter(|l| l.starts_with("dn: ")).count(), 3, "{moved}");
    let old = app.ldapsearch(&format!("ou=customers,uid=4000001,ou=reseller,{s}"), &format!("(uid={id})"), &["dn"]);
    assert_eq!(old.trim(), "");
    // Moving to a reseller that does not exist is a validation error.
    let res =
        app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"belongsToResellerID": 4999999})).await;
    assert_eq!(res.status(), 422);
}

#[tokio::test]
async fn a_stale_etag_gets_412_and_changes_nothing() {
    let app = spawn_app().await;
    let id = app.create(&company("Etag AG")).await;
    let path = format!("/v1/customers/{id}");
    let (_, etag) = get_json(&app, id).await;
    let res = app
        .req(Method::PATCH, &path)
        .header("If-Match", &etag)
        .json(&json!({"externalID": "E-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The old ETag is stale now for PATCH, PUT and DELETE.
    let res = app
        .req(Method::PATCH, &path)
        .header("If-Match", &etag)
        .json(&json!({"externalID": "E-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "precondition_failed");
    let res = app.req(Method::PUT, &path).header("If-Match", &etag).json(&company("X")).send().await.unwrap();
    assert_eq!(res.status(), 412);
    let res = app.req(Method::DELETE, &path).header("If-Match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 412);
    let (got, now) = get_json(&app, id).await;
    assert_eq!(got["externalID"], "E-1");
    // An admin's change to the billing entry alone also makes the ETag stale.
    let dn = format!("ou=address,uid={id},ou=customers,uid=4000001,ou=reseller,{}", app.suffix());
    let out = app.ldapmodify(&format!("dn: {dn}\nchangetype: modify\nreplace: l\nl: Thun\n"));
    assert!(out.status.success());
    let res = app.req(Method::DELETE, &path).header("If-Match", &now).send().await.unwrap();
    assert_eq!(res.status(), 412);
    let (_, fresh) = get_json(&app, id).await;
    let res = app.req(Method::DELETE, &path).header("If-Match", &fresh).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn of_two_writers_with_the_same_etag_exactly_one_wins() {
    let app = spawn_app().await;
    for round in 0..5 {
        let id = app.create(&company(&format!("Race {round} AG"))).await;
        let path = format!("/v1/customers/{id}");
        let (_, etag) = get_json(&app, id).await;
        let mut tasks = Vec::new();
        for i in 0..6 {
            let req = app
                .req(Method::PATCH, &path)
                .header("If-Match", etag.clone())
                .json(&json!({"externalID": format!("W-{round}-{i}")}));
            tasks.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
        }
        let mut codes = Vec::new();
        for t in tasks {
            codes.push(t.await.unwrap());
        }
        assert_eq!(codes.iter().filter(|c| **c == 200).count(), 1, "round {round}: {codes:?}");
        assert_eq!(codes.iter().filter(|c| **c == 412).count(), 5, "round {round}: {codes:?}");
    }
}

#[tokio::test]
async fn fifty_concurrent_posts_make_fifty_distinct_complete_customers() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut body = company(&format!("Concurrent {i} AG"));
        if i % 3 == 0 {
            body["shippingAddress"] = address();
        }
        let req = app.req(Method::POST, "/v1/customers").json(&body);
        tasks.push(tokio::spawn(async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 201);
            res.json::<Value>().await.unwrap()["id"].as_u64().unwrap()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 50);
    for id in &ids {
        let (got, _) = get_json(&app, *id).await;
        assert!(got["customerName"].as_str().unwrap().starts_with("Concurrent "));
        assert_eq!(got["billingAddress"], address());
    }
}

#[tokio::test]
async fn a_duplicate_external_id_is_a_409_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    let mut a = company("First AG");
    a["externalID"] = json!("DUP-1");
    app.create(&a).await;
    let mut b = company("Second AG");
    b["externalID"] = json!("dup-1");
    b["shippingAddress"] = address();
    let res = app.post_customer(&b).await;
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "conflict");
    let out = app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), "(o=Second AG)", &["dn"]);
    assert_eq!(out.trim(), "", "no partial customer");
    // The demo data's externalIDs are taken too.
    let mut c = company("Third AG");
    c["externalID"] = json!("DUP-1");
    let id = app.create(&company("Third AG")).await;
    let res = app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"externalID": "DUP-1"})).await;
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn of_two_concurrent_writes_of_one_external_id_one_wins() {
    let app = spawn_app().await;
    for round in 0..5 {
        let value = format!("RACE-{round}");
        let mut a = company(&format!("Racer A {round} AG"));
        a["externalID"] = json!(value);
        let mut b = company(&format!("Racer B {round} AG"));
        b["externalID"] = json!(value.to_lowercase());
        // One creates, the other patches an existing customer to the same value.
        let other = app.create(&company(&format!("Racer C {round} AG"))).await;
        let patch = json!({"externalID": value.to_lowercase()});
        let path = format!("/v1/customers/{other}");
        let (x, y, z) =
            tokio::join!(app.post_customer(&a), app.post_customer(&b), app.send_json(Method::PATCH, &path, &patch));
        let mut won: Vec<u16> = [x.status(), y.status(), z.status()].iter().map(|s| s.as_u16()).collect();
        won.sort();
        assert!(won == [200, 409, 409] || won == [201, 409, 409], "round {round}: {won:?}");
        let holders =
            app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), &format!("(sstExternalID={value})"), &["1.1"]);
        assert_eq!(holders.matches("dn: ").count(), 1, "round {round}: {holders}");
    }
}

#[tokio::test]
async fn a_transaction_whose_third_write_fails_leaves_nothing() {
    use stoney_gateway::directory::{Guarded, Op};
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let dn = format!("uid=5999999,ou=customers,uid=4000001,ou=reseller,{s}");
    let attrs = |pairs: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        pairs.iter().map(|(a, v)| (a.to_string(), v.iter().map(|x| x.to_string()).collect())).collect()
    };
    let ops: Vec<Guarded> = vec![
        Op::Add {
            dn: dn.clone(),
            attrs: attrs(&[
                ("objectClass", &["top", "sstCustomer", "sstRelationship"]),
                ("uid", &["5999999"]),
                ("sstIsCompany", &["TRUE"]),
                ("o", &["Half AG"]),
            ]),
        }
        .into(),
        Op::Add {
            dn: format!("ou=address,{dn}"),
            attrs: attrs(&[("objectClass", &["top", "organizationalUnit"]), ("ou", &["address"])]),
        }
        .into(),
        // The shipping entry lacks every attribute sstAddress requires: slapd refuses it.
        Op::Add {
            dn: format!("ou=shipping,{dn}"),
            attrs: attrs(&[("objectClass", &["top", "organizationalUnit", "sstAddress"]), ("ou", &["shipping"])]),
        }
        .into(),
    ];
    let err = app.state.directory.apply(ops).await.unwrap_err();
    assert_eq!(err.rc(), Some(65), "object class violation: {err}");
    assert_eq!(app.ldapsearch(&format!("ou=reseller,{s}"), "(|(uid=5999999)(o=Half AG))", &["dn"]).trim(), "");
    assert_eq!(app.get("/v1/customers/5999999").await.status(), 404);
}

#[tokio::test]
async fn entries_written_by_an_admin_read_back() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let dn = format!("uid=5000777,ou=customers,uid=4000002,ou=reseller,{s}");
    let ldif = format!(
        "dn: {dn}\nchangetype: add\nobjectClass: sstCustomer\nobjectClass: sstRelationship\nuid: 5000777\nsstIsCompany: TRUE\norganizationName: Handmade GmbH\nsstBelongsToResellerUID: 4000002\ndescription: typed by hand\n\n\
         dn: ou=address,{dn}\nchangetype: add\nobjectClass: organizationalUnit\nobjectClass: sstAddress\nou: address\nsstGender: M\ngivenName: Hans\nsurname: Gödel\ncountryName: de\nlocalityName: München\npostalCode: 80331\npreferredLanguage: de-DE\nmail: hans@example.de\nmobileTelephoneNumber: +49 89 1234\npostalAddress: Marienplatz 1$2. Stock\nstateOrProvinceName: Bayern\n"
    );
    let out = app.ldapmodify(&ldif);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (got, _) = get_json(&app, 5000777).await;
    assert_eq!(got["customerName"], "Handmade GmbH");
    assert_eq!(got["belongsToResellerID"], 4000002);
    assert_eq!(got["isCompany"], true);
    assert_eq!(got["isActive"], true, "absent in LDAP, the default (true): {got}");
    assert!(got.get("description").is_none(), "unmapped attributes are never exported");
    assert!(got.get("shippingAddress").is_none());
    let b = &got["billingAddress"];
    assert_eq!(b["gender"], "m");
    assert_eq!(b["surname"], "Gödel");
    assert_eq!(b["countryCode"], "DE");
    assert_eq!(b["localityName"], "München");
    assert_eq!(b["mobileTelephoneNumber"], "+49 89 1234");
    assert_eq!(b["postalAddress"], "Marienplatz 1\n2. Stock");
    assert_eq!(b["stateOrProvinceName"], "Bayern");
    // A PATCH keeps what the mapping does not know.
    let res = app.send_json(Method::PATCH, "/v1/customers/5000777", &json!({"isActive": true})).await;
    assert_eq!(res.status(), 200);
    let out = app.ldapsearch(&dn, "(objectClass=sstCustomer)", &["description", "sstIsActive"]);
    assert!(out.contains("description: typed by hand") && out.contains("sstIsActive: TRUE"), "{out}");
}

#[tokio::test]
async fn demo_customers_read_back() {
    let app = spawn_app().await;
    let (got, _) = get_json(&app, 5000023).await;
    assert!(got["billingAddress"]["postalAddress"].as_str().unwrap().contains('$'), "{got}");
    let (got, _) = get_json(&app, 5000007).await;
    assert!(got["billingAddress"]["postalAddress"].as_str().unwrap().contains('\n'));
    let (got, _) = get_json(&app, 5000014).await;
    assert_eq!(got["billingAddress"]["countryCode"], "US");
    assert!(got["billingAddress"]["stateOrProvinceName"].is_string());
}

#[tokio::test]
async fn concurrent_moves_and_address_changes_keep_every_customer_whole() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.create(&company(&format!("Load {i} AG"))).await);
    }
    let mut tasks = Vec::new();
    for (t, id) in ids.iter().copied().enumerate() {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/customers/{id}"));
        tasks.push(tokio::spawn(async move {
            for round in 0..24 {
                let patch = match round % 4 {
                    0 => json!({"shippingAddress": address()}),
                    1 => json!({"belongsToResellerID": if (round / 4 + t) % 2 == 0 { 4000002 } else { 4000003 }, "externalID": format!("L-{t}-{round}")}),
                    2 => json!({"shippingAddress": null, "billingAddress": {"localityName": format!("Ort {round}")}}),
                    _ => json!({"belongsToResellerID": 4000001, "externalID": null}),
                };
                let res = client.patch(&url).basic_auth(ADMIN.0, Some(ADMIN.1)).json(&patch).send().await.unwrap();
                assert_eq!(res.status(), 200, "task {t} round {round}: {}", res.text().await.unwrap());
            }
        }));
    }
    // Readers run alongside and never see a customer without its billing address.
    for id in &ids {
        for _ in 0..10 {
            let res = app.get(&format!("/v1/customers/{id}")).await;
            assert_eq!(res.status(), 200);
            let v: Value = res.json().await.unwrap();
            assert!(v["billingAddress"].is_object(), "{v}");
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let pid = app.slapd.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}/status")).exists(), "slapd still runs");
    for id in ids {
        let (got, _) = get_json(&app, id).await;
        assert_eq!(got["belongsToResellerID"], 4000001);
        assert!(got.get("shippingAddress").is_none() && got.get("externalID").is_none(), "{got}");
        let out = app.ldapsearch(&format!("ou=reseller,{}", app.suffix()), &format!("(uid={id})"), &["dn"]);
        assert_eq!(out.lines().filter(|l| l.starts_with("dn: ")).count(), 1, "exactly one customer entry: {out}");
    }
}

/// slapd 2.5 can free an operation queued in a transaction while the thread that queued
/// it still uses it, when the Transaction End arrives at once; and syncprov's contextCSN
/// checkpoint, written from the answer path of a plain write, deadlocks with a committing
/// transaction. The directory built from ldif/ runs one operation per connection at a time
/// and has no checkpoint, so neither can happen: many concurrent transactions, committed
/// and failing, beside plain writes (the id counter), leave the server running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_never_take_the_directory_down() {
    use stoney_gateway::directory::{Guarded, Op};
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let dir = app.state.directory.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (mut committed, mut refused) = (0, 0);
            for i in 0..200u64 {
                let uid = 5_900_000 + t * 1000 + i;
                let dn = format!("uid={uid},ou=customers,uid=4000001,ou=reseller,{s}");
                let fail = i % 2 == 1;
                let mut classes = vec!["top".to_string(), "organizationalUnit".to_string()];
                if fail {
                    classes.push("sstAddress".into());
                }
                let ops: Vec<Guarded> = vec![
                    Op::Add {
                        dn: dn.clone(),
                        attrs: vec![
                            ("objectClass".into(), vec!["top".into(), "sstCustomer".into()]),
                            ("uid".into(), vec![uid.to_string()]),
                            ("sstIsCompany".into(), vec!["TRUE".into()]),
                        ],
                    }
                    .into(),
                    Op::Add {
                        dn: format!("ou=address,{dn}"),
                        attrs: vec![("objectClass".into(), classes), ("ou".into(), vec!["address".into()])],
                    }
                    .into(),
                ];
                match dir.apply(ops).await {
                    Ok(()) => committed += 1,
                    Err(e) => {
                        assert_eq!(e.rc(), Some(65), "task {t} txn {i}: {e}");
                        refused += 1;
                    }
                }
            }
            (committed, refused)
        }));
    }
    let mut counters = Vec::new();
    for _ in 0..2 {
        let dir = app.state.directory.clone();
        let counter = format!("cn=nextfreeuid,ou=administration,{s}");
        counters.push(tokio::spawn(async move {
            for _ in 0..300 {
                dir.next_uid(&counter).await.expect("counter");
            }
        }));
    }
    let all = async {
        for t in tasks {
            assert_eq!(t.await.unwrap(), (100, 100));
        }
        for c in counters {
            c.await.unwrap();
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), all).await.expect("no write hangs");
    let pid = app.slapd.pid().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}/status")).exists(), "slapd still runs");
    let out = app.ldapsearch(&format!("ou=customers,uid=4000001,ou=reseller,{s}"), "(uid=59*)", &["dn"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("dn: uid=")).count(),
        800,
        "every committed customer, no refused one"
    );
}
