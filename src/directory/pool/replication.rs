//! Watching every server, and comparing a disturbed one with the server in use: what
//! either missed is sent again through replication, or a missed delete completed.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use ldap3::{Ldap, Mod, Scope, SearchEntry};

use super::LdapManager;
use crate::directory::csn::Csns;
use crate::directory::error::rc;
use crate::directory::reconcile::{self, Seen};
use crate::directory::{DirError, Entry};

/// The base of a replicated server's write log (slapd's accesslog overlay), where the
/// comparison looks up the deletes a server made.
pub const WRITE_LOG: &str = "cn=accesslog";

/// What the comparison does about an entry one server holds and the other does not hold
/// in the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repair {
    /// Has the server that holds it send it again through replication.
    Resend,
    /// Deletes it where it is still held: the other server's write log has a delete of
    /// it newer than this state.
    Delete,
    /// Deletes it again where it came back: the server's own write log has its delete.
    /// Replication re-adds an entry that a server deleted when it takes a refresh from a
    /// peer that had not taken the delete yet (slapd keeps no record of deleted entries
    /// other than the write log), so an acknowledged delete would be undone.
    DeleteAgain,
}

/// A DN as the comparison matches it: lower case, no spaces after the separators (the
/// gateway writes DNs in one form; this covers an admin's `uid=1, ou=…`).
fn normal_dn(dn: &str) -> String {
    dn.split(',').map(str::trim).collect::<Vec<_>>().join(",").to_lowercase()
}

/// At most this many entryUUIDs or DNs go into one search for entries that came back.
const UUIDS_PER_SEARCH: usize = 100;

/// Deletes a write log holds: entryUUID, and the normalised DN of a gateway's move into
/// the trash, each with the CSN of its latest delete.
#[derive(Debug, Default)]
pub(super) struct Deletes {
    uuids: std::collections::HashMap<String, String>,
    moved: std::collections::HashMap<String, String>,
}

/// A server to be compared with the one in use.
#[derive(Debug, Clone)]
pub(super) struct Unchecked {
    /// When its replication with the server in use was disturbed (the earliest time).
    pub(super) since: SystemTime,
    /// Comparisons in a row that found an entry missing again after it had been sent
    /// again (see `rounds_after`).
    pub(super) rounds: u32,
    /// The entries (entryUUID) sent again or deleted since the disturbance.
    pub(super) repaired: std::collections::HashSet<String>,
    /// After a comparison that came out equal: the `contextCSN` of the server in use at
    /// its end. Entries newer than the comparison's start were taken as still on their
    /// way; a replication session still in its refresh then may yet lose them (see
    /// `reconcile`). The server counts as checked once a second comparison, made after
    /// the other server has reached this, comes out equal too.
    pub(super) settled: Option<Csns>,
}

/// Comparisons in a row that find entries missing again after they were sent again,
/// before the gateway stops sending them: a server that still lacks them then does not
/// take them from replication at all.
pub(super) const RESEND_ROUNDS: u32 = 5;

/// At most this many repaired entries are remembered per server (a bound on memory; once
/// over, the record starts anew).
const REPAIRED_KEPT: usize = 100_000;

/// The count of comparisons in a row that found an entry missing again after it had been
/// sent again, once a comparison repaired `now` (entryUUIDs): one more if any of them was
/// repaired before (`earlier`), else none. Under a write load a restarted server's
/// refresh can miss new entries round after round; that is replication still catching
/// up, not a server that refuses what is sent. `earlier` takes `now`.
pub(super) fn rounds_after(rounds: u32, earlier: &mut std::collections::HashSet<String>, now: &[String]) -> u32 {
    let again = now.iter().any(|u| earlier.contains(u));
    if earlier.len() + now.len() > REPAIRED_KEPT {
        earlier.clear();
    }
    earlier.extend(now.iter().cloned());
    if again {
        rounds.saturating_add(1)
    } else {
        0
    }
}

/// What one comparison of two servers found.
pub(super) enum Compared {
    /// The other server has not yet reached what the one in use had.
    Behind,
    /// Both hold the same; entries the gateway may not change are named if they differ.
    /// `reached` is what the other server had reached when the comparison started,
    /// `upto` what the server in use held when it ended.
    Same { unfixable: Vec<String>, reached: Csns, upto: Csns },
    /// These entries (entryUUID) were sent again or deleted; compare once more.
    Resent(Vec<String>),
    /// This many entries differ and were not sent again (`RESEND_ROUNDS` were tried).
    Differ(usize),
}

