//! `stoney-gateway export` and `import`: clients of the REST API (so they keep the
//! caller's scope) that move a collection to and from JSON Lines (the element form) or
//! CSV (the element's fields as dotted columns). Import creates with bounded
//! concurrency, each element one POST (atomic), reports rejected lines with the error
//! body, can only validate (`--dry-run`), and skips what an interrupted run already
//! created (by `externalID`).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value};

use crate::mapping::document::{self, Mode};
use crate::mapping::resource::ResourceDef;
use crate::mapping::resources::ALL;
use crate::mapping::table::{Field, Kind};

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

pub fn resource(name: &str) -> Result<&'static ResourceDef, String> {
    ALL.iter().copied().find(|d| d.name == name).ok_or_else(|| {
        format!("no resource {name:?}; one of {}", ALL.iter().map(|d| d.name).collect::<Vec<_>>().join(", "))
    })
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().map_err(|e| e.to_string())
}

impl Remote {
    fn get(&self, c: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        c.get(format!("{}{path}", self.url.trim_end_matches('/'))).basic_auth(&self.user, Some(&self.password))
    }
}

/// The CSV columns of a resource: its fields that a write takes (not the read-only
/// ones), each address field as `<address>.<field>`.
pub fn columns(def: &'static ResourceDef) -> Vec<(String, &'static Field)> {
    let mut out = Vec::new();
    for f in def.fields.iter().filter(|f| !f.read_only && !f.name.is_empty() && f.kind != Kind::Secret) {
        match f.kind {
            Kind::Object(sub) => out.extend(
                sub.iter()
                    .filter(|s| !s.read_only && !s.name.is_empty())
                    .map(|s| (format!("{}.{}", f.name, s.name), s)),
            ),
            _ => out.push((f.name.to_string(), f)),
        }
    }
    out
}

