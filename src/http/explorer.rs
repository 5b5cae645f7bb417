//! The API explorer at `/explorer/`: Swagger UI (`assets/swagger-ui`, vendored and
//! embedded in the binary) on the gateway's own `/openapi.json`, with a page and a
//! start-up script of ours (`assets/explorer`). A strict Content-Security-Policy keeps
//! every script, style and request on this origin. And `/`, which points there.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use serde_json::json;

use super::resources::json_response;
use super::state::AppState;

/// Scripts, styles, images and requests only from this origin. Swagger UI sets inline
/// styles (React's `style` attributes) and shows the schema's images as data: URLs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The files under `/explorer/`, with their type.
const FILES: &[(&str, &str, &[u8])] = &[
    ("/explorer/", "text/html; charset=utf-8", include_bytes!("../../assets/explorer/index.html")),
    ("/explorer/explorer.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/explorer/explorer.js")),
    ("/explorer/explorer.css", "text/css; charset=utf-8", include_bytes!("../../assets/explorer/explorer.css")),
    (
        "/explorer/swagger-ui/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "/explorer/swagger-ui/swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "/explorer/swagger-ui/favicon-32x32.png",
        "image/png",
        include_bytes!("../../assets/swagger-ui/favicon-32x32.png"),
    ),
];

/// Every path of the explorer and `/` (for the router and the metrics' route labels).
pub fn paths() -> Vec<&'static str> {
    ["/", "/explorer"].into_iter().chain(FILES.iter().map(|(p, _, _)| *p)).collect()
}

fn file(path: &'static str, kind: &'static str, body: &'static [u8]) -> MethodRouter<AppState> {
    get(move || async move {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        // The page may change with the gateway; the vendored files only with a release.
        let cache = if path.ends_with('/') { "no-cache" } else { "public, max-age=3600" };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        (StatusCode::OK, h, body).into_response()
    })
}

/// The explorer's routes, and `/`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let mut out: Vec<(&'static str, MethodRouter<AppState>)> =
        FILES.iter().map(|(p, k, b)| (*p, file(p, k, b))).collect();
    out.push(("/explorer", get(|| async { redirect("/explorer/") })));
    out.push(("/", get(home)));
    out
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// `/`: a browser goes on to the explorer; any other client gets the links.
async fn home(headers: HeaderMap) -> Response {
    let html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/html")));
    if html {
        return redirect("/explorer/");
    }
    json_response(
        StatusCode::OK,
        &json!({"name": "stoney-gateway", "explorer": "/explorer/", "openapi": "/openapi.json",
            "api": "/v1", "subscriptions": "/subscriptions/v1", "changes": "/v1/changes", "health": "/health", "ready": "/ready"}),
    )
}
