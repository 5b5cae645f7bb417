//! LDAP operations on the pool: searches, the atomic id counter and all-or-nothing
//! writes (RFC 5805 transactions, each operation optionally guarded by an assertion).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool::managed::{Object, PoolError};
use ldap3::controls::{Assertion, PostRead, PostReadResp, RawControl, TxnSpec};
use ldap3::exop::{EndTxn, PasswordModify, StartTxn};
use ldap3::{Ldap, Mod, Scope, SearchEntry};

use super::error::rc;

const POST_READ_OID: &str = "1.3.6.1.1.13.2";
use super::csn::Csns;
use super::pool::{raise_counter, Claim, LdapManager, Pool};
use super::shared::SharedRead;
use super::{DirError, Entry};

/// One write. DNs and values are final: the caller has escaped what needed escaping.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Add {
        dn: String,
        attrs: Vec<(String, Vec<String>)>,
    },
    Modify {
        dn: String,
        mods: Vec<Mod<String>>,
    },
    Delete {
        dn: String,
    },
    /// A modrdn with a new superior: moves the entry and its whole subtree.
    Move {
        dn: String,
        new_rdn: String,
        new_superior: String,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Add { .. } => "add",
            Op::Modify { .. } => "modify",
            Op::Delete { .. } => "delete",
            Op::Move { .. } => "modrdn",
        }
    }
}

/// An operation that only applies while `assertion` (an LDAP filter) holds for its
/// target entry (RFC 4528); checked by the server in the same step as the write.
#[derive(Debug, Clone, PartialEq)]
pub struct Guarded {
    pub op: Op,
    pub assertion: Option<String>,
}

impl From<Op> for Guarded {
    fn from(op: Op) -> Self {
        Guarded { op, assertion: None }
    }
}

#[derive(Clone)]
pub struct Directory {
    pool: Pool,
    pub base_dn: String,
    op_timeout: Duration,
    /// The server the last id was allocated on (`usize::MAX`: none yet), and how far the
    /// counter jumps when the next one is allocated on another server.
    last_allocation: Arc<AtomicUsize>,
    id_gap: u64,
    /// The highest id this gateway has handed out from each server: a server whose
    /// counter is behind another's (it has not yet replicated those ids) skips past them.
    highest_ids: Arc<std::sync::Mutex<std::collections::HashMap<usize, u64>>>,
    /// `ldap.ack = "all"`: a write returns once every server that answers holds it, or
    /// after this long.
    ack_all: Option<Duration>,
    /// The `contextCSN` reads of concurrent lists, shared (see `shared`).
    context_csns: Arc<SharedRead<Csns, DirError>>,
}

type Conn = Object<LdapManager>;

/// Ids given up in one allocation because another server had handed them out, before it
/// fails (503): two gateways on two servers taking turns at the same ids.
const CLAIM_ROUNDS: u32 = 50;

/// How far past an id another server handed out the counter skips in the `round`th try:
/// at random within a range that grows with the tries.
fn skip_length(round: u32) -> u64 {
    let mut b = [0u8; 8];
    let r = getrandom::getrandom(&mut b).map(|_| u64::from_le_bytes(b)).unwrap_or(0);
    r % (8 * (u64::from(round) + 1))
}

fn pool_error(e: PoolError<DirError>) -> DirError {
    match e {
        PoolError::Backend(e) => e,
        PoolError::Timeout(_) => DirError::Unavailable("timed out waiting for an LDAP connection".into()),
        other => DirError::Unavailable(other.to_string()),
    }
}

fn check(res: ldap3::LdapResult) -> Result<ldap3::LdapResult, DirError> {
    if res.rc == 0 {
        Ok(res)
    } else {
        Err(res.into())
    }
}

/// A pooled connection in the middle of a write; dropped before the write finished, it
/// is closed instead of returned to the pool.
struct Unfinished(Option<Conn>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            let _ = Object::take(conn);
        }
    }
}

/// The outcome label of an operation in the metrics.
fn outcome(err: Option<&DirError>) -> &'static str {
    match err {
        None => "ok",
        Some(DirError::Unavailable(_)) => "unavailable",
        Some(DirError::Timeout) => "timeout",
        Some(DirError::Result { .. }) => "refused",
        Some(DirError::Other(_)) => "error",
    }
}

/// Records an operation (and its error, if any) in the metrics and the debug log.
pub(crate) fn observe(op: &'static str, started: Instant, err: Option<&DirError>) {
    let took = started.elapsed();
    crate::metrics::ldap_operation(op, outcome(err), took);
    tracing::debug!(op, elapsed_us = took.as_micros() as u64, outcome = outcome(err), "ldap");
}

