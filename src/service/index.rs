//! The customer index: what the collection needs of every customer, in memory, kept
//! exact by the directory's content synchronisation (see `directory::sync`). A list is
//! answered from it in one pass over the customers in the order asked for, so no list
//! loads the collection from LDAP or sorts it; the directory stays the source of truth,
//! and a list first makes sure the index has seen every change the directory has
//! committed (its `contextCSN`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::Scope;
use crate::directory::layout::{self, Placement};
use crate::directory::sync::{Csns, SyncEvent, SyncSink, Uuid};
use crate::directory::Entry;
use crate::mapping::query::{self, ListQuery};
use crate::mapping::row::{self, compare_keys, Column, PartValues, Row, SortKey};
use crate::mapping::table::{Kind, Part};

const PARTS: [Part; 3] = [Part::Customer, Part::Billing, Part::Shipping];

fn part_index(p: Part) -> usize {
    match p {
        Part::Customer => 0,
        Part::Billing => 1,
        Part::Shipping => 2,
    }
}

fn part_of_child(ou: &str) -> Option<Part> {
    PARTS.into_iter().find(|p| p.ou() == Some(ou))
}

struct Record {
    id: u64,
    reseller: u64,
    row: Row,
    uuids: [Option<Uuid>; 3],
    /// One per sort column (`query::sort_columns()`).
    keys: Box<[Option<SortKey>]>,
    /// What `q=` searches.
    text: Box<str>,
}

impl Record {
    /// Listed once its customer entry is known.
    fn listed(&self) -> bool {
        self.row.customer.is_some()
    }

    fn refresh_derived(&mut self) {
        self.keys = query::sort_columns()
            .iter()
            .map(|c| self.row.value(*c, self.id, self.reseller).map(|v| row::sort_key(c.kind(), &v)))
            .collect();
        self.text = self.row.search_text(self.id);
    }
}

#[derive(Default)]
struct State {
    records: Vec<Option<Record>>,
    free: Vec<u32>,
    by_id: HashMap<u64, u32>,
    by_uuid: HashMap<Uuid, (u32, Part, u32)>,
    /// Per sort column, the listed records ascending by (key, id), missing keys last.
    orders: Vec<Vec<u32>>,
    /// Generation of the current refresh, for the sweep after a present phase.
    gen: u32,
    /// Loading from nothing: orders are built once at the end of the refresh.
    bulk: bool,
}

fn order_cmp(records: &[Option<Record>], c: usize, a: u32, b: u32) -> std::cmp::Ordering {
    let (ra, rb) = (records[a as usize].as_ref(), records[b as usize].as_ref());
    match (ra, rb) {
        (Some(ra), Some(rb)) => compare_keys(ra.keys[c].as_ref(), rb.keys[c].as_ref(), false).then(ra.id.cmp(&rb.id)),
        _ => std::cmp::Ordering::Equal,
    }
}

impl State {
    fn rec(&self, slot: u32) -> &Record {
        self.records[slot as usize].as_ref().expect("a live slot")
    }

    fn unlist(&mut self, slot: u32) {
        if self.bulk || !self.rec(slot).listed() {
            return;
        }
        for c in 0..self.orders.len() {
            let records = &self.records;
            if let Ok(i) = self.orders[c].binary_search_by(|&s| order_cmp(records, c, s, slot)) {
                self.orders[c].remove(i);
            }
        }
    }

    fn list(&mut self, slot: u32) {
        if self.bulk || !self.rec(slot).listed() {
            return;
        }
        for c in 0..self.orders.len() {
            let records = &self.records;
            let i = self.orders[c].binary_search_by(|&s| order_cmp(records, c, s, slot)).unwrap_or_else(|i| i);
            self.orders[c].insert(i, slot);
        }
    }

    /// Changes a record, keeping the orders right.
    fn modify(&mut self, slot: u32, f: impl FnOnce(&mut Record)) {
        self.unlist(slot);
        let rec = self.records[slot as usize].as_mut().expect("a live slot");
        f(rec);
        rec.refresh_derived();
        self.list(slot);
    }

