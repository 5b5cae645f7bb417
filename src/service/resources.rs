//! The operations of a resource, read from its definition: create, read, replace,
//! patch, delete, list and (for resources with a parent) move, each all or nothing, with
//! optimistic concurrency on the entries' change sequence numbers.

use std::sync::Arc;
use std::time::Duration;

use ldap3::Scope as LdapScope;
use serde_json::Value;

use super::{Caller, Precondition, Scope, ServiceError};
use crate::collection::{CollectionIndex, Page};
use crate::directory::csn::Csns;
use crate::directory::error::rc;
use crate::directory::escape::filter_value;
use crate::directory::{layout, DirError, Directory, Entry, Guarded, Op};
use crate::mapping::document::{self, Desired, Mode, Stored};
use crate::mapping::query::{self, ListQuery, PageLimits, QueryError};
use crate::mapping::resource::{CustomerOf, Owner, ResourceDef, Role, Tenant};
use crate::mapping::resources::ALL;
use crate::mapping::table::{self, Field, Kind, Part};
use crate::mapping::{patch, Problem};

/// How many times a write without `If-Match` is retried when another writer changed the
/// resource between its read and its write.
const WRITE_ATTEMPTS: usize = 5;

/// How many ids a create tries when the counter hands out ids that entries written by
/// hand already have.
const ID_ATTEMPTS: usize = 20;

/// When what a create whose answer was lost left in the directory is looked at (after
/// the failure, one after the other).
const SETTLE_AFTER: [Duration; 4] =
    [Duration::from_secs(1), Duration::from_secs(3), Duration::from_secs(10), Duration::from_secs(30)];

/// What a create whose answer was lost turned out to have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Every entry it wrote is there: it happened.
    Whole,
    /// None of them was there, at the last look.
    Nothing,
    /// Some were there and not others, at the last look only (it may still be on its
    /// way): left as they are.
    InPart,
    /// Some were there and not others; what was there is removed.
    Removed,
    /// Some were there and not others, and were changed since the look: left as they are.
    Changed,
}

