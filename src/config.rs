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
    pub auth: AuthConfig,
    pub pagination: PageSettings,
    pub index: IndexSettings,
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
    pub max_concurrent_requests: usize,
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
                .try_parsing(true),
        );
        b.build()?.try_deserialize()
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
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let s = Settings::defaults();
        assert_eq!(s.pagination.max_per_page, 100);
        assert_eq!(s.public_url(), "http://127.0.0.1:8080");
    }
}
