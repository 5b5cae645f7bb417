//! The examples of `docs/api.md` run as written against the demo data: each `http`
//! block is a request, the next one the status, headers (`*`: present) and the part of
//! the body the response must contain.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;

struct Example {
    request: String,
    response: String,
}

fn http_blocks(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```http" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(block.join("\n"));
        }
    }
    out
}

fn examples(doc: &str) -> Vec<Example> {
    let blocks = http_blocks(doc);
    assert!(blocks.len().is_multiple_of(2), "every request has its response");
    blocks.chunks(2).map(|p| Example { request: p[0].clone(), response: p[1].clone() }).collect()
}

/// The head lines and the body of a block.
fn split(block: &str) -> (Vec<&str>, &str) {
    match block.split_once("\n\n") {
        Some((head, body)) => (head.lines().collect(), body.trim()),
        None => (block.lines().collect(), ""),
    }
}

/// Whether `actual` holds everything `expected` says: the same scalars, every key of an
/// object, the first elements of an array.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|x| contains(x, v))),
        (Value::Array(a), Value::Array(e)) => e.len() <= a.len() && e.iter().zip(a).all(|(e, a)| contains(a, e)),
        (a, e) => a == e,
    }
}

#[tokio::test]
async fn the_api_guide_examples_answer_as_written() {
    let app = spawn_app().await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let all = examples(&doc);
    assert!(all.len() >= 10, "the guide has its examples");
    for ex in all {
        let (head, body) = split(&ex.request);
        let (method, path) = head[0].split_once(' ').unwrap();
        let mut req = app.client.request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(path));
        for h in &head[1..] {
            let (k, v) = h.split_once(": ").unwrap();
            req = req.header(k, v);
        }
        if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let res = req.send().await.unwrap();
        let (want_head, want_body) = split(&ex.response);
        let status: u16 = want_head[0].split(' ').nth(1).unwrap().parse().unwrap();
        let what = head[0];
        assert_eq!(res.status().as_u16(), status, "{what}");
        for h in &want_head[1..] {
            let (k, v) = h.split_once(": ").unwrap();
            let got = res.headers().get(k).map(|v| v.to_str().unwrap().to_string());
            match v {
                "*" => assert!(got.is_some(), "{what}: {k}"),
                v => assert_eq!(got.as_deref(), Some(v), "{what}: {k}"),
            }
        }
        if !want_body.is_empty() {
            let expected: Value = serde_json::from_str(want_body).unwrap();
            let actual: Value = res.json().await.unwrap();
            assert!(contains(&actual, &expected), "{what}: {actual} lacks {expected}");
        }
    }
}

/// The README's tour (its first `sh` block) runs as written against the demo data, on a
/// private slapd and gateway: every curl answers the status it is there to show, and the
/// LDAP tool finds the customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() {
    let app = spawn_app().await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let tour = readme.split("```sh\n").nth(1).and_then(|b| b.split("\n```").next()).expect("a sh block");
    let script =
        tour.replace("http://127.0.0.1:8080", &app.url("")).replace("ldap://127.0.0.1:3389", &app.slapd.url).replace(
            "-D cn=Manager,dc=stoney-cloud,dc=org -w secret",
            &format!("-D {} -w {}", app.slapd.root_dn, app.slapd.root_password),
        );
    assert_ne!(script, tour, "the tour uses the dev addresses");
    // Each curl prints only its status; the tour's own flags stay.
    let prelude = "set -e\ncurl() { command curl -sS -o /dev/null -w '%{http_code}\\n' \"$@\"; }\n";
    let out = tokio::process::Command::new("bash").arg("-c").arg(format!("{prelude}{script}")).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let statuses: Vec<&str> =
        stdout.lines().filter(|l| l.len() == 3 && l.chars().all(|c| c.is_ascii_digit())).collect();
    assert_eq!(
        statuses,
        ["200", "200", "200", "200", "200", "201", "200", "412", "200", "201", "200", "200", "200"],
        "{stdout}"
    );
    assert!(stdout.contains("dn: uid=5000001,ou=customers,uid=4000001"), "ldapsearch finds it: {stdout}");
}

/// The README's change consumer (its `python` block) runs as written: it lists, then
/// follows, and prints a customer created after it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_change_consumer_follows_a_new_customer() {
    use tokio::io::AsyncBufReadExt;
    let app = spawn_app().await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let script = readme.split("```python\n").nth(1).and_then(|b| b.split("\n```").next()).expect("a python block");
    let script = script.replace("http://127.0.0.1:8080", &app.url(""));
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (scripts/install-deps installs it)");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // A customer created before the consumer has listed is in its list, not in what it
    // follows: create one after another until the consumer prints one.
    let mut created = Vec::new();
    let mut printed = None;
    for n in 0..15 {
        let name = format!("Consumer {n} AG");
        let res = app.req(Method::POST, "/v1/customers").json(&company(&name)).send().await.unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
        created.push((format!("org.stoney.customer.created {}", app.url(&format!("/v1/customers/{id}"))), name));
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), lines.next_line()).await;
        if let Ok(line) = got {
            printed = line.unwrap();
            break;
        }
    }
    let line = printed.expect("the consumer prints a change");
    let (_, name) = created
        .iter()
        .find(|(want, _)| line.starts_with(want.as_str()))
        .unwrap_or_else(|| panic!("one of ours: {line}"));
    assert!(line.contains(&format!("\"{name}\"")), "{line}");
    child.kill().await.unwrap();
}
