//! Configuration: built-in defaults (`config.default.toml`), then an optional file, then
//! environment variables `STONEY__SECTION__KEY`.

use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("config.default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub listen: String,
    pub public_url: String,
    pub ldap: LdapSettings,
    pub http: HttpSettings,
    pub cors: CorsSettings,
    pub tls: TlsSettings,
    pub auth: AuthConfig,
    pub pagination: PageSettings,
    pub index: IndexSettings,
    pub changes: ChangesSettings,
    pub subscriptions: SubscriptionSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LdapSettings {
    pub urls: Vec<String>,
    pub bind_dn: String,
    pub bind_password: String,
    pub base_dn: String,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
    pub op_timeout_ms: u64,
    pub pool_wait_ms: u64,
    pub starttls: bool,
    pub tls_verify: bool,
    pub failback_interval_ms: u64,
    pub failback_after_ms: u64,
    pub failover_id_gap: u64,
    pub trash_sweep_secs: u64,
    pub ack: String,
    pub ack_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_concurrent_requests: usize,
    pub max_concurrent_per_caller: usize,
    pub header_read_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

/// HTTPS served by the gateway itself: both files given, or neither (plain HTTP).
#[derive(Debug, Clone, Deserialize)]
pub struct TlsSettings {
    pub cert_file: String,
    pub key_file: String,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// Cross-origin requests from browser portals; no origin listed: no CORS headers at all.
#[derive(Debug, Clone, Deserialize)]
pub struct CorsSettings {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    pub cache_ttl_secs: u64,
    pub max_failures: u32,
    pub failure_window_secs: u64,
    pub lockout_secs: u64,
    pub bind_pool_size: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PageSettings {
    pub default_per_page: u32,
    pub max_per_page: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexSettings {
    pub catch_up_ms: u64,
    /// Where the indexes are saved with the synchronisation's cookie ("": nowhere).
    pub snapshot_file: String,
    pub snapshot_interval_secs: u64,
    /// How far before its last verified state a check after a resume reads in full.
    pub check_margin_secs: u64,
}

/// The merchants' facade (`/subscriptions/v1`).
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionSettings {
    pub notice_days: u64,
}

/// The change feed (`GET /v1/changes`).
#[derive(Debug, Clone, Deserialize)]
pub struct ChangesSettings {
    pub window: usize,
    pub max_age_secs: u64,
    pub heartbeat_secs: u64,
    pub retry_ms: u64,
    pub max_streams: usize,
    pub max_streams_per_caller: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: String,
    pub level: String,
}

impl Settings {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&str>) -> Result<Settings, config::ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(f) = file {
            b = b.add_source(config::File::with_name(f).required(true));
        }
        b = b.add_source(
            config::Environment::with_prefix("STONEY")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("ldap.urls")
                .with_list_parse_key("cors.allowed_origins")
                .with_list_parse_key("cors.allowed_methods")
                .with_list_parse_key("cors.allowed_headers")
                .try_parsing(true),
        );
        let settings: Settings = b.build()?.try_deserialize()?;
        settings.validate().map_err(config::ConfigError::Message)?;
        Ok(settings)
    }

    /// Checks what deserialising cannot: the TLS files come as a pair, the CORS lists.
    pub fn validate(&self) -> Result<(), String> {
        let (l, h, a, p) = (&self.ldap, &self.http, &self.auth, &self.pagination);
        // Values a running gateway cannot work with are refused at start, by name, rather
        // than taken as something else.
        let c = &self.changes;
        let positive: [(&str, u64); 23] = [
            ("ldap.pool_size", l.pool_size as u64),
            ("ldap.connect_timeout_ms", l.connect_timeout_ms),
            ("ldap.op_timeout_ms", l.op_timeout_ms),
            ("ldap.pool_wait_ms", l.pool_wait_ms),
            ("http.body_limit_bytes", h.body_limit_bytes as u64),
            ("http.request_timeout_ms", h.request_timeout_ms),
            ("http.body_timeout_ms", h.body_timeout_ms),
            ("http.max_concurrent_requests", h.max_concurrent_requests as u64),
            ("http.max_concurrent_per_caller", h.max_concurrent_per_caller as u64),
            ("http.header_read_timeout_ms", h.header_read_timeout_ms),
            ("http.idle_timeout_ms", h.idle_timeout_ms),
            ("http.max_connections", h.max_connections as u64),
            ("auth.max_failures", a.max_failures as u64),
            ("auth.bind_pool_size", a.bind_pool_size as u64),
            ("pagination.default_per_page", p.default_per_page as u64),
            ("pagination.max_per_page", p.max_per_page as u64),
            ("index.catch_up_ms", self.index.catch_up_ms),
            ("index.snapshot_interval_secs", self.index.snapshot_interval_secs),
            ("changes.window", c.window as u64),
            ("changes.max_age_secs", c.max_age_secs),
            ("changes.heartbeat_secs", c.heartbeat_secs),
            ("changes.max_streams", c.max_streams as u64),
            ("changes.max_streams_per_caller", c.max_streams_per_caller as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{key} must be at least 1"));
        }
        if l.urls.is_empty() {
            return Err("ldap.urls: give at least one directory server".into());
        }
        if l.failback_interval_ms < 100 {
            return Err("ldap.failback_interval_ms must be at least 100".into());
        }
        if p.default_per_page > p.max_per_page {
            return Err("pagination.default_per_page must not exceed pagination.max_per_page".into());
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            return Err("tls.cert_file and tls.key_file: give both, or neither".into());
        }
        for o in &self.cors.allowed_origins {
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            let ok = rest.is_some_and(|h| {
                !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            });
            if !ok {
                return Err(format!("cors.allowed_origins: {o:?} is not an origin like https://portal.example.com"));
            }
        }
        for m in &self.cors.allowed_methods {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(format!("cors.allowed_methods: {m:?} is not a method like PATCH"));
            }
        }
        for h in &self.cors.allowed_headers {
            if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!("cors.allowed_headers: {h:?} is not a header name"));
            }
        }
        Ok(())
    }

    /// Defaults only (tests and the embedded directory start from these).
    pub fn defaults() -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("built-in defaults are valid")
    }

    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            let scheme = if self.tls.enabled() { "https" } else { "http" };
            format!("{scheme}://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_the_gateway_cannot_work_with_are_refused_by_name() {
        let mut s = Settings::defaults();
        assert!(s.validate().is_ok());
        s.ldap.pool_size = 0;
        assert_eq!(s.validate().unwrap_err(), "ldap.pool_size must be at least 1");
        let mut s = Settings::defaults();
        s.pagination.default_per_page = 500;
        assert!(s.validate().unwrap_err().contains("pagination.default_per_page"));
        let mut s = Settings::defaults();
        s.ldap.urls.clear();
        assert!(s.validate().unwrap_err().contains("ldap.urls"));
        let mut s = Settings::defaults();
        s.ldap.failback_interval_ms = 10;
        assert!(s.validate().unwrap_err().contains("ldap.failback_interval_ms"));
    }

    #[test]
    fn defaults_parse() {
        let s = Settings::defaults();
        assert_eq!(s.pagination.max_per_page, 100);
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
        assert!(s.cors.allowed_origins.is_empty());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn with_a_certificate_the_public_url_is_https() {
        let mut s = Settings::defaults();
        s.tls.cert_file = "/etc/stoney/cert.pem".into();
        assert!(s.validate().is_err(), "the key is missing");
        s.tls.key_file = "/etc/stoney/key.pem".into();
        assert!(s.validate().is_ok());
        assert_eq!(s.public_url(), "https://127.0.0.1:8080");
        s.public_url = "https://api.example.com/".into();
        assert_eq!(s.public_url(), "https://api.example.com");
    }

    #[test]
    fn cors_lists_are_checked() {
        let mut s = Settings::defaults();
        s.cors.allowed_origins = vec!["https://portal.example.com".into(), "http://127.0.0.1:3000".into()];
        assert!(s.validate().is_ok());
        for bad in ["*", "portal.example.com", "https://portal.example.com/", "https://"] {
            s.cors.allowed_origins = vec![bad.into()];
            assert!(s.validate().is_err(), "{bad}");
        }
        s.cors.allowed_origins.clear();
        s.cors.allowed_methods = vec!["*".into()];
        assert!(s.validate().is_err());
    }
}