impl LdapManager {
    /// How many entries were deleted because a server's replication had missed their delete.
    pub fn deletes_completed(&self) -> u64 {
        self.deletes_completed.load(Ordering::Relaxed)
    }

    /// How many entries were sent again because a server's replication had missed them.
    pub fn resent(&self) -> u64 {
        self.resent.load(Ordering::Relaxed)
    }

    /// Servers still to be compared with the one in use after a disturbance.
    pub fn unchecked(&self) -> Vec<usize> {
        self.pending.lock().map(|p| (0..p.len()).filter(|&s| p[s].is_some()).collect()).unwrap_or_default()
    }

    /// Notes that these servers' replication with the one in use may have missed
    /// something from now on.
    pub(super) fn mark(&self, servers: impl Iterator<Item = usize>) {
        if !self.spec.reconcile {
            return;
        }
        let now = SystemTime::now();
        if let Ok(mut p) = self.pending.lock() {
            for s in servers {
                // A new disturbance keeps the earliest start but needs two comparisons
                // again, and whatever it made a server miss is sent again afresh.
                let u = p[s].get_or_insert(Unchecked {
                    since: now,
                    rounds: 0,
                    repaired: Default::default(),
                    settled: None,
                });
                u.settled = None;
                u.rounds = 0;
                u.repaired.clear();
            }
        }
        self.disturbances.fetch_add(1, Ordering::Relaxed);
    }

    /// A server stopped answering or restarted: if it is the one in use, every other
    /// server's replication from it was cut, else only its own.
    pub(super) fn disturbed(&self, server: usize, current: usize) {
        if server == current {
            self.mark((0..self.spec.urls.len()).filter(|&s| s != current));
        } else {
            self.mark(std::iter::once(server));
        }
    }

    /// How far a server has got: the `contextCSN` of the base entry (empty where this
    /// identity may not read it); `None` when the server does not answer. Read over the
    /// server's `watch` connection where there is one (a failure there is noted by the
    /// next `watch`), else over a new connection.
    pub(super) async fn progress(&self, server: usize) -> Option<Csns> {
        if let Some(ldap) = self.watchers.lock().await.get_mut(server).and_then(Option::as_mut) {
            return self.context_csns(ldap).await;
        }
        let probe = async {
            let mut ldap = self.connect(&self.spec.urls[server], true).await.ok()?;
            let csns = self.context_csns(&mut ldap).await;
            let _ = ldap.unbind().await;
            csns
        };
        tokio::time::timeout(self.spec.connect_timeout, probe).await.ok().flatten()
    }

    /// The `contextCSN` read over a connection; `None` when it fails.
    pub(super) async fn context_csns(&self, ldap: &mut Ldap) -> Option<Csns> {
        let read = crate::directory::csn::read_over(ldap, &self.spec.base_dn);
        let (code, csns) = tokio::time::timeout(self.spec.connect_timeout, read).await.ok()?.ok()?;
        match code {
            0 => Some(csns),
            rc::NO_SUCH_OBJECT => Some(Csns::default()),
            _ => None,
        }
    }