/// What a write takes of an element's document: its fields without the read-only ones.
pub fn writable(def: &'static ResourceDef, doc: &Value) -> Value {
    let mut out = Map::new();
    for f in def.fields.iter().filter(|f| !f.read_only && !f.name.is_empty()) {
        if let Some(v) = doc.get(f.name) {
            out.insert(f.name.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|v| cell(Some(v))).collect::<Vec<_>>().join(";"),
        Some(v) => v.to_string(),
    }
}

/// One CSV record, quoted as needed.
fn csv_line(fields: impl IntoIterator<Item = String>) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(fields.into_iter().collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    w.into_inner().map_err(|e| e.to_string())
}

/// One CSV row of an element.
fn csv_row(def: &'static ResourceDef, doc: &Value) -> Vec<String> {
    columns(def)
        .iter()
        .map(|(name, _)| {
            let v = match name.split_once('.') {
                Some((obj, f)) => doc.get(obj).and_then(|o| o.get(f)),
                None => doc.get(name.as_str()),
            };
            cell(v)
        })
        .collect()
}

/// An element's document from a CSV row (empty cells: not given).
fn from_csv(def: &'static ResourceDef, header: &[String], row: &csv::StringRecord) -> Result<Value, String> {
    let cols = columns(def);
    let mut doc = Map::new();
    for (i, value) in row.iter().enumerate() {
        let name = header.get(i).ok_or("more cells than columns")?;
        let (_, field) = cols.iter().find(|(c, _)| c == name).ok_or_else(|| format!("unknown column {name:?}"))?;
        if value.is_empty() {
            continue;
        }
        let typed = match field.kind {
            Kind::Bool => match value {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("{name}: true or false")),
            },
            Kind::Id | Kind::ParentRef | Kind::Ref(_) => {
                Value::from(value.parse::<u64>().map_err(|_| format!("{name}: a number"))?)
            }
            Kind::List(inner) => Value::Array(
                value
                    .split(';')
                    .map(|v| match inner {
                        Kind::Ref(_) => v.parse::<u64>().map(Value::from).map_err(|_| format!("{name}: numbers")),
                        _ => Ok(Value::String(v.to_string())),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => Value::String(value.to_string()),
        };
        match name.split_once('.') {
            Some((obj, f)) => {
                let o = doc.entry(obj.to_string()).or_insert_with(|| Value::Object(Map::new()));
                o[f] = typed;
            }
            None => {
                doc.insert(name.clone(), typed);
            }
        }
    }
    Ok(Value::Object(doc))
}

/// Progress on a terminal as a bar with rate and ETA, elsewhere as a line every 5 s.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last: Mutex<Instant>,
    total: Option<u64>,
    done: AtomicU64,
    what: &'static str,
}

impl Progress {
    fn new(total: Option<u64>, what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(what);
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last: Mutex::new(Instant::now()),
            total,
            done: AtomicU64::new(0),
            what,
        }
    }

    fn tick(&self, note: impl FnOnce() -> String) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &self.bar {
            b.set_position(n);
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= Duration::from_secs(5) {
            *last = Instant::now();
            let rate = n as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            let of = self.total.map(|t| format!("/{t}")).unwrap_or_default();
            eprintln!("{} {n}{of} ({rate:.0}/s){}", self.what, note());
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Writes every element the caller sees, page by page (by id), as JSON Lines or CSV.
pub async fn export(
    remote: &Remote,
    def: &'static ResourceDef,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, String> {
    let c = client()?;
    let csv_out = format == Format::Csv;
    if csv_out {
        out.write_all(&csv_line(columns(def).into_iter().map(|(n, _)| n))?).map_err(|e| e.to_string())?;
    }
    let mut page = 1u64;
    let mut written = 0u64;
    let mut progress: Option<Progress> = None;
    loop {
        let res = remote
            .get(&c, &format!("/v1/{}?sort=id&per_page=100&page={page}", def.name))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("list page {page}: {} {}", res.status(), res.text().await.unwrap_or_default()));
        }
        let total: Option<u64> = res.headers().get("x-total-count").and_then(|v| v.to_str().ok()?.parse().ok());
        let progress = progress.get_or_insert_with(|| Progress::new(total, "exported"));
        let items: Vec<Value> = res.json().await.map_err(|e| e.to_string())?;
        if items.is_empty() {
            break;
        }
        // Each element in its whole form, 8 at a time, in the page's order.
        let docs: Vec<Result<Value, String>> = futures::stream::iter(items.iter().filter_map(|i| i["id"].as_u64()))
            .map(|id| {
                let req = remote.get(&c, &format!("/v1/{}/{id}", def.name));
                async move {
                    let res = req.send().await.map_err(|e| e.to_string())?;
                    match res.status().as_u16() {
                        200 => res.json::<Value>().await.map_err(|e| e.to_string()),
                        // Deleted since the page was listed.
                        404 => Ok(Value::Null),
                        s => Err(format!("{id}: {s} {}", res.text().await.unwrap_or_default())),
                    }
                }
            })
            .buffered(8)
            .collect()
            .await;
        for doc in docs {
            let doc = doc?;
            if doc.is_null() {
                continue;
            }
            if csv_out {
                out.write_all(&csv_line(csv_row(def, &doc))?).map_err(|e| e.to_string())?;
            } else {
                writeln!(out, "{doc}").map_err(|e| e.to_string())?;
            }
            written += 1;
            progress.tick(String::new);
        }
        page += 1;
    }
    if let Some(p) = progress {
        p.finish();
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(written)
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub created: u64,
    /// Already there (by externalID), from an earlier run.
    pub skipped: u64,
    pub rejected: u64,
}

pub struct ImportOptions {
    pub format: Format,
    pub concurrency: usize,
    pub dry_run: bool,
}

/// Reads the lines, and creates each element (or, with `dry_run`, checks it as a create
/// would). A rejected line goes to `report` as `{"line", "status", "error"}`.
pub async fn import(
    remote: &Remote,
    def: &'static ResourceDef,
    input: Box<dyn BufRead + Send>,
    opts: ImportOptions,
    report: &mut dyn Write,
) -> Result<Imported, String> {
    let c = client()?;
    let mut docs: Vec<(u64, Result<Value, String>)> = Vec::new();
    match opts.format {
        Format::Jsonl => {
            for (i, line) in input.lines().enumerate() {
                let line = line.map_err(|e| e.to_string())?;
                if line.trim().is_empty() {
                    continue;
                }
                let doc = serde_json::from_str::<Value>(&line).map_err(|e| format!("not JSON: {e}"));
                docs.push((i as u64 + 1, doc.map(|d| writable(def, &d))));
            }
        }
        Format::Csv => {
            let mut r = csv::Reader::from_reader(input);
            let header: Vec<String> = r.headers().map_err(|e| e.to_string())?.iter().map(String::from).collect();
            for (i, row) in r.records().enumerate() {
                let doc = row.map_err(|e| e.to_string()).and_then(|row| from_csv(def, &header, &row));
                docs.push((i as u64 + 2, doc));
            }
        }
    }
    let progress = Progress::new(Some(docs.len() as u64), if opts.dry_run { "checked" } else { "imported" });
    let counts = Arc::new(Mutex::new(Imported::default()));
    let rejected: Vec<Value> = futures::stream::iter(docs)
        .map(|(line, doc)| {
            let (c, counts, progress) = (c.clone(), counts.clone(), &progress);
            async move {
                let outcome = match doc {
                    Err(e) => Err(serde_json::json!({"line": line, "status": null, "error": e})),
                    Ok(doc) => one(remote, &c, def, line, &doc, opts.dry_run).await,
                };
                let mut n = counts.lock().unwrap_or_else(|p| p.into_inner());
                let out = match outcome {
                    Ok(true) => {
                        n.created += 1;
                        None
                    }
                    Ok(false) => {
                        n.skipped += 1;
                        None
                    }
                    Err(r) => {
                        n.rejected += 1;
                        Some(r)
                    }
                };
                let (created, skipped, rejected) = (n.created, n.skipped, n.rejected);
                drop(n);
                progress.tick(|| format!(", {created} created, {skipped} there already, {rejected} rejected"));
                out
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .filter_map(|r| async move { r })
        .collect()
        .await;
    progress.finish();
    let mut rejected = rejected;
    rejected.sort_by_key(|r| r["line"].as_u64());
    for r in rejected {
        writeln!(report, "{r}").map_err(|e| e.to_string())?;
    }
    let n = counts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(n)
}

/// One element: `Ok(true)` created (or valid), `Ok(false)` there already, `Err` the
/// report line.
async fn one(
    remote: &Remote,
    c: &reqwest::Client,
    def: &'static ResourceDef,
    line: u64,
    doc: &Value,
    dry_run: bool,
) -> Result<bool, Value> {
    let reject =
        |status: Option<u16>, error: Value| serde_json::json!({"line": line, "status": status, "error": error});
    if dry_run {
        return match document::parse(def, doc, Mode::Create) {
            Ok(_) => Ok(true),
            Err(problems) => Err(reject(
                Some(422),
                serde_json::json!({"error": {"status": 422, "code": "validation_failed", "message": "the request is not valid",
                    "details": problems.iter().map(|p| serde_json::json!({"field": p.field, "message": p.message})).collect::<Vec<_>>()}}),
            )),
        };
    }
    let base = remote.url.trim_end_matches('/');
    // Created by an earlier run: there is an element with its externalID.
    if let Some(x) = doc.get("externalID").and_then(Value::as_str).filter(|x| !x.is_empty()) {
        let q = format!("/v1/{}?externalID={}&per_page=1", def.name, crate::mapping::query::encode(x));
        let res = remote.get(c, &q).send().await.map_err(|e| reject(None, Value::String(e.to_string())))?;
        let n: u64 = res.headers().get("x-total-count").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        if res.status().is_success() && n > 0 {
            return Ok(false);
        }
    }
    let mut attempt = 0;
    loop {
        let res = c
            .post(format!("{base}/v1/{}", def.name))
            .basic_auth(&remote.user, Some(&remote.password))
            .json(doc)
            .send()
            .await
            .map_err(|e| reject(None, Value::String(e.to_string())))?;
        let status = res.status().as_u16();
        if status == 201 {
            return Ok(true);
        }
        // Busy: try again a little later, a few times.
        if (status == 503 || status == 429) && attempt < 5 {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            continue;
        }
        let body = res.text().await.unwrap_or_default();
        return Err(reject(Some(status), serde_json::from_str(&body).unwrap_or(Value::String(body))));
    }
}
