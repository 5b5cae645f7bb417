//! The API explorer (`/explorer/`) in a real headless Chromium, driven through
//! chromedriver (WebDriver): the page renders the customers' operations from the
//! gateway's own `/openapi.json`, a "Try it out" GET with Basic credentials answers 200,
//! and no request leaves the gateway's origin. The gateway listens on 127.0.0.2, not
//! `localhost`, so a request to anywhere else would show. `scripts/install-deps` (run by
//! `scripts/test`) installs chromium and chromium-driver.

mod common;

use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};
use stoney_slapd::{Slapd, SlapdOptions};

use common::*;

#[tokio::test]
async fn the_explorer_and_its_files_are_served_with_a_strict_policy() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/explorer/", "text/html"),
        ("/explorer/explorer.js", "text/javascript"),
        ("/explorer/swagger-ui/swagger-ui-bundle.js", "text/javascript"),
        ("/explorer/swagger-ui/swagger-ui.css", "text/css"),
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with(kind), "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    let page = app.client.get(app.url("/explorer/")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("http://") && !page.contains("https://"), "the page names no other host");
    let init = app.client.get(app.url("/explorer/explorer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("validatorUrl: \"none\"") && init.contains("queryConfigEnabled: false"));
    // `/explorer` and, for a browser, `/` lead there; other clients get the links.
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = no_redirects.get(app.url("/explorer")).send().await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["location"].to_str().unwrap()), (303, "/explorer/"));
    let res = no_redirects.get(app.url("/")).header("accept", "text/html,*/*").send().await.unwrap();
    assert_eq!(res.status(), 303);
    let links: Value = app.client.get(app.url("/")).send().await.unwrap().json().await.unwrap();
    assert_eq!(links["explorer"], "/explorer/");
}

/// A free port on `host`.
fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port()
}

struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_renders_the_explorer_tries_a_get_and_talks_to_no_other_host() {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.expect("127.0.0.2 is a loopback address");
    let addr = listener.local_addr().unwrap();
    let origin = format!("http://{addr}");
    let mut settings = settings_for(&slapd);
    settings.listen = addr.to_string();
    settings.public_url = origin.clone();
    let state = stoney_gateway::app::AppState::new(settings).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(stoney_gateway::app::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{origin}/ready")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(std::time::Instant::now() < deadline, "the gateway gets ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let port = free_port("127.0.0.1");
    let _driver = Driver(
        std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/install-deps installs chromium-driver)"),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{webdriver}/status")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "chromedriver answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1400,1200", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-default-apps"]}),
    );
    // The WebDriver client's TLS (unused on http://) wants a process-wide provider.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let browser =
        ClientBuilder::rustls().unwrap().capabilities(caps).connect(&webdriver).await.expect("a browser session");
    let res = async {
        browser.goto(&format!("{origin}/explorer/")).await?;
        // The customers' operations, rendered from /openapi.json.
        let list = "//div[contains(@class,'opblock-get')][.//*[@data-path='/v1/customers']]";
        let op = browser.wait().at_most(Duration::from_secs(30)).for_element(Locator::XPath(list)).await?;
        let post = "//div[contains(@class,'opblock-post')][.//*[@data-path='/v1/customers']]";
        browser.find(Locator::XPath(post)).await?;

        // Log in (the Basic scheme of the Authorize dialog).
        browser.find(Locator::Css("button.authorize")).await?.click().await?;
        let section = "//div[contains(@class,'auth-container')][.//*[contains(text(),'basic')]]";
        let user = browser.wait().for_element(Locator::XPath(&format!("{section}//input[@type='text']"))).await?;
        user.send_keys(ADMIN.0).await?;
        browser.find(Locator::XPath(&format!("{section}//input[@type='password']"))).await?.send_keys(ADMIN.1).await?;
        browser
            .find(Locator::XPath(&format!("{section}//button[contains(@class,'authorize')]")))
            .await?
            .click()
            .await?;
        browser.find(Locator::Css("button.btn-done")).await?.click().await?;

        // Try it out: GET /v1/customers.
        op.find(Locator::Css(".opblock-summary")).await?.click().await?;
        let try_out = browser
            .wait()
            .for_element(Locator::XPath(&format!("{list}//button[contains(@class,'try-out__btn')]")))
            .await?;
        try_out.click().await?;
        browser
            .wait()
            .for_element(Locator::XPath(&format!("{list}//button[contains(@class,'execute')]")))
            .await?
            .click()
            .await?;
        let status = format!(
            "{list}//table[contains(@class,'live-responses-table')]//tbody//td[contains(@class,'response-col_status')]"
        );
        let cell = browser.wait().at_most(Duration::from_secs(20)).for_element(Locator::XPath(&status)).await?;
        let code = cell.text().await?;
        // The README's picture of the explorer: `STONEY_EXPLORER_SCREENSHOT=docs/explorer.png`.
        if let Some(path) = std::env::var_os("STONEY_EXPLORER_SCREENSHOT") {
            let show = "document.querySelector('.live-responses-table').scrollIntoView(); window.scrollBy(0, -260);";
            browser.execute(show, vec![]).await?;
            std::fs::write(path, browser.screenshot().await?).expect("the screenshot is written");
        }
        let requested = browser
            .execute(
                "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
                vec![],
            )
            .await?;
        Ok::<_, fantoccini::error::CmdError>((code, requested))
    }
    .await;
    let _ = browser.close().await;
    let _ = stop.send(());
    let (code, requested) = res.expect("the explorer works in the browser");
    assert!(code.trim().starts_with("200"), "Try it out answered {code:?}");
    let urls: Vec<String> = requested.as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    assert!(urls.iter().any(|u| u.ends_with("/openapi.json")), "{urls:?}");
    assert!(urls.iter().any(|u| u.contains("/v1/customers")), "the try-out request is among them: {urls:?}");
    let elsewhere: Vec<&String> = urls.iter().filter(|u| !u.starts_with(&format!("{origin}/"))).collect();
    assert!(elsewhere.is_empty(), "requests that left {origin}: {elsewhere:?}");
}
