//! Builds the application from its settings: the directory pool, the services and the
//! router; and serves it on a listener (port 0 in tests).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::collection::contracts::ContractWatch;
use crate::collection::index::CollectionIndex;
use crate::collection::snapshot::{self, Fanout};
use crate::config::Settings;
use crate::directory::pool::{self, ConnSpec};
use crate::directory::sync::{Csns, SyncConsumer, SyncEvent, SyncSink, Uuid};
use crate::directory::{DirError, Directory};
use crate::feed::{Feed, FeedSettings};
pub use crate::http::state::AppState;
use crate::mapping::query::PageLimits;
use crate::mapping::resource::ResourceDef;
use crate::mapping::resources::{ALL, CUSTOMERS};
use crate::mapping::table;
use crate::service::auth::{AuthSettings, Authenticator};
use crate::service::changes::Changes;
use crate::service::contracts::Contracts;
use crate::service::keys::Keys;
use crate::service::subscriptions::Subscriptions;
use crate::service::Resources;

impl AppState {
    pub fn new(settings: Settings) -> Result<AppState, DirError> {
        let l = &settings.ldap;
        let spec = ConnSpec {
            urls: l.urls.clone(),
            base_dn: l.base_dn.clone(),
            bind_dn: l.bind_dn.clone(),
            bind_password: l.bind_password.clone(),
            connect_timeout: Duration::from_millis(l.connect_timeout_ms),
            starttls: l.starttls,
            tls_verify: l.tls_verify,
            failback_after: Duration::from_millis(l.failback_after_ms),
            reconcile: false,
        };
        let binds = pool::build(
            ConnSpec { bind_dn: String::new(), bind_password: String::new(), ..spec.clone() },
            settings.auth.bind_pool_size.max(1),
            Duration::from_millis(l.pool_wait_ms),
        )?;
        // The pool that writes compares the servers after a disturbance.
        let pool = pool::build(
            ConnSpec { reconcile: true, ..spec.clone() },
            l.pool_size.max(1),
            Duration::from_millis(l.pool_wait_ms),
        )?;
        let mut directory = Directory::new(pool, l.base_dn.clone(), Duration::from_millis(l.op_timeout_ms))
            .with_failover_id_gap(l.failover_id_gap);
        match l.ack.as_str() {
            "one" => {}
            "all" => directory = directory.with_ack_all(Duration::from_millis(l.ack_timeout_ms)),
            other => return Err(DirError::Other(format!("ldap.ack must be \"one\" or \"all\", not {other:?}"))),
        }
        // One synchronisation session feeds the index of every resource.
        let restart = Arc::new(tokio::sync::Notify::new());
        let indexes: Vec<Arc<CollectionIndex>> =
            ALL.iter().map(|def| Arc::new(CollectionIndex::sharing(def, &l.base_dn, restart.clone()))).collect();
        // Their changes, once loaded, are the change feed.
        let c = &settings.changes;
        let feed = Feed::new(
            FeedSettings {
                window: c.window.max(1),
                max_age: Duration::from_secs(c.max_age_secs),
                ..FeedSettings::default()
            },
            &settings.public_url(),
        );
        for index in &indexes {
            index.feed_into(feed.clone());
        }
        let contract_watch = Arc::new(ContractWatch::new(&l.base_dn, feed.clone()));
        let changes = Changes::new(feed, c.max_streams, c.max_streams_per_caller);
        let sync = Arc::new(
            SyncConsumer::new(
                spec,
                l.base_dn.clone(),
                // And what the change feed says of contracts.
                table::all_attributes(ALL)
                    .into_iter()
                    .chain(crate::mapping::contracts::CONTRACT_ATTRS.iter().copied().filter(|a| *a != "entryCSN"))
                    .chain(["objectClass"])
                    .map(String::from)
                    .collect(),
                restart,
            )
            .following(directory.pool().manager())
            .with_margin(Duration::from_secs(settings.index.check_margin_secs)),
        );
        let p = &settings.pagination;
        let limits = PageLimits {
            default_per_page: p.default_per_page.max(1) as u64,
            max_per_page: p.max_per_page.max(1) as u64,
        };
        let service = |def: &'static ResourceDef| {
            let index = indexes.iter().find(|i| std::ptr::eq(i.def(), def)).expect("an index per resource").clone();
            Resources::new(
                def,
                directory.clone(),
                &settings.public_url(),
                index,
                limits,
                Duration::from_millis(settings.index.catch_up_ms),
            )
        };
        let services: Arc<[Resources]> = ALL.iter().map(|def| service(def)).collect();
        let subscriptions = Subscriptions::new(service(&CUSTOMERS));
        let contracts = Contracts::new(subscriptions.clone(), directory.clone(), settings.subscriptions.notice_days);
        let a = &settings.auth;
        let auth_settings = AuthSettings {
            cache_ttl: Duration::from_secs(a.cache_ttl_secs),
            max_failures: a.max_failures.max(1),
            failure_window: Duration::from_secs(a.failure_window_secs),
            lockout: Duration::from_secs(a.lockout_secs),
        };
        let keys = Arc::new(Keys::new(directory.clone(), auth_settings.clone()));
        let auth = Arc::new(Authenticator::new(directory.clone(), binds, auth_settings));
        Ok(AppState {
            body_limit: settings.http.body_limit_bytes,
            ready_timeout: Duration::from_millis(l.connect_timeout_ms.min(l.op_timeout_ms)),
            settings: Arc::new(settings),
            directory,
            services,
            auth,
            keys,
            subscriptions,
            contracts,
            changes,
            contract_watch,
            sync,
        })
    }
}

