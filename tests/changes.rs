//! The change feed (`GET /v1/changes`) against a real directory: every change, made
//! through REST or with an LDAP tool, arrives as one resource-level event for exactly the
//! callers who may read the resource, in order, resumable, and a list's position splits
//! the changes exactly.

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use common::*;
use stoney_slapd::SlapdOptions;

/// The changes after `since` the user sees (a long poll of up to 5 s), and the next
/// position.
async fn poll(app: &TestApp, user: (&str, &str), since: &str, query: &str) -> (Vec<Value>, String) {
    let res = app.req_as(user, Method::GET, &format!("/v1/changes?since={since}&wait=5{query}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    (body["changes"].as_array().unwrap().clone(), body["next"].as_str().unwrap().to_string())
}

/// Polls until `n` events came (or 10 s passed).
async fn events(app: &TestApp, user: (&str, &str), since: &str, n: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut at = since.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while all.len() < n && std::time::Instant::now() < deadline {
        let (got, next) = poll(app, user, &at, "&wait=1").await;
        all.extend(got);
        at = next;
    }
    all
}

/// Polls until an event `done` accepts came (or 10 s passed); every event up to it.
async fn events_until(app: &TestApp, user: (&str, &str), since: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut all = Vec::new();
    let mut at = since.to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !all.iter().any(&done) && std::time::Instant::now() < deadline {
        let (got, next) = poll(app, user, &at, "&wait=1").await;
        all.extend(got);
        at = next;
    }
    all
}

/// The position a list answers with.
async fn position(app: &TestApp, user: (&str, &str)) -> String {
    let res = app.req_as(user, Method::GET, "/v1/customers?per_page=1").send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.headers()["x-changes-position"].to_str().unwrap().to_string()
}

fn seq(position: &str) -> u64 {
    position.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn rest_writes_arrive_as_one_event_per_resource_change() {
    let app = spawn_app().await;
    let start = position(&app, ADMIN).await;

    // A create writes the customer, its billing and its shipping entry: one event, whose
    // data is the customer as GET shows it.
    let mut body = company("Feed AG");
    body["shippingAddress"] = address();
    let id = app.create(&body).await;
    let got = events(&app, ADMIN, &start, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    let doc: Value = app.get(&format!("/v1/customers/{id}")).await.json().await.unwrap();
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["type"], "org.stoney.customer.created");
    assert_eq!(e["subject"], app.url(&format!("/v1/customers/{id}")));
    assert_eq!(e["data"]["id"], id);
    assert_eq!(e["data"]["reseller"], 4000001);
    assert_eq!(e["data"]["changed"], doc, "the whole customer as GET shows it");
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    let after_create = e["id"].as_str().unwrap().to_string();

    // A change of the billing address is an update of its customer, with what changed.
    let res = app
        .send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"billingAddress": {"localityName": "Thun"}}))
        .await;
    assert_eq!(res.status(), 200);
    let got = events(&app, ADMIN, &after_create, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "org.stoney.customer.updated");
    assert_eq!(got[0]["data"]["changed"], json!({"billingAddress": {"localityName": "Thun"}}));
    let after_patch = got[0]["id"].as_str().unwrap().to_string();

    // Removing the shipping address: a merge patch with null.
    let res = app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"shippingAddress": null})).await;
    assert_eq!(res.status(), 200);
    let got = events(&app, ADMIN, &after_patch, 1).await;
    assert_eq!(got[0]["data"]["changed"], json!({"shippingAddress": null}));
    let before_move = got[0]["id"].as_str().unwrap().to_string();

    // A move to another reseller: moved for the provider, deleted for the old
    // reseller's users, created for the new one's.
    let res =
        app.send_json(Method::PATCH, &format!("/v1/customers/{id}"), &json!({"belongsToResellerID": 4000002})).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // The move and the attribute that confirms it are two steps: in between the customer
    // belongs to no reseller, which a slow moment shows as a move of its own.
    let got = events_until(&app, ADMIN, &before_move, |e| e["data"]["reseller"] == 4000002).await;
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    assert!(got.iter().all(|e| e["type"] == "org.stoney.customer.moved"), "{got:?}");
    assert_eq!(got.last().unwrap()["data"]["reseller"], 4000002);
    assert_eq!(got[0]["data"]["previousReseller"], 4000001);
    let old = events(&app, RESELLER1, &before_move, 1).await;
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["type"], "org.stoney.customer.deleted");
    assert_eq!(old[0]["data"], json!({"id": id, "reseller": 4000001}));
    let new = events(&app, RESELLER2, &before_move, 1).await;
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["type"], "org.stoney.customer.created");
    let doc: Value = app.get(&format!("/v1/customers/{id}")).await.json().await.unwrap();
    assert_eq!(new[0]["data"]["changed"], doc);
    let after_move = got.last().unwrap()["id"].as_str().unwrap().to_string();

    // A delete names the id it had.
    assert_eq!(app.req(Method::DELETE, &format!("/v1/customers/{id}")).send().await.unwrap().status(), 200);
    let got = events(&app, ADMIN, &after_move, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "org.stoney.customer.deleted");
    assert_eq!(got[0]["data"], json!({"id": id, "reseller": 4000002}));
    assert_eq!(got[0]["subject"], app.url(&format!("/v1/customers/{id}")));
    // Positions grow; from the last one nothing more comes.
    assert!(seq(got[0]["id"].as_str().unwrap()) > seq(&after_move));
    let (rest, _) = poll(&app, ADMIN, got[0]["id"].as_str().unwrap(), "&wait=0").await;
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn an_admins_ldap_changes_arrive_and_each_caller_sees_only_its_own() {
    let app = spawn_app().await;
    let start = position(&app, ADMIN).await;
    let billing = |id: u64, reseller: u64| {
        format!("ou=address,uid={id},ou=customers,uid={reseller},ou=reseller,{}", app.suffix())
    };
    for (id, city) in [(5000001u64, "Biel"), (5000002, "Chur")] {
        let out = app.ldapmodify(&format!("dn: {}\nchangetype: modify\nreplace: l\nl: {city}\n", billing(id, 4000001)));
        assert!(out.status.success(), "{out:?}");
    }
    let all = events(&app, ADMIN, &start, 2).await;
    let ids: Vec<u64> = all.iter().map(|e| e["data"]["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [5000001, 5000002], "in the order they were made");
    assert_eq!(all[0]["data"]["changed"], json!({"billingAddress": {"localityName": "Biel"}}));
    assert_eq!(all[1]["type"], "org.stoney.customer.updated");

    // The customer's user sees its own customer only; another reseller's, nothing; the
    // customer's reseller, both.
    let own = events(&app, CUSTOMER, &start, 2).await;
    assert_eq!(own.iter().map(|e| e["data"]["id"].as_u64().unwrap()).collect::<Vec<_>>(), [5000001]);
    let (other, _) = poll(&app, RESELLER2, &start, "&wait=0").await;
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(events(&app, RESELLER1, &start, 2).await.len(), 2);

    // Filters by resource and id.
    let (one, _) = poll(&app, ADMIN, &start, "&wait=0&id=5000002").await;
    assert_eq!(one.len(), 1);
    let (none, _) = poll(&app, ADMIN, &start, "&wait=0&resource=people,resellers").await;
    assert!(none.is_empty(), "{none:?}");
    let res = app.get(&format!("/v1/changes?since={start}&wait=0&resource=planets")).await;
    assert_eq!(res.status(), 400);
    let res = app.get("/v1/changes?sinse=1").await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
}

#[tokio::test]
async fn people_and_resellers_have_their_own_events() {
    let app = spawn_app().await;
    let start = position(&app, ADMIN).await;
    let res = app
        .send_json(Method::PATCH, "/v1/resellers/4000001", &json!({"billingAddress": {"localityName": "Aarau"}}))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let got = events(&app, ADMIN, &start, 1).await;
    assert_eq!(got[0]["type"], "org.stoney.reseller.updated");
    assert_eq!(got[0]["subject"], app.url("/v1/resellers/4000001"));
    let next = got[0]["id"].as_str().unwrap().to_string();
    let res = app.send_json(Method::PATCH, "/v1/people/5000101", &json!({"telephoneNumber": "+41 31 000 00 01"})).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let got = events(&app, ADMIN, &next, 1).await;
    assert_eq!(got[0]["type"], "org.stoney.person.updated");
    assert!(got[0]["data"]["changed"].get("telephoneNumber").is_some(), "{}", got[0]);
    assert!(got[0]["data"]["changed"].get("password").is_none());
}

#[tokio::test]
async fn positions_that_are_not_in_the_window_are_gone() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| s.changes.window = 2).await;
    let start = position(&app, ADMIN).await;
    for bad in ["nonsense", "0000000000000001-0", &format!("{start}9")] {
        let res = app.get(&format!("/v1/changes?since={bad}")).await;
        assert_eq!(res.status(), 410, "{bad}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "gone");
    }
    for n in 0..3 {
        app.create(&company(&format!("Window {n}"))).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = events(&app, ADMIN, &start, 0).await;
    let res = app.get(&format!("/v1/changes?since={start}")).await;
    assert_eq!(res.status(), 410, "three changes do not fit a window of two");
}

/// One Server-Sent Events connection, read event by event.
struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(app: &TestApp, user: (&str, &str), last: Option<&str>) -> Sse {
        let mut req = app.req_as(user, Method::GET, "/v1/changes").header("accept", "text/event-stream");
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert_eq!(res.headers()["x-accel-buffering"], "no", "proxies pass events on as they come");
        Sse { res, buf: String::new() }
    }

    /// The next block (lines up to a blank line), within 10 s.
    async fn block(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let b = self.buf[..i].to_string();
                self.buf.drain(..i + 2);
                return b;
            }
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), self.res.chunk()).await.expect("an event in time");
            let chunk = chunk.unwrap().expect("the stream goes on");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event (its `event:` name, `id:` and data), skipping comments.
    async fn event(&mut self) -> (String, String, Value) {
        loop {
            let b = self.block().await;
            let field = |name: &str| b.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
            if let Some(data) = field("data:") {
                let name = field("event:").unwrap_or_else(|| "message".into());
                return (name, field("id:").unwrap_or_default(), serde_json::from_str(&data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn an_event_stream_resumes_after_the_last_event_id_without_gaps_or_repeats() {
    let app = spawn_app().await;
    let mut sse = Sse::open(&app, ADMIN, None).await;
    let first = sse.block().await;
    assert!(first.contains("retry:"), "the stream says when to reconnect: {first}");
    let a = app.create(&company("Stream A")).await;
    let (name, id_a, e) = sse.event().await;
    assert_eq!(name, "message");
    assert_eq!((e["data"]["id"].as_u64(), e["id"].as_str()), (Some(a), Some(id_a.as_str())));
    drop(sse);
    // Written while the subscriber is away.
    let b = app.create(&company("Stream B")).await;
    let c = app.create(&company("Stream C")).await;
    let mut sse = Sse::open(&app, ADMIN, Some(&id_a)).await;
    let _ = sse.block().await;
    let got_b = sse.event().await.2;
    let got_c = sse.event().await.2;
    assert_eq!((got_b["data"]["id"].as_u64(), got_c["data"]["id"].as_u64()), (Some(b), Some(c)));
    assert_eq!(got_b["type"], "org.stoney.customer.created");

    // A position the window does not hold: the stream says reset, with the error body.
    let mut sse = Sse::open(&app, ADMIN, Some("0000000000000000-1")).await;
    let (name, _, body) = sse.event().await;
    assert_eq!(name, "reset");
    assert_eq!(body["error"]["code"], "gone");
}

#[tokio::test]
async fn a_list_and_the_changes_after_its_position_hold_every_concurrent_write_once() {
    let app = spawn_app().await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let (client, base, done) = (app.client.clone(), app.base.clone(), done.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..60 {
                let res = client
                    .post(format!("{base}/v1/customers"))
                    .basic_auth(ADMIN.0, Some(ADMIN.1))
                    .json(&company(&format!("Handshake {n}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                ids.push(res.json::<Value>().await.unwrap()["id"].as_u64().unwrap());
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ids
        })
    };
    // The list is taken while the writes run: after ten of them.
    while done.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let res = app.get("/v1/customers?customerName=Handshake*&per_page=100").await;
    let position = res.headers()["x-changes-position"].to_str().unwrap().to_string();
    let listed: Vec<u64> = res.json::<Vec<Value>>().await.unwrap().iter().map(|c| c["id"].as_u64().unwrap()).collect();
    let written = writer.await.unwrap();
    assert!(listed.len() < written.len(), "the list was taken while the writes ran: {}", listed.len());
    let mut followed = Vec::new();
    let mut at = position.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let (got, next) = poll(&app, ADMIN, &at, "&wait=1").await;
        for e in got {
            assert!(seq(e["id"].as_str().unwrap()) > seq(&position), "nothing the list holds comes again");
            followed.push(e["data"]["id"].as_u64().unwrap());
        }
        at = next;
        if written.iter().all(|id| listed.contains(id) || followed.contains(id)) {
            break;
        }
    }
    let missed: Vec<&u64> = written.iter().filter(|id| !listed.contains(id) && !followed.contains(id)).collect();
    assert!(missed.is_empty(), "neither listed nor followed: {missed:?}");
}

#[tokio::test]
async fn open_streams_are_capped_per_caller() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.changes.max_streams_per_caller = 1
    })
    .await;
    let held = Sse::open(&app, ADMIN, None).await;
    let res = app.get("/v1/changes?wait=0").await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    // Another caller has its own.
    assert_eq!(app.req_as(RESELLER1, Method::GET, "/v1/changes?wait=0").send().await.unwrap().status(), 200);
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = app.get("/v1/changes?wait=0").await.status();
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed stream gives its place back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_event_stream_outlives_the_idle_timeout_and_keeps_itself_alive() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.http.idle_timeout_ms = 300;
        s.changes.heartbeat_secs = 1;
    })
    .await;
    let mut sse = Sse::open(&app, ADMIN, None).await;
    let _ = sse.block().await;
    // Quiet for longer than the idle timeout: heartbeats come.
    let beat = sse.block().await;
    assert!(beat.starts_with(':'), "a comment: {beat}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = app.create(&company("Late AG")).await;
    let (_, _, e) = sse.event().await;
    assert_eq!(e["data"]["id"].as_u64(), Some(id));
}

#[tokio::test]
async fn an_admins_ldap_create_move_and_delete_are_created_moved_and_deleted() {
    let app = spawn_app().await;
    let start = position(&app, ADMIN).await;
    let s = app.suffix().to_string();
    let dn = format!("uid=5009001,ou=customers,uid=4000001,ou=reseller,{s}");
    let add = format!(
        "dn: {dn}\nchangetype: add\nobjectClass: top\nobjectClass: sstCustomer\nobjectClass: sstRelationship\n\
         uid: 5009001\nsstIsCompany: TRUE\nsstIsActive: TRUE\nsstBelongsToResellerUID: 4000001\no: Hand AG\n\n\
         dn: ou=address,{dn}\nchangetype: add\nobjectClass: top\nobjectClass: organizationalUnit\nobjectClass: sstAddress\n\
         ou: address\nsstGender: f\ngivenName: Ada\nsn: Admin\npostalAddress: Handweg 1\npostalCode: 3000\n\
         l: Bern\nc: CH\npreferredLanguage: de-CH\nmail: ada@example.com\n"
    );
    let out = app.ldapmodify(&add);
    assert!(out.status.success(), "{out:?}");
    // Two adds by hand, not one transaction: one change when they come within the merge
    // window (as here, normally), else the billing address follows as an update.
    let got = events_until(&app, ADMIN, &start, |e| e["data"]["changed"]["billingAddress"].is_object()).await;
    assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
    assert_eq!(got[0]["type"], "org.stoney.customer.created");
    let doc: Value = app.get("/v1/customers/5009001").await.json().await.unwrap();
    if got.len() == 1 {
        assert_eq!(got[0]["data"]["changed"], doc);
    } else {
        assert_eq!(got[1]["data"]["changed"]["billingAddress"], doc["billingAddress"]);
    }
    let at = got.last().unwrap()["id"].as_str().unwrap().to_string();

    // Moved by hand to another reseller, the way the gateway moves: the subtree and the
    // attribute that confirms the reseller.
    let moved = format!(
        "dn: {dn}\nchangetype: modrdn\nnewrdn: uid=5009001\ndeleteoldrdn: 1\nnewsuperior: ou=customers,uid=4000002,ou=reseller,{s}\n\n\
         dn: uid=5009001,ou=customers,uid=4000002,ou=reseller,{s}\nchangetype: modify\nreplace: sstBelongsToResellerUID\nsstBelongsToResellerUID: 4000002\n"
    );
    let out = app.ldapmodify(&moved);
    assert!(out.status.success(), "{out:?}");
    let got = events_until(&app, ADMIN, &at, |e| e["data"]["reseller"] == 4000002).await;
    let last = got.last().expect("an event");
    assert_eq!(last["type"], "org.stoney.customer.moved", "{got:?}");
    assert_eq!(last["data"]["reseller"], 4000002);
    let at = last["id"].as_str().unwrap().to_string();

    let out = std::process::Command::new("ldapdelete")
        .args(["-x", "-r", "-H", &app.slapd.url, "-D", &app.slapd.root_dn, "-w", &app.slapd.root_password])
        .arg(format!("uid=5009001,ou=customers,uid=4000002,ou=reseller,{s}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let got = events(&app, ADMIN, &at, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "org.stoney.customer.deleted");
    assert_eq!(got[0]["data"], json!({"id": 5009001, "reseller": 4000002}));
}

/// The directory restarts while a consumer follows: changes made after it is back arrive
/// on the same position line (the synchronisation resumes from its cookie), or the
/// position is gone (410); never a silent gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_restart_mid_stream_loses_no_change() {
    let mut app = spawn_app().await;
    let start = position(&app, ADMIN).await;
    let a = app.create(&company("Before Restart AG")).await;
    let got = events(&app, ADMIN, &start, 1).await;
    assert_eq!(got[0]["data"]["id"].as_u64(), Some(a));
    let at = got[0]["id"].as_str().unwrap().to_string();
    tokio::task::block_in_place(|| app.slapd.restart()).expect("slapd restarts");
    // Writes while the gateway reconnects may be 503; the first acknowledged one counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let b = loop {
        let res = app.post_customer(&company("After Restart AG")).await;
        if res.status() == 201 {
            break res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "writes work again: {}", res.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut cursor = at;
    loop {
        let res = app.get(&format!("/v1/changes?since={cursor}&wait=1")).await;
        if res.status() == 410 {
            // Gone: the list has it.
            assert_eq!(app.get(&format!("/v1/customers/{b}")).await.status(), 200);
            break;
        }
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let ids: Vec<u64> =
            body["changes"].as_array().unwrap().iter().map(|e| e["data"]["id"].as_u64().unwrap()).collect();
        assert!(!ids.contains(&a), "nothing comes twice");
        if ids.contains(&b) {
            break;
        }
        cursor = body["next"].as_str().unwrap().to_string();
        assert!(std::time::Instant::now() < deadline, "the create after the restart arrives");
    }
}
