//! A content synchronisation consumer (RFC 4533, refreshAndPersist) of slapd's syncprov:
//! it follows every change below a base and hands them on as events, resuming with the
//! last cookie after a reconnect. It also reads the directory's `contextCSN`, which says
//! how far a consumer must have got to have seen every committed change.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::Manager;
use ldap3::controls::{parse_syncinfo, Control, ControlType, EntryState, MakeCritical, RefreshMode, SyncInfo};
use ldap3::controls::{SyncRequest, SyncState};
use ldap3::{Scope, SearchEntry};
use tokio::sync::Notify;

pub use super::csn::Csns;
use super::pool::{ConnSpec, LdapManager};
use super::{DirError, Entry};

/// An entryUUID, as the 16 bytes the Sync State control carries.
pub type Uuid = [u8; 16];

/// What the consumer reports, in the order the directory sent it.
#[derive(Debug, Clone)]
pub enum SyncEvent {
    /// A refresh starts; `reload` means from nothing (no cookie), so everything held
    /// before is void.
    RefreshBegin { reload: bool },
    /// An entry was added or changed (or is sent in full during a refresh).
    Entry { uuid: Uuid, entry: Entry },
    /// An entry was deleted, or left the synchronised content.
    Delete { uuid: Uuid },
    /// These entries exist unchanged (present phase of a refresh).
    Present(Vec<Uuid>),
    /// The refresh is over and notifications follow. With `present`, the refresh used a
    /// present phase: entries that were neither sent nor named present are gone.
    RefreshEnd { present: bool },
    /// Everything up to these CSNs has been reported; the cookie itself, from which a
    /// later session can resume.
    Cookie(Csns, Arc<[u8]>),
    /// The consumer checks what it holds against the server (after a resume): the
    /// entries follow as `Checked`, read by a search of their own, then `CheckEnd`.
    /// Changes the session reports meanwhile are newer than what the check read of the
    /// same entry, and win.
    CheckBegin,
    /// An entry as the check read it.
    Checked { uuid: Uuid, entry: Entry },
    /// Entries the check found as the sink holds them: each one's entryCSN is covered by
    /// what the sink says it holds exactly (`SyncSink::verified`), and the sink does not
    /// lack it. They were not read in full.
    Unchanged(Vec<Uuid>),
    /// The check is over: what was neither read by it nor changed since it began is gone.
    CheckEnd,
    /// What the sink holds now is exactly what the server holds of every entry whose
    /// entryCSN these cover (sent after a load from nothing and after a check). A later
    /// check on the same server reads in full only the entries they do not cover, or
    /// that the sink lacks.
    Verified(Verified),
}

/// A state the sink held exactly: that of every entry whose entryCSN `csns` cover, on
/// the server of this URL. Another server may hold some of them in an older state (a
/// write it never got), so a check there reads every entry in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub server: String,
    pub csns: Csns,
}

/// Receives the events of a consumer.
pub trait SyncSink: Send + Sync + 'static {
    fn apply(&self, event: SyncEvent);

    /// The last `Verified` it was given and still holds to, if any. Without it, a check
    /// reads every entry in full.
    fn verified(&self) -> Option<Verified> {
        None
    }

    /// Whether it lacks the entry (by its entryUUID, at this DN): one it would keep but
    /// does not hold, which a check reads in full however old its entryCSN.
    fn lacks(&self, _uuid: &Uuid, _dn: &str) -> bool {
        true
    }
}

/// What the last completed check read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Entries the server holds below the base.
    pub entries: usize,
    /// Of those, the ones read with all their attributes.
    pub read_in_full: usize,
}

/// A consumer of the content below `base`.
pub struct SyncConsumer {
    manager: LdapManager,
    base: String,
    attrs: Vec<String>,
    /// Wakes the consumer to drop its session and resume it on a new connection.
    restart: Arc<Notify>,
    /// The server another pool uses: the session moves there when that pool moves.
    follow: Option<tokio::sync::watch::Receiver<usize>>,
    /// The server of the current session.
    server: std::sync::atomic::AtomicUsize,
    /// What the last completed check read.
    last_check: std::sync::Mutex<Option<CheckStats>>,
    /// What is newer than the start of a load or a check less this is not counted as
    /// verified by it.
    margin: Duration,
}

fn uuid(bytes: &[u8]) -> Option<Uuid> {
    bytes.try_into().ok()
}

enum Ended {
    /// Asked to restart.
    Restart,
    /// The server wants a full reload (e-syncRefreshRequired).
    Reload,
}