/// Feeds the indexes, and ends the remembered logins of a person whose entry changed or
/// went, whoever changed it (another gateway, an admin's LDAP tool): a new password or
/// a deactivation counts on this gateway as soon as the change arrives.
struct Logins {
    auth: Arc<Authenticator>,
    base: String,
    /// The indexes of the resources whose entries are logins.
    logins: Vec<Arc<CollectionIndex>>,
    indexes: Arc<Fanout>,
    /// The merchants' contracts, for the change feed.
    contracts: Arc<ContractWatch>,
}

impl SyncSink for Logins {
    fn apply(&self, event: SyncEvent) {
        let mut changed = Vec::new();
        for index in &self.logins {
            let id = match &event {
                SyncEvent::Entry { uuid, entry } => index
                    .def()
                    .place(&entry.dn, &self.base)
                    .filter(|p| p.part == crate::mapping::table::Part::Root)
                    .map(|p| p.id)
                    .or_else(|| index.id_of(uuid)),
                SyncEvent::Delete { uuid } => index.id_of(uuid),
                _ => None,
            };
            changed.extend(id.filter(|_| index.is_loaded()));
        }
        self.contracts.apply(event.clone());
        self.indexes.apply(event);
        for id in changed {
            self.auth.forget_person(id);
        }
    }

    fn verified(&self) -> Option<crate::directory::sync::Verified> {
        self.indexes.verified()
    }

    fn lacks(&self, uuid: &Uuid, dn: &str) -> bool {
        self.indexes.lacks(uuid, dn) || self.contracts.lacks(uuid, dn)
    }
}