    /// Keeps a connection to every server and notes when one is lost (the server
    /// stopped or restarted) or cannot be made. Once such a server answers again and its
    /// replication has caught up, compares what both it and the server in use hold since
    /// shortly before the disturbance, and has the side that holds an entry the other
    /// lacks send it again through replication (see `reconcile`). A preferred server is
    /// used again only after that comparison came out equal.
    pub async fn watch(&self) {
        let n = self.spec.urls.len();
        if n < 2 || !self.spec.reconcile {
            return;
        }
        let mut conns = self.watchers.lock().await;
        let current = self.current_server();
        for (i, slot) in conns.iter_mut().enumerate() {
            let url = &self.spec.urls[i];
            if let Some(ldap) = slot.as_mut() {
                if self.context_csns(ldap).await.is_some() {
                    continue;
                }
                *slot = None;
                self.disturbed(i, current);
                tracing::info!(%url, "LDAP server stopped answering; its replication is compared once it is back");
            }
            match tokio::time::timeout(self.spec.connect_timeout, self.connect(url, true)).await {
                Ok(Ok(ldap)) => *slot = Some(ldap),
                _ => self.disturbed(i, current),
            }
        }
        let todo: Vec<(usize, SystemTime, u32, Option<Csns>)> = match self.pending.lock() {
            Ok(p) => p
                .iter()
                .enumerate()
                .filter_map(|(s, u)| u.as_ref().map(|u| (s, u.since, u.rounds, u.settled.clone())))
                .filter(|(s, ..)| *s != current)
                .collect(),
            Err(_) => return,
        };
        for (peer, since, rounds, settled) in todo {
            let seen = self.disturbances.load(Ordering::Relaxed);
            let (cur, other) = if current < peer {
                let (a, b) = conns.split_at_mut(peer);
                (&mut a[current], &mut b[0])
            } else {
                let (a, b) = conns.split_at_mut(current);
                (&mut b[0], &mut a[peer])
            };
            let (Some(cur), Some(other)) = (cur.as_mut(), other.as_mut()) else { continue };
            let url = &self.spec.urls[peer];
            let outcome = self.compare(current, cur, other, since, rounds < RESEND_ROUNDS).await;
            if let (Ok(mut p), Ok(Compared::Resent(_) | Compared::Differ(_))) = (self.pending.lock(), &outcome) {
                if let Some(u) = p[peer].as_mut() {
                    u.rounds = match &outcome {
                        Ok(Compared::Resent(uuids)) => rounds_after(u.rounds, &mut u.repaired, uuids),
                        _ => u.rounds.saturating_add(1),
                    };
                    u.settled = None;
                }
            }
            match outcome {
                Ok(Compared::Behind) => {}
                Ok(Compared::Same { unfixable, reached, upto }) => {
                    if !unfixable.is_empty() {
                        tracing::warn!(%url, entries = ?unfixable, "servers differ in entries the gateway may not change");
                    }
                    if let Ok(mut p) = self.pending.lock() {
                        let undisturbed = self.disturbances.load(Ordering::Relaxed) == seen;
                        if undisturbed && settled.is_some_and(|before| reached.covers(&before)) {
                            p[peer] = None;
                            tracing::info!(%url, "replication checked: the server holds what the one in use has");
                        } else if let Some(u) = p[peer].as_mut() {
                            u.rounds = 0;
                            u.settled = undisturbed.then_some(upto);
                        }
                    }
                }
                Ok(Compared::Resent(k)) => {
                    tracing::warn!(%url, entries = k.len(), "replication had missed entries or deletes; repaired them");
                }
                Ok(Compared::Differ(k)) => {
                    if rounds == RESEND_ROUNDS {
                        tracing::error!(
                            %url,
                            entries = k,
                            "the server does not take entries sent again: its replication with the server in use is not working"
                        );
                    }
                }
                Err(e) => tracing::info!(%url, error = %e, "could not compare the servers yet"),
            }
        }
    }

