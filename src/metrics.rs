//! Process-wide metrics, exposed in the OpenMetrics text format by `prometheus-client`:
//! counters and latency histograms for HTTP requests and LDAP operations, recorded where
//! they happen; pool, failover, index and change feed figures are read when `/metrics`
//! is scraped. Every label value comes from a fixed set.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    op: &'static str,
    outcome: &'static str,
}

fn latency() -> Histogram {
    Histogram::new(BUCKETS)
}

struct Recorded {
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    ldap_ops: Family<OutcomeLabels, Counter>,
    ldap_seconds: Family<OpLabels, Histogram, fn() -> Histogram>,
    freshness_seconds: Family<StepLabels, Histogram, fn() -> Histogram>,
    changes_sent: Counter,
    change_resets: Counter,
}

fn recorded() -> &'static Recorded {
    static R: OnceLock<Recorded> = OnceLock::new();
    R.get_or_init(|| Recorded {
        requests: Family::default(),
        request_seconds: Family::new_with_constructor(latency),
        ldap_ops: Family::default(),
        ldap_seconds: Family::new_with_constructor(latency),
        freshness_seconds: Family::new_with_constructor(latency),
        changes_sent: Counter::default(),
        change_resets: Counter::default(),
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
    let r = recorded();
    let method = method_label(method);
    let route = escape(route);
    r.request_seconds.get_or_create(&RouteLabels { route: route.clone(), method }).observe(took.as_secs_f64());
    r.requests.get_or_create(&RequestLabels { route, method, status }).inc();
}

/// Counts one LDAP operation (`outcome`: `ok`, or the class of the error).
pub fn ldap_operation(op: &'static str, outcome: &'static str, took: Duration) {
    let r = recorded();
    r.ldap_seconds.get_or_create(&OpLabels { op }).observe(took.as_secs_f64());
    r.ldap_ops.get_or_create(&OutcomeLabels { op, outcome }).inc();
}

/// How long a list waited before its index answered: `directory`, for the directory's
/// newest change (its `contextCSN`, read or shared with lists arriving at once); `index`,
/// for the index to hold it.
pub fn list_freshness(step: &'static str, took: Duration) {
    recorded().freshness_seconds.get_or_create(&StepLabels { step }).observe(took.as_secs_f64());
}

/// Counts change events sent to subscribers.
pub fn change_events_sent(n: u64) {
    recorded().changes_sent.inc_by(n);
}

/// Counts a subscriber told to list again (`reset` or 410), or a reset of the whole feed.
pub fn change_feed_reset() {
    recorded().change_resets.inc();
}

/// A value read at scrape time: name (a counter's with `_total`), type (`gauge` or
/// `counter`), help, and its series.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
    pub series: Vec<(Labels, f64)>,
}

/// The values read at this scrape.
#[derive(Debug)]
struct Scrape(Vec<Sampled>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for s in &self.0 {
            let counter = s.kind == "counter";
            // The encoder adds `_total` to a counter's samples.
            let name = if counter { s.name.strip_suffix("_total").unwrap_or(s.name) } else { s.name };
            let kind = if counter { MetricType::Counter } else { MetricType::Gauge };
            let mut metric = encoder.encode_descriptor(name, s.help, None, kind)?;
            if let [(labels, v)] = s.series.as_slice() {
                if labels.is_empty() {
                    encode_value(counter, *v, metric)?;
                    continue;
                }
            }
            for (labels, v) in &s.series {
                let labels: Vec<(&str, String)> = labels.iter().map(|(k, v)| (*k, escape(v))).collect();
                encode_value(counter, *v, metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A sample's value; whole numbers as integers (`60`, not `60.0`).
fn encode_value(
    counter: bool,
    v: f64,
    encoder: prometheus_client::encoding::MetricEncoder,
) -> Result<(), std::fmt::Error> {
    let whole = v.fract() == 0.0 && v.abs() < 9.0e15;
    match (counter, whole) {
        (true, true) => ConstCounter::new(v as u64).encode(encoder),
        (true, false) => ConstCounter::new(v).encode(encoder),
        (false, true) => ConstGauge::new(v as i64).encode(encoder),
        (false, false) => ConstGauge::new(v).encode(encoder),
    }
}

/// A label value as the text format writes it: `prometheus-client` leaves escaping to
/// its callers (prometheus/client_rust#151), so `\`, `"` and line feeds are escaped here.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The whole exposition: what was recorded, then the sampled values.
pub fn render(sampled: &[Sampled]) -> String {
    let r = recorded();
    // `register` ends each help with a full stop.
    let mut registry = Registry::default();
    registry.register("stoney_http_requests", "HTTP requests by route, method and status", r.requests.clone());
    registry.register(
        "stoney_http_request_duration_seconds",
        "HTTP request latency by route and method",
        r.request_seconds.clone(),
    );
    registry.register(
        "stoney_ldap_operations",
        "LDAP operations by operation and outcome (ok or an error class)",
        r.ldap_ops.clone(),
    );
    registry.register(
        "stoney_ldap_operation_duration_seconds",
        "LDAP operation latency by operation",
        r.ldap_seconds.clone(),
    );
    registry.register(
        "stoney_list_freshness_wait_seconds",
        "Time lists waited for the directory's newest change (step directory) and for their index to hold it (step index)",
        r.freshness_seconds.clone(),
    );
    registry.register(
        "stoney_change_events_sent",
        "Change events sent to subscribers of /v1/changes",
        r.changes_sent.clone(),
    );
    registry.register(
        "stoney_change_feed_resets",
        "Subscribers of /v1/changes told to list again (reset or 410), and resets of the whole feed",
        r.change_resets.clone(),
    );
    registry.register_collector(Box::new(Scrape(sampled.to_vec())));
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_types_buckets_sums_and_counts() {
        http_request("/test/{id}", "GET", 200, Duration::from_millis(3));
        http_request("/test/{id}", "GET", 200, Duration::from_millis(30));
        let text = render(&[
            Sampled {
                name: "stoney_test_gauge",
                kind: "gauge",
                help: "A test value.",
                series: vec![(vec![("pool", "a\"b".into())], 2.0)],
            },
            Sampled { name: "stoney_test_total", kind: "counter", help: "A test count.", series: vec![(vec![], 3.0)] },
        ]);
        assert!(text.contains("# TYPE stoney_http_requests counter"), "{text}");
        assert!(
            text.contains("stoney_http_requests_total{route=\"/test/{id}\",method=\"GET\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "stoney_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/test/{id}\",method=\"GET\"} 1"
            ) || text.contains(
                "stoney_http_request_duration_seconds_bucket{route=\"/test/{id}\",method=\"GET\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("stoney_http_request_duration_seconds_count{route=\"/test/{id}\",method=\"GET\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE stoney_test_gauge gauge"), "{text}");
        assert!(text.contains("stoney_test_gauge{pool=\"a\\\"b\"} 2"), "label values are escaped: {text}");
        assert!(text.contains("stoney_test_total 3\n"), "{text}");
        assert!(text.contains("# HELP stoney_test A test count.\n"), "one full stop: {text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("X123"), "other");
        assert_eq!(method_label("get"), "other");
    }
}
