//! The customer operations: create, read, replace, patch, delete and move, each all or
//! nothing, with optimistic concurrency on the entries' change sequence numbers.

use std::sync::Arc;
use std::time::Duration;

use ldap3::Scope as LdapScope;
use serde_json::Value;

use super::index::{CustomerIndex, Page};
use super::{Precondition, Scope, ServiceError};
use crate::directory::error::rc;
use crate::directory::escape::filter_value;
use crate::directory::{layout, DirError, Directory, Guarded, Op};
use crate::mapping::customer::{self, Desired, Mode, Stored};
use crate::mapping::query::{self, ListQuery, PageLimits, QueryError};
use crate::mapping::table::{self, Part};
use crate::mapping::{patch, Problem};

/// How many times a write without `If-Match` is retried when another writer changed the
/// customer between its read and its write.
const WRITE_ATTEMPTS: usize = 5;

/// How a customer update is given.
pub enum Update<'a> {
    Replace(&'a Value),
    MergePatch(&'a Value),
}

#[derive(Clone)]
pub struct Customers {
    dir: Directory,
    public_url: Arc<str>,
    /// Every customer's collection data, kept by content synchronisation. It also says
    /// which reseller an id lives under, so a read is one subtree search; a stale answer
    /// is harmless: the search finds nothing and the id is looked up.
    index: Arc<CustomerIndex>,
    limits: PageLimits,
    /// How long a list waits for the index to catch up with the directory.
    catch_up: Duration,
}

impl Customers {
    pub fn new(
        dir: Directory,
        public_url: &str,
        index: Arc<CustomerIndex>,
        limits: PageLimits,
        catch_up: Duration,
    ) -> Self {
        Customers { dir, public_url: public_url.trim_end_matches('/').into(), index, limits, catch_up }
    }

    pub fn index(&self) -> &Arc<CustomerIndex> {
        &self.index
    }

    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    pub fn location(&self, id: u64) -> String {
        customer::location(&self.public_url, id)
    }

    fn base(&self) -> &str {
        &self.dir.base_dn
    }

    async fn read_at(&self, dn: &str) -> Result<Option<Stored>, DirError> {
        let attrs = table::all_attributes();
        let entries = self.dir.search(dn, LdapScope::Subtree, "(objectClass=*)", &attrs).await?;
        Ok(Stored::from_entries(entries))
    }

    /// Reads a customer with all its entries; `None` when the id does not exist.
    pub async fn read(&self, id: u64) -> Result<Option<Stored>, DirError> {
        if let Some(reseller) = self.index.reseller_of(id) {
            if let Some(s) = self.read_at(&layout::customer_dn(self.base(), reseller, id)).await? {
                return Ok(Some(s));
            }
        }
        let filter = format!("(&(objectClass=sstCustomer)(uid={}))", filter_value(&id.to_string()));
        let found = self.dir.search(&layout::resellers_dn(self.base()), LdapScope::Subtree, &filter, &["1.1"]).await?;
        for e in found {
            if let Some(s) = self.read_at(&e.dn).await? {
                if s.id == id {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// A page of the collection (SPEC section 6) from the raw query string. The index is
    /// first brought up to the directory's newest committed change, so every write that
    /// finished before this request began is in the answer.
    pub async fn list(&self, scope: &Scope, raw_query: Option<&str>) -> Result<(ListQuery, Page), ServiceError> {
        let q = query::parse(raw_query, self.limits).map_err(|e| match e {
            QueryError::Malformed(m) => ServiceError::BadRequest(m),
            QueryError::Invalid(p) => ServiceError::Invalid(p),
        })?;
        let target = self.dir.context_csn().await?;
        self.index.wait_for(&target, self.catch_up).await.map_err(|_| ServiceError::Unavailable)?;
        let page = self.index.query(scope, &q, &self.public_url);
        Ok((q, page))
    }

    /// The URL of the collection (what `Link` URLs start with).
    pub fn collection_url(&self) -> String {
        format!("{}/v1/customers", self.public_url)
    }

    async fn visible(&self, scope: &Scope, id: u64) -> Result<Stored, ServiceError> {
        match self.read(id).await? {
            Some(s) if scope.sees(s.id, s.reseller) => Ok(s),
            _ => Err(ServiceError::NotFound),
        }
    }

    /// The full document and its ETag.
    pub async fn get(&self, scope: &Scope, id: u64) -> Result<(Value, String), ServiceError> {
        let s = self.visible(scope, id).await?;
        Ok((customer::to_json(&s, &self.public_url), s.etag()))
    }

    /// Checks that a reseller exists and may be used by the caller; says whether its
    /// `ou=customers` container exists yet.
    async fn reseller_ready(&self, scope: &Scope, reseller: u64) -> Result<bool, ServiceError> {
        let unknown = || {
            ServiceError::Invalid(vec![Problem::new("belongsToResellerID", format!("there is no reseller {reseller}"))])
        };
        if !scope.may_use_reseller(reseller) {
            return Err(unknown());
        }
        let (reseller_dn, container_dn) =
            (layout::reseller_dn(self.base(), reseller), layout::customers_dn(self.base(), reseller));
        let (r, c) = tokio::join!(
            self.dir.search(&reseller_dn, LdapScope::Base, "(objectClass=sstReseller)", &["1.1"]),
            self.dir.search(&container_dn, LdapScope::Base, "(objectClass=*)", &["1.1"]),
        );
        if r?.is_empty() {
            return Err(unknown());
        }
        Ok(!c?.is_empty())
    }

    fn container(&self, reseller: u64) -> Guarded {
        Op::Add {
            dn: layout::customers_dn(self.base(), reseller),
            attrs: vec![
                ("objectClass".into(), vec!["top".into(), "organizationalUnit".into()]),
                ("ou".into(), vec!["customers".into()]),
            ],
        }
        .into()
    }

    fn conflict(e: DirError, d: &Desired) -> ServiceError {
        match e.rc() {
            Some(rc::CONSTRAINT_VIOLATION) if d.customer.contains_key("sstexternalid") => {
                ServiceError::Conflict("externalID is already used by another entry".into())
            }
            Some(rc::ALREADY_EXISTS) => ServiceError::Conflict("the entry exists already".into()),
            _ => e.into(),
        }
    }

    /// Creates a customer with a new id from the directory's counter; all its entries are
    /// written in one transaction.
    pub async fn create(&self, scope: &Scope, body: &Value) -> Result<u64, ServiceError> {
        if !scope.may_create_or_delete() {
            return Err(ServiceError::Forbidden("customer users cannot create customers".into()));
        }
        let desired = customer::parse(body, Mode::Create).map_err(ServiceError::Invalid)?;
        let has_container = self.reseller_ready(scope, desired.reseller).await?;
        let id = self.dir.next_uid(&layout::counter_dn(self.base())).await?;
        let dn = layout::customer_dn(self.base(), desired.reseller, id);
        let mut ops = Vec::new();
        if !has_container {
            ops.push(self.container(desired.reseller));
        }
        ops.push(Op::Add { dn: dn.clone(), attrs: customer::new_entry(Part::Customer, id, &desired.customer) }.into());
        for part in [Part::Billing, Part::Shipping] {
            if let (Some(attrs), Some(ou)) = (desired.part(part), part.ou()) {
                ops.push(Op::Add { dn: layout::child_dn(&dn, ou), attrs: customer::new_entry(part, id, attrs) }.into());
            }
        }
        self.dir.apply(ops).await.map_err(|e| Self::conflict(e, &desired))?;
        tracing::info!(id, reseller = desired.reseller, "customer created");
        Ok(id)
    }

    /// Guards that hold while every entry of the customer is unchanged since it was
    /// read: an empty modify with an assertion on the entry's change sequence number.
    /// They open the transaction, so the check and the writes after it are one step;
    /// being empty, they also keep the assertion away from overlays (unique) that run
    /// internal searches for the real modifications.
    fn guards(s: &Stored) -> Vec<Guarded> {
        [Some(&s.customer), s.billing.as_ref(), s.shipping.as_ref()]
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

    /// The transaction that turns a stored customer into the desired one (same place).
    /// It holds only adds, modifies and the removal of a leaf that keeps a sibling (the
    /// billing entry is always there or added first): slapd 2.5 cannot delete a
    /// parent's last child inside a transaction, and a modrdn inside one can crash it.
    fn plan_update(&self, s: &Stored, d: &Desired) -> Vec<Guarded> {
        let mut ops = Self::guards(s);
        let mods = customer::diff(Part::Customer, &s.customer, &d.customer);
        if !mods.is_empty() {
            ops.push(Op::Modify { dn: s.customer.dn.clone(), mods }.into());
        }
        for part in [Part::Billing, Part::Shipping] {
            let ou = part.ou().unwrap_or_default();
            match (s.entry(part), d.part(part)) {
                (Some(e), Some(want)) => {
                    let mods = customer::diff(part, e, want);
                    if !mods.is_empty() {
                        ops.push(Op::Modify { dn: e.dn.clone(), mods }.into());
                    }
                }
                (Some(e), None) => ops.push(Op::Delete { dn: e.dn.clone() }.into()),
                (None, Some(want)) => ops.push(
                    Op::Add { dn: layout::child_dn(&s.customer.dn, ou), attrs: customer::new_entry(part, s.id, want) }
                        .into(),
                ),
                (None, None) => {}
            }
        }
        ops
    }

    /// Moves a customer's subtree under another reseller: one modrdn, guarded by the
    /// customer entry being unchanged since it was read (every gateway write changes it).
    async fn relocate(&self, s: &Stored, reseller: u64, guard: bool) -> Result<(), DirError> {
        let op = Op::Move {
            dn: s.customer.dn.clone(),
            new_rdn: layout::customer_rdn(s.id),
            new_superior: layout::customers_dn(self.base(), reseller),
        };
        let assertion = if guard { Stored::unchanged(&s.customer) } else { None };
        self.dir.apply(vec![Guarded { op, assertion }]).await?;
        Ok(())
    }

    /// Replaces or patches a customer; returns the new ETag.
    pub async fn update(
        &self,
        scope: &Scope,
        id: u64,
        update: Update<'_>,
        precondition: Option<&Precondition>,
    ) -> Result<String, ServiceError> {
        for _ in 0..WRITE_ATTEMPTS {
            let s = self.visible(scope, id).await?;
            if precondition.is_some_and(|p| !p.matches(&s.etag())) {
                return Err(ServiceError::PreconditionFailed);
            }
            let current = customer::to_json(&s, &self.public_url);
            let doc = match update {
                Update::Replace(body) => body.clone(),
                Update::MergePatch(p) => {
                    if !p.is_object() {
                        return Err(ServiceError::Invalid(vec![Problem::new(
                            "",
                            "a merge patch must be a JSON object",
                        )]));
                    }
                    let mut d = current.clone();
                    patch::merge(&mut d, p);
                    d
                }
            };
            let desired = customer::parse(&doc, Mode::Replace { current: &current }).map_err(ServiceError::Invalid)?;
            if let Scope::Customer { .. } = scope {
                let mut denied = Vec::new();
                let was_active =
                    s.customer.first("sstisactive").map(str::to_ascii_uppercase).unwrap_or_else(|| "TRUE".into());
                if desired.customer.get("sstisactive") != Some(&was_active) {
                    denied.push("isActive");
                }
                if desired.reseller != s.reseller {
                    denied.push("belongsToResellerID");
                }
                if !denied.is_empty() {
                    return Err(ServiceError::Forbidden(format!("customer users cannot change {}", denied.join(", "))));
                }
            }
            let retry =
                |e: &DirError| matches!(e.rc(), Some(rc::ASSERTION_FAILED | rc::NO_SUCH_OBJECT | rc::ALREADY_EXISTS));
            // A change of reseller moves the subtree first; the content follows in one
            // transaction on the moved entries, and a failure there moves it back.
            let mut s = s;
            let origin = s.reseller;
            if desired.reseller != s.reseller {
                if !self.reseller_ready(scope, desired.reseller).await? {
                    if let Err(e) = self.dir.apply(vec![self.container(desired.reseller)]).await {
                        if e.rc() != Some(rc::ALREADY_EXISTS) {
                            return Err(e.into());
                        }
                    }
                }
                match self.relocate(&s, desired.reseller, true).await {
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
                match self.read_at(&layout::customer_dn(self.base(), desired.reseller, id)).await? {
                    Some(moved) => s = moved,
                    None => continue,
                }
            }
            let result = self.dir.apply(self.plan_update(&s, &desired)).await;
            if result.is_err() && s.reseller != origin {
                if let Err(e) = self.relocate(&s, origin, false).await {
                    tracing::error!(id, error = ?e.to_string(), "could not move the customer back after a failed update");
                }
            }
            match result {
                Ok(()) => {
                    let now = self.read(id).await?.ok_or(ServiceError::NotFound)?;
                    return Ok(now.etag());
                }
                Err(e) if retry(&e) => {
                    tracing::debug!(id, error = ?e.to_string(), "write refused");
                    if precondition.is_some() {
                        return Err(ServiceError::PreconditionFailed);
                    }
                }
                Err(e) => return Err(Self::conflict(e, &desired)),
            }
        }
        Err(ServiceError::Conflict("the customer kept changing; try again".into()))
    }

    /// Deletes a customer and every entry under it.
    pub async fn delete(
        &self,
        scope: &Scope,
        id: u64,
        precondition: Option<&Precondition>,
    ) -> Result<(), ServiceError> {
        for _ in 0..WRITE_ATTEMPTS {
            let s = self.visible(scope, id).await?;
            if !scope.may_create_or_delete() {
                return Err(ServiceError::Forbidden("customer users cannot delete customers".into()));
            }
            if precondition.is_some_and(|p| !p.matches(&s.etag())) {
                return Err(ServiceError::PreconditionFailed);
            }
            // One modrdn takes the whole subtree out of sight, guarded by the customer
            // entry (every gateway write changes it); the trash is purged afterwards.
            let (mut op, trashed) = self.to_trash(&s.customer.dn);
            op.assertion = Stored::unchanged(&s.customer);
            let ops = vec![op];
            match self.dir.apply(ops).await {
                Ok(()) => {
                    self.purge(&[trashed]).await;
                    tracing::info!(id, "customer deleted");
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
        Err(ServiceError::Conflict("the customer kept changing; try again".into()))
    }
}