impl Directory {
    pub fn new(pool: Pool, base_dn: String, op_timeout: Duration) -> Self {
        Directory {
            pool,
            base_dn,
            op_timeout,
            last_allocation: Arc::new(AtomicUsize::new(usize::MAX)),
            id_gap: 0,
            highest_ids: Default::default(),
            ack_all: None,
            context_csns: Default::default(),
        }
    }

    /// Writes return only once every other server that answers holds them (or after
    /// `timeout`): `ldap.ack = "all"`.
    pub fn with_ack_all(mut self, timeout: Duration) -> Self {
        self.ack_all = Some(timeout);
        self
    }

    /// After a failover the first id is allocated `gap` above the counter: ids that the
    /// previous server handed out but had not yet replicated cannot come again.
    pub fn with_failover_id_gap(mut self, gap: u64) -> Self {
        self.id_gap = gap;
        self
    }

    /// Index (in the configured URLs) of the server in use.
    pub fn current_server(&self) -> usize {
        self.pool.manager().current_server()
    }

    /// How often the server in use changed.
    pub fn failovers(&self) -> u64 {
        self.pool.manager().failovers()
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn conn(&self) -> Result<Conn, DirError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A connection whose operation failed in transit is not given back to the pool.
    fn discard_if_broken(conn: Conn, err: &DirError) {
        if matches!(err, DirError::Unavailable(_) | DirError::Timeout) {
            let _ = Object::take(conn);
        }
    }

    /// Searches and returns the entries; a missing base is an empty result.
    pub async fn search(&self, base: &str, scope: Scope, filter: &str, attrs: &[&str]) -> Result<Vec<Entry>, DirError> {
        self.search_with(base, scope, filter, attrs, Vec::new()).await
    }

    pub async fn search_with(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        controls: Vec<RawControl>,
    ) -> Result<Vec<Entry>, DirError> {
        let started = Instant::now();
        let mut conn = self.conn().await.inspect_err(|e| observe("search", started, Some(e)))?;
        let res = async {
            let ldap: &mut Ldap = &mut conn;
            let (entries, res) = ldap
                .with_controls(controls)
                .with_timeout(self.op_timeout)
                .search(base, scope, filter, attrs)
                .await?
                .success()
                .or_else(|e| match e {
                    ldap3::LdapError::LdapResult { result } if result.rc == rc::NO_SUCH_OBJECT => {
                        Ok((Vec::new(), result))
                    }
                    e => Err(e),
                })?;
            let _ = res;
            Ok::<_, DirError>(
                entries.into_iter().map(|re| Entry::from_search(SearchEntry::construct(re))).collect::<Vec<_>>(),
            )
        }
        .await;
        tracing::trace!(base, filter, "search");
        observe("search", started, res.as_ref().err());
        if let Err(e) = &res {
            Self::discard_if_broken(conn, e);
        }
        res
    }

    /// Allocates a new uid: one Modify-Increment of `uidNumber` on the counter entry with
    /// the Post-Read control, so concurrent callers can never get the same number; with
    /// several servers, the other servers' counters are raised to it before it is used
    /// (`LdapManager::claim_elsewhere`).
    pub async fn next_uid(&self, counter_dn: &str) -> Result<u64, DirError> {
        let started = Instant::now();
        let mut conn = self.conn().await.inspect_err(|e| observe("increment", started, Some(e)))?;
        let server = conn.server;
        let previous = self.last_allocation.swap(server, Ordering::Relaxed);
        let mut step = if previous != usize::MAX && previous != server {
            tracing::warn!(gap = self.id_gap, "first id on another server: the counter skips ahead");
            1 + self.id_gap
        } else {
            1
        };
        let res = async {
            let ldap: &mut Ldap = &mut conn;
            let mut rounds = 0;
            loop {
                let (value, csn) = self.increment(ldap, counter_dn, step).await?;
                step = 1;
                let elsewhere = {
                    let Ok(mut seen) = self.highest_ids.lock() else { return Ok(value) };
                    let elsewhere = seen.iter().filter(|(s, _)| **s != server).map(|(_, v)| *v).max().unwrap_or(0);
                    if value > elsewhere {
                        let mine = seen.entry(server).or_default();
                        *mine = (*mine).max(value);
                    }
                    elsewhere
                };
                let past = if value > elsewhere {
                    match self
                        .pool
                        .manager()
                        .claim_elsewhere(server, counter_dn, value, csn.as_deref(), self.op_timeout)
                        .await?
                    {
                        Claim::Held => return Ok(value),
                        Claim::Taken(held) => {
                            // Handed out on another server already (another gateway uses it
                            // now). A skip of a random length past it keeps two gateways
                            // that take turns from landing on the same next id.
                            tracing::warn!(
                                value,
                                held,
                                "another server has handed out this id; the counter skips ahead"
                            );
                            held + skip_length(rounds)
                        }
                    }
                } else {
                    // This server's counter is behind ids handed out from another one (not
                    // yet replicated here).
                    tracing::warn!(value, elsewhere, "the id counter is behind; it skips ahead");
                    elsewhere + self.id_gap
                };
                rounds += 1;
                if rounds > CLAIM_ROUNDS {
                    return Err(DirError::Unavailable("the id counter keeps moving on another server".into()));
                }
                // This server's counter is raised to what was handed out (never lowered:
                // other writers move it too), and the next id is taken.
                for _ in 0..CLAIM_ROUNDS {
                    if raise_counter(ldap, counter_dn, past, None, self.op_timeout).await?.is_some() {
                        break;
                    }
                }
            }
        }
        .await;
        observe("increment", started, res.as_ref().err());
        if let Err(e) = &res {
            Self::discard_if_broken(conn, e);
        }
        res
    }

    /// After a create, with several servers: the new entry's entryUUID if a server other
    /// than the one in use holds another entry that matches `filter` (the same id, handed
    /// out there at the same moment by a gateway that used that server; the claim of
    /// `next_uid` narrows that window, this closes it: of two such creates, the one
    /// that looks later sees the other's, which was committed before the first looked).
    pub async fn used_elsewhere(&self, base: &str, dn: &str, filter: &str) -> Result<Option<String>, DirError> {
        let manager = self.pool.manager();
        if manager.urls().len() < 2 {
            return Ok(None);
        }
        let mut conn = self.conn().await?;
        let server = conn.server;
        let ldap: &mut Ldap = &mut conn;
        let ldap3::SearchResult(found, result) =
            ldap.with_timeout(self.op_timeout).search(dn, Scope::Base, "(objectClass=*)", vec!["entryUUID"]).await?;
        if result.rc != 0 {
            return Ok(None);
        }
        let Some(ours) = found.into_iter().next().map(|e| Entry::from_search(SearchEntry::construct(e))) else {
            return Ok(None);
        };
        let Some(uuid) = ours.first("entryUUID").map(str::to_string) else { return Ok(None) };
        drop(conn);
        let elsewhere = manager.held_elsewhere(server, base, filter, &uuid, self.op_timeout).await?;
        Ok(elsewhere.then_some(uuid))
    }

    /// One Modify-Increment of the counter with Post-Read; the new value and the entryCSN
    /// of the change.
    async fn increment(&self, ldap: &mut Ldap, counter_dn: &str, step: u64) -> Result<(u64, Option<String>), DirError> {
        let step = step.to_string();
        let res = ldap
            .with_controls(PostRead::new(vec!["uidNumber", "entryCSN"]))
            .with_timeout(self.op_timeout)
            .modify(counter_dn, vec![Mod::Increment("uidNumber", step.as_str())])
            .await?;
        let res = check(res)?;
        let read = res
            .ctrls
            .iter()
            .find(|c| c.1.ctype == POST_READ_OID)
            .map(|c| c.1.parse::<PostReadResp>())
            .ok_or_else(|| DirError::Other("no post-read control in the counter answer".into()))?;
        let first =
            |name: &str| read.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.first());
        let value = first("uidNumber")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| DirError::Other(format!("counter has no numeric uidNumber: {:?}", read.attrs)))?;
        Ok((value, first("entryCSN").map(|c| c.to_string())))
    }

    /// Applies every operation or none. One operation goes as itself; several go in one
    /// LDAP transaction on a connection held for its whole length (slapd allows one open
    /// transaction per connection). A failing assertion fails the whole transaction with
    /// result 122.
    pub async fn apply(&self, ops: Vec<Guarded>) -> Result<(), DirError> {
        self.apply_as(ops, false).await
    }

    /// The same, always in a transaction, even for one operation. The `unique` overlay
    /// checks a value at a transaction's commit under the database's write lock, so two
    /// transactions that give one value cannot both pass; plain writes can (without
    /// `serialize`, which deadlocks slapd 2.5 when plain writes and transactions mix).
    pub async fn apply_atomic(&self, ops: Vec<Guarded>) -> Result<(), DirError> {
        self.apply_as(ops, true).await
    }

    async fn apply_as(&self, ops: Vec<Guarded>, txn: bool) -> Result<(), DirError> {
        if ops.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let n = ops.len();
        // A single operation is named as itself; several are one transaction.
        let op = if n == 1 && !txn { ops[0].op.name() } else { "transaction" };
        let conn = self.conn().await.inspect_err(|e| observe(op, started, Some(e)))?;
        // If the caller gives up half-way (a request timeout drops this future), the
        // connection may hold an open transaction: it is closed, not pooled again.
        let mut guard = Unfinished(Some(conn));
        tracing::trace!(?ops, "apply");
        let conn = guard.0.as_mut().expect("a connection");
        let res = if n == 1 && !txn {
            let g = ops.into_iter().next().expect("one op");
            self.send(conn, &g, None).await
        } else {
            self.apply_txn(conn, ops).await
        };
        observe(op, started, res.as_ref().err());
        let conn = guard.0.take().expect("a connection");
        if let Err(e) = &res {
            Self::discard_if_broken(conn, e);
        } else if let Some(timeout) = self.ack_all {
            drop(conn);
            self.pool.manager().replicated(timeout).await;
        }
        res
    }

    async fn apply_txn(&self, ldap: &mut Ldap, ops: Vec<Guarded>) -> Result<(), DirError> {
        let (exop, res) = ldap.with_timeout(self.op_timeout).extended(StartTxn).await?.success()?;
        let _ = res;
        let txn_id = exop.val.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        for g in &ops {
            if let Err(e) = self.send(ldap, g, Some(&txn_id)).await {
                // Leave no open transaction behind on this connection.
                let _ = ldap.with_timeout(self.op_timeout).extended(EndTxn { txn_id: &txn_id, commit: false }).await;
                return Err(e);
            }
        }
        let ldap3::result::ExopResult(_, res) =
            ldap.with_timeout(self.op_timeout).extended(EndTxn { txn_id: &txn_id, commit: true }).await?;
        check(res).map(|_| ())
    }

    async fn send(&self, ldap: &mut Ldap, g: &Guarded, txn: Option<&str>) -> Result<(), DirError> {
        let mut controls: Vec<RawControl> = Vec::new();
        if let Some(id) = txn {
            controls.push(TxnSpec { txn_id: id }.into());
        }
        if let Some(filter) = &g.assertion {
            controls.push(Assertion::new(filter.as_str()));
        }
        let ldap = ldap.with_controls(controls).with_timeout(self.op_timeout);
        let res = match &g.op {
            Op::Add { dn, attrs } => {
                let attrs: Vec<(String, HashSet<String>)> =
                    attrs.iter().map(|(a, v)| (a.clone(), v.iter().cloned().collect())).collect();
                ldap.add(dn, attrs).await?
            }
            Op::Modify { dn, mods } => ldap.modify(dn, mods.clone()).await?,
            Op::Delete { dn } => ldap.delete(dn).await?,
            Op::Move { dn, new_rdn, new_superior } => ldap.modifydn(dn, new_rdn, true, Some(new_superior)).await?,
        };
        check(res).map(|_| ())
    }

    /// Sets an entry's password with the Password Modify extended operation (RFC 3062),
    /// so the server stores it hashed by its own scheme; waits for the replicas like any
    /// write.
    pub async fn set_password(&self, dn: &str, new_password: &str) -> Result<(), DirError> {
        let started = Instant::now();
        let mut conn = self.conn().await.inspect_err(|e| observe("password", started, Some(e)))?;
        let res = async {
            let ldap: &mut Ldap = &mut conn;
            let op = PasswordModify { user_id: Some(dn), old_pass: None, new_pass: Some(new_password) };
            let ldap3::result::ExopResult(_, res) = ldap.with_timeout(self.op_timeout).extended(op).await?;
            check(res).map(|_| ())
        }
        .await;
        observe("password", started, res.as_ref().err());
        match &res {
            Err(e) => Self::discard_if_broken(conn, e),
            Ok(()) => {
                if let Some(timeout) = self.ack_all {
                    drop(conn);
                    self.pool.manager().replicated(timeout).await;
                }
            }
        }
        res
    }

    /// The `contextCSN` of the base entry: the newest change the directory has committed
    /// (one CSN per server id). Empty when the directory keeps none (no syncprov).
    /// A read sent after the call began, shared with the calls of other lists that
    /// began while the one before it was under way.
    pub async fn context_csn(&self) -> Result<Csns, DirError> {
        self.context_csns.get(|| self.read_context_csn()).await
    }

    async fn read_context_csn(&self) -> Result<Csns, DirError> {
        let found = self.search(&self.base_dn, Scope::Base, "(objectClass=*)", &["contextCSN"]).await?;
        Ok(Csns::from_values(found.iter().flat_map(|e| e.values("contextCSN")).map(String::as_str)))
    }

    /// Whether the directory answers: a read of the root DSE within the op timeout.
    pub async fn ping(&self) -> Result<(), DirError> {
        self.search("", Scope::Base, "(objectClass=*)", &["1.1"]).await.map(|_| ())
    }
}