/// How an update is given.
pub enum Update<'a> {
    Replace(&'a Value),
    MergePatch(&'a Value),
}

#[derive(Clone)]
pub struct Resources {
    def: &'static ResourceDef,
    dir: Directory,
    public_url: Arc<str>,
    /// Every element's collection data, kept by content synchronisation. It also says
    /// which parent an id lives under, so a read goes straight to its entries; a stale
    /// answer is harmless: the read finds nothing and the id is looked up.
    index: Arc<CollectionIndex>,
    limits: PageLimits,
    /// How long a list waits for the index to catch up with the directory.
    catch_up: Duration,
}

impl Resources {
    pub fn new(
        def: &'static ResourceDef,
        dir: Directory,
        public_url: &str,
        index: Arc<CollectionIndex>,
        limits: PageLimits,
        catch_up: Duration,
    ) -> Self {
        Resources { def, dir, public_url: public_url.trim_end_matches('/').into(), index, limits, catch_up }
    }

    pub fn def(&self) -> &'static ResourceDef {
        self.def
    }

    pub fn index(&self) -> &Arc<CollectionIndex> {
        &self.index
    }

    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    pub fn location(&self, id: u64) -> String {
        self.def.location(&self.public_url, id)
    }

    fn base(&self) -> &str {
        &self.dir.base_dn
    }

    /// Reads a root and its children: its whole subtree in one search, or (where the
    /// subtree holds other resources, as a reseller's holds its customers) the root and
    /// its fixed children.
    async fn read_at(&self, dn: &str) -> Result<Option<Stored>, DirError> {
        let attrs = table::all_attributes(&[self.def]);
        let children: String =
            self.def.children.iter().filter_map(|p| p.ou()).map(|ou| format!("(ou={})", filter_value(ou))).collect();
        let entries = if self.def.read_subtree {
            // Only the element's own entries: a customer's orders and contracts (and
            // whatever else an admin keeps below it) are not part of it.
            let filter = format!("(|(objectClass={}){children})", filter_value(self.def.structural));
            self.dir.search(dn, LdapScope::Subtree, &filter, &attrs).await?
        } else {
            let filter = format!("(|{children})");
            let (root, kids) = tokio::join!(
                self.dir.search(dn, LdapScope::Base, "(objectClass=*)", &attrs),
                self.dir.search(dn, LdapScope::OneLevel, &filter, &attrs),
            );
            let mut all: Vec<Entry> = root?;
            if all.is_empty() {
                return Ok(None);
            }
            all.extend(kids?);
            all
        };
        Ok(Stored::from_entries(self.def, self.base(), entries))
    }

    /// The root DN of an id under a parent (the parent is ignored by resources without).
    fn root_dn(&self, id: u64, parent: u64) -> String {
        self.def.root_dn(self.base(), id, parent)
    }

    /// Reads every element with this id, each with all its entries: one, or none when
    /// the id does not exist (several only where an admin gave one uid to customers of
    /// different resellers; the directory refuses new ones).
    pub async fn read(&self, id: u64) -> Result<Vec<Stored>, DirError> {
        let mut found = Vec::new();
        for parent in self.index.parents_of(id) {
            if let Some(s) = self.read_at(&self.root_dn(id, parent)).await? {
                found.push(s);
            }
        }
        if found.is_empty() {
            // Not in the index (yet): look for it.
            let filter = format!("(&(objectClass={})(uid={}))", self.def.structural, filter_value(&id.to_string()));
            let (base, one_level) = self.def.search_base(self.base());
            let scope = if one_level { LdapScope::OneLevel } else { LdapScope::Subtree };
            let dns = self.dir.search(&base, scope, &filter, &["1.1"]).await?;
            for e in dns {
                if self.def.place(&e.dn, self.base()).is_some_and(|p| p.part == Part::Root) {
                    if let Some(s) = self.read_at(&e.dn).await? {
                        found.push(s);
                    }
                }
            }
        }
        found.retain(|s| s.id == id);
        Ok(found)
    }

    /// A page of the collection (SPEC section 6) from the raw query string. The index is
    /// first brought up to the directory's newest committed change, so every write that
    /// finished before this request began is in the answer.
    pub async fn list(&self, scope: &Scope, raw_query: Option<&str>) -> Result<(ListQuery, Page), ServiceError> {
        self.list_where(scope, raw_query, None).await
    }

    /// The same, of the elements whose field `within.0` names `within.1` (the people of
    /// a customer's `users`): that condition comes first, before the query's own.
    pub async fn list_where(
        &self,
        scope: &Scope,
        raw_query: Option<&str>,
        within: Option<(&str, u64)>,
    ) -> Result<(ListQuery, Page), ServiceError> {
        let mut q = self.parse_query(raw_query)?;
        if let Some((name, id)) = within {
            let column = self.def.column(name).ok_or_else(|| ServiceError::Internal(format!("no column {name}")))?;
            let pattern =
                crate::mapping::row::Pattern::parse(column.kind(), &id.to_string()).map_err(ServiceError::Internal)?;
            q.filters.insert(0, query::Filter { column, pattern });
        }
        let started = std::time::Instant::now();
        let target = self.dir.context_csn().await?;
        crate::metrics::list_freshness("directory", started.elapsed());
        let page = self.answer(scope, &q, &target).await?;
        Ok((q, page))
    }

    /// The first page of a list, without counting every match, once the index holds
    /// `target` (one state of the directory for several lists: see `service::search`).
    pub async fn first_hits(
        &self,
        scope: &Scope,
        raw_query: &str,
        target: &Csns,
    ) -> Result<(ListQuery, Page), ServiceError> {
        let mut q = self.parse_query(Some(raw_query))?;
        q.count = false;
        let page = self.answer(scope, &q, target).await?;
        Ok((q, page))
    }

    /// A page from the index as it is now, without waiting for the directory's newest
    /// change: for lookups of what does not change once written (a merchant's customer
    /// number), where a hit is as good as a fresh one and a miss asks `list`.
    pub fn list_now(&self, scope: &Scope, raw_query: &str) -> Result<Page, ServiceError> {
        let q = self.parse_query(Some(raw_query))?;
        self.index.query(scope, &q, &self.public_url).map_err(|_| ServiceError::Unavailable)
    }

    fn parse_query(&self, raw_query: Option<&str>) -> Result<ListQuery, ServiceError> {
        query::parse(self.def, raw_query, self.limits).map_err(|e| match e {
            QueryError::Malformed(m) => ServiceError::BadRequest(m),
            QueryError::Invalid(p) => ServiceError::Invalid(p),
        })
    }

    /// A query's page from the index, once it holds `target`.
    async fn answer(&self, scope: &Scope, q: &ListQuery, target: &Csns) -> Result<Page, ServiceError> {
        let started = std::time::Instant::now();
        self.index.wait_for(target, self.catch_up).await.map_err(|_| ServiceError::Unavailable)?;
        crate::metrics::list_freshness("index", started.elapsed());
        self.index.query(scope, q, &self.public_url).map_err(|_| ServiceError::Unavailable)
    }

    /// The URL of the collection (what `Link` URLs start with).
    pub fn collection_url(&self) -> String {
        self.def.collection(&self.public_url)
    }

    /// The element with this id that the caller sees. A customer on its way to another
    /// reseller belongs to neither; an id that two customers have is ambiguous to a caller
    /// who sees both.
    async fn visible(&self, scope: &Scope, id: u64) -> Result<Stored, ServiceError> {
        let mut found = self.read(id).await?;
        found.retain(|s| scope.sees(s.owner()));
        match found.len() {
            0 => Err(ServiceError::NotFound),
            1 => Ok(found.remove(0)),
            _ => Err(ServiceError::SharedId { id, resellers: found.iter().map(|s| s.reseller).collect() }),
        }
    }

    /// Whether the caller sees an element with this id (404 otherwise).
    pub async fn check_visible(&self, scope: &Scope, id: u64) -> Result<(), ServiceError> {
        self.visible(scope, id).await.map(|_| ())
    }

    /// The full document and its ETag.
    pub async fn get(&self, scope: &Scope, id: u64) -> Result<(Value, String), ServiceError> {
        let s = self.visible(scope, id).await?;
        Ok((document::to_json(&s, &self.public_url), s.etag()))
    }

    /// Checks that the parent a document names exists and may be used by the caller;
    /// says whether the container of roots under it (`ou=customers`) exists yet. A
    /// resource without a parent always has its container.
    async fn parent_ready(&self, scope: &Scope, parent: u64) -> Result<bool, ServiceError> {
        let (Some(parent_def), Some(field)) = (self.def.parent, self.def.parent_field()) else {
            return Ok(true);
        };
        let unknown = || {
            ServiceError::Invalid(vec![Problem::new(
                field.name,
                format!("there is no {} {parent}", parent_def.singular),
            )])
        };
        if !scope.may_use_reseller(parent) {
            return Err(unknown());
        }
        let parent_dn = parent_def.root_dn(self.base(), parent, 0);
        let container_dn = self.def.container_dn(self.base(), parent);
        let class = format!("(objectClass={})", parent_def.structural);
        let (r, c) = tokio::join!(
            self.dir.search(&parent_dn, LdapScope::Base, &class, &["1.1"]),
            self.dir.search(&container_dn, LdapScope::Base, "(objectClass=*)", &["1.1"]),
        );
        if r?.is_empty() {
            return Err(unknown());
        }
        Ok(!c?.is_empty() || !self.def.container_is_glue())
    }

    /// The glue entry that holds the roots under a parent (`ou=customers`).
    fn container(&self, parent: u64) -> Guarded {
        let dn = self.def.container_dn(self.base(), parent);
        let ou = crate::directory::entry::rdn_value(&dn, "ou").unwrap_or_default().to_string();
        Op::Add {
            dn,
            attrs: vec![
                ("objectClass".into(), vec!["top".into(), "organizationalUnit".into()]),
                ("ou".into(), vec![ou]),
            ],
        }
        .into()
    }

    /// The unique fields a document gives a value.
    fn unique_given<'d>(&self, d: &'d Desired) -> impl Iterator<Item = (&'static Field, &'d String)> + 'd {
        let fields: &'static [Field] = self.def.fields;
        fields.iter().filter(|f| f.unique).filter_map(move |f| d.root.get(f.attr).map(|v| (f, v)))
    }

    fn conflict(&self, e: DirError, d: &Desired) -> ServiceError {
        let unique: Vec<&str> = self.unique_given(d).map(|(f, _)| shown_name(f)).collect();
        match e.rc() {
            Some(rc::CONSTRAINT_VIOLATION) if !unique.is_empty() => ServiceError::Conflict(format!(
                "{} {} already used by another entry",
                unique.join(" or "),
                if unique.len() == 1 { "is" } else { "may be" }
            )),
            Some(rc::ALREADY_EXISTS) => ServiceError::Conflict("the entry exists already".into()),
            // What an admin left may not take the change (a value the schema refuses,
            // fields an entry of its classes must have): the caller can send them.
            Some(rc::OBJECT_CLASS_VIOLATION | rc::INVALID_SYNTAX | rc::CONSTRAINT_VIOLATION) => {
                ServiceError::Invalid(vec![Problem::new(
                    "",
                    format!(
                        "the directory refused the change for what its entries hold; send the whole {} (PUT) to set every field",
                        self.def.singular
                    ),
                )])
            }
            _ => e.into(),
        }
    }

    /// Creates an element with a new id from the directory's counter; all its entries
    /// are written in one transaction.
    pub async fn create(&self, scope: &Scope, body: &Value) -> Result<u64, ServiceError> {
        let def = self.def;
        if !def.create_by.contains(&scope.role()) {
            return Err(ServiceError::Forbidden(format!("{} cannot create {}", scope.role().users(), def.name)));
        }
        let mut body = body.clone();
        self.fill_in(scope, &mut body).await?;
        let desired = document::parse(def, &body, Mode::Create).map_err(ServiceError::Invalid)?;
        self.check_refs(scope, &desired, None).await?;
        let has_container = self.parent_ready(scope, desired.parent).await?;
        for _ in 0..ID_ATTEMPTS {
            let id = self.dir.next_uid(&layout::counter_dn(self.base())).await?;
            let dn = self.root_dn(id, desired.parent);
            let mut ops = Vec::new();
            if !has_container {
                ops.push(self.container(desired.parent));
            }
            ops.push(Op::Add { dn: dn.clone(), attrs: document::new_entry(def, Part::Root, id, &desired) }.into());
            for &part in def.children {
                if desired.part(part).is_some() {
                    let attrs = document::new_entry(def, part, id, &desired);
                    ops.push(Op::Add { dn: ResourceDef::child_dn(&dn, part), attrs }.into());
                }
            }
            let added: Vec<String> = ops
                .iter()
                .skip(usize::from(!has_container))
                .filter_map(|g| match &g.op {
                    Op::Add { dn, .. } => Some(dn.clone()),
                    _ => None,
                })
                .collect();
            // Unique values are only written in transactions (see `apply_atomic`).
            let written = if self.unique_given(&desired).next().is_some() {
                self.dir.apply_atomic(ops).await
            } else {
                self.dir.apply(ops).await
            };
            match written {
                Ok(()) => {
                    if let Some(uuid) = self.dir.used_elsewhere(self.base(), &dn, &self.id_filter(id)).await? {
                        tracing::warn!(
                            resource = def.name,
                            id,
                            "another server holds an entry with this id, handed out there at the same moment; this create is undone and takes the next id"
                        );
                        // Only our entry: replication may have put the other one at this
                        // DN already (then ours is gone, and so is this move).
                        let (mut op, trashed) = self.to_trash(&dn);
                        op.assertion =
                            Some(format!("(|(entryUUID={})(!(objectClass={})))", filter_value(&uuid), def.structural));
                        if self.dir.apply(vec![op]).await.is_ok() {
                            self.purge(&[trashed]).await;
                        }
                        continue;
                    }
                    if let Some(secret) = &desired.secret {
                        // The entry exists with a password nobody has; if this one cannot
                        // be set, the create is undone.
                        if let Err(e) = self.dir.set_password(&dn, secret).await {
                            tracing::warn!(resource = def.name, id, error = ?e.to_string(), "password not set; the create is undone");
                            let (op, trashed) = self.to_trash(&dn);
                            if self.dir.apply(vec![op]).await.is_ok() {
                                self.purge(&[trashed]).await;
                            }
                            return Err(e.into());
                        }
                    }
                    tracing::info!(resource = def.name, id, parent = desired.parent, "created");
                    return Ok(id);
                }
                // The unique overlay refuses a uid an entry written by hand already has:
                // the next id is taken instead.
                Err(e)
                    if matches!(e.rc(), Some(rc::CONSTRAINT_VIOLATION | rc::ALREADY_EXISTS))
                        && self.id_taken(id).await? =>
                {
                    tracing::warn!(id, "the counter handed out an id an entry already has; taking the next one");
                }
                Err(e) => {
                    if matches!(e, DirError::Unavailable(_) | DirError::Timeout | DirError::Other(_)) {
                        let me = self.clone();
                        tokio::spawn(async move {
                            me.settle_unanswered(&added, &SETTLE_AFTER).await;
                        });
                    }
                    return Err(self.conflict(e, &desired));
                }
            }
        }
        Err(ServiceError::Conflict("no free id found; the id counter is behind the directory's entries".into()))
    }

    /// A create whose answer was lost (the connection broke, or the server did not
    /// answer in time) may have happened whole, not at all, or in part: slapd hands a
    /// transaction's operations to its replication consumers before the commit, so a
    /// server killed in the middle of one can leave its peer with the element's first
    /// entry and not the others (a customer without its billing address). The id came
    /// from the counter for this create alone, so what the directory holds under the
    /// element's own entry is looked at after each of `after`, until it is whole or in
    /// part. In part at two
    /// looks in a row (replication hands over a whole transaction's entries within
    /// milliseconds, so a look between two of them does not count), it is moved to the
    /// trash (if unchanged since the look) and purged. `entries` are the DNs the create
    /// wrote, the element's own first.
    pub async fn settle_unanswered(&self, entries: &[String], after: &[Duration]) -> Settled {
        let Some(dn) = entries.first().map(String::as_str) else { return Settled::Nothing };
        let mut in_part_before = false;
        for wait in after {
            tokio::time::sleep(*wait).await;
            let Ok(found) = self.dir.search(dn, LdapScope::Subtree, "(objectClass=*)", &["entryCSN"]).await else {
                continue;
            };
            let Some(root) = found.iter().find(|e| e.dn.eq_ignore_ascii_case(dn)) else {
                // Nothing yet; replication may still bring what a peer was handed.
                in_part_before = false;
                continue;
            };
            let held = |d: &String| found.iter().any(|e| e.dn.eq_ignore_ascii_case(d));
            if entries.iter().all(held) {
                return Settled::Whole;
            }
            if !std::mem::replace(&mut in_part_before, true) {
                continue;
            }
            let (mut op, trashed) = self.to_trash(dn);
            op.assertion = root.first("entryCSN").map(|csn| format!("(entryCSN={})", filter_value(csn)));
            match self.dir.apply(vec![op]).await {
                Ok(()) => {
                    tracing::warn!(
                        resource = self.def.name,
                        dn,
                        "a create whose answer was lost left only part of its entries; removed"
                    );
                    self.purge(&[trashed]).await;
                    return Settled::Removed;
                }
                Err(e) if e.rc() == Some(rc::ASSERTION_FAILED) => {
                    tracing::warn!(
                        resource = self.def.name,
                        dn,
                        "a create whose answer was lost left only part of its entries, which changed since; left as they are"
                    );
                    return Settled::Changed;
                }
                // Not reachable now, or gone meanwhile: the next look tells.
                Err(_) => continue,
            }
        }
        if in_part_before {
            tracing::warn!(
                resource = self.def.name,
                dn,
                "a create whose answer was lost left only part of its entries at the last look; left as they are"
            );
            Settled::InPart
        } else {
            Settled::Nothing
        }
    }

    /// The customers, resellers and people with this uid.
    fn id_filter(&self, id: u64) -> String {
        let classes: String =
            ALL.iter().map(|d| d.structural).chain(["sstPerson"]).map(|c| format!("(objectClass={c})")).collect();
        format!("(&(uid={})(|{classes}))", filter_value(&id.to_string()))
    }

    /// Whether a customer, reseller or person has this uid already.
    async fn id_taken(&self, id: u64) -> Result<bool, DirError> {
        Ok(!self.dir.search(self.base(), LdapScope::Subtree, &self.id_filter(id), &["1.1"]).await?.is_empty())
    }

    /// Guards that hold while every entry of the customer is unchanged since it was
    /// read: an empty modify with an assertion on the entry's change sequence number.
    /// They open the transaction, so the check and the writes after it are one step;
    /// being empty, they also keep the assertion away from overlays (unique) that run
    /// internal searches for the real modifications.
    /// The customer entry's comes first.
    fn guards(s: &Stored) -> Vec<Guarded> {
        [Some(&s.root), s.billing.as_ref(), s.shipping.as_ref()]
            .into_iter()
            .flatten()
            .map(|e| Guarded { op: Op::Modify { dn: e.dn.clone(), mods: Vec::new() }, assertion: Stored::unchanged(e) })
            .collect()
    }

    /// Moves an entry (and its subtree) out of sight into the trash, under a new unique
    /// RDN of the same type. slapd cannot delete an entry's last child inside a
    /// transaction, but it can move it; the trash is purged after the commit.
    fn to_trash(&self, dn: &str) -> (Guarded, String) {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let rdn = dn.split(',').next().unwrap_or_default();
        let (attr, value) = rdn.split_once('=').unwrap_or(("ou", "entry"));
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let new_rdn = format!("{attr}={}", crate::directory::escape::dn_value(&format!("{value}-{nanos}-{seq}")));
        let trash = layout::trash_dn(self.base());
        let new_dn = format!("{new_rdn},{trash}");
        (Op::Move { dn: dn.to_string(), new_rdn, new_superior: trash }.into(), new_dn)
    }

    /// Deletes what was moved to the trash, children first. Failures are only logged:
    /// the entries are already out of every customer's subtree, and the next sweep
    /// removes them.
    async fn purge(&self, dns: &[String]) {
        for dn in dns {
            if let Err(e) = self.delete_subtree(dn).await {
                tracing::warn!(dn = ?dn, error = ?e.to_string(), "purging the trash failed; the next sweep retries");
            }
        }
    }

    async fn delete_subtree(&self, dn: &str) -> Result<(), DirError> {
        let mut dns: Vec<String> = self
            .dir
            .search(dn, LdapScope::Subtree, "(objectClass=*)", &["1.1"])
            .await?
            .into_iter()
            .map(|e| e.dn)
            .collect();
        dns.sort_by_key(|d| std::cmp::Reverse(layout::depth(d)));
        for d in dns {
            match self.dir.apply(vec![Op::Delete { dn: d }.into()]).await {
                Ok(()) => {}
                Err(e) if e.rc() == Some(rc::NO_SUCH_OBJECT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates the trash container if it is missing and purges whatever is left in it.
    pub async fn sweep_trash(&self) -> Result<(), DirError> {
        let trash = layout::trash_dn(self.base());
        let found = self.dir.search(&trash, LdapScope::OneLevel, "(objectClass=*)", &["1.1"]).await?;
        if found.is_empty() && self.dir.search(&trash, LdapScope::Base, "(objectClass=*)", &["1.1"]).await?.is_empty() {
            let add = Op::Add {
                dn: trash.clone(),
                attrs: vec![
                    ("objectClass".into(), vec!["top".into(), "organizationalUnit".into()]),
                    ("ou".into(), vec!["trash".into()]),
                    ("description".into(), vec!["Entries removed by the gateway, waiting to be purged".into()]),
                ],
            };
            return match self.dir.apply(vec![add.into()]).await {
                Err(e) if e.rc() != Some(rc::ALREADY_EXISTS) => Err(e),
                _ => Ok(()),
            };
        }
        self.purge(&found.into_iter().map(|e| e.dn).collect::<Vec<_>>()).await;
        Ok(())
    }

    /// The transaction that turns a stored element into the desired one (same place).
    /// It holds only adds, modifies and the removal of a leaf that keeps a sibling (the
    /// billing entry is always there or added first): slapd 2.5 cannot delete a
    /// parent's last child inside a transaction, and a modrdn inside one can crash it.
    ///
    /// The root entry is always guarded (and so changed: it is the element's version that
    /// moves and deletes check). An address entry is guarded by the assertion on its
    /// own write, and left untouched when the write does not change it; only under
    /// `If-Match` (`strict`), which speaks for every entry, is each one guarded.
    fn plan_update(&self, s: &Stored, d: &Desired, strict: bool) -> Vec<Guarded> {
        let mut ops = Self::guards(s);
        if !strict {
            ops.truncate(1);
        }
        let def = self.def;
        let own = |e: &Entry| if strict { None } else { Stored::unchanged(e) };
        let mods = document::diff(def, Part::Root, &s.root, d);
        if !mods.is_empty() {
            ops.push(Op::Modify { dn: s.root.dn.clone(), mods }.into());
        }
        for &part in def.children {
            match (s.entry(part), d.part(part)) {
                (Some(e), Some(_)) => {
                    let mods = document::diff(def, part, e, d);
                    if !mods.is_empty() {
                        ops.push(Guarded { op: Op::Modify { dn: e.dn.clone(), mods }, assertion: own(e) });
                    }
                }
                (Some(e), None) => ops.push(Guarded { op: Op::Delete { dn: e.dn.clone() }, assertion: own(e) }),
                (None, Some(_)) => ops.push(
                    Op::Add {
                        dn: ResourceDef::child_dn(&s.root.dn, part),
                        attrs: document::new_entry(def, part, s.id, d),
                    }
                    .into(),
                ),
                (None, None) => {}
            }
        }
        ops
    }

    /// Whether an entry other than `own_dn` holds this value of a unique attribute (the
    /// unique overlay's domain is the whole directory, matching without regard to case).
    async fn value_taken(&self, attr: &str, value: &str, own_dn: &str) -> Result<bool, DirError> {
        let filter = format!("({attr}={})", filter_value(value));
        let found = self.dir.search(self.base(), LdapScope::Subtree, &filter, &["1.1"]).await?;
        Ok(found.iter().any(|e| !e.dn.eq_ignore_ascii_case(own_dn)))
    }

    /// Moves an element's subtree under another parent: one modrdn, guarded by the root
    /// entry being unchanged since it was read (every gateway write changes it).
    async fn relocate(&self, s: &Stored, parent: u64, guard: bool) -> Result<(), DirError> {
        let op = Op::Move {
            dn: s.root.dn.clone(),
            new_rdn: layout::uid_rdn(s.id),
            new_superior: self.def.container_dn(self.base(), parent),
        };
        let assertion = if guard { s.unchanged_root() } else { None };
        self.dir.apply(vec![Guarded { op, assertion }]).await?;
        Ok(())
    }

    /// Replaces or patches an element; returns the new ETag.
    pub async fn update(
        &self,
        scope: &Caller,
        id: u64,
        update: Update<'_>,
        precondition: Option<&Precondition>,
    ) -> Result<String, ServiceError> {
        for _ in 0..WRITE_ATTEMPTS {
            let s = self.visible(scope, id).await?;
            if precondition.is_some_and(|p| !p.matches(&s.etag())) {
                return Err(ServiceError::PreconditionFailed);
            }
            let current = document::to_json(&s, &self.public_url);
            let (doc, mode) = match update {
                Update::Replace(body) => {
                    let mut body = body.clone();
                    self.fill_in(scope, &mut body).await?;
                    (body, Mode::Replace { current: &current })
                }
                Update::MergePatch(p) => {
                    if !p.is_object() {
                        return Err(ServiceError::Invalid(vec![Problem::new(
                            "",
                            "a merge patch must be a JSON object",
                        )]));
                    }
                    let mut d = current.clone();
                    patch::merge(&mut d, p);
                    // A private person's display name is derived: it follows the billing
                    // names unless the patch names it.
                    if let Some(name) = self.def.name_field().map(|f| f.name) {
                        if d.get("isCompany") == Some(&Value::Bool(false)) && !document::touches(p, name) {
                            if let Some(m) = d.as_object_mut() {
                                m.remove(name);
                            }
                        }
                    }
                    (d, Mode::Patch { current: &current, patch: p })
                }
            };
            let desired = document::parse(self.def, &doc, mode).map_err(ServiceError::Invalid)?;
            let role = scope.role();
            let denied: Vec<&str> = self
                .def
                .fields
                .iter()
                .filter(|f| f.not_by.contains(&role) && changes(f, &s, &desired))
                .map(|f| f.name)
                .collect();
            if !denied.is_empty() {
                return Err(ServiceError::Forbidden(format!("{} cannot change {}", role.users(), denied.join(", "))));
            }
            if self.def.logins && scope.uid == id {
                let own: Vec<&str> = self
                    .def
                    .fields
                    .iter()
                    .filter(|f| f.not_by_self && changes(f, &s, &desired))
                    .map(|f| f.name)
                    .collect();
                if !own.is_empty() {
                    return Err(ServiceError::Forbidden(format!("a person cannot change its own {}", own.join(", "))));
                }
            }
            self.check_refs(scope, &desired, Some(&s)).await?;
            let retry =
                |e: &DirError| matches!(e.rc(), Some(rc::ASSERTION_FAILED | rc::NO_SUCH_OBJECT | rc::ALREADY_EXISTS));
            // A change of parent (a customer's reseller) moves the subtree first; the
            // content follows in one transaction on the moved entries, and a failure
            // there moves it back.
            let mut s = s;
            let origin = s.parent;
            if self.def.parent.is_some() && desired.parent != s.parent {
                // What would fail after the move is checked before it; the directory still
                // decides in the end, and while the customer is moved but not yet
                // committed (DN and sstBelongsToResellerUID disagree) no reseller sees it.
                for (f, value) in self.unique_given(&desired) {
                    if self.value_taken(f.attr, value, &s.root.dn).await? {
                        return Err(ServiceError::Conflict(format!(
                            "{} is already used by another entry",
                            shown_name(f)
                        )));
                    }
                }
                if !self.parent_ready(scope, desired.parent).await? {
                    if let Err(e) = self.dir.apply(vec![self.container(desired.parent)]).await {
                        if e.rc() != Some(rc::ALREADY_EXISTS) {
                            return Err(e.into());
                        }
                    }
                }
                match self.relocate(&s, desired.parent, true).await {
                    Ok(()) => {}
                    Err(e) if retry(&e) => {
                        tracing::debug!(id, error = ?e.to_string(), "concurrent change before the move");
                        if precondition.is_some() {
                            return Err(ServiceError::PreconditionFailed);
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
                match self.read_at(&self.root_dn(id, desired.parent)).await? {
                    Some(moved) => s = moved,
                    None => continue,
                }
            }
            let plan = self.plan_update(&s, &desired, precondition.is_some());
            // A write that changes nothing (the same upsert again) leaves the entries alone.
            if s.parent == origin && plan.iter().all(|g| matches!(&g.op, Op::Modify { mods, .. } if mods.is_empty())) {
                return Ok(s.etag());
            }
            let result = self.dir.apply(plan).await;
            if result.is_err() && s.parent != origin {
                if let Err(e) = self.relocate(&s, origin, false).await {
                    tracing::error!(resource = self.def.name, id, error = ?e.to_string(), "could not move back after a failed update");
                }
            }
            match result {
                Ok(()) => {
                    let dn = self.root_dn(id, if self.def.parent.is_some() { desired.parent } else { s.parent });
                    let now = self.read_at(&dn).await?.ok_or(ServiceError::NotFound)?;
                    return Ok(now.etag());
                }
                Err(e) if retry(&e) => {
                    tracing::debug!(id, error = ?e.to_string(), "write refused");
                    if precondition.is_some() {
                        return Err(ServiceError::PreconditionFailed);
                    }
                }
                Err(e) => return Err(self.conflict(e, &desired)),
            }
        }
        Err(ServiceError::Conflict(format!("the {} kept changing; try again", self.def.singular)))
    }

    /// Sets an element's password (resources with a `Secret` field: people); the caller
    /// must see it.
    pub async fn set_password(&self, scope: &Scope, id: u64, new_password: &Value) -> Result<(), ServiceError> {
        let Some(field) = self.def.fields.iter().find(|f| f.kind == Kind::Secret) else {
            return Err(ServiceError::NotFound);
        };
        let s = self.visible(scope, id).await?;
        let password = crate::mapping::values::secret(new_password)
            .map_err(|msg| ServiceError::Invalid(vec![Problem::new("newPassword", msg)]))?;
        self.dir.set_password(&s.root.dn, &password).await?;
        tracing::info!(resource = self.def.name, id, field = field.name, "password set");
        Ok(())
    }

    /// The field that names the reseller of a resource placed by attribute (people).
    fn tenant_field(&self) -> Option<&'static Field> {
        let fields: &'static [Field] = self.def.fields;
        (self.def.tenant == Tenant::Attr).then(|| fields.iter().find(|f| f.attr == document::RESELLER_ATTR)).flatten()
    }

    /// Fills in what a document may leave to the caller's scope: the fields that hold
    /// the caller's reseller or customer, and the reseller that a reference within it
    /// implies (a person's customer's reseller).
    async fn fill_in(&self, scope: &Scope, doc: &mut Value) -> Result<(), ServiceError> {
        let Some(obj) = doc.as_object_mut() else { return Ok(()) };
        let absent = |obj: &serde_json::Map<String, Value>, name: &str| obj.get(name).is_none_or(Value::is_null);
        for f in self.def.fields {
            if let Some(mine) = scoped_value(f, scope) {
                if absent(obj, f.name) {
                    obj.insert(f.name.to_string(), Value::from(mine));
                }
            }
        }
        let Some(tenant) = self.tenant_field() else { return Ok(()) };
        if !absent(obj, tenant.name) {
            return Ok(());
        }
        for f in self.def.fields.iter().filter(|f| f.within_tenant) {
            if let Some(id) = obj.get(f.name).and_then(Value::as_u64) {
                if let Some(t) = self.resolve(f, id, scope).await?.and_then(|o| o.tenant) {
                    obj.insert(tenant.name.to_string(), Value::from(t));
                }
            }
        }
        Ok(())
    }

    /// Whom the element a reference names belongs to, if it exists and the caller sees
    /// it (the caller's own reseller or customer always counts).
    async fn resolve(&self, f: &Field, id: u64, scope: &Scope) -> Result<Option<Owner>, DirError> {
        if scoped_value(f, scope) == Some(id) {
            return Ok(Some(Owner { tenant: scope.reseller(), customer: scope.customer() }));
        }
        for def in f.refers_to().unwrap_or_default() {
            let filter = format!("(&(objectClass={})(uid={}))", def.structural, filter_value(&id.to_string()));
            let (base, one_level) = def.search_base(self.base());
            let level = if one_level { LdapScope::OneLevel } else { LdapScope::Subtree };
            let mut attrs = vec!["objectClass", document::RESELLER_ATTR];
            if let CustomerOf::Attr(a) = def.customer_of {
                attrs.push(a);
            }
            for e in self.dir.search(&base, level, &filter, &attrs).await? {
                if let Some(p) = def.place(&e.dn, self.base()).filter(|p| p.part == Part::Root) {
                    let owner = document::owner(def, p.id, p.parent, &e);
                    if scope.sees(owner) {
                        return Ok(Some(owner));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Checks the references a write gives anew (those it keeps are left as they are):
    /// each must name an element the caller sees (in a field that holds the caller's
    /// reseller or customer, the caller's own), and one within the tenant must belong
    /// to the element's reseller.
    async fn check_refs(&self, scope: &Scope, d: &Desired, stored: Option<&Stored>) -> Result<(), ServiceError> {
        let tenant_field = self.tenant_field();
        let tenant = tenant_field.and_then(|t| d.root.get(t.attr));
        let tenant_changed = tenant_field
            .is_some_and(|t| stored.is_none_or(|s| s.root.first(t.attr).map(str::trim) != tenant.map(String::as_str)));
        let mut problems = Vec::new();
        for f in self.def.fields.iter().filter(|f| f.refers_to().is_some()) {
            let given: Vec<&String> = if f.is_list() {
                d.list(Part::Root, f.attr).iter().collect()
            } else {
                d.root.get(f.attr).into_iter().collect()
            };
            let before = stored.map(|s| s.root.values(f.attr)).unwrap_or_default();
            for v in given {
                let new = !before.iter().any(|b| b.trim() == v);
                if !(new || (f.within_tenant && tenant_changed)) {
                    continue;
                }
                let Ok(id) = v.parse::<u64>() else { continue };
                let mine = scoped_value(f, scope);
                let owner = if mine.is_some_and(|m| m != id) { None } else { self.resolve(f, id, scope).await? };
                let kinds: Vec<&str> = f.refers_to().unwrap_or_default().iter().map(|r| r.singular).collect();
                match owner {
                    None => problems.push(Problem::new(f.name, format!("there is no {} {id}", kinds.join(" or ")))),
                    Some(o) if f.within_tenant && o.tenant.map(|t| t.to_string()).as_ref() != tenant => {
                        problems.push(Problem::new(
                            f.name,
                            format!(
                                "{} {id} belongs to another reseller than {}",
                                kinds.join(" or "),
                                tenant_field.map(|t| t.name).unwrap_or("the reseller")
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::Invalid(problems))
        }
    }

    /// Whether the subtree at `dn` holds an entry that blocks a delete.
    async fn holds_blocking(&self, dn: &str) -> Result<bool, DirError> {
        let Some((class, _)) = self.def.delete_blocked_by else { return Ok(false) };
        let filter = format!("(objectClass={class})");
        Ok(!self.dir.search(dn, LdapScope::Subtree, &filter, &["1.1"]).await?.is_empty())
    }

    /// Deletes an element and every entry under it.
    pub async fn delete(
        &self,
        scope: &Scope,
        id: u64,
        precondition: Option<&Precondition>,
    ) -> Result<(), ServiceError> {
        let def = self.def;
        let blocked = || ServiceError::Conflict(def.delete_blocked_by.map(|(_, why)| why).unwrap_or_default().into());
        for _ in 0..WRITE_ATTEMPTS {
            let s = self.visible(scope, id).await?;
            if !def.delete_by.contains(&scope.role()) {
                return Err(ServiceError::Forbidden(format!("{} cannot delete {}", scope.role().users(), def.name)));
            }
            if precondition.is_some_and(|p| !p.matches(&s.etag())) {
                return Err(ServiceError::PreconditionFailed);
            }
            if self.holds_blocking(&s.root.dn).await? {
                return Err(blocked());
            }
            // One modrdn takes the whole subtree out of sight, guarded by the root entry
            // (every gateway write changes it); the trash is purged afterwards.
            let (mut op, trashed) = self.to_trash(&s.root.dn);
            op.assertion = s.unchanged_root();
            let ops = vec![op];
            match self.dir.apply(ops).await {
                Ok(()) => {
                    // What was created below it meanwhile goes back with it.
                    if self.holds_blocking(&trashed).await? {
                        let rdn = s.root.dn.split(',').next().unwrap_or_default().to_string();
                        let back = Op::Move {
                            dn: trashed,
                            new_rdn: rdn,
                            new_superior: def.container_dn(self.base(), s.parent),
                        };
                        self.dir.apply(vec![back.into()]).await?;
                        return Err(blocked());
                    }
                    self.purge(&[trashed]).await;
                    tracing::info!(resource = def.name, id, "deleted");
                    return Ok(());
                }
                Err(e) if matches!(e.rc(), Some(rc::ASSERTION_FAILED | rc::NO_SUCH_OBJECT)) => {
                    if precondition.is_some() {
                        return Err(ServiceError::PreconditionFailed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(format!("the {} kept changing; try again", def.singular)))
    }
}

/// The name a field is known by in messages (a qualified value by the field it
/// qualifies).
fn shown_name(f: &Field) -> &'static str {
    match f.kind {
        Kind::Qualified(of) => of,
        _ => f.name,
    }
}

/// The caller's reseller or customer, for a field that holds it.
fn scoped_value(f: &Field, scope: &Scope) -> Option<u64> {
    match f.scoped? {
        Role::Reseller => scope.reseller(),
        Role::Customer => scope.customer(),
        Role::Provider => None,
    }
}

/// Whether a write changes a field from what is stored.
fn changes(f: &Field, s: &Stored, d: &Desired) -> bool {
    match f.kind {
        Kind::ParentRef => d.parent != s.parent,
        Kind::List(_) => {
            let fold =
                |v: &[String]| -> std::collections::BTreeSet<String> { v.iter().map(|x| x.to_lowercase()).collect() };
            fold(d.list(Part::Root, f.attr)) != fold(s.root.values(f.attr))
        }
        Kind::Id | Kind::Link(_) | Kind::Object(_) => false,
        _ => {
            let stored = s.root.first(f.attr).map(str::to_string).or_else(|| f.default.map(|b| bool_ldap(b).into()));
            let norm =
                |v: Option<&str>| v.map(|v| if f.kind == Kind::Bool { v.to_ascii_uppercase() } else { v.to_string() });
            norm(d.root.get(f.attr).map(String::as_str)) != norm(stored.as_deref())
        }
    }
}

fn bool_ldap(b: bool) -> &'static str {
    if b {
        "TRUE"
    } else {
        "FALSE"
    }
}
