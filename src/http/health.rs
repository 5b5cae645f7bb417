//! `/health` (the process is up) and `/ready` (the directory answers and the collection
//! indexes are loaded, or restored from their snapshot).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::resources::json_response;
use super::state::AppState;

pub async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub async fn ready(State(app): State<AppState>) -> Result<Response, ApiError> {
    let timeout = app.ready_timeout;
    match tokio::time::timeout(timeout, app.directory.ping()).await {
        Ok(Ok(())) if app.resources().iter().any(|r| !r.index().is_loaded()) => {
            tracing::info!("not ready: the collection indexes are loading");
            Err(ApiError::unavailable())
        }
        Ok(Ok(())) => Ok(json_response(StatusCode::OK, &json!({"status": "ready"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e.to_string(), "not ready");
            Err(ApiError::unavailable())
        }
        Err(_) => Err(ApiError::unavailable()),
    }
}

/// `/metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    use crate::metrics::Sampled;
    let mut pools = Vec::new();
    let mut failovers = Vec::new();
    let mut servers = Vec::new();
    for (name, pool) in [("directory", app.directory.pool()), ("bind", app.auth.pool())] {
        let st = pool.status();
        for (state, v) in [
            ("max", st.max_size),
            ("open", st.size),
            ("idle", st.available),
            ("in_use", st.size.saturating_sub(st.available)),
            ("waiting", st.waiting),
        ] {
            pools.push((vec![("pool", name.to_string()), ("state", state.to_string())], v as f64));
        }
        failovers.push((vec![("pool", name.to_string())], pool.manager().failovers() as f64));
        let url = pool.manager().urls().get(pool.manager().current_server()).cloned().unwrap_or_default();
        servers.push((vec![("pool", name.to_string()), ("url", url)], 1.0));
    }
    let index = app.service(&crate::mapping::resources::CUSTOMERS).index();
    let text = crate::metrics::render(&[
        Sampled {
            name: "stoney_ldap_pool_connections",
            kind: "gauge",
            help: "LDAP connections of each pool by state (waiting: callers waiting for one).",
            series: pools,
        },
        Sampled {
            name: "stoney_ldap_failovers_total",
            kind: "counter",
            help: "Changes of the directory server in use (failovers and fail-backs).",
            series: failovers,
        },
        Sampled {
            name: "stoney_change_streams_open",
            kind: "gauge",
            help: "Open subscriptions of /v1/changes (event streams and waiting polls).",
            series: vec![(vec![], app.changes.open_streams() as f64)],
        },
        Sampled {
            name: "stoney_ldap_entries_resent_total",
            kind: "counter",
            help: "Entries a server's replication had missed, sent again from the server that held them.",
            series: vec![(vec![], app.directory.pool().manager().resent() as f64)],
        },
        Sampled {
            name: "stoney_ldap_deletes_completed_total",
            kind: "counter",
            help: "Entries deleted on a server whose replication had missed their delete.",
            series: vec![(vec![], app.directory.pool().manager().deletes_completed() as f64)],
        },
        Sampled {
            name: "stoney_ldap_acks_degraded_total",
            kind: "counter",
            help: "Writes acknowledged (ldap.ack = \"all\") while a server did not hold them: it did not answer or was too slow.",
            series: vec![(vec![], app.directory.pool().manager().acks_degraded() as f64)],
        },
        Sampled {
            name: "stoney_ldap_servers_unchecked",
            kind: "gauge",
            help: "Servers whose replication is still to be compared with the server in use after a disturbance.",
            series: vec![(vec![], app.directory.pool().manager().unchecked().len() as f64)],
        },
        Sampled {
            name: "stoney_index_shared_ids",
            kind: "gauge",
            help: "Customer ids that customers of more than one reseller have (written so by hand; each is logged).",
            series: vec![(vec![], index.shared_ids() as f64)],
        },
        Sampled {
            name: "stoney_index_unserved_entries",
            kind: "gauge",
            help: "Customer entries not listed because the gateway does not serve their DN (a uid with leading zeros, say; each is logged).",
            series: vec![(vec![], index.unserved() as f64)],
        },
        Sampled {
            name: "stoney_ldap_server_in_use",
            kind: "gauge",
            help: "The directory server each pool uses (1).",
            series: servers,
        },
        Sampled {
            name: "stoney_index_customers",
            kind: "gauge",
            help: "Customers in the collection index.",
            series: vec![(vec![], index.len() as f64)],
        },
        Sampled {
            name: "stoney_index_elements",
            kind: "gauge",
            help: "Elements in each resource's collection index.",
            series: app
                .resources()
                .iter()
                .map(|r| (vec![("resource", r.def().name.to_string())], r.index().len() as f64))
                .collect(),
        },
        Sampled {
            name: "stoney_index_loaded",
            kind: "gauge",
            help: "1 once every collection index is loaded.",
            series: vec![(vec![], if app.resources().iter().all(|r| r.index().is_loaded()) { 1.0 } else { 0.0 })],
        },
    ]);
    (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