    /// Compares the server in use (`current`, over `cur`) with another one since `since`
    /// (less `reconcile::MARGIN`); sends what one lacks again if `resend`. Gives up
    /// (`Behind`) if the server in use changes meanwhile: which state is the newest is
    /// then no longer clear.
    pub(super) async fn compare(
        &self,
        current: usize,
        cur: &mut Ldap,
        peer: &mut Ldap,
        since: SystemTime,
        resend: bool,
    ) -> Result<Compared, DirError> {
        let mine_at = self.compared_csns(cur).await?;
        // Each must have reached what the other had: replication lags a little behind
        // the writes, and what is still on its way is not missing.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let Some(theirs_at) = self.reaching(peer, &mine_at, deadline).await? else { return Ok(Compared::Behind) };
        let Some(mine_at) = self.reaching(cur, &theirs_at, deadline).await? else { return Ok(Compared::Behind) };
        let from = reconcile::csn_at(since.checked_sub(reconcile::MARGIN).unwrap_or(since));
        let filter = format!("(entryCSN>={})", crate::directory::escape::filter_value(&from));
        let mine = self.seen(cur, &filter).await?;
        let theirs = self.seen(peer, &filter).await?;
        // Entries either server deleted in the span that a server holds (again, or still:
        // a copy or a refresh that missed the delete), however old their state.
        let (log_mine, log_theirs) = (self.logged_deletes(cur, &from).await?, self.logged_deletes(peer, &from).await?);
        let back_mine = self.undeleted(cur, &log_mine, &log_theirs).await?;
        let back_theirs = self.undeleted(peer, &log_theirs, &log_mine).await?;
        // What each server counts as its own after its entries were read: an entry past
        // it is stranded (see `reconcile::missing`).
        let mine_after = self.compared_csns(cur).await?;
        let theirs_after = self.compared_csns(peer).await?;
        // What the server in use has and the other lacks is sent again from the server in
        // use: it takes every write, so its state of an entry is the newest. Unless the
        // other server deleted it after that state: then the delete is what was missed.
        // The entries are in the order to repair them (`bool`: on the other server).
        let mut todo: Vec<(bool, Repair, &Seen)> = Vec::new();
        for gap in reconcile::missing(&mine, &theirs, &mine_after, &theirs_at) {
            tracing::debug!(dn = %gap.entry.dn, csn = %gap.entry.csn, absent = gap.absent, "an entry the other server lacks");
            let repair = match gap.absent && self.deleted_since(peer, gap.entry).await? {
                true => Repair::Delete,
                false => Repair::Resend,
            };
            todo.push((false, repair, gap.entry));
        }
        // What only the other server has is sent again from there, or deleted there if
        // the server in use deleted it after that state. An entry the server in use holds
        // in an older state is left alone: sending the other's state with a new CSN could
        // undo a write the server in use has taken meanwhile. So could an entry the
        // server in use deleted while its entries were read: that delete must have
        // reached the other server, which then no longer holds the entry.
        let from_peer = reconcile::missing(&theirs, &mine, &theirs_after, &mine_at);
        if !from_peer.is_empty() && self.reaching(peer, &mine_after, deadline + Duration::from_secs(1)).await?.is_none()
        {
            return Ok(Compared::Behind);
        }
        for gap in from_peer {
            // Outside the compared span the server in use may still hold the entry.
            if !gap.absent || self.holds(cur, &gap.entry.uuid).await? {
                tracing::info!(dn = %gap.entry.dn, "the server in use holds an older state of an entry than another server");
                continue;
            }
            if !self.holds(peer, &gap.entry.uuid).await? {
                continue;
            }
            tracing::debug!(dn = %gap.entry.dn, csn = %gap.entry.csn, "an entry only the other server has");
            let repair = match self.deleted_since(cur, gap.entry).await? {
                true => Repair::Delete,
                false => Repair::Resend,
            };
            todo.push((true, repair, gap.entry));
        }
        for (on_peer, back) in [(false, &back_mine), (true, &back_theirs)] {
            for entry in back {
                todo.retain(|(p, _, e)| !(*p == on_peer && e.uuid == entry.uuid));
                todo.push((on_peer, Repair::DeleteAgain, entry));
            }
        }
        if !resend && !todo.is_empty() {
            return Ok(Compared::Differ(todo.len()));
        }
        // Entries are sent again parents first, deleted children first.
        let (sends, mut deletes): (Vec<_>, Vec<_>) = todo.into_iter().partition(|(_, r, _)| *r == Repair::Resend);
        deletes.reverse();
        let mut repaired = Vec::new();
        let mut unfixable = Vec::new();
        for (on_peer, repair, entry) in sends.into_iter().chain(deletes) {
            if self.current_server() != current {
                return Ok(if repaired.is_empty() { Compared::Behind } else { Compared::Resent(repaired) });
            }
            let conn = if on_peer { &mut *peer } else { &mut *cur };
            let done = match repair {
                Repair::Resend => self.resend(conn, &entry.dn).await?,
                Repair::Delete | Repair::DeleteAgain => self.delete_tree(conn, &entry.dn).await?,
            };
            match (done, repair) {
                (true, Repair::Resend) => {
                    self.resent.fetch_add(1, Ordering::Relaxed);
                    repaired.push(entry.uuid.clone());
                }
                (true, Repair::Delete) => {
                    tracing::warn!(dn = %entry.dn, "a server had missed the delete of an entry; deleted it there");
                    self.deletes_completed.fetch_add(1, Ordering::Relaxed);
                    repaired.push(entry.uuid.clone());
                }
                (true, Repair::DeleteAgain) => {
                    tracing::warn!(dn = %entry.dn, "replication brought back an entry the server had deleted; deleted it again");
                    self.deletes_completed.fetch_add(1, Ordering::Relaxed);
                    repaired.push(entry.uuid.clone());
                }
                (false, _) => unfixable.push(entry.dn.clone()),
            }
        }
        Ok(if !repaired.is_empty() {
            Compared::Resent(repaired)
        } else {
            Compared::Same { unfixable, reached: theirs_at, upto: mine_after }
        })
    }

