//! Process-wide metrics in the Prometheus text format (version 0.0.4): counters and
//! latency histograms for HTTP requests and LDAP operations, recorded where they happen;
//! pool, failover and index figures are read when `/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(&'static str, String)>;

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

struct Family<T> {
    name: &'static str,
    help: &'static str,
    series: BTreeMap<Labels, T>,
}

impl<T: Default> Family<T> {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Family { name, help, series: BTreeMap::new() }
    }
    fn get(&mut self, labels: Labels) -> &mut T {
        self.series.entry(labels).or_default()
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(labels: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

struct Registry {
    requests: Family<u64>,
    request_seconds: Family<Histogram>,
    ldap_ops: Family<u64>,
    ldap_seconds: Family<Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| {
        Mutex::new(Registry {
            requests: Family::new("stoney_http_requests_total", "HTTP requests by route, method and status."),
            request_seconds: Family::new(
                "stoney_http_request_duration_seconds",
                "HTTP request latency by route and method.",
            ),
            ldap_ops: Family::new(
                "stoney_ldap_operations_total",
                "LDAP operations by operation and outcome (ok or an error class).",
            ),
            ldap_seconds: Family::new("stoney_ldap_operation_duration_seconds", "LDAP operation latency by operation."),
        })
    })
}

/// The methods of RFC 9110 and PATCH; a client can send any token as a method, so every
/// other one shares one label value (else each would add its own series).
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

fn method_label(method: &str) -> &'static str {
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

/// Counts one HTTP request. `route` must come from a fixed set (the router's paths, or
/// one value for every unmatched path).
pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    let Ok(mut r) = registry().lock() else { return };
    let base: Labels = vec![("route", route.to_string()), ("method", method_label(method).to_string())];
    r.request_seconds.get(base.clone()).observe(took.as_secs_f64());
    let mut labels = base;
    labels.push(("status", status.to_string()));
    *r.requests.get(labels) += 1;
}

/// Counts one LDAP operation (`outcome`: `ok`, or the class of the error).
pub fn ldap_operation(op: &'static str, outcome: &'static str, took: Duration) {
    let Ok(mut r) = registry().lock() else { return };
    r.ldap_seconds.get(vec![("op", op.to_string())]).observe(took.as_secs_f64());
    *r.ldap_ops.get(vec![("op", op.to_string()), ("outcome", outcome.to_string())]) += 1;
}

static CHANGES_SENT: AtomicU64 = AtomicU64::new(0);
static CHANGE_RESETS: AtomicU64 = AtomicU64::new(0);

/// Counts change events sent to subscribers.
pub fn change_events_sent(n: u64) {
    CHANGES_SENT.fetch_add(n, Ordering::Relaxed);
}

/// Counts a subscriber told to list again (`reset` or 410), or a reset of the whole feed.
pub fn change_feed_reset() {
    CHANGE_RESETS.fetch_add(1, Ordering::Relaxed);
}

fn write_counters(out: &mut String, f: &Family<u64>) {
    let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", f.name, f.help, f.name);
    for (labels, v) in &f.series {
        let _ = writeln!(out, "{}{} {v}", f.name, label_text(labels, None));
    }
}

fn write_histograms(out: &mut String, f: &Family<Histogram>) {
    let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", f.name, f.help, f.name);
    for (labels, h) in &f.series {
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ =
                writeln!(out, "{}_bucket{} {}", f.name, label_text(labels, Some(("le", le.to_string()))), h.counts[i]);
        }
        let _ = writeln!(out, "{}_bucket{} {}", f.name, label_text(labels, Some(("le", "+Inf".into()))), h.count);
        let _ = writeln!(out, "{}_sum{} {}", f.name, label_text(labels, None), h.sum);
        let _ = writeln!(out, "{}_count{} {}", f.name, label_text(labels, None), h.count);
    }
}

/// A value read at scrape time: name, type, help, and its series.
pub struct Sampled {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
    pub series: Vec<(Labels, f64)>,
}

/// The whole exposition: what was recorded, then the sampled values.
pub fn render(sampled: &[Sampled]) -> String {
    let mut out = String::new();
    if let Ok(r) = registry().lock() {
        write_counters(&mut out, &r.requests);
        write_histograms(&mut out, &r.request_seconds);
        write_counters(&mut out, &r.ldap_ops);
        write_histograms(&mut out, &r.ldap_seconds);
    }
    for (name, help, v) in [
        ("stoney_change_events_sent_total", "Change events sent to subscribers of /v1/changes.", &CHANGES_SENT),
        (
            "stoney_change_feed_resets_total",
            "Subscribers of /v1/changes told to list again (reset or 410), and resets of the whole feed.",
            &CHANGE_RESETS,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
    }
    for s in sampled {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", s.name, s.help, s.name, s.kind);
        for (labels, v) in &s.series {
            let _ = writeln!(out, "{}{} {v}", s.name, label_text(labels, None));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_types_buckets_sums_and_counts() {
        http_request("/test/{id}", "GET", 200, Duration::from_millis(3));
        http_request("/test/{id}", "GET", 200, Duration::from_millis(30));
        let text = render(&[Sampled {
            name: "stoney_test_gauge",
            kind: "gauge",
            help: "A test value.",
            series: vec![(vec![("pool", "a\"b".into())], 2.0)],
        }]);
        assert!(text.contains("# TYPE stoney_http_requests_total counter"));
        assert!(text.contains("stoney_http_requests_total{route=\"/test/{id}\",method=\"GET\",status=\"200\"} 2"));
        assert!(text.contains(
            "stoney_http_request_duration_seconds_bucket{route=\"/test/{id}\",method=\"GET\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "stoney_http_request_duration_seconds_bucket{route=\"/test/{id}\",method=\"GET\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("stoney_http_request_duration_seconds_count{route=\"/test/{id}\",method=\"GET\"} 2"));
        assert!(text.contains("stoney_test_gauge{pool=\"a\\\"b\"} 2"));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("X123"), "other");
        assert_eq!(method_label("get"), "other");
    }
}
