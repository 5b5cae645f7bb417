//! HTTPS in the gateway: a certificate from configuration, HTTP/2 and HTTP/1.1 through
//! ALPN, https URLs in Location, and the certificate read again on SIGHUP. The
//! certificates are made by the test (self-signed for 127.0.0.1).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Client, Method, Version};
use stoney_gateway::app::{self, AppState};
use stoney_slapd::{Slapd, SlapdOptions};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A self-signed certificate for 127.0.0.1: its PEM, its DER, and its key's PEM.
struct Cert {
    pem: String,
    der: Vec<u8>,
    key: String,
}

fn self_signed() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    Cert { pem: ck.cert.pem(), der: ck.cert.der().to_vec(), key: ck.signing_key.serialize_pem() }
}

fn install(dir: &Path, cert: &Cert) {
    std::fs::write(dir.join("cert.pem"), &cert.pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key).unwrap();
}

struct Served {
    addr: SocketAddr,
    _slapd: Slapd,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn client(cert: &Cert, http1_only: bool) -> Client {
    let mut b = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

async fn serve_tls(dir: &Path, cert: &Cert) -> Served {
    let slapd = tokio::task::spawn_blocking(|| Slapd::start(SlapdOptions { demo_data: true, ..Default::default() }))
        .await
        .unwrap()
        .expect("slapd");
    let mut settings = settings_for(&slapd);
    settings.tls.cert_file = dir.join("cert.pem").to_string_lossy().into_owned();
    settings.tls.key_file = dir.join("key.pem").to_string_lossy().into_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    settings.listen = addr.to_string();
    let state = AppState::new(settings).expect("app state");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app::serve(listener, state, async move {
        let _ = rx.await;
    }));
    let c = client(cert, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get(format!("https://{addr}/ready")).send().await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the gateway did not get ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Served { addr, _slapd: slapd, _stop: tx }
}

#[tokio::test]
async fn https_speaks_http2_and_http1_and_its_urls_are_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = self_signed();
    install(dir.path(), &cert);
    let gw = serve_tls(dir.path(), &cert).await;
    let url = |path: &str| format!("https://{}{path}", gw.addr);
    for (http1_only, version) in [(false, Version::HTTP_2), (true, Version::HTTP_11)] {
        let c = client(&cert, http1_only);
        let res = c.get(url("/v1/customers/5000001")).basic_auth(ADMIN.0, Some(ADMIN.1)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), version);
        let res = c.request(Method::POST, url("/v1/customers")).basic_auth(ADMIN.0, Some(ADMIN.1));
        let res = res.json(&company(if http1_only { "TLS1 AG" } else { "TLS2 AG" })).send().await.unwrap();
        assert_eq!(res.status(), 201);
        let location = res.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(&format!("https://{}/v1/customers/", gw.addr)), "{location}");
    }
    // Plain HTTP on the TLS listener gets no answer.
    assert!(Client::new().get(format!("http://{}/health", gw.addr)).send().await.is_err());
}

/// The DER of the certificate the server presents in a handshake.
async fn presented(addr: SocketAddr, trusted: &[&Cert]) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add(CertificateDer::from(c.der.clone())).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_a_broken_one_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (self_signed(), self_signed());
    install(dir.path(), &first);
    let gw = serve_tls(dir.path(), &first).await;
    assert_eq!(presented(gw.addr, &[&first, &second]).await, first.der);
    install(dir.path(), &second);
    assert_eq!(presented(gw.addr, &[&first, &second]).await, first.der, "only on SIGHUP");
    // SAFETY: kill(2) on this process; the gateway handles SIGHUP.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while presented(gw.addr, &[&first, &second]).await != second.der {
        assert!(Instant::now() < deadline, "the new certificate is not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    // SAFETY: as above.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(presented(gw.addr, &[&first, &second]).await, second.der, "the broken file is not taken");
    let res = client(&second, false).get(format!("https://{}/health", gw.addr)).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
