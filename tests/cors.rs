//! CORS for browser portals: nothing without configuration; preflights, credentials and
//! exposed headers for the listed origins only.

mod common;

use common::*;
use reqwest::{Method, Response};
use stoney_slapd::SlapdOptions;

const PORTAL: &str = "https://portal.example.com";

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase())
}

fn cors_headers(res: &Response) -> Vec<String> {
    res.headers().keys().map(|k| k.as_str().to_string()).filter(|k| k.starts_with("access-control-")).collect()
}

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/customers"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization, content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_configuration_there_are_no_cors_headers() {
    let app = spawn_app().await;
    let res = app.req(Method::GET, "/v1/customers").header("origin", PORTAL).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
    let res = preflight(&app, PORTAL).await;
    assert_eq!(res.status(), 405);
    assert!(cors_headers(&res).is_empty(), "{:?}", res.headers());
}

#[tokio::test]
async fn listed_origins_get_preflights_credentials_and_exposed_headers() {
    let app = spawn_app_with(SlapdOptions { demo_data: true, ..Default::default() }, |s| {
        s.cors.allowed_origins = vec![PORTAL.into()];
    })
    .await;
    let res = preflight(&app, PORTAL).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(PORTAL));
    assert_eq!(header(&res, "access-control-allow-credentials").as_deref(), Some("true"));
    let methods = header(&res, "access-control-allow-methods").unwrap_or_default();
    for m in ["get", "post", "put", "patch", "delete"] {
        assert!(methods.contains(m), "{methods}");
    }
    let headers = header(&res, "access-control-allow-headers").unwrap_or_default();
    for h in ["authorization", "content-type", "if-match", "last-event-id"] {
        assert!(headers.contains(h), "{headers}");
    }
    assert!(header(&res, "access-control-max-age").is_some());
    assert!(header(&res, "vary").unwrap_or_default().contains("origin"));

    let res = app.req(Method::GET, "/v1/customers").header("origin", PORTAL).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin").as_deref(), Some(PORTAL));
    assert_eq!(header(&res, "access-control-allow-credentials").as_deref(), Some("true"));
    let exposed = header(&res, "access-control-expose-headers").unwrap_or_default();
    for h in ["link", "x-total-count", "x-changes-position", "etag", "location"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    assert!(header(&res, "vary").unwrap_or_default().contains("origin"));

    // Another origin gets no grant, and no credentials.
    for res in [
        preflight(&app, "https://evil.example.com").await,
        app.req(Method::GET, "/v1/customers").header("origin", "https://evil.example.com").send().await.unwrap(),
    ] {
        assert!(header(&res, "access-control-allow-origin").is_none(), "{:?}", res.headers());
        assert!(header(&res, "access-control-allow-credentials").is_none(), "{:?}", res.headers());
    }
}
