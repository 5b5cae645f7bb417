//! Who may see and do what (SPEC section 7): every role × every operation × own and
//! other tenant over REST, the same rules inside the directory for LDAP tools, and
//! injection attempts in credentials and ids.

mod common;

use std::time::Duration;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WRONG_PASSWORD: (&str, &str) = ("admin@stoney-cloud.org", "not-the-password");
const UNKNOWN: (&str, &str) = ("nobody@example.com", "whatever");
const INACTIVE: (&str, &str) = ("inactive@example.com", "inactive-secret");

#[derive(Clone, Copy, Debug)]
enum Role {
    Provider,
    ResellerA,
    ResellerB,
    CustomerOfA,
    WrongPassword,
    Unknown,
    Inactive,
    Anonymous,
}

impl Role {
    fn creds(self) -> Option<(&'static str, &'static str)> {
        match self {
            Role::Provider => Some(ADMIN),
            Role::ResellerA => Some(RESELLER1),
            Role::ResellerB => Some(RESELLER2),
            Role::CustomerOfA => Some(CUSTOMER),
            Role::WrongPassword => Some(WRONG_PASSWORD),
            Role::Unknown => Some(UNKNOWN),
            Role::Inactive => Some(INACTIVE),
            Role::Anonymous => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    /// A fresh customer of reseller 4000001 (the customer user's reseller).
    TenantA,
    /// A fresh customer of reseller 4000002.
    TenantB,
    /// 5000001, the customer user's own customer.
    CustomerOwn,
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    Get,
    Put,
    Patch,
    PatchIsActive,
    Move,
    Delete,
}

async fn send(app: &TestApp, role: Role, method: Method, path: &str, body: Option<&Value>) -> StatusCode {
    let mut req = app.client.request(method, app.url(path));
    if let Some((u, p)) = role.creds() {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    if status == StatusCode::UNAUTHORIZED {
        assert!(res.headers().contains_key("www-authenticate"), "401 carries WWW-Authenticate");
    }
    status
}

async fn run(app: &TestApp, role: Role, op: Operation, target: Target) -> StatusCode {
    let id = match target {
        Target::TenantA => app.create(&company("Tenant A AG")).await,
        Target::TenantB => {
            let mut b = company("Tenant B AG");
            b["belongsToResellerID"] = json!(4000002);
            app.create(&b).await
        }
        Target::CustomerOwn => 5000001,
    };
    let path = format!("/v1/customers/{id}");
    let current: Value = app.get(&path).await.json().await.unwrap();
    match op {
        Operation::Get => send(app, role, Method::GET, &path, None).await,
        Operation::Put => {
            let mut doc = current.clone();
            doc["externalID"] = json!(format!("PUT-{id}-{role:?}"));
            send(app, role, Method::PUT, &path, Some(&doc)).await
        }
        Operation::Patch => {
            send(app, role, Method::PATCH, &path, Some(&json!({"billingAddress": {"localityName": "Thun"}}))).await
        }
        Operation::PatchIsActive => send(app, role, Method::PATCH, &path, Some(&json!({"isActive": false}))).await,
        Operation::Move => {
            let to = if current["belongsToResellerID"] == 4000001 { 4000002 } else { 4000001 };
            send(app, role, Method::PATCH, &path, Some(&json!({"belongsToResellerID": to}))).await
        }
        Operation::Delete => send(app, role, Method::DELETE, &path, None).await,
    }
}

#[tokio::test]
async fn the_access_matrix_over_rest() {
    use Operation::*;
    use Role::*;
    use Target::*;
    let app = spawn_app().await;
    let rejected = [WrongPassword, Unknown, Inactive, Anonymous];
    let mut cases: Vec<(Role, Operation, Target, u16)> = vec![
        (Provider, Get, TenantA, 200),
        (Provider, Get, TenantB, 200),
        (Provider, Put, TenantB, 200),
        (Provider, Patch, TenantB, 200),
        (Provider, PatchIsActive, TenantB, 200),
        (Provider, Move, TenantB, 200),
        (Provider, Delete, TenantB, 200),
        (ResellerA, Get, TenantA, 200),
        (ResellerA, Get, TenantB, 404),
        (ResellerA, Put, TenantA, 200),
        (ResellerA, Put, TenantB, 404),
        (ResellerA, Patch, TenantA, 200),
        (ResellerA, Patch, TenantB, 404),
        (ResellerA, PatchIsActive, TenantA, 200),
        // Moving to a reseller outside the caller's scope: that reseller does not exist for it.
        (ResellerA, Move, TenantA, 422),
        (ResellerA, Move, TenantB, 404),
        (ResellerA, Delete, TenantA, 200),
        (ResellerA, Delete, TenantB, 404),
        (ResellerB, Get, TenantA, 404),
        (ResellerB, Get, TenantB, 200),
        (ResellerB, Delete, TenantA, 404),
        (ResellerB, Patch, TenantB, 200),
        (ResellerB, Get, CustomerOwn, 404),
        (CustomerOfA, Get, CustomerOwn, 200),
        (CustomerOfA, Get, TenantA, 404),
        (CustomerOfA, Get, TenantB, 404),
        (CustomerOfA, Put, CustomerOwn, 200),
        (CustomerOfA, Patch, CustomerOwn, 200),
        (CustomerOfA, PatchIsActive, CustomerOwn, 403),
        (CustomerOfA, Move, CustomerOwn, 403),
        (CustomerOfA, Delete, CustomerOwn, 403),
        (CustomerOfA, Patch, TenantA, 404),
        (CustomerOfA, Delete, TenantA, 404),
        (CustomerOfA, Put, TenantB, 404),
    ];
    for role in rejected {
        for op in [Get, Put, Patch, Move, Delete] {
            cases.push((role, op, TenantA, 401));
        }
    }
    let mut failures = Vec::new();
    for (role, op, target, want) in cases {
        let got = run(&app, role, op, target).await.as_u16();
        if got != want {
            failures.push(format!("{role:?} {op:?} {target:?}: want {want}, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The ids of the customers under each demo reseller, read with ldapsearch as the root.
fn customers_by_reseller(app: &TestApp) -> std::collections::BTreeMap<u64, Vec<u64>> {
    let mut out = std::collections::BTreeMap::new();
    for r in [4000001u64, 4000002, 4000003] {
        let ldif = app.ldapsearch(
            &format!("ou=customers,uid={r},ou=reseller,{}", app.suffix()),
            "(objectClass=sstCustomer)",
            &["uid"],
        );
        let mut ids: Vec<u64> =
            ldif.lines().filter_map(|l| l.strip_prefix("uid: ")).map(|v| v.parse().unwrap()).collect();
        ids.sort();
        out.insert(r, ids);
    }
    out
}

async fn listed(app: &TestApp, role: Role, query: &str) -> Result<Vec<u64>, u16> {
    let mut req = app.client.get(app.url(&format!("/v1/customers?per_page=100&{query}")));
    if let Some((u, p)) = role.creds() {
        req = req.basic_auth(u, Some(p));
    }
    let res = req.send().await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let total: usize = res.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    let body: Value = res.json().await.unwrap();
    let mut ids: Vec<u64> = body.as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect();
    assert_eq!(total, ids.len(), "{role:?} {query}: the total counts only what the caller sees");
    ids.sort();
    Ok(ids)
}

#[tokio::test]
async fn lists_filters_and_q_show_exactly_the_callers_customers() {
    use Role::*;
    let app = spawn_app().await;
    let by = customers_by_reseller(&app);
    let all: Vec<u64> = by.values().flatten().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(all.len(), 60);
    let (a, b) = (by[&4000001].clone(), by[&4000002].clone());
    let other_tenant = b[0];
    let none: Vec<u64> = Vec::new();
    let cases: Vec<(Role, String, Result<Vec<u64>, u16>)> = vec![
        (Provider, "".into(), Ok(all.clone())),
        (ResellerA, "".into(), Ok(a.clone())),
        (ResellerB, "".into(), Ok(b.clone())),
        (CustomerOfA, "".into(), Ok(vec![5000001])),
        // Filters that match everything still stop at the caller's scope.
        (ResellerA, "customerName=*".into(), Ok(a.clone())),
        (ResellerA, "belongsToResellerID=*".into(), Ok(a.clone())),
        (ResellerA, "belongsToResellerID=4000002".into(), Ok(none.clone())),
        (ResellerA, format!("id={other_tenant}"), Ok(none.clone())),
        (Provider, format!("id={other_tenant}"), Ok(vec![other_tenant])),
        (CustomerOfA, "id=5000002".into(), Ok(none.clone())),
        (CustomerOfA, "id=5000001".into(), Ok(vec![5000001])),
        // q over ids: "500" is in every id.
        (Provider, "q=500".into(), Ok(all.clone())),
        (ResellerB, "q=500".into(), Ok(b.clone())),
        (CustomerOfA, "q=500".into(), Ok(vec![5000001])),
        // Injection attempts in filter values and q widen nothing.
        (ResellerA, "customerName=*)(uid=*".into(), Ok(none.clone())),
        (ResellerA, "q=*)(|(uid=*".into(), Ok(none.clone())),
        (ResellerA, "belongsToResellerID=4000001)(uid=*".into(), Err(422)),
    ];
    let mut failures = Vec::new();
    for (role, query, want) in cases {
        let got = listed(&app, role, &query).await;
        if got != want {
            failures.push(format!("{role:?} {query:?}: want {want:?}, got {got:?}"));
        }
    }
    for role in [WrongPassword, Unknown, Inactive, Anonymous] {
        for query in ["", "customerName=*", "q=500"] {
            let got = listed(&app, role, query).await;
            if got != Err(401) {
                failures.push(format!("{role:?} {query:?}: want 401, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn creating_customers_depends_on_the_role() {
    let app = spawn_app().await;
    let for_reseller = |r: u64| {
        let mut b = company("Created AG");
        b["belongsToResellerID"] = json!(r);
        b
    };
    let cases: Vec<(Role, u64, u16)> = vec![
        (Role::Provider, 4000003, 201),
        (Role::ResellerA, 4000001, 201),
        (Role::ResellerA, 4000002, 422),
        (Role::ResellerB, 4000002, 201),
        (Role::CustomerOfA, 4000001, 403),
        (Role::WrongPassword, 4000001, 401),
        (Role::Unknown, 4000001, 401),
        (Role::Inactive, 4000001, 401),
        (Role::Anonymous, 4000001, 401),
    ];
    for (role, reseller, want) in cases {
        let got = send(&app, role, Method::POST, "/v1/customers", Some(&for_reseller(reseller))).await;
        assert_eq!(got.as_u16(), want, "{role:?} creating for {reseller}");
    }
}

#[tokio::test]
async fn auth_says_who_the_credentials_belong_to() {
    let app = spawn_app().await;
    for (creds, id) in [(ADMIN, 5000901), (RESELLER1, 5000902), (CUSTOMER, 5000905)] {
        let res = app.req_as(creds, Method::GET, "/v1/auth").send().await.unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["id"], id);
        assert_eq!(v["user"], creds.0);
        assert!(v["location"].as_str().unwrap().ends_with(&format!("/v1/people/{id}")));
    }
    for creds in [WRONG_PASSWORD, UNKNOWN, INACTIVE, ("admin@stoney-cloud.org", "")] {
        let res = app.req_as(creds, Method::GET, "/v1/auth").send().await.unwrap();
        assert_eq!(res.status(), 401, "{creds:?}");
        assert_eq!(res.headers()["www-authenticate"], "Basic realm=\"stoney\", charset=\"UTF-8\"");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"]["status"], 401);
    }
    let res = app.client.get(app.url("/v1/auth")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    for header in ["Bearer abc", "Basic !!!", "Basic Zm9v", "Basic"] {
        let res = app.client.get(app.url("/v1/auth")).header("authorization", header).send().await.unwrap();
        assert_eq!(res.status(), 401, "{header}");
    }
    // The user name is matched like the mail attribute: case-insensitively.
    let res = app.req_as(("ADMIN@Stoney-Cloud.org", ADMIN.1), Method::GET, "/v1/auth").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn injection_in_credentials_never_logs_anyone_in() {
    let app = spawn_app().await;
    let users = [
        "*",
        "admin*",
        "*@stoney-cloud.org",
        "admin@stoney-cloud.org)(|(mail=*",
        "*)(mail=*",
        "\\2a",
        "admin@stoney-cloud.org\u{0}",
        "(mail=*)",
        "uid=5000901,ou=people,dc=stoney-cloud,dc=org",
    ];
    let passwords = ["*", "admin-secret*", ")(userPassword=*", "\u{0}"];
    for u in users {
        for p in passwords.iter().chain([&"admin-secret"]) {
            let res = app.req_as((u, p), Method::GET, "/v1/auth").send().await.unwrap();
            assert_eq!(res.status(), 401, "{u:?} / {p:?}");
        }
    }
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_but_not_forever() {
    let app = spawn_app_with(stoney_slapd::SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.max_failures = 3;
        s.auth.lockout_secs = 2;
    })
    .await;
    let bad = (RESELLER2.0, "wrong");
    for _ in 0..3 {
        assert_eq!(app.req_as(bad, Method::GET, "/v1/auth").send().await.unwrap().status(), 401);
    }
    let res = app.req_as(bad, Method::GET, "/v1/auth").send().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["status"], 429);
    // While blocked, even the right password waits; other users are not affected.
    assert_eq!(app.req_as(RESELLER2, Method::GET, "/v1/auth").send().await.unwrap().status(), 429);
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(app.req_as(RESELLER2, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    // A user that just logged in keeps working while someone else guesses its password.
    for _ in 0..5 {
        app.req_as((RESELLER1.0, "guess"), Method::GET, "/v1/auth").send().await.unwrap();
    }
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_checks_at_most_max_failures_of_them() {
    let app = spawn_app_with(stoney_slapd::SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.max_failures = 5
    })
    .await;
    let mut burst = Vec::new();
    for i in 0..60 {
        let req = app.req_as((RESELLER2.0, &format!("guess-{i}")), Method::GET, "/v1/auth");
        burst.push(tokio::spawn(async move { req.send().await.unwrap().status() }));
    }
    let mut checked = 0;
    for b in burst {
        match b.await.unwrap() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{other}"),
        }
    }
    assert!(checked <= 5, "{checked} passwords checked");
    assert_eq!(app.req_as(RESELLER2, Method::GET, "/v1/auth").send().await.unwrap().status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_first_logins_of_one_user_at_once_all_succeed() {
    let app = spawn_app().await;
    let logins: Vec<_> = (0..30)
        .map(|_| {
            let req = app.req_as(RESELLER1, Method::GET, "/v1/auth");
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_password_after_max_failures_attempts_in_flight_is_refused() {
    let (gw, proxy, _slapd) = stallable(|s| s.auth.max_failures = 3).await;
    let auth = |user: (&str, &str)| gw.client.get(format!("{}/v1/auth", gw.base)).basic_auth(user.0, Some(user.1));
    // The directory stalls while three wrong guesses are being checked.
    proxy.pause(true);
    let guesses: Vec<_> = (0..3)
        .map(|i| {
            let req = auth((RESELLER2.0, &format!("guess-{i}")));
            tokio::spawn(async move { req.send().await.unwrap().status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let right = auth(RESELLER2);
    let right = tokio::spawn(async move { right.send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.pause(false);
    assert_eq!(right.await.unwrap(), 429, "no attempt is left for the right password");
    for g in guesses {
        assert_eq!(g.await.unwrap(), 401);
    }
    assert_eq!(auth(RESELLER2).send().await.unwrap().status(), 429);
}

#[tokio::test]
async fn a_remembered_login_keeps_working_through_a_lockout_longer_than_the_cache_time() {
    let app = spawn_app_with(stoney_slapd::SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.cache_ttl_secs = 1;
        s.auth.max_failures = 3;
        s.auth.lockout_secs = 60;
    })
    .await;
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    // The remembered login has expired when someone else locks the user out.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for _ in 0..3 {
        assert_eq!(app.req_as((RESELLER1.0, "guess"), Method::GET, "/v1/auth").send().await.unwrap().status(), 401);
    }
    assert_eq!(app.req_as((RESELLER1.0, "guess"), Method::GET, "/v1/auth").send().await.unwrap().status(), 429);
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    // The lockout still holds for everyone else.
    assert_eq!(app.req_as((RESELLER1.0, "guess"), Method::GET, "/v1/auth").send().await.unwrap().status(), 429);
}

#[tokio::test]
async fn a_password_change_or_deactivation_takes_effect_within_the_cache_time() {
    let app = spawn_app_with(stoney_slapd::SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.auth.cache_ttl_secs = 1
    })
    .await;
    let s = app.suffix().to_string();
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    let out = app.ldapmodify(&format!(
        "dn: uid=5000902,ou=people,{s}\nchangetype: modify\nreplace: userPassword\nuserPassword: new-secret\n"
    ));
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/auth").send().await.unwrap().status(), 401);
    assert_eq!(app.req_as((RESELLER1.0, "new-secret"), Method::GET, "/v1/auth").send().await.unwrap().status(), 200);
    let out = app.ldapmodify(&format!(
        "dn: uid=5000902,ou=people,{s}\nchangetype: modify\nreplace: sstIsActive\nsstIsActive: FALSE\n"
    ));
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.req_as((RESELLER1.0, "new-secret"), Method::GET, "/v1/auth").send().await.unwrap().status(), 401);
}

fn ldapsearch_as(app: &TestApp, dn: Option<(&str, &str)>, base: &str, filter: &str) -> (i32, Vec<String>) {
    let mut cmd = std::process::Command::new("ldapsearch");
    cmd.args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &app.slapd.url, "-b", base, filter, "dn"]);
    if let Some((d, p)) = dn {
        cmd.args(["-D", d, "-w", p]);
    }
    let out = cmd.output().unwrap();
    let dns = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("dn: ").map(str::to_string))
        .collect();
    (out.status.code().unwrap_or(-1), dns)
}

fn uids(dns: &[String]) -> Vec<u64> {
    let mut v: Vec<u64> = dns.iter().filter_map(|d| d.strip_prefix("uid=")?.split(',').next()?.parse().ok()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn the_directory_applies_the_same_scopes_to_ldap_tools() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let person = |uid: u64| format!("uid={uid},ou=people,{s}");
    let resellers = format!("ou=reseller,{s}");
    let customers = "(objectClass=sstCustomer)";

    let (rc, dns) = ldapsearch_as(&app, Some((&person(5000901), ADMIN.1)), &resellers, customers);
    assert_eq!((rc, dns.len()), (0, 60), "provider reads every customer");
    let (rc, dns) = ldapsearch_as(&app, Some((&person(5000902), RESELLER1.1)), &resellers, customers);
    assert_eq!(rc, 0);
    assert_eq!(uids(&dns), (5000001..=5000020).collect::<Vec<_>>(), "reseller 1 reads its own customers only");
    let (_, dns) = ldapsearch_as(&app, Some((&person(5000903), RESELLER2.1)), &resellers, customers);
    assert_eq!(uids(&dns), (5000021..=5000040).collect::<Vec<_>>());
    let (_, dns) = ldapsearch_as(&app, Some((&person(5000905), CUSTOMER.1)), &resellers, "(objectClass=*)");
    assert!(dns.iter().all(|d| d.contains("uid=5000001,ou=customers") || *d == resellers), "{dns:?}");
    assert!(dns.iter().any(|d| d.starts_with("ou=address,uid=5000001")), "{dns:?}");
    let (_, dns) = ldapsearch_as(&app, None, &s, "(objectClass=*)");
    assert!(dns.is_empty(), "anonymous sees nothing: {dns:?}");
    let (rc, _) = ldapsearch_as(&app, Some((&person(5000906), INACTIVE.1)), &s, "(objectClass=*)");
    assert_eq!(rc, 49, "an inactive person cannot bind");
    // Nobody but the gateway and the root reads passwords; only the gateway writes customers.
    let gw = (app.slapd.gateway_dn.clone(), app.slapd.gateway_password.clone());
    let out = std::process::Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &app.slapd.url,
            "-D",
            &gw.0,
            "-w",
            &gw.1,
            "-b",
            &format!("ou=people,{s}"),
            "(mail=admin@stoney-cloud.org)",
            "userPassword",
            "mail",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mail: admin@stoney-cloud.org") && !text.contains("userPassword"), "{text}");
    let out = std::process::Command::new("ldapmodify")
        .args(["-x", "-H", &app.slapd.url, "-D", &person(5000902), "-w", RESELLER1.1])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(format!("dn: uid=5000001,ou=customers,uid=4000001,ou=reseller,{s}\nchangetype: modify\nreplace: o\no: hacked\n").as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert_eq!(out.code(), Some(50), "a reseller user cannot write through LDAP");
    // The gateway's account cannot write outside what it manages.
    let out = std::process::Command::new("ldapmodify")
        .args(["-x", "-H", &app.slapd.url, "-D", &gw.0, "-w", &gw.1])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(
                format!(
                    "dn: uid=5000902,ou=people,{s}\nchangetype: modify\nreplace: sstBelongsToUID\nsstBelongsToUID: 1\n"
                )
                .as_bytes(),
            )?;
            c.wait()
        })
        .unwrap();
    assert_eq!(out.code(), Some(50), "the gateway cannot promote a person");
}

/// ldapmodify as `dn` with the given LDIF; its exit code is the LDAP result code.
fn ldapmodify_as(app: &TestApp, dn: &str, password: &str, ldif: &str) -> i32 {
    let mut cmd = std::process::Command::new("ldapmodify");
    cmd.args(["-x", "-H", &app.slapd.url, "-D", dn, "-w", password]);
    with_input(&mut cmd, ldif).status.code().unwrap_or(-1)
}

/// The LDIF that adds a person with this uid and mail (and any further attribute lines).
fn person_ldif(s: &str, uid: u64, mail: &str, extra: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{s}\nchangetype: add\nobjectClass: top\nobjectClass: sstPerson\nuid: {uid}\n\
         givenName: Test\nsn: Person\nsstGender: n\nmail: {mail}\npreferredLanguage: en-GB\nsstTimeZoneOffset: UTC+01\n\
         sstIsActive: TRUE\nuserPassword: {{SSHA}}Hbs/LIr0neAxpp0GMcSUz+JueX99gMPb\n{extra}"
    )
}

#[tokio::test]
async fn people_are_read_by_scope_and_written_by_the_gateway_only_over_ldap() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let people = format!("ou=people,{s}");
    let person = |uid: u64| format!("uid={uid},ou=people,{s}");
    let as_root = |filter: &str| {
        let dns: Vec<String> = app
            .ldapsearch(&people, filter, &["1.1"])
            .lines()
            .filter_map(|l| l.strip_prefix("dn: ").map(str::to_string))
            .collect();
        uids(&dns)
    };
    let all = as_root("(objectClass=sstPerson)");
    assert!(all.len() > 6 && all.contains(&5000901) && all.contains(&5000906), "{all:?}");

    let (rc, dns) = ldapsearch_as(&app, Some((&person(5000901), ADMIN.1)), &people, "(objectClass=sstPerson)");
    assert_eq!((rc, uids(&dns)), (0, all.clone()), "the provider reads every person");
    let (rc, dns) = ldapsearch_as(&app, Some((&person(5000902), RESELLER1.1)), &people, "(objectClass=*)");
    assert_eq!(rc, 0);
    let reseller1 = as_root("(sstBelongsToResellerUID=4000001)");
    assert!(reseller1.contains(&5000902) && reseller1.contains(&5000905) && reseller1.len() > 2);
    assert_eq!(uids(&dns), reseller1, "a reseller's user reads the reseller's people");
    assert!(dns.contains(&people), "and ou=people itself: {dns:?}");
    let (rc, dns) = ldapsearch_as(&app, Some((&person(5000905), CUSTOMER.1)), &people, "(objectClass=*)");
    assert_eq!(rc, 0);
    let users = as_root("(sstBelongsToCustomerUID=5000001)");
    assert!(users.contains(&5000905) && users.len() > 1, "{users:?}");
    assert_eq!(uids(&dns), users, "a customer's user reads the customer's users");
    let employees = as_root("(sstEmployeeOfUID=5000001)");
    assert!(!employees.is_empty() && employees.iter().all(|e| users.contains(e)), "its staff are its users too");
    // No demo login has more than its customer's scope: every person of a reseller but
    // the reseller's own user belongs to a customer.
    let customers_people = as_root("(&(sstBelongsToResellerUID=4000001)(sstBelongsToCustomerUID=*))");
    assert_eq!(reseller1.iter().filter(|u| !customers_people.contains(u)).collect::<Vec<_>>(), [&5000902]);
    let (rc, dns) = ldapsearch_as(&app, Some((&person(5000903), RESELLER2.1)), &people, "(uid=5000905)");
    assert_eq!((rc, dns.len()), (0, 0), "another reseller's user does not see the person");
    // A demo user binds with the demo password and reads itself.
    let demo = users.iter().copied().find(|u| *u != 5000905).unwrap();
    let (rc, dns) = ldapsearch_as(&app, Some((&person(demo), "demo-secret")), &person(demo), "(objectClass=*)");
    assert_eq!((rc, uids(&dns)), (0, vec![demo]));

    // Persons write nothing over LDAP, not even their own entry (only their password).
    let rename = |uid: u64| format!("dn: {}\nchangetype: modify\nreplace: sn\nsn: hacked\n", person(uid));
    assert_eq!(
        ldapmodify_as(&app, &person(5000902), RESELLER1.1, &rename(5000905)),
        50,
        "a reseller user cannot write a person"
    );
    assert_eq!(ldapmodify_as(&app, &person(5000902), RESELLER1.1, &rename(5000902)), 50, "nor itself");
    assert_eq!(ldapmodify_as(&app, &person(5000901), ADMIN.1, &rename(5000902)), 50, "nor the provider");
    let ldif = person_ldif(&s, 5001501, "new@example.com", "sstBelongsToResellerUID: 4000001\n");
    assert_eq!(ldapmodify_as(&app, &person(5000902), RESELLER1.1, &ldif), 50, "a reseller user cannot add a person");

    // The gateway's account adds, changes and removes people, and sets their passwords.
    let gw = (app.slapd.gateway_dn.clone(), app.slapd.gateway_password.clone());
    let promoted = person_ldif(&s, 5001500, "promoted@example.com", "sstBelongsToUID: 1\n");
    assert_eq!(ldapmodify_as(&app, &gw.0, &gw.1, &promoted), 50, "the gateway cannot add a provider user");
    let ldif = person_ldif(
        &s,
        5001500,
        "new.person@example.com",
        "sstBelongsToResellerUID: 4000001\nsstBelongsToCustomerUID: 5000001\n",
    );
    assert_eq!(ldapmodify_as(&app, &gw.0, &gw.1, &ldif), 0, "the gateway adds a person");
    let change = format!(
        "dn: {}\nchangetype: modify\nreplace: sn\nsn:: TcO8bGxlcg==\n-\nreplace: mobile\nmobile: +41 79 123 45 67\n-\n\
         replace: sstIsActive\nsstIsActive: FALSE\n-\nreplace: sstBelongsToCustomerUID\nsstBelongsToCustomerUID: 5000002\n",
        person(5001500)
    );
    assert_eq!(ldapmodify_as(&app, &gw.0, &gw.1, &change), 0, "the gateway changes a person");
    let promote = format!("dn: {}\nchangetype: modify\nadd: sstBelongsToUID\nsstBelongsToUID: 1\n", person(5001500));
    assert_eq!(ldapmodify_as(&app, &gw.0, &gw.1, &promote), 50, "the gateway cannot promote a person");
    let passwd = |target: &str, new: &str| {
        std::process::Command::new("ldappasswd")
            .args(["-x", "-H", &app.slapd.url, "-D", &gw.0, "-w", &gw.1, "-s", new, target])
            .output()
            .unwrap()
    };
    let out = passwd(&person(5001500), "first-secret");
    assert!(out.status.success(), "the gateway sets a deactivated person's password: {out:?}");
    let reactivate = format!("dn: {}\nchangetype: modify\nreplace: sstIsActive\nsstIsActive: TRUE\n", person(5001500));
    assert_eq!(ldapmodify_as(&app, &gw.0, &gw.1, &reactivate), 0);
    let out = passwd(&person(5001500), "new-secret");
    assert!(out.status.success(), "{out:?}");
    let (rc, dns) = ldapsearch_as(&app, Some((&person(5001500), "new-secret")), &people, "(objectClass=*)");
    assert_eq!(rc, 0, "the person binds with the new password");
    assert_eq!(uids(&dns), as_root("(sstBelongsToCustomerUID=5000002)"), "and reads its new customer's users");
    let (rc, _) = ldapsearch_as(&app, Some((&person(5001500), "first-secret")), &people, "(objectClass=*)");
    assert_eq!(rc, 49, "not with the old one");
    let stored = app.ldapsearch(&person(5001500), "(objectClass=*)", &["userPassword"]);
    let hash = stored.lines().find_map(|l| l.strip_prefix("userPassword:: ")).expect("a stored password");
    use base64::Engine;
    let hash = base64::engine::general_purpose::STANDARD.decode(hash).unwrap();
    assert!(hash.starts_with(b"{SSHA}"), "stored as a salted hash: {}", String::from_utf8_lossy(&hash));
    let text = ldapsearch_attrs(&app, (&gw.0, &gw.1), &person(5001500), &["userPassword", "sn", "mobile"]);
    assert!(
        text.contains("mobile: +41 79 123 45 67") && !text.contains("userPassword"),
        "the gateway never reads a hash: {text}"
    );
    let (rc, _) = ldapsearch_as(&app, Some((&person(5000906), INACTIVE.1)), &people, "(objectClass=*)");
    assert_eq!(rc, 49, "a deactivated person still cannot bind");

    // Removing a person, as the gateway does: moved to ou=trash under a new RDN (in a
    // transaction when more goes with it; slapd 2.5 cannot also delete it in there), then
    // deleted there.
    use stoney_gateway::directory::Op;
    let trash = format!("ou=trash,ou=administration,{s}");
    let moved = Op::Move { dn: person(5001500), new_rdn: "uid=5001500-1".into(), new_superior: trash.clone() };
    app.state.directory.apply(vec![moved.into()]).await.expect("the gateway moves a person to the trash");
    app.state
        .directory
        .apply(vec![Op::Delete { dn: format!("uid=5001500-1,{trash}") }.into()])
        .await
        .expect("and deletes it there");
    assert_eq!(app.ldapsearch(&s, "(|(uid=5001500)(uid=5001500-1))", &["1.1"]).trim(), "");
}

/// ldapsearch as `who` for the given attributes of one entry, as LDIF text.
fn ldapsearch_attrs(app: &TestApp, who: (&str, &str), dn: &str, attrs: &[&str]) -> String {
    let out = std::process::Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &app.slapd.url,
            "-D",
            who.0,
            "-w",
            who.1,
            "-s",
            "base",
            "-b",
            dn,
        ])
        .arg("(objectClass=*)")
        .args(attrs)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_mail_belongs_to_one_person_whatever_its_case() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let gw = (app.slapd.gateway_dn.clone(), app.slapd.gateway_password.clone());
    let person = |uid: u64| format!("uid={uid},ou=people,{s}");

    // Concurrent adds of one mail in different cases, each in a transaction as the
    // gateway writes people: exactly one succeeds.
    let mails =
        ["Race.Person@Example.com", "race.person@example.com", "RACE.PERSON@EXAMPLE.COM", "race.Person@example.COM"];
    let start = std::sync::Arc::new(std::sync::Barrier::new(mails.len() * 2));
    let mut racers = Vec::new();
    for round in 0..2u64 {
        for (i, mail) in mails.iter().enumerate() {
            let (url, gw, start) = (app.slapd.url.clone(), gw.clone(), start.clone());
            let ldif = person_ldif(&s, 5001600 + round * 10 + i as u64, &format!("{round}{mail}"), "");
            racers.push(std::thread::spawn(move || {
                let mut cmd = std::process::Command::new("ldapmodify");
                cmd.args(["-x", "-H", &url, "-D", &gw.0, "-w", &gw.1, "-E", "txn=commit"]);
                start.wait();
                with_input(&mut cmd, &ldif).status.code().unwrap_or(-1)
            }));
        }
    }
    let mut codes: Vec<i32> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    codes.sort();
    assert_eq!(
        codes,
        [0, 0, 19, 19, 19, 19, 19, 19],
        "one add per mail succeeds, the others are constraint violations"
    );
    let winners = app.ldapsearch(&format!("ou=people,{s}"), "(mail=*race.person@example.com)", &["uid"]);
    assert_eq!(winners.lines().filter(|l| l.starts_with("uid: ")).count(), 2, "{winners}");
    // A single add outside a transaction is checked too.
    let ldif = person_ldif(&s, 5001620, "0RACE.person@example.com", "");
    assert_eq!(ldapmodify_as(&app, &gw.0, &gw.1, &ldif), 19);

    // Single writes of mail and transactions that write mail at the same time never
    // hang the server (as they do when the mail rule has `serialize`).
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let (url, gw, s) = (app.slapd.url.clone(), gw.clone(), s.clone());
        writers.push(std::thread::spawn(move || {
            for i in 0..15u64 {
                let uid = 5002000 + w * 100 + i * 2;
                let mut cmd = std::process::Command::new("timeout");
                cmd.args(["20", "ldapmodify", "-x", "-H", &url, "-D", &gw.0, "-w", &gw.1]);
                let mut ldif = person_ldif(&s, uid, &format!("w{uid}@example.com"), "");
                if w % 2 == 0 {
                    cmd.args(["-E", "txn=commit"]);
                    ldif = format!("{ldif}\n{}", person_ldif(&s, uid + 1, &format!("w{}@example.com", uid + 1), ""));
                }
                let code = with_input(&mut cmd, &ldif).status.code();
                assert_eq!(code, Some(0), "writer {w}, write {i}");
            }
        }));
    }
    for w in writers {
        w.join().expect("every write is done");
    }

    // In a transaction, a duplicate mail fails the whole transaction at its commit.
    use stoney_gateway::directory::{Guarded, Op};
    let add = |uid: u64, mail: &str| -> Guarded {
        let uid_s = uid.to_string();
        let attrs: Vec<(String, Vec<String>)> = [
            ("objectClass", vec!["top", "sstPerson"]),
            ("uid", vec![uid_s.as_str()]),
            ("givenName", vec!["Txn"]),
            ("sn", vec!["Person"]),
            ("mail", vec![mail]),
            ("preferredLanguage", vec!["en-GB"]),
            ("sstTimeZoneOffset", vec!["UTC+01"]),
            ("userPassword", vec!["{SSHA}Hbs/LIr0neAxpp0GMcSUz+JueX99gMPb"]),
        ]
        .into_iter()
        .map(|(a, v)| (a.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        Op::Add { dn: person(uid), attrs }.into()
    };
    let err = app
        .state
        .directory
        .apply(vec![add(5001700, "fresh@example.com"), add(5001701, "Customer@Example.COM")])
        .await
        .expect_err("a duplicate mail is refused");
    assert_eq!(err.rc(), Some(19), "{err}");
    assert_eq!(app.ldapsearch(&s, "(|(uid=5001700)(uid=5001701))", &["1.1"]).trim(), "", "nothing of it is written");
    app.state
        .directory
        .apply(vec![add(5001700, "fresh@example.com"), add(5001701, "fresh2@example.com")])
        .await
        .unwrap();

    // A person in ou=trash holds no mail any more, and moves and deletes pass the overlay.
    let winner = winners.lines().find_map(|l| l.strip_prefix("uid: ")).unwrap().parse::<u64>().unwrap();
    let mail = app.ldapsearch(&person(winner), "(objectClass=*)", &["mail"]);
    let mail = mail.lines().find_map(|l| l.strip_prefix("mail: ")).unwrap().to_string();
    let trash = format!("ou=trash,ou=administration,{s}");
    let to_trash = |uid: u64| -> Guarded {
        Op::Move { dn: person(uid), new_rdn: format!("uid={uid}-1"), new_superior: trash.clone() }.into()
    };
    app.state.directory.apply(vec![to_trash(winner)]).await.expect("moved to ou=trash");
    assert_eq!(
        ldapmodify_as(&app, &gw.0, &gw.1, &person_ldif(&s, 5001702, &mail.to_uppercase(), "")),
        0,
        "the mail is free again"
    );
    app.state
        .directory
        .apply(vec![Op::Delete { dn: format!("uid={winner}-1,{trash}") }.into()])
        .await
        .expect("deleted in ou=trash");
    // (The gateway never renames inside a transaction: slapd 2.5 can crash on it.)
}

#[tokio::test]
async fn subscription_keys_are_read_by_the_gateway_only_over_ldap() {
    let app = spawn_app().await;
    let s = app.suffix().to_string();
    let keys = format!("ou=subscription-keys,uid=4000001,ou=reseller,{s}");
    let person = |uid: u64| format!("uid={uid},ou=people,{s}");
    for (who, password) in [(person(5000902), RESELLER1.1), (person(5000901), ADMIN.1), (person(5000905), CUSTOMER.1)] {
        let (_, dns) = ldapsearch_as(&app, Some((&who, password)), &keys, "(objectClass=*)");
        assert!(dns.is_empty(), "{who} reads {dns:?}");
        let (_, dns) = ldapsearch_as(
            &app,
            Some((&who, password)),
            &s,
            "(|(objectClass=sgwSubscriptionKey)(ou=subscription-keys))",
        );
        assert!(dns.is_empty(), "{who} finds {dns:?}");
        let (_, dns) = ldapsearch_as(&app, Some((&who, password)), &s, "(sgwKeyHash=*)");
        assert!(dns.is_empty(), "{who} finds {dns:?}");
    }
    let gw = (app.slapd.gateway_dn.clone(), app.slapd.gateway_password.clone());
    let (rc, dns) = ldapsearch_as(&app, Some((&gw.0, &gw.1)), &keys, "(objectClass=sgwSubscriptionKey)");
    assert_eq!((rc, dns.len()), (0, 1), "the gateway reads the demo key: {dns:?}");
    let ldif = format!(
        "dn: cn=mine,{keys}\nchangetype: add\nobjectClass: sgwSubscriptionKey\ncn: mine\nsgwKeyHash: {}\n",
        "0".repeat(64)
    );
    assert_eq!(ldapmodify_as(&app, &person(5000901), ADMIN.1, &ldif), 50, "the provider cannot add a key over LDAP");
    assert_eq!(ldapmodify_as(&app, &person(5000902), RESELLER1.1, &ldif), 50, "nor a reseller user");
}

/// The change feed shows each role exactly the changes of the resources it may read: an
/// admin changes customers, resellers and people of both tenants with an LDAP tool, and
/// every role's events name exactly those of them that the role can `GET`.
#[tokio::test]
async fn the_change_feed_shows_each_role_exactly_what_it_may_read() {
    use Role::*;
    let app = spawn_app().await;
    let start = app.get("/v1/customers?per_page=1").await.headers()["x-changes-position"].to_str().unwrap().to_string();
    let first = |v: Value| v.as_array().and_then(|a| a.first()).and_then(|p| p["id"].as_u64()).unwrap();
    let own_user = first(app.get("/v1/customers/5000001/users").await.json().await.unwrap());
    let other_person = first(app.get("/v1/people?belongsToResellerID=4000002&per_page=1").await.json().await.unwrap());
    let b = customers_by_reseller(&app)[&4000002][0];
    let s = app.suffix().to_string();
    let billing = |id: u64, r: u64| format!("ou=address,uid={id},ou=customers,uid={r},ou=reseller,{s}");
    let changed: Vec<(&str, u64, String)> = vec![
        ("customers", 5000001, billing(5000001, 4000001)),
        ("customers", 5000002, billing(5000002, 4000001)),
        ("customers", b, billing(b, 4000002)),
        ("resellers", 4000001, format!("ou=address,uid=4000001,ou=reseller,{s}")),
        ("resellers", 4000002, format!("ou=address,uid=4000002,ou=reseller,{s}")),
        ("people", own_user, format!("uid={own_user},ou=people,{s}")),
        ("people", other_person, format!("uid={other_person},ou=people,{s}")),
    ];
    for (n, (resource, _, dn)) in changed.iter().enumerate() {
        let attr = if *resource == "people" { "telephoneNumber" } else { "l" };
        let value = if *resource == "people" { format!("+41 31 555 00 {n:02}") } else { format!("Ort {n}") };
        let out = app.ldapmodify(&format!("dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n"));
        assert!(out.status.success(), "{dn}: {out:?}");
    }
    // Everything has arrived once the provider sees all of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = app.get(&format!("/v1/changes?since={start}&wait=1")).await.json().await.unwrap();
        if body["changes"].as_array().unwrap().len() >= changed.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the provider gets every change: {body}");
    }
    let mut failures = Vec::new();
    for role in [Provider, ResellerA, ResellerB, CustomerOfA] {
        let (u, p) = role.creds().unwrap();
        let res = app.req_as((u, p), Method::GET, &format!("/v1/changes?since={start}&wait=0")).send().await.unwrap();
        let body: Value = res.json().await.unwrap();
        let mut got: Vec<String> = body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["subject"].as_str().unwrap().trim_start_matches(&app.base).to_string())
            .collect();
        got.sort();
        let mut want = Vec::new();
        for (resource, id, _) in &changed {
            let path = format!("/v1/{resource}/{id}");
            if send(&app, role, Method::GET, &path, None).await == StatusCode::OK {
                want.push(path);
            }
        }
        want.sort();
        if got != want {
            failures.push(format!("{role:?}: events {got:?}, readable {want:?}"));
        }
    }
    for role in [WrongPassword, Unknown, Inactive, Anonymous] {
        let got = send(&app, role, Method::GET, &format!("/v1/changes?since={start}&wait=0"), None).await;
        if got != StatusCode::UNAUTHORIZED {
            failures.push(format!("{role:?}: want 401, got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