    fn slot_for(&mut self, id: u64, reseller: u64) -> u32 {
        if let Some(&slot) = self.by_id.get(&id) {
            return slot;
        }
        let mut rec =
            Record { id, reseller, row: Row::default(), uuids: [None; 3], keys: Box::new([]), text: "".into() };
        rec.refresh_derived();
        let slot = match self.free.pop() {
            Some(s) => {
                self.records[s as usize] = Some(rec);
                s
            }
            None => {
                self.records.push(Some(rec));
                (self.records.len() - 1) as u32
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    fn drop_record(&mut self, slot: u32) {
        self.unlist(slot);
        if let Some(rec) = self.records[slot as usize].take() {
            for u in rec.uuids.iter().flatten() {
                self.by_uuid.remove(u);
            }
            self.by_id.remove(&rec.id);
            self.free.push(slot);
        }
    }

    /// Forgets an entry: its part of the record, or the whole record for the customer
    /// entry (its children went with it).
    fn detach(&mut self, uuid: &Uuid) {
        let Some((slot, part, _)) = self.by_uuid.remove(uuid) else { return };
        if part == Part::Customer {
            self.drop_record(slot);
            return;
        }
        self.modify(slot, |rec| {
            *rec.row.part_mut(part) = None;
            rec.uuids[part_index(part)] = None;
        });
        if self.rec(slot).uuids.iter().all(Option::is_none) {
            self.drop_record(slot);
        }
    }

    fn upsert(&mut self, base: &str, uuid: Uuid, entry: &Entry) {
        let target = match layout::placement(&entry.dn, base) {
            Some(Placement::Customer { id, reseller }) if entry.has_object_class("sstCustomer") => {
                Some((id, reseller, Part::Customer))
            }
            Some(Placement::Child { ou, id, reseller }) => part_of_child(&ou).map(|p| (id, reseller, p)),
            _ => None,
        };
        if let Some(&(slot, part, _)) = self.by_uuid.get(&uuid) {
            let here = (self.rec(slot).id, part);
            if target.map(|(id, _, p)| (id, p)) != Some(here) {
                self.detach(&uuid);
            }
        }
        let Some((id, reseller, part)) = target else { return };
        let slot = self.slot_for(id, reseller);
        let pi = part_index(part);
        if let Some(old) = self.rec(slot).uuids[pi].filter(|old| *old != uuid) {
            self.by_uuid.remove(&old);
        }
        let values = PartValues::from_entry(part, entry);
        self.modify(slot, |rec| {
            *rec.row.part_mut(part) = Some(values);
            rec.uuids[pi] = Some(uuid);
            if part == Part::Customer {
                rec.reseller = reseller;
            }
        });
        self.by_uuid.insert(uuid, (slot, part, self.gen));
    }

    fn rebuild_orders(&mut self) {
        let listed: Vec<u32> = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_some_and(Record::listed))
            .map(|(i, _)| i as u32)
            .collect();
        self.orders = (0..query::sort_columns().len())
            .map(|c| {
                let mut o = listed.clone();
                let records = &self.records;
                o.sort_unstable_by(|&a, &b| order_cmp(records, c, a, b));
                o
            })
            .collect();
    }

    fn sweep(&mut self) {
        let gen = self.gen;
        let gone: Vec<Uuid> = self.by_uuid.iter().filter(|(_, (_, _, g))| *g != gen).map(|(u, _)| *u).collect();
        for u in gone {
            self.detach(&u);
        }
    }
}

/// How far the index has got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Loaded: the first refresh is complete.
    loaded: bool,
    csns: Csns,
}

/// The answer to a list query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub total: u64,
    pub items: Vec<Value>,
}

pub struct CustomerIndex {
    base: String,
    state: RwLock<State>,
    progress: watch::Sender<Progress>,
    restart: Arc<Notify>,
}

/// The index is not (yet) as far as the directory.
#[derive(Debug, thiserror::Error)]
#[error("the customer index has not caught up with the directory")]
pub struct Behind;

impl CustomerIndex {
    pub fn new(base: &str) -> Self {
        CustomerIndex {
            base: base.to_string(),
            state: RwLock::new(State { orders: vec![Vec::new(); query::sort_columns().len()], ..Default::default() }),
            progress: watch::channel(Progress::default()).0,
            restart: Arc::new(Notify::new()),
        }
    }

    /// What wakes the synchronisation to start a new session.
    pub fn restarter(&self) -> Arc<Notify> {
        self.restart.clone()
    }

    pub fn is_loaded(&self) -> bool {
        self.progress.borrow().loaded
    }