/// Runs the gateway with these settings until SIGTERM or Ctrl-C: listens, connects to
/// the directory, serves.
pub fn run(settings: Settings) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
        let state = AppState::new(settings).map_err(|e| e.to_string())?;
        serve(listener, state, shutdown_signal()).await.map_err(|e| e.to_string())
    })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // A certificate that cannot be read stops the start.
    let tls = match &state.settings.tls {
        t if t.enabled() => {
            Some(Arc::new(crate::http::tls::Certificates::load(&t.cert_file, &t.key_file).map_err(io::Error::other)?))
        }
        _ => None,
    };
    // The indexes follow the directory for as long as the server runs: from their
    // snapshot if there is one, else from nothing.
    let indexes = Arc::new(Fanout::new(state.resources().iter().map(|r| r.index().clone()).collect()));
    let base = state.settings.ldap.base_dn.clone();
    let snapshot_file = Some(&state.settings.index.snapshot_file)
        .filter(|f| !f.is_empty())
        .map(|f| std::path::PathBuf::from(f.as_str()));
    let sink = Logins {
        auth: state.auth.clone(),
        base: base.clone(),
        logins: state.resources().iter().filter(|r| r.def().logins).map(|r| r.index().clone()).collect(),
        indexes: indexes.clone(),
        contracts: state.contract_watch.clone(),
    };
    // The directory a snapshot belongs to, once it has answered.
    let identity: Arc<std::sync::OnceLock<String>> = Default::default();
    let sync = {
        let (consumer, contracts, file, indexes, base) =
            (state.sync.clone(), state.contract_watch.clone(), snapshot_file.clone(), indexes.clone(), base.clone());
        let (directory, identity) = (state.directory.clone(), identity.clone());
        tokio::spawn(async move {
            let found = match &file {
                Some(_) => directory_identity(&directory, &base).await,
                None => None,
            };
            let cookie = match (file, found) {
                (Some(f), Some((id, csns))) => {
                    let _ = identity.set(id.clone());
                    tokio::task::spawn_blocking(move || restore(&f, &indexes, &base, &id, &csns)).await.ok().flatten()
                }
                _ => None,
            };
            if cookie.is_some() {
                contracts.restored();
            }
            consumer.run_from(cookie, Arc::new(sink)).await
        })
    };
    let saver = snapshot_file.clone().map(|file| {
        let (indexes, base, identity) = (indexes.clone(), base.clone(), identity.clone());
        let every = Duration::from_secs(state.settings.index.snapshot_interval_secs.max(1));
        tokio::spawn(async move {
            let mut saved = indexes.events();
            loop {
                tokio::time::sleep(every).await;
                let Some(id) = identity.get().cloned() else { continue };
                if indexes.events() != saved {
                    let (f, i, b) = (file.clone(), indexes.clone(), base.clone());
                    let now = i.events();
                    if tokio::task::spawn_blocking(move || save(&f, &i, &b, &id)).await.unwrap_or(false) {
                        saved = now;
                    }
                }
            }
        })
    });
    let feed = tokio::spawn(state.changes.feed().clone().run());
    // Open change streams end when the server stops, so that it need not wait for them.
    let changes = state.changes.clone();
    let shutdown = async move {
        shutdown.await;
        changes.close();
    };
    // With several servers: watch them, compare their replication after a disturbance,
    // and move back to a preferred one once it answers again and holds what it should.
    let pools = [state.directory.pool().clone(), state.auth.pool().clone()];
    let every = Duration::from_millis(state.settings.ldap.failback_interval_ms.max(100));
    let failback = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            for p in &pools {
                p.manager().watch().await;
                p.manager().probe_failback().await;
            }
        }
    });
    // The trash is swept at start and then periodically: a delete cut short by a fault
    // leaves its subtree there.
    let customers = state.service(&CUSTOMERS).clone();
    let sweep_every = state.settings.ldap.trash_sweep_secs;
    let sweeper = tokio::spawn(async move {
        loop {
            if let Err(e) = customers.sweep_trash().await {
                tracing::warn!(error = ?e.to_string(), "could not sweep the trash; trying again later");
            }
            if sweep_every == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(sweep_every)).await;
        }
    });
    let limits = crate::http::server::ConnLimits::from_settings(&state.settings.http);
    let reload = tls.clone().map(|certs| tokio::spawn(reload_on_sighup(certs)));
    let router = crate::http::router(state);
    let res = crate::http::server::run(listener, router, limits, tls, shutdown).await;
    if let Some(r) = reload {
        r.abort();
    }
    sync.abort();
    feed.abort();
    failback.abort();
    sweeper.abort();
    if let Some(s) = saver {
        s.abort();
    }
    // What the indexes hold now, for the next start.
    if let (Some(file), Some(id)) = (snapshot_file, identity.get().cloned()) {
        let _ = sync.await;
        let _ = tokio::task::spawn_blocking(move || save(&file, &indexes, &base, &id)).await;
    }
    res
}

/// The entryUUID of the base entry, which names the directory a snapshot is of, and its
/// `contextCSN`, how far the directory is; asked until the directory answers (nothing is
/// served before), or `None` if the base entry has no entryUUID.
async fn directory_identity(directory: &Directory, base: &str) -> Option<(String, Csns)> {
    let mut pause = Duration::from_millis(100);
    loop {
        let found = match directory.search(base, ldap3::Scope::Base, "(objectClass=*)", &["entryUUID"]).await {
            Ok(found) => directory.context_csn().await.map(|csns| (found, csns)),
            Err(e) => Err(e),
        };
        match found {
            Ok((found, csns)) => return found.first()?.first("entryUUID").map(|id| (id.to_string(), csns)),
            Err(e) => tracing::debug!(error = %e, "the directory does not answer yet"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Loads the indexes from their snapshot; the cookie to resume from.
fn restore(file: &std::path::Path, indexes: &Fanout, base: &str, directory: &str, at: &Csns) -> Option<Vec<u8>> {
    let t = std::time::Instant::now();
    match snapshot::load(file, indexes, base, directory, at) {
        Ok(Some(cookie)) => {
            tracing::info!(file = %file.display(), secs = t.elapsed().as_secs_f64(), "indexes loaded from their snapshot; resuming the synchronisation");
            Some(cookie)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "the index snapshot is discarded; loading from the directory");
            None
        }
    }
}

/// Saves the indexes; whether a snapshot was written.
fn save(file: &std::path::Path, indexes: &Fanout, base: &str, directory: &str) -> bool {
    let t = std::time::Instant::now();
    match snapshot::save(file, indexes, base, directory) {
        Ok(Some(bytes)) => {
            tracing::info!(file = %file.display(), bytes, secs = t.elapsed().as_secs_f64(), "index snapshot written");
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "could not write the index snapshot");
            false
        }
    }
}

/// Reads the certificate and key again on every SIGHUP; a failed reload keeps the ones
/// in use.
async fn reload_on_sighup(certs: Arc<crate::http::tls::Certificates>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; the certificate is not reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match certs.reload() {
                Ok(()) => tracing::info!("certificate reloaded"),
                Err(e) => tracing::warn!(error = ?e, "certificate not reloaded; keeping the one in use"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = certs;
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