    /// The write log's records of the gateway's moves into the trash, which start its
    /// deletes (slapd does not always log the entryUUID of a delete, so the move, logged
    /// under the entry's DN, is what tells a gateway delete reliably; uids are never
    /// given twice, so a DN names one entry).
    fn trash_move(&self) -> String {
        format!(
            "(&(reqType=modrdn)(reqNewSuperior={}))",
            crate::directory::escape::filter_value(&crate::directory::layout::trash_dn(&self.spec.base_dn))
        )
    }

    /// Whether a server's write log holds a delete of the entry newer than the state
    /// `entry` was seen in: under its entryUUID, or the gateway's move of its DN into the
    /// trash. A server whose write log the gateway may not read is taken to have deleted
    /// nothing (said once in the log): the entry is then sent again, which undoes a
    /// delete that server's peer had missed.
    pub(super) async fn deleted_since(&self, ldap: &mut Ldap, entry: &Seen) -> Result<bool, DirError> {
        let esc = crate::directory::escape::filter_value;
        let filter = format!(
            "(|(&(reqType=delete)(reqEntryUUID={}))(&{}(reqDN={})))",
            esc(&entry.uuid),
            self.trash_move(),
            esc(&entry.dn)
        );
        let ldap3::SearchResult(found, result) =
            ldap.search(WRITE_LOG, Scope::OneLevel, &filter, vec!["entryCSN"]).await?;
        match result.rc {
            0 => Ok(found
                .into_iter()
                .map(|e| Entry::from_search(SearchEntry::construct(e)))
                .any(|e| e.first("entryCSN").is_some_and(|csn| csn > entry.csn.as_str()))),
            rc::NO_SUCH_OBJECT | rc::INSUFFICIENT_ACCESS => {
                if !self.log_unreadable.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        base = WRITE_LOG,
                        "a server's write log is not readable: a delete a server missed cannot be told from a create \
                         the other missed, and such entries are sent again"
                    );
                }
                Ok(false)
            }
            rc => Err(DirError::Other(format!("reading the write log: result {rc} {}", result.text))),
        }
    }

    /// Deletes an entry and what lies below it. `Ok(false)` when the gateway may not.
    pub(super) async fn delete_tree(&self, ldap: &mut Ldap, dn: &str) -> Result<bool, DirError> {
        let ldap3::SearchResult(found, result) =
            ldap.search(dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"]).await?;
        if result.rc == rc::NO_SUCH_OBJECT {
            return Ok(true);
        }
        let mut dns: Vec<String> = found.into_iter().map(|e| SearchEntry::construct(e).dn).collect();
        dns.sort_by_key(|d| std::cmp::Reverse(crate::directory::layout::depth(d)));
        for d in dns {
            let done = ldap.delete(&d).await?;
            match done.rc {
                0 | rc::NO_SUCH_OBJECT => {}
                rc::INSUFFICIENT_ACCESS => return Ok(false),
                rc => return Err(DirError::Other(format!("deleting {d}: result {rc} {}", done.text))),
            }
        }
        Ok(true)
    }

    /// A server's `contextCSN` during a comparison, which it ends if the server is gone.
    pub(super) async fn compared_csns(&self, ldap: &mut Ldap) -> Result<Csns, DirError> {
        self.context_csns(ldap)
            .await
            .ok_or_else(|| DirError::Unavailable("a server stopped answering during the comparison".into()))
    }

    /// A server's `contextCSN` once it covers `target`, or `None` if it does not by
    /// `deadline`.
    pub(super) async fn reaching(
        &self,
        ldap: &mut Ldap,
        target: &Csns,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Csns>, DirError> {
        loop {
            let have = self.compared_csns(ldap).await?;
            if have.covers(target) {
                return Ok(Some(have));
            }
            if tokio::time::Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// DN, entryUUID and entryCSN of the entries that match `filter`.
    pub(super) async fn seen(&self, ldap: &mut Ldap, filter: &str) -> Result<Vec<Seen>, DirError> {
        let search = ldap.search(&self.spec.base_dn, Scope::Subtree, filter, vec!["entryUUID", "entryCSN"]);
        let ldap3::SearchResult(entries, result) =
            tokio::time::timeout(Duration::from_secs(60), search).await.map_err(|_| DirError::Timeout)??;
        if result.rc != 0 && result.rc != rc::NO_SUCH_OBJECT {
            return Err(DirError::Other(format!("comparing servers: result {} {}", result.rc, result.text)));
        }
        Ok(entries
            .into_iter()
            .map(|e| Entry::from_search(SearchEntry::construct(e)))
            .filter_map(|e| {
                let (uuid, csn) = (e.first("entryUUID")?.to_string(), e.first("entryCSN")?.to_string());
                Some(Seen { uuid, csn, dn: e.dn })
            })
            .collect())
    }

    /// The deletes a server's write log holds with a CSN from `from` on: under the
    /// entry's entryUUID, or the gateway's move of its DN into the trash. Nothing where
    /// the write log is not readable.
    pub(super) async fn logged_deletes(&self, ldap: &mut Ldap, from: &str) -> Result<Deletes, DirError> {
        let filter = format!(
            "(&(|(reqType=delete){})(reqResult=0)(entryCSN>={}))",
            self.trash_move(),
            crate::directory::escape::filter_value(from)
        );
        let attrs = vec!["reqType", "reqEntryUUID", "reqDN", "entryCSN"];
        let search = ldap.search(WRITE_LOG, Scope::OneLevel, &filter, attrs);
        let ldap3::SearchResult(found, result) =
            tokio::time::timeout(Duration::from_secs(60), search).await.map_err(|_| DirError::Timeout)??;
        match result.rc {
            0 => {}
            // Limited by the write log's size or time limit: what came is looked at.
            rc::SIZE_LIMIT_EXCEEDED | rc::TIME_LIMIT_EXCEEDED => {
                if !self.log_limited.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        base = WRITE_LOG,
                        "the write log answers the gateway's account with a size or time limit: some deletes that \
                         replication undid may not be made again (give the account size=unlimited there)"
                    );
                }
            }
            rc::NO_SUCH_OBJECT | rc::INSUFFICIENT_ACCESS => return Ok(Deletes::default()),
            rc => return Err(DirError::Other(format!("reading the write log: result {rc} {}", result.text))),
        }
        let mut out = Deletes::default();
        for e in found.into_iter().map(|e| Entry::from_search(SearchEntry::construct(e))) {
            let Some(csn) = e.first("entryCSN") else { continue };
            let (map, key) = if e.first("reqType").is_some_and(|t| t.eq_ignore_ascii_case("modrdn")) {
                let Some(dn) = e.first("reqDN") else { continue };
                (&mut out.moved, normal_dn(dn))
            } else {
                let Some(u) = e.first("reqEntryUUID") else { continue };
                (&mut out.uuids, u.to_string())
            };
            let at = map.entry(key).or_default();
            if at.as_str() < csn {
                *at = csn.to_string();
            }
        }
        Ok(out)
    }

    /// The entries a server holds although `deletes` has their delete, the entry being
    /// older than it; with `own` (the server's own write log), any state of an entry
    /// deleted under its entryUUID (which is never given twice): replication brought it
    /// back, with a CSN of its own. Deletes from another server's write log are ones this
    /// server missed, as a copy taken while the entries were being deleted, or a refresh
    /// that did not replay them, leaves them; their entries may be older than the span
    /// the servers are compared over.
    pub(super) async fn still_held(
        &self,
        ldap: &mut Ldap,
        deletes: &Deletes,
        own: bool,
    ) -> Result<Vec<Seen>, DirError> {
        let esc = crate::directory::escape::filter_value;
        let mut back: Vec<Seen> = Vec::new();
        let uuids: Vec<&String> = deletes.uuids.keys().collect();
        for chunk in uuids.chunks(UUIDS_PER_SEARCH) {
            let any: String = chunk.iter().map(|u| format!("(entryUUID={})", esc(u))).collect();
            for seen in self.seen(ldap, &format!("(|{any})")).await? {
                if own || deletes.uuids.get(&seen.uuid).is_some_and(|csn| seen.csn.as_str() < csn.as_str()) {
                    back.push(seen);
                }
            }
        }
        let dns: Vec<&String> = deletes.moved.keys().collect();
        for chunk in dns.chunks(UUIDS_PER_SEARCH) {
            let any: String = chunk.iter().map(|d| format!("(entryDN={})", esc(d))).collect();
            for seen in self.seen(ldap, &format!("(|{any})")).await? {
                let older = deletes.moved.get(&normal_dn(&seen.dn)).is_some_and(|csn| seen.csn.as_str() < csn.as_str());
                if older && !back.iter().any(|b: &Seen| b.uuid == seen.uuid) {
                    back.push(seen);
                }
            }
        }
        Ok(back)
    }

    /// The entries a server holds although its own write log, or the other server's,
    /// has their delete with a CSN from `from` on (see `still_held`).
    pub(super) async fn undeleted(
        &self,
        ldap: &mut Ldap,
        own: &Deletes,
        other: &Deletes,
    ) -> Result<Vec<Seen>, DirError> {
        let mut back = self.still_held(ldap, own, true).await?;
        for seen in self.still_held(ldap, other, false).await? {
            if !back.iter().any(|b| b.uuid == seen.uuid) {
                back.push(seen);
            }
        }
        Ok(back)
    }

    /// Whether a server holds the entry with this entryUUID.
    pub(super) async fn holds(&self, ldap: &mut Ldap, uuid: &str) -> Result<bool, DirError> {
        let filter = format!("(entryUUID={})", crate::directory::escape::filter_value(uuid));
        let ldap3::SearchResult(entries, result) =
            ldap.search(&self.spec.base_dn, Scope::Subtree, &filter, vec!["1.1"]).await?;
        match result.rc {
            0 | rc::NO_SUCH_OBJECT => Ok(!entries.is_empty()),
            rc => Err(DirError::Other(format!("looking for an entry: result {rc} {}", result.text))),
        }
    }

    /// Has a server send an entry again through replication: a modification that keeps
    /// its content (its object classes replaced by themselves) gives it a new CSN.
    /// `Ok(false)` when the gateway may not change it.
    pub(super) async fn resend(&self, ldap: &mut Ldap, dn: &str) -> Result<bool, DirError> {
        let ldap3::SearchResult(entries, result) =
            ldap.search(dn, Scope::Base, "(objectClass=*)", vec!["objectClass"]).await?;
        if result.rc == rc::NO_SUCH_OBJECT {
            return Ok(true);
        }
        let Some(entry) = entries.into_iter().next().map(|e| Entry::from_search(SearchEntry::construct(e))) else {
            return Ok(false);
        };
        let classes: std::collections::HashSet<String> = entry.values("objectClass").iter().cloned().collect();
        let done = ldap.modify(dn, vec![Mod::Replace("objectClass".to_string(), classes)]).await?;
        match done.rc {
            0 | rc::NO_SUCH_OBJECT => Ok(true),
            rc::INSUFFICIENT_ACCESS => Ok(false),
            rc => Err(DirError::Other(format!("sending {dn} again: result {rc} {}", done.text))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn new_entries_missed_round_after_round_are_catching_up_not_a_refusal() {
        let mut earlier = std::collections::HashSet::new();
        let mut rounds = 0;
        for i in 0..(3 * RESEND_ROUNDS) {
            rounds = rounds_after(rounds, &mut earlier, &[format!("new-{i}")]);
            assert_eq!(rounds, 0, "round {i}");
        }
    }

    #[test]
    fn an_entry_missing_again_after_it_was_sent_counts_towards_giving_up() {
        let mut earlier = std::collections::HashSet::new();
        let mut rounds = rounds_after(0, &mut earlier, &uuids(&["a", "b"]));
        assert_eq!(rounds, 0);
        for want in 1..=RESEND_ROUNDS {
            rounds = rounds_after(rounds, &mut earlier, &uuids(&["a", &format!("n{want}")]));
            assert_eq!(rounds, want);
        }
        // A round with only new entries starts the count again.
        assert_eq!(rounds_after(rounds, &mut earlier, &uuids(&["c"])), 0);
    }
}
