//! `/v1/people`, the password operation, a customer's users and employees, and
//! `/v1/search`, against a real slapd.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn someone(mail: &str) -> Value {
    json!({"gender": "f", "givenName": "Lea", "surname": "Keller", "mail": mail, "preferredLanguage": "de-CH"})
}

async fn status_as(app: &TestApp, user: (&str, &str), method: Method, path: &str, body: Option<Value>) -> u16 {
    let mut req = app.req_as(user, method, path);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Creates a person as `user`; its id, or the status and error body.
async fn create_as(app: &TestApp, user: (&str, &str), body: &Value) -> Result<u64, (u16, Value)> {
    let res = app.req_as(user, Method::POST, "/v1/people").json(body).send().await.unwrap();
    let status = res.status().as_u16();
    let v: Value = res.json().await.unwrap();
    if status == 201 {
        Ok(v["id"].as_u64().unwrap())
    } else {
        Err((status, v))
    }
}

async fn read_as(app: &TestApp, user: (&str, &str), id: u64) -> (u16, Value) {
    let res = app.req_as(user, Method::GET, &format!("/v1/people/{id}")).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn listed(app: &TestApp, user: (&str, &str), path: &str) -> (u64, Vec<u64>) {
    let res = app.req_as(user, Method::GET, path).send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    let total = res.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    let items: Value = res.json().await.unwrap();
    (total, items.as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect())
}

async fn login(app: &TestApp, mail: &str, password: &str) -> u16 {
    app.client.get(app.url("/v1/auth")).basic_auth(mail, Some(password)).send().await.unwrap().status().as_u16()
}

fn detail_fields(body: &Value) -> Vec<String> {
    body["error"]["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn people_are_created_read_changed_listed_and_deleted() {
    let app = spawn_app().await;
    let mut body = someone("lea.keller@example.com");
    body["password"] = json!("first-password");
    body["belongsToCustomerID"] = json!(5000001);
    body["employeeOfID"] = json!([5000001, 5000002]);
    body["telephoneNumber"] = json!("+41 31 123 45 67");
    let id = create_as(&app, ADMIN, &body).await.unwrap();
    assert!(id > 5001000, "ids come from the counter: {id}");
    let res = app.get(&format!("/v1/people/{id}")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("etag"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["location"], app.url(&format!("/v1/people/{id}")));
    assert_eq!(doc["mail"], "lea.keller@example.com");
    assert_eq!(doc["isActive"], true);
    assert_eq!(doc["timeZoneOffset"], "UTC+01", "the schema's default");
    assert_eq!(doc["belongsToCustomerID"], 5000001);
    assert_eq!(doc["belongsToResellerID"], 4000001, "taken from the customer");
    let mut employer: Vec<u64> = doc["employeeOfID"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    employer.sort();
    assert_eq!(employer, [5000001, 5000002], "a set, in the directory's order");
    assert!(doc.get("password").is_none(), "{doc}");
    // The directory holds it as LDAP tools expect, with the password hashed.
    let ldif = app.ldapsearch(&format!("uid={id},ou=people,{}", app.suffix()), "(objectClass=*)", &["*"]);
    assert!(ldif.contains("objectClass: sstPerson"), "{ldif}");
    assert!(ldif.contains("sstBelongsToCustomerUID: 5000001"), "{ldif}");
    let hash = ldif.lines().find_map(|l| l.strip_prefix("userPassword:: ")).expect("a password");
    use base64::Engine;
    let hash = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(hash).unwrap()).unwrap();
    assert!(hash.starts_with("{SSHA"), "{hash}");
    assert!(!ldif.contains("first-password"));
    assert_eq!(login(&app, "LEA.KELLER@example.com", "first-password").await, 200);

    // Patch, replace (the password is not part of the document), filters and q.
    let res = app.send_json(Method::PATCH, &format!("/v1/people/{id}"), &json!({"surname": "Keller-Roth"})).await;
    assert_eq!(res.status(), 200);
    let mut doc: Value = app.get(&format!("/v1/people/{id}")).await.json().await.unwrap();
    assert_eq!(doc["surname"], "Keller-Roth");
    doc["employeeOfID"] = json!([5000002]);
    doc.as_object_mut().unwrap().remove("telephoneNumber");
    assert_eq!(app.send_json(Method::PUT, &format!("/v1/people/{id}"), &doc).await.status(), 200);
    let doc: Value = app.get(&format!("/v1/people/{id}")).await.json().await.unwrap();
    assert_eq!(doc["employeeOfID"], json!([5000002]));
    assert!(doc.get("telephoneNumber").is_none());
    let res = app.send_json(Method::PATCH, &format!("/v1/people/{id}"), &json!({"password": "x-second-one"})).await;
    assert_eq!(res.status(), 422, "a password changes only through its operation");
    assert_eq!(listed(&app, ADMIN, "/v1/people?mail=lea.keller@example.com").await.1, [id]);
    assert_eq!(listed(&app, ADMIN, "/v1/people?q=keller-r").await.1, [id]);
    assert_eq!(listed(&app, ADMIN, &format!("/v1/people?employeeOfID=5000002&id={id}")).await.1, [id]);
    let res = app.get("/v1/people?password=x").await;
    assert_eq!(res.status(), 422, "passwords are never filtered");
    let res = app.get("/v1/people?sort=password").await;
    assert_eq!(res.status(), 422, "nor sorted");
    let items: Value = app.get(&format!("/v1/people?id={id}")).await.json().await.unwrap();
    assert_eq!(items[0]["belongsToResellerID"], 4000001);
    assert!(items[0].get("password").is_none());

    // Validation: every problem at once.
    let bad = json!({"gender": "x", "givenName": "", "mail": "nope", "timeZoneOffset": "CET",
                     "belongsToCustomerID": 999, "password": "short", "extra": 1});
    let (status, err) = create_as(&app, ADMIN, &bad).await.unwrap_err();
    assert_eq!(status, 422);
    let fields = detail_fields(&err);
    for f in ["gender", "givenName", "surname", "mail", "preferredLanguage", "timeZoneOffset", "password", "extra"] {
        assert!(fields.contains(&f.to_string()), "{f} missing in {fields:?}");
    }
    let mut unknown = someone("unknown.customer@example.com");
    unknown["belongsToCustomerID"] = json!(5999999);
    let (status, err) = create_as(&app, ADMIN, &unknown).await.unwrap_err();
    assert_eq!((status, detail_fields(&err)), (422, vec!["belongsToCustomerID".to_string()]), "{err}");
    let mut mismatch = someone("mismatch@example.com");
    mismatch["belongsToCustomerID"] = json!(5000001);
    mismatch["belongsToResellerID"] = json!(4000002);
    let (status, err) = create_as(&app, ADMIN, &mismatch).await.unwrap_err();
    assert_eq!(status, 422, "a customer of another reseller: {err}");

    // Delete: gone, and its login with it.
    assert_eq!(app.req(Method::DELETE, &format!("/v1/people/{id}")).send().await.unwrap().status(), 200);
    assert_eq!(app.get(&format!("/v1/people/{id}")).await.status(), 404);
    assert_eq!(login(&app, "lea.keller@example.com", "first-password").await, 401);
}

#[tokio::test]
async fn one_mail_for_one_person_whatever_its_case_even_in_a_race() {
    let app = spawn_app().await;
    let first = create_as(&app, ADMIN, &someone("twice@example.com")).await.unwrap();
    let (status, err) = create_as(&app, ADMIN, &someone("TWICE@example.com")).await.unwrap_err();
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "conflict");
    let other = create_as(&app, ADMIN, &someone("other@example.com")).await.unwrap();
    let res = app.send_json(Method::PATCH, &format!("/v1/people/{other}"), &json!({"mail": "Twice@Example.com"})).await;
    assert_eq!(res.status(), 409);
    let _ = first;
    for round in 0..5 {
        let mail = format!("race{round}@example.com");
        let (one, two) = (someone(&mail), someone(&mail.to_uppercase()));
        let (a, b) = tokio::join!(create_as(&app, ADMIN, &one), create_as(&app, RESELLER1, &two));
        let statuses = [a.map(|_| 201).unwrap_or_else(|e| e.0), b.map(|_| 201).unwrap_or_else(|e| e.0)];
        let mut sorted = statuses;
        sorted.sort();
        assert_eq!(sorted, [201, 409], "round {round}: {statuses:?}");
        assert_eq!(listed(&app, ADMIN, &format!("/v1/people?mail={mail}")).await.0, 1);
    }
}

#[tokio::test]
async fn passwords_are_set_and_changed_and_old_logins_end_at_once() {
    let app = spawn_app().await;
    let mut body = someone("pat@example.com");
    body["password"] = json!("pat-password-1");
    let id = create_as(&app, RESELLER1, &body).await.unwrap();
    assert_eq!(login(&app, "pat@example.com", "pat-password-1").await, 200);
    // Another person sets it (no old password needed); the remembered login ends now.
    let path = format!("/v1/people/{id}/password");
    let res = app.req_as(RESELLER1, Method::POST, &path).json(&json!({"newPassword": "pat-password-2"})).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(login(&app, "pat@example.com", "pat-password-1").await, 401);
    assert_eq!(login(&app, "pat@example.com", "pat-password-2").await, 200);
    // Out of scope: 404; bad bodies: 422.
    assert_eq!(status_as(&app, RESELLER2, Method::POST, &path, Some(json!({"newPassword": "xxxxxxxxxx"}))).await, 404);
    for bad in [json!({}), json!({"newPassword": "short"}), json!({"newPassword": "long enough", "x": 1})] {
        assert_eq!(status_as(&app, RESELLER1, Method::POST, &path, Some(bad.clone())).await, 422, "{bad}");
    }
    // The person itself needs the old one.
    let me = ("pat@example.com", "pat-password-2");
    // It has reseller 4000001's scope (inherited from its creator).
    let res = app.req_as(me, Method::POST, &path).json(&json!({"newPassword": "pat-password-3"})).send().await;
    assert_eq!(res.unwrap().status(), 422);
    let wrong = json!({"newPassword": "pat-password-3", "oldPassword": "not-it-at-all"});
    assert_eq!(status_as(&app, me, Method::POST, &path, Some(wrong)).await, 422);
    let right = json!({"newPassword": "pat-password-3", "oldPassword": "pat-password-2"});
    assert_eq!(status_as(&app, me, Method::POST, &path, Some(right)).await, 204);
    assert_eq!(login(&app, "pat@example.com", "pat-password-2").await, 401);
    assert_eq!(login(&app, "pat@example.com", "pat-password-3").await, 200);
    // A deactivation ends its logins at once too.
    let res = app.req_as(RESELLER1, Method::PATCH, &format!("/v1/people/{id}")).json(&json!({"isActive": false}));
    assert_eq!(res.send().await.unwrap().status(), 200);
    assert_eq!(login(&app, "pat@example.com", "pat-password-3").await, 401);
}

#[tokio::test]
async fn each_role_manages_the_people_of_its_scope_and_no_more() {
    let app = spawn_app().await;
    // A reseller user: new people inherit its reseller; another reseller is not there.
    let r1 = create_as(&app, RESELLER1, &someone("r1.staff@example.com")).await.unwrap();
    let (_, doc) = read_as(&app, RESELLER1, r1).await;
    assert_eq!(doc["belongsToResellerID"], 4000001);
    assert!(doc.get("belongsToCustomerID").is_none());
    let mut other = someone("elsewhere@example.com");
    other["belongsToResellerID"] = json!(4000002);
    assert_eq!(create_as(&app, RESELLER1, &other).await.unwrap_err().0, 422);
    let mut foreign = someone("foreign.customer@example.com");
    foreign["belongsToCustomerID"] = json!(5000021);
    assert_eq!(create_as(&app, RESELLER1, &foreign).await.unwrap_err().0, 422, "a customer of reseller 2");
    let mut employee = someone("foreign.employee@example.com");
    employee["employeeOfID"] = json!([5000021]);
    assert_eq!(create_as(&app, RESELLER1, &employee).await.unwrap_err().0, 422);
    let mut user = someone("c1.user@example.com");
    user["belongsToCustomerID"] = json!(5000002);
    let c2 = create_as(&app, RESELLER1, &user).await.unwrap();
    // Reseller 2 does not see reseller 1's people.
    let r2 = create_as(&app, RESELLER2, &someone("r2.staff@example.com")).await.unwrap();
    for id in [r1, c2] {
        assert_eq!(read_as(&app, RESELLER2, id).await.0, 404);
        for (m, b) in [(Method::PATCH, Some(json!({"surname": "X"}))), (Method::DELETE, None)] {
            assert_eq!(status_as(&app, RESELLER2, m, &format!("/v1/people/{id}"), b).await, 404);
        }
    }
    let (_, ids) = listed(&app, RESELLER1, "/v1/people?per_page=500").await;
    assert!(ids.contains(&r1) && ids.contains(&c2) && !ids.contains(&r2), "{ids:?}");
    let (_, ids) = listed(&app, RESELLER2, "/v1/people?per_page=500").await;
    assert!(ids.contains(&r2) && !ids.contains(&r1));
    // It may move a person between its customers, never to another reseller.
    let to = |v: Value| Some(v);
    let path = format!("/v1/people/{c2}");
    assert_eq!(
        status_as(&app, RESELLER1, Method::PATCH, &path, to(json!({"belongsToCustomerID": 5000003}))).await,
        200
    );
    assert_eq!(
        status_as(&app, RESELLER1, Method::PATCH, &path, to(json!({"belongsToCustomerID": 5000021}))).await,
        422
    );
    assert_eq!(
        status_as(&app, RESELLER1, Method::PATCH, &path, to(json!({"belongsToResellerID": 4000002}))).await,
        403
    );

    // The customer user (customer 5000001 of reseller 4000001): its customer's people.
    let mine = create_as(&app, CUSTOMER, &someone("c1.colleague@example.com")).await.unwrap();
    let (_, doc) = read_as(&app, CUSTOMER, mine).await;
    assert_eq!(
        (doc["belongsToCustomerID"].clone(), doc["belongsToResellerID"].clone()),
        (json!(5000001), json!(4000001))
    );
    let (_, ids) = listed(&app, CUSTOMER, "/v1/people?per_page=500").await;
    assert!(ids.contains(&mine) && !ids.contains(&r1) && !ids.contains(&c2), "{ids:?}");
    assert_eq!(read_as(&app, CUSTOMER, r1).await.0, 404);
    let mut elsewhere = someone("c1.elsewhere@example.com");
    elsewhere["belongsToCustomerID"] = json!(5000002);
    assert_eq!(create_as(&app, CUSTOMER, &elsewhere).await.unwrap_err().0, 422);
    let mine_path = format!("/v1/people/{mine}");
    assert_eq!(
        status_as(&app, CUSTOMER, Method::PATCH, &mine_path, to(json!({"belongsToCustomerID": 5000002}))).await,
        403
    );
    assert_eq!(
        status_as(&app, CUSTOMER, Method::PATCH, &mine_path, to(json!({"belongsToCustomerID": null}))).await,
        403,
        "no raise to reseller scope"
    );
    assert_eq!(
        status_as(&app, CUSTOMER, Method::PATCH, &mine_path, to(json!({"mobileTelephoneNumber": "+41 79 000 00 00"})))
            .await,
        200
    );
    assert_eq!(status_as(&app, CUSTOMER, Method::DELETE, &mine_path, None).await, 200);

    // Nobody changes its own scope: the customer user (5000905) and a reseller user (5000902).
    let me = "/v1/people/5000905";
    assert_eq!(status_as(&app, CUSTOMER, Method::PATCH, me, to(json!({"belongsToCustomerID": null}))).await, 403);
    let me = "/v1/people/5000902";
    assert_eq!(status_as(&app, RESELLER1, Method::PATCH, me, to(json!({"belongsToCustomerID": 5000001}))).await, 403);
    assert_eq!(
        status_as(&app, RESELLER1, Method::PATCH, me, to(json!({"telephoneNumber": "+41 31 000 00 00"}))).await,
        200
    );
    // The provider's own person is visible to nobody else.
    assert_eq!(read_as(&app, RESELLER1, 5000901).await.0, 404);
    assert_eq!(read_as(&app, CUSTOMER, 5000901).await.0, 404);
}

#[tokio::test]
async fn a_customers_users_and_employees_are_lists_scoped_like_the_customer() {
    let app = spawn_app().await;
    let mut user = someone("user.of.7@example.com");
    user["belongsToCustomerID"] = json!(5000007);
    let u = create_as(&app, ADMIN, &user).await.unwrap();
    let mut staff = someone("staff.of.7@example.com");
    staff["employeeOfID"] = json!([5000007, 5000008]);
    staff["belongsToResellerID"] = json!(4000001);
    let e = create_as(&app, ADMIN, &staff).await.unwrap();
    let doc: Value = app.get("/v1/customers/5000007").await.json().await.unwrap();
    let users = doc["users"].as_str().unwrap().to_string();
    let employees = doc["employees"].as_str().unwrap().to_string();
    let path = |url: &str| url.strip_prefix(&app.url("")).unwrap().to_string();
    let (_, ids) = listed(&app, ADMIN, &path(&users)).await;
    assert!(ids.contains(&u) && !ids.contains(&e), "{ids:?}");
    let (_, ids) = listed(&app, ADMIN, &path(&employees)).await;
    assert!(ids.contains(&e) && !ids.contains(&u), "{ids:?}");
    // The same paging, sort, filter and q as /v1/people.
    let (total, ids) = listed(&app, RESELLER1, &format!("{}?q=staff.of&per_page=1", path(&employees))).await;
    assert_eq!((total, ids), (1, vec![e]));
    let res = app.get(&format!("{}?per_page=1", path(&users))).await;
    let link = res.headers().get("link").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    assert!(link.contains("/v1/customers/5000007/users?"), "{link}");
    assert_eq!(app.get(&format!("{}?nope=1", path(&users))).await.status(), 422);
    // Scoped like the customer: another reseller gets 404, even for an empty list.
    assert_eq!(status_as(&app, RESELLER2, Method::GET, "/v1/customers/5000007/users", None).await, 404);
    assert_eq!(status_as(&app, RESELLER2, Method::GET, "/v1/customers/5000007/employees", None).await, 404);
    assert_eq!(status_as(&app, ADMIN, Method::GET, "/v1/customers/5999999/users", None).await, 404);
    // The customer user sees its own customer's users.
    let (_, ids) = listed(&app, CUSTOMER, "/v1/customers/5000001/users").await;
    assert!(ids.contains(&5000905), "{ids:?}");
    assert_eq!(status_as(&app, CUSTOMER, Method::GET, "/v1/customers/5000007/users", None).await, 404);
}

#[tokio::test]
async fn search_answers_a_few_hits_per_resource_within_the_scope() {
    let app = spawn_app().await;
    for i in 0..7 {
        let mut p = someone(&format!("zyx.searcher{i}@example.com"));
        p["belongsToCustomerID"] = json!(5000001);
        create_as(&app, ADMIN, &p).await.unwrap();
    }
    let res = app.get("/v1/search?q=zyx.search").await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["people"]["resources"].as_array().unwrap().len(), 5, "5 by default: {v}");
    assert_eq!(v["people"]["location"], app.url("/v1/people?q=zyx.search"));
    assert_eq!(v["customers"]["resources"], json!([]));
    assert!(v["people"]["resources"][0].get("mail").is_some(), "items of the collection");
    let v: Value = app.get("/v1/search?q=zyx.search&entries=15").await.json().await.unwrap();
    assert_eq!(v["people"]["resources"].as_array().unwrap().len(), 7);
    // Customers and resellers by name.
    let v: Value = app.get("/v1/search?q=alpine").await.json().await.unwrap();
    assert!(!v["resellers"]["resources"].as_array().unwrap().is_empty(), "{v}");
    // Scoped: reseller 2 sees none of reseller 1's people.
    let v: Value =
        app.req_as(RESELLER2, Method::GET, "/v1/search?q=zyx.search").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["people"]["resources"], json!([]), "{v}");
    let v: Value =
        app.req_as(CUSTOMER, Method::GET, "/v1/search?q=zyx.search").send().await.unwrap().json().await.unwrap();
    assert_eq!(v["people"]["resources"].as_array().unwrap().len(), 5, "the customer's own users: {v}");
    assert_eq!(v["resellers"]["resources"], json!([]));
    for bad in [
        "/v1/search",
        "/v1/search?q=ab",
        "/v1/search?q=abc&entries=16",
        "/v1/search?q=abc&entries=0",
        "/v1/search?q=abc&x=1",
    ] {
        assert_eq!(app.get(bad).await.status(), 422, "{bad}");
    }
    assert_eq!(app.client.get(app.url("/v1/search?q=abc")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_change_to_a_person_made_with_ldap_tools_ends_its_remembered_logins_when_it_arrives() {
    let app = spawn_app_with(stoney_slapd::SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.cache_ttl_secs = 600
    })
    .await;
    let s = app.suffix().to_string();
    assert_eq!(login(&app, RESELLER1.0, RESELLER1.1).await, 200);
    let out = app.ldapmodify(&format!(
        "dn: uid=5000902,ou=people,{s}\nchangetype: modify\nreplace: sstIsActive\nsstIsActive: FALSE\n"
    ));
    assert!(out.status.success());
    // The content synchronisation brings the change: far sooner than the cache time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = login(&app, RESELLER1.0, RESELLER1.1).await;
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still logged in: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