    /// Waits until the index has seen everything up to `target`; if it does not get
    /// there in time, the synchronisation is restarted and the caller told.
    pub async fn wait_for(&self, target: &Csns, timeout: Duration) -> Result<(), Behind> {
        let mut rx = self.progress.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| p.loaded && p.csns.covers(target))).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => {
                if self.is_loaded() {
                    tracing::warn!(?target, "the customer index fell behind the directory; restarting synchronisation");
                    self.restart.notify_one();
                }
                Err(Behind)
            }
        }
    }

    /// The reseller a customer id is listed under, as far as the index knows.
    pub fn reseller_of(&self, id: u64) -> Option<u64> {
        let state = self.state.read().ok()?;
        state.by_id.get(&id).map(|&s| state.rec(s)).filter(|r| r.listed()).map(|r| r.reseller)
    }

    /// Number of customers listed (for metrics and tests).
    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.orders.first().map_or(0, Vec::len)).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers a list query within the caller's scope.
    pub fn query(&self, scope: &Scope, q: &ListQuery, public_url: &str) -> Page {
        let Ok(state) = self.state.read() else { return Page { total: 0, items: Vec::new() } };
        let matcher = Matcher::new(scope, q);
        let offset = q.offset();
        let end = offset.saturating_add(q.per_page);
        let (primary, descending) = match q.sort.first() {
            Some(s) => (s.column, s.descending),
            None => (query::sort_columns().iter().copied().find(|c| c.kind() == Kind::Id).expect("id sorts"), false),
        };
        let c = query::sort_columns().iter().position(|x| *x == primary).expect("a sort column");
        let secondary = if q.sort.is_empty() { &[][..] } else { &q.sort[1..] };
        let secondary: Vec<(usize, bool)> = secondary
            .iter()
            .map(|s| (query::sort_columns().iter().position(|x| *x == s.column).expect("a sort column"), s.descending))
            .collect();

        // A customer user's scope is one customer: no need to walk the others.
        let order: &[u32] = &state.orders[c];
        let own: Vec<u32>;
        let order = match scope {
            Scope::Customer { customer, .. } => {
                own = state.by_id.get(customer).copied().into_iter().filter(|s| state.rec(*s).listed()).collect();
                &own[..]
            }
            _ => order,
        };
        // Ascending: the order as kept. Descending: present keys from the top, then the
        // missing ones (they stay last either way).
        let missing_from = order.partition_point(|&s| state.rec(s).keys[c].is_some());
        let walk: Box<dyn Iterator<Item = u32>> = if descending {
            Box::new(order[..missing_from].iter().rev().chain(order[missing_from..].iter()).copied())
        } else {
            Box::new(order.iter().copied())
        };

        let mut total = 0u64;
        let mut window: Vec<u32> = Vec::new();
        let mut run: Vec<u32> = Vec::new();
        let mut run_key: Option<&Option<SortKey>> = None;
        let mut scratch = String::new();
        let flush = |run: &mut Vec<u32>, total: &mut u64, window: &mut Vec<u32>| {
            let n = run.len() as u64;
            if n > 0 && *total < end && *total + n > offset {
                // Within a run of equal primary keys: the other keys, then the id.
                run.sort_by(|&a, &b| {
                    let (ra, rb) = (state.rec(a), state.rec(b));
                    secondary
                        .iter()
                        .map(|&(k, desc)| compare_keys(ra.keys[k].as_ref(), rb.keys[k].as_ref(), desc))
                        .find(|o| o.is_ne())
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then(ra.id.cmp(&rb.id))
                });
                let from = offset.saturating_sub(*total) as usize;
                let to = (end - *total).min(n) as usize;
                window.extend_from_slice(&run[from..to]);
            }
            *total += n;
            run.clear();
        };
        for slot in walk {
            let rec = state.rec(slot);
            let key = &rec.keys[c];
            if run_key != Some(key) {
                flush(&mut run, &mut total, &mut window);
                run_key = Some(key);
            }
            if matcher.matches(rec, &mut scratch) {
                run.push(slot);
            }
        }
        flush(&mut run, &mut total, &mut window);
        let items = window
            .into_iter()
            .map(|s| {
                let rec = state.rec(s);
                row::item(rec.id, rec.reseller, &rec.row, public_url)
            })
            .collect();
        Page { total, items }
    }
}

/// Scope, filters and `q` of one query, prepared for many records.
struct Matcher<'a> {
    scope: Scope,
    filters: Vec<(Column, Option<usize>, &'a row::Pattern)>,
    q: Option<&'a str>,
}

impl<'a> Matcher<'a> {
    fn new(scope: &Scope, q: &'a ListQuery) -> Self {
        let filters = q
            .filters
            .iter()
            .map(|f| {
                let slot = match f.column.kind() {
                    Kind::Id | Kind::ResellerRef | Kind::CustomerName => None,
                    _ => row::slot_of(f.column.part, f.column.field.attr),
                };
                (f.column, slot, &f.pattern)
            })
            .collect();
        Matcher { scope: *scope, filters, q: q.q.as_deref() }
    }