impl SyncConsumer {
    /// `restart` wakes the consumer to drop its session and resume on a new connection.
    pub fn new(spec: ConnSpec, base: String, attrs: Vec<String>, restart: Arc<Notify>) -> Self {
        let server = Default::default();
        let last_check = Default::default();
        let margin = super::reconcile::MARGIN;
        SyncConsumer { manager: LdapManager::new(spec), base, attrs, restart, follow: None, server, last_check, margin }
    }

    /// Keeps the session on the server `pool` uses: after that pool moves (a failover or
    /// a fail-back), the session resumes there from its cookie, which names a CSN per
    /// server and so holds on any of them.
    pub fn following(mut self, pool: &LdapManager) -> Self {
        self.follow = Some(pool.follow());
        self
    }

    /// A load from nothing or a check verifies what is older than its start less this
    /// margin (see `SyncEvent::Verified`): it covers transactions whose entries showed
    /// only after the server's contextCSN had passed them, and clocks apart.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Index (in the configured URLs) of the server of the current session.
    pub fn server(&self) -> usize {
        self.server.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn margin_ago(&self) -> std::time::SystemTime {
        let now = std::time::SystemTime::now();
        now.checked_sub(self.margin).unwrap_or(now)
    }

    fn url(&self, server: usize) -> String {
        self.manager.urls().get(server).cloned().unwrap_or_default()
    }

    /// What the last completed check after a resume read, if one completed.
    pub fn last_check(&self) -> Option<CheckStats> {
        *self.last_check.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follows the directory until the task is dropped: reconnects with growing pauses
    /// (100 ms to 5 s) and resumes from the last cookie. A session that fails in a way the
    /// cookie cannot recover from (the server asks for a reload, or a malformed answer)
    /// starts again from nothing.
    pub async fn run(self: Arc<Self>, sink: Arc<dyn SyncSink>) {
        self.run_from(None, sink).await
    }

    /// The same, resuming from `cookie` (a saved one, whose content the sink holds
    /// already). A directory that refuses it (asks for a reload, or ends the search
    /// before the first refresh is done) gets a reload from nothing instead.
    pub async fn run_from(self: Arc<Self>, mut cookie: Option<Vec<u8>>, sink: Arc<dyn SyncSink>) {
        let mut restored = cookie.is_some();
        let mut pause = Duration::from_millis(100);
        loop {
            let me = self.clone();
            let sink2 = sink.clone();
            let start = cookie.clone();
            let session = tokio::spawn(async move {
                let mut cookie = start;
                let mut refreshed = false;
                let res = me.session(&*sink2, &mut cookie, &mut refreshed).await;
                (res, cookie, refreshed)
            });
            match session.await {
                Ok((res, c, refreshed)) => {
                    cookie = c;
                    if refreshed {
                        pause = Duration::from_millis(100);
                    }
                    let refused = restored && !refreshed && matches!(res, Err(DirError::Other(_)));
                    restored &= !refreshed;
                    match res {
                        _ if refused => {
                            tracing::warn!("the directory does not resume from the saved cookie; loading from nothing");
                            restored = false;
                            cookie = None;
                        }
                        Ok(Ended::Restart) => continue,
                        Ok(Ended::Reload) => {
                            tracing::warn!("the directory asks for a full reload of the customer index");
                            cookie = None;
                        }
                        Err(e) => tracing::warn!(error = %e, "content synchronisation interrupted; resuming"),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "content synchronisation failed; reloading from nothing");
                    cookie = None;
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn session(
        &self,
        sink: &dyn SyncSink,
        cookie: &mut Option<Vec<u8>>,
        refreshed: &mut bool,
    ) -> Result<Ended, DirError> {
        let mut follow = self.follow.clone();
        if let Some(f) = follow.as_mut() {
            self.manager.prefer(*f.borrow_and_update());
        }
        let mut ldap = self.manager.create().await?;
        let server = ldap.server;
        self.server.store(server, std::sync::atomic::Ordering::Relaxed);
        let moved = async move {
            match follow.as_mut() {
                Some(f) => {
                    while f.changed().await.is_ok() {
                        if *f.borrow_and_update() != server {
                            return;
                        }
                    }
                    std::future::pending().await
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(moved);
        // A reload from nothing holds exactly what the server holds. A resume may not:
        // the server may not tell every change since the cookie. slapd replays deletes
        // from its write log, which does not always name the deleted entry's entryUUID;
        // another server than the cookie's may not have had the deletes made while it
        // was away; and a refresh that starts while a transaction commits is told it is
        // complete up to a CSN whose entries it never got. So once the refresh of a
        // resume is over, what the consumer holds is checked against what the server
        // holds (an interrupted check is owed again by the next session's cookie).
        let mut check_owed = cookie.is_some();
        let mut check: Option<std::pin::Pin<Box<dyn std::future::Future<Output = CheckResult> + Send + '_>>> = None;
        // What the sink will hold exactly once the refresh of a load from nothing, or the
        // check, is over: every entry the server held before it began. A transaction's
        // entries may show after the server's contextCSN has passed their CSN, and a
        // refresh that starts meanwhile never gets them, so neither counts what is newer
        // than that moment less a margin (longer than a transaction, and the clocks of
        // the servers and the gateway apart).
        let mut verifies: Option<Csns> = None;
        if cookie.is_none() {
            let (code, csns) = super::csn::read_over(&mut ldap, &self.base).await?;
            if code == 0 {
                verifies = Some(csns.at_most(self.margin_ago()));
            }
        }
        let req = SyncRequest {
            mode: RefreshMode::RefreshAndPersist,
            cookie: cookie.as_deref().map(Csns::consumer_cookie),
            reload_hint: false,
        };
        let attrs: Vec<&str> = self.attrs.iter().map(String::as_str).collect();
        // No operation timeout: the search lasts as long as the session.
        let mut stream = ldap
            .with_controls(req.critical())
            .streaming_search(&self.base, Scope::Subtree, "(objectClass=*)", attrs)
            .await?;
        sink.apply(SyncEvent::RefreshBegin { reload: cookie.is_none() });
        let mut present_phase = false;
        fn note_cookie(c: Option<Vec<u8>>, sink: &dyn SyncSink, cookie: &mut Option<Vec<u8>>) {
            if let Some(c) = c.filter(|c| !c.is_empty()) {
                sink.apply(SyncEvent::Cookie(Csns::from_cookie(&c), c.as_slice().into()));
                *cookie = Some(c);
            }
        }
        loop {
            let checking = async {
                match check.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            };
            // `Err(moved)`: asked to restart, or the followed pool moved (`true`).
            let next = tokio::select! {
                item = stream.next() => Ok(item),
                _ = self.restart.notified() => Err(false),
                _ = &mut moved => Err(true),
                done = checking => {
                    check = None;
                    match done {
                        Ok(Some(stats)) => {
                            tracing::info!(url = %self.manager.urls()[server], entries = stats.entries, read_in_full = stats.read_in_full, "content synchronisation checked against the server after a resume");
                            sink.apply(SyncEvent::CheckEnd);
                            if let Some(csns) = verifies.take() {
                                sink.apply(SyncEvent::Verified(Verified { server: self.url(server), csns }));
                            }
                            *self.last_check.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
                            check_owed = false;
                        }
                        // Another server answered: the next session checks.
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "checking the synchronised content against the server failed; the next session checks again"),
                    }
                    continue;
                }
            };
            let item = match next {
                Ok(item) => item,
                Err(moved) => {
                    if moved {
                        tracing::info!(url = %self.manager.urls()[server], "the directory moved to another server; content synchronisation follows");
                    }
                    let _ = stream.finish().await;
                    let id = stream.ldap_handle().last_id();
                    let _ = ldap.abandon(id).await;
                    let _ = ldap.unbind().await;
                    return Ok(Ended::Restart);
                }
            };
            let Some(re) = item? else { break };
            if re.is_intermediate() {
                let info = catch_unwind(AssertUnwindSafe(|| parse_syncinfo(re)))
                    .map_err(|_| DirError::Other("malformed Sync Info message".into()))?;
                present_phase |= matches!(info, SyncInfo::RefreshPresent { .. });
                match info {
                    SyncInfo::NewCookie(c) => note_cookie(Some(c), sink, cookie),
                    SyncInfo::RefreshDelete { cookie: c, refresh_done }
                    | SyncInfo::RefreshPresent { cookie: c, refresh_done } => {
                        if refresh_done {
                            sink.apply(SyncEvent::RefreshEnd { present: present_phase });
                            *refreshed = true;
                        }
                        note_cookie(c, sink, cookie);
                        if refresh_done {
                            if !check_owed {
                                // A load from nothing: exact up to where it began.
                                if let Some(csns) = verifies.take() {
                                    sink.apply(SyncEvent::Verified(Verified { server: self.url(server), csns }));
                                }
                            } else if check.is_none() {
                                // What the session has got so far, less the margin.
                                let at = cookie.as_deref().map(Csns::from_cookie).unwrap_or_default();
                                verifies = Some(at.at_most(self.margin_ago()));
                                let here = self.url(server);
                                let since = sink.verified().filter(|v| v.server == here).map(|v| v.csns);
                                sink.apply(SyncEvent::CheckBegin);
                                check = Some(Box::pin(self.check(sink, server, since)));
                            }
                        }
                    }
                    SyncInfo::SyncIdSet { cookie: c, refresh_deletes, sync_uuids } => {
                        let uuids: Vec<Uuid> = sync_uuids.iter().filter_map(|u| uuid(u)).collect();
                        if refresh_deletes {
                            for u in uuids {
                                sink.apply(SyncEvent::Delete { uuid: u });
                            }
                        } else {
                            present_phase = true;
                            sink.apply(SyncEvent::Present(uuids));
                        }
                        note_cookie(c, sink, cookie);
                    }
                }
                continue;
            }
            let state = re.1.iter().find_map(|c| match c {
                Control(Some(ControlType::SyncState), raw) => {
                    Some(catch_unwind(AssertUnwindSafe(|| raw.parse::<SyncState>())))
                }
                _ => None,
            });
            let Some(Ok(state)) = state else {
                return Err(DirError::Other("an entry without a valid Sync State control".into()));
            };
            let Some(u) = uuid(&state.entry_uuid) else {
                return Err(DirError::Other("a Sync State control with a malformed entryUUID".into()));
            };
            let entry = Entry::from_search(SearchEntry::construct(re));
            match state.state {
                EntryState::Delete => sink.apply(SyncEvent::Delete { uuid: u }),
                EntryState::Present if entry.attrs.is_empty() => sink.apply(SyncEvent::Present(vec![u])),
                _ => sink.apply(SyncEvent::Entry { uuid: u, entry }),
            }
            note_cookie(state.cookie, sink, cookie);
        }
        let res = stream.finish().await;
        if res.rc == 4096 {
            return Ok(Ended::Reload);
        }
        Err(DirError::Other(format!("the synchronisation search ended: result {} {}", res.rc, res.text)))
    }
}

/// What the check read, or `None` if the server's URL is not known.
type CheckResult = Result<Option<CheckStats>, DirError>;

/// An entryUUID in its text form (`8-4-4-4-12` hexadecimal digits) as 16 bytes.
fn uuid_from_text(text: &str) -> Option<Uuid> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The entryUUID a search was asked for, taken out of the entry's attributes.
fn take_uuid(e: &mut SearchEntry) -> Option<Uuid> {
    e.attrs.remove("entryUUID").and_then(|v| v.first().and_then(|t| uuid_from_text(t)))
}

/// Entries to read in full gathered before they are read (by DN, a base search each:
/// an OR of many entryUUIDs costs slapd time that grows with its square).
const FULL_READ_BATCH: usize = 256;

/// Base searches of those in flight at once on the check's connection.
const FULL_READS_AT_ONCE: usize = 16;

/// Entries handed on as unchanged at once.
const UNCHANGED_BATCH: usize = 1000;

impl SyncConsumer {
    /// Reads every entry the session's search covers, in pages, on a connection of its
    /// own to `server`, and hands each on as `Checked`: what a present phase with every
    /// entry sent would give. With `since` (what the sink held exactly when it was last
    /// verified), the pages bring only each entry's entryUUID and entryCSN; an entry
    /// whose entryCSN `since` covers and which the sink does not lack is `Unchanged`,
    /// and only the others are read in full.
    async fn check(&self, sink: &dyn SyncSink, server: usize, since: Option<Csns>) -> CheckResult {
        use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
        let Some(url) = self.manager.urls().get(server) else { return Ok(None) };
        let mut ldap = self.manager.connect(url, true).await?;
        let adapters: Vec<Box<dyn Adapter<_, _>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(1000))];
        let mut full: Vec<String> = self.attrs.clone();
        if full.is_empty() {
            full.push("*".into());
        }
        full.push("entryUUID".into());
        let attrs = match since {
            Some(_) => vec!["entryUUID".to_string(), "entryCSN".to_string()],
            None => full.clone(),
        };
        let reader: ldap3::Ldap = ldap.clone();
        let mut stream =
            ldap.streaming_search_with(adapters, &self.base, Scope::Subtree, "(objectClass=*)", attrs).await?;
        let mut stats = CheckStats::default();
        let (mut unchanged, mut wanted) = (Vec::new(), Vec::new());
        while let Some(e) = stream.next().await? {
            let mut e = SearchEntry::construct(e);
            let Some(uuid) = take_uuid(&mut e) else {
                continue;
            };
            stats.entries += 1;
            let Some(since) = &since else {
                sink.apply(SyncEvent::Checked { uuid, entry: Entry::from_search(e) });
                stats.read_in_full += 1;
                continue;
            };
            let csn = e.attrs.get("entryCSN").and_then(|v| v.first());
            if csn.is_some_and(|c| since.covers_csn(c)) && !sink.lacks(&uuid, &e.dn) {
                unchanged.push(uuid);
                if unchanged.len() >= UNCHANGED_BATCH {
                    sink.apply(SyncEvent::Unchanged(std::mem::take(&mut unchanged)));
                }
            } else {
                wanted.push(e.dn);
                if wanted.len() >= FULL_READ_BATCH {
                    stats.read_in_full += self.read_in_full(&reader, &full, std::mem::take(&mut wanted), sink).await?;
                }
            }
        }
        let res = stream.finish().await;
        if !unchanged.is_empty() {
            sink.apply(SyncEvent::Unchanged(unchanged));
        }
        if res.rc == 0 && !wanted.is_empty() {
            stats.read_in_full += self.read_in_full(&reader, &full, wanted, sink).await?;
        }
        let _ = ldap.unbind().await;
        match res.rc {
            0 => Ok(Some(stats)),
            rc => Err(DirError::Other(format!("reading the entries to check: result {rc} {}", res.text))),
        }
    }

    /// Reads the entries at these DNs with `attrs`, several at once, and hands each on as
    /// `Checked`; how many were found (one deleted or moved meanwhile is not, and the
    /// session reports that change).
    async fn read_in_full(
        &self,
        ldap: &ldap3::Ldap,
        attrs: &[String],
        dns: Vec<String>,
        sink: &dyn SyncSink,
    ) -> Result<usize, DirError> {
        use futures::stream::{self, StreamExt};
        let mut reads = stream::iter(dns)
            .map(|dn| {
                let (mut ldap, attrs) = (ldap.clone(), attrs.to_vec());
                async move { ldap.search(&dn, Scope::Base, "(objectClass=*)", attrs).await }
            })
            .buffered(FULL_READS_AT_ONCE);
        let mut n = 0;
        while let Some(read) = reads.next().await {
            let ldap3::SearchResult(found, res) = read?;
            match res.rc {
                0 => {}
                // No such object: gone since the page named it.
                32 => continue,
                rc => return Err(DirError::Other(format!("reading the entries to check: result {rc} {}", res.text))),
            }
            for e in found {
                let mut e = SearchEntry::construct(e);
                let Some(uuid) = take_uuid(&mut e) else {
                    continue;
                };
                sink.apply(SyncEvent::Checked { uuid, entry: Entry::from_search(e) });
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_uuids_in_text_form_are_read_as_their_bytes() {
        let u = uuid_from_text("0f8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(u[0], 0x0f);
        assert_eq!(u[15], 0x5b);
        assert_eq!(uuid_from_text("0F8E1A2B3C4D4E5F8A9B0C1D2E3F4A5B"), Some(u));
        assert_eq!(uuid_from_text("0f8e1a2b-3c4d"), None);
        assert_eq!(uuid_from_text("zz8e1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"), None);
    }

    #[test]
    fn csns_compare_per_server_id() {
        let a = Csns::from_cookie(b"rid=000,csn=20261124184611.093516Z#000000#000#000000");
        let b = Csns::from_values(["20261124184612.000000Z#000000#000#000000"]);
        assert!(!a.covers(&b));
        assert!(b.covers(&a));
        let mut m = a.clone();
        m.merge(&b);
        assert_eq!(m, b);
        let two = Csns::from_cookie(
            b"rid=001,sid=002,csn=20261124184611.000000Z#000000#001#000000;20261124184615.000000Z#000000#002#000000",
        );
        assert_eq!(two.0.len(), 2);
        assert!(two.covers(&Csns::from_values(["20261124184615.000000Z#000000#002#000000"])));
        assert!(!two.covers(&Csns::from_values(["20261124184612.000000Z#000000#001#000000"])));
        assert!(two.covers(&Csns::default()));
        assert!(!Csns::default().covers(&two));
    }

    #[test]
    fn a_cookie_goes_back_without_the_server_id_of_the_server_that_gave_it() {
        let csns = "csn=20261124184611.000000Z#000000#001#000000;20261124184615.000000Z#000000#002#000000";
        let given = format!("rid=001,sid=002,{csns}");
        assert_eq!(Csns::consumer_cookie(given.as_bytes()), format!("rid=001,{csns}").into_bytes());
        assert_eq!(Csns::consumer_cookie(format!("sid=001,{csns}").as_bytes()), csns.as_bytes());
        assert_eq!(Csns::consumer_cookie(csns.as_bytes()), csns.as_bytes());
        assert_eq!(Csns::from_cookie(&Csns::consumer_cookie(given.as_bytes())), Csns::from_cookie(given.as_bytes()));
    }
}