    fn matches(&self, rec: &Record, scratch: &mut String) -> bool {
        if !self.scope.sees(rec.id, rec.reseller) {
            return false;
        }
        for (col, slot, pattern) in &self.filters {
            let ok = match slot {
                Some(i) => pattern.matches(col.kind(), rec.row.part(col.part).and_then(|v| v.at(*i)), scratch),
                None => pattern.matches(col.kind(), rec.row.value(*col, rec.id, rec.reseller).as_deref(), scratch),
            };
            if !ok {
                return false;
            }
        }
        self.q.is_none_or(|q| rec.text.contains(q))
    }
}

impl SyncSink for CustomerIndex {
    fn apply(&self, event: SyncEvent) {
        let Ok(mut state) = self.state.write() else { return };
        match event {
            SyncEvent::RefreshBegin { reload } => {
                state.gen = state.gen.wrapping_add(1);
                if reload {
                    let gen = state.gen;
                    *state = State { gen, bulk: true, ..Default::default() };
                    self.progress.send_modify(|p| p.loaded = false);
                }
            }
            SyncEvent::Entry { uuid, entry } => state.upsert(&self.base, uuid, &entry),
            SyncEvent::Delete { uuid } => state.detach(&uuid),
            SyncEvent::Present(uuids) => {
                let gen = state.gen;
                for u in uuids {
                    if let Some(e) = state.by_uuid.get_mut(&u) {
                        e.2 = gen;
                    }
                }
            }
            SyncEvent::RefreshEnd { present } => {
                if present {
                    state.sweep();
                }
                if state.bulk {
                    state.bulk = false;
                    state.rebuild_orders();
                }
                let n = state.orders.first().map_or(0, Vec::len);
                drop(state);
                tracing::info!(customers = n, "customer index loaded");
                self.progress.send_modify(|p| p.loaded = true);
            }
            SyncEvent::Cookie(csns) => {
                drop(state);
                self.progress.send_modify(|p| p.csns.merge(&csns));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::query::PageLimits;

    const BASE: &str = "dc=x";

    fn entry(dn: &str, pairs: &[(&str, &str)]) -> Entry {
        let mut e = Entry { dn: dn.to_string(), ..Default::default() };
        for (k, v) in pairs {
            e.attrs.entry(crate::directory::entry::canonical_attr(k)).or_default().push(v.to_string());
        }
        e
    }

    fn customer(id: u64, reseller: u64, name: &str) -> Entry {
        entry(
            &format!("uid={id},ou=customers,uid={reseller},ou=reseller,{BASE}"),
            &[("objectClass", "sstCustomer"), ("sstIsCompany", "TRUE"), ("sstIsActive", "TRUE"), ("o", name)],
        )
    }

    fn billing(id: u64, reseller: u64, city: &str) -> Entry {
        entry(
            &format!("ou=address,uid={id},ou=customers,uid={reseller},ou=reseller,{BASE}"),
            &[("objectClass", "sstAddress"), ("l", city), ("c", "CH"), ("postalCode", "3000")],
        )
    }

    fn u(n: u8) -> Uuid {
        [n; 16]
    }

    fn ids(index: &CustomerIndex, scope: Scope, raw: &str) -> (u64, Vec<u64>) {
        let q = query::parse(Some(raw), PageLimits { default_per_page: 30, max_per_page: 100 }).unwrap();
        let page = index.query(&scope, &q, "http://gw");
        (page.total, page.items.iter().map(|i| i["id"].as_u64().unwrap()).collect())
    }

    fn loaded(events: Vec<SyncEvent>) -> CustomerIndex {
        let index = CustomerIndex::new(BASE);
        index.apply(SyncEvent::RefreshBegin { reload: true });
        for e in events {
            index.apply(e);
        }
        index.apply(SyncEvent::RefreshEnd { present: false });
        index
    }

    #[test]
    fn lists_sorts_and_pages_from_the_synchronised_entries() {
        let index = loaded(vec![
            SyncEvent::Entry { uuid: u(1), entry: customer(3, 1, "Beta AG") },
            SyncEvent::Entry { uuid: u(2), entry: billing(3, 1, "Zug") },
            SyncEvent::Entry { uuid: u(3), entry: customer(1, 1, "alpha AG") },
            SyncEvent::Entry { uuid: u(4), entry: billing(1, 1, "Bern") },
            SyncEvent::Entry { uuid: u(5), entry: customer(2, 2, "Ärzte AG") },
        ]);
        assert!(index.is_loaded());
        assert_eq!(ids(&index, Scope::Provider, ""), (3, vec![1, 2, 3]));
        assert_eq!(ids(&index, Scope::Provider, "sort=customerName"), (3, vec![1, 2, 3]));
        assert_eq!(ids(&index, Scope::Provider, "sort=-customerName"), (3, vec![3, 2, 1]));
        // Customer 2 has no billing address yet: no locality, last either way.
        assert_eq!(ids(&index, Scope::Provider, "sort=localityName"), (3, vec![1, 3, 2]));
        assert_eq!(ids(&index, Scope::Provider, "sort=-localityName"), (3, vec![3, 1, 2]));
        assert_eq!(ids(&index, Scope::Provider, "sort=-id&per_page=2&page=2"), (3, vec![1]));
        assert_eq!(ids(&index, Scope::Reseller(1), "sort=-id"), (2, vec![3, 1]));
        assert_eq!(ids(&index, Scope::Customer { reseller: 1, customer: 3 }, ""), (1, vec![3]));
        assert_eq!(ids(&index, Scope::Customer { reseller: 2, customer: 9 }, ""), (0, vec![]));
        assert_eq!(ids(&index, Scope::Provider, "localityName=b*"), (1, vec![1]));
        assert_eq!(ids(&index, Scope::Provider, "q=A%20AG"), (2, vec![1, 3]));
        assert_eq!(ids(&index, Scope::Provider, "q=zug"), (1, vec![3]));
        // Ties of the first key go by the second, then by id.
        assert_eq!(ids(&index, Scope::Provider, "sort=isCompany,-customerName"), (3, vec![3, 2, 1]));
    }

    #[test]
    fn changes_moves_and_deletes_follow_the_directory() {
        let index = loaded(vec![
            SyncEvent::Entry { uuid: u(1), entry: customer(1, 1, "One") },
            SyncEvent::Entry { uuid: u(2), entry: billing(1, 1, "Bern") },
            SyncEvent::Entry { uuid: u(3), entry: customer(2, 1, "Two") },
        ]);
        // A rename keeps the order right.
        index.apply(SyncEvent::Entry { uuid: u(3), entry: customer(2, 1, "A first") });
        assert_eq!(ids(&index, Scope::Provider, "sort=customerName"), (2, vec![2, 1]));
        // A move to another reseller (same entry, new DN).
        index.apply(SyncEvent::Entry { uuid: u(1), entry: customer(1, 7, "One") });
        assert_eq!(ids(&index, Scope::Reseller(7), ""), (1, vec![1]));
        assert_eq!(ids(&index, Scope::Provider, "localityName=Bern"), (1, vec![1]), "its billing entry stays");
        // Moved out of the customer tree (to the trash): gone, with its children.
        index.apply(SyncEvent::Entry {
            uuid: u(1),
            entry: entry(&format!("uid=1-9,ou=trash,ou=administration,{BASE}"), &[("objectClass", "sstCustomer")]),
        });
        assert_eq!(ids(&index, Scope::Provider, ""), (1, vec![2]));
        index.apply(SyncEvent::Delete { uuid: u(2) });
        index.apply(SyncEvent::Delete { uuid: u(3) });
        assert_eq!(ids(&index, Scope::Provider, ""), (0, vec![]));
        assert!(index.state.read().unwrap().by_uuid.is_empty());
    }

    #[test]
    fn a_present_phase_sweeps_what_was_not_named() {
        let index = loaded(vec![
            SyncEvent::Entry { uuid: u(1), entry: customer(1, 1, "One") },
            SyncEvent::Entry { uuid: u(2), entry: customer(2, 1, "Two") },
            SyncEvent::Entry { uuid: u(3), entry: customer(3, 1, "Three") },
        ]);
        index.apply(SyncEvent::RefreshBegin { reload: false });
        index.apply(SyncEvent::Present(vec![u(1)]));
        index.apply(SyncEvent::Entry { uuid: u(3), entry: customer(3, 1, "Drei") });
        index.apply(SyncEvent::RefreshEnd { present: true });
        assert_eq!(ids(&index, Scope::Provider, ""), (2, vec![1, 3]));
    }

    #[tokio::test]
    async fn waiting_needs_the_load_and_the_csn() {
        let index = CustomerIndex::new(BASE);
        let target = Csns::from_values(["20260101000000.000000Z#000000#000#000000"]);
        assert!(index.wait_for(&Csns::default(), Duration::from_millis(10)).await.is_err(), "not loaded");
        index.apply(SyncEvent::RefreshBegin { reload: true });
        index.apply(SyncEvent::RefreshEnd { present: false });
        assert!(index.wait_for(&target, Duration::from_millis(10)).await.is_err(), "not that far");
        index.apply(SyncEvent::Cookie(target.clone()));
        assert!(index.wait_for(&target, Duration::from_millis(10)).await.is_ok());
    }
}
