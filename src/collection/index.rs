//! The customer index: what the collection needs of every customer, in memory, kept
//! exact by the directory's content synchronisation (see `directory::sync`). A list is
//! answered from it in one pass over the customers in the order asked for, so no list
//! loads the collection from LDAP or sorts it; the directory stays the source of truth,
//! and a list first makes sure the index has seen every change the directory has
//! committed (its `contextCSN`).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use roaring::RoaringBitmap;

use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::handles::Handles;
use super::lookup::{self, Grams, Postings, Recent};
use super::order::Order;
use crate::directory::sync::{Csns, SyncEvent, SyncSink, Uuid};
use crate::directory::Entry;
use crate::feed::{Feed, Snapshot, Subject};
use crate::mapping::document;
use crate::mapping::query::{self, ListQuery};
use crate::mapping::resource::{CustomerOf, Owner, ResourceDef, Tenant};
use crate::mapping::row::{self, compare_keys, part_index, Column, PartValues, Row, SortKey};
use crate::mapping::table::{Kind, Part};
use crate::service::Scope;

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    id: u64,
    /// The reseller of the DN.
    reseller: u64,
    /// The entries (each with its entryUUID) and their values.
    row: Row,
}

impl Record {
    /// Listed once its customer entry is known.
    fn listed(&self) -> bool {
        self.row.has(Part::Root)
    }

    /// The sort key of a column (computed: keys are needed where orders change and for
    /// the few customers of a page, never for a whole pass).
    fn key(&self, col: Column) -> Option<SortKey> {
        self.row.value(col, self.id, self.reseller).map(|v| row::sort_key(col.kind(), &v))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    /// Set again when a snapshot is read (`CollectionIndex::restore`).
    #[serde(skip, default = "unset_def")]
    def: &'static ResourceDef,
    records: Vec<Option<Record>>,
    /// Whom each slot belongs to (see `document::owner`; a customer on its way to
    /// another reseller belongs to none), apart from the records so that a pass that only
    /// checks the scope stays in a small array: its tenant (0: none; no id is 0, so an
    /// owner named 0 is none too) ...
    resellers: SlotIds,
    /// ... and the customer whose users see it (0: none).
    customers: SlotIds,
    free: Vec<u32>,
    /// The slot of each id; ids held by more than one customer (written so by hand, in
    /// different resellers' subtrees) have their other slots in `shared_ids`. Both are
    /// derived from the records (`ids_of`).
    #[serde(skip)]
    by_id: Handles,
    #[serde(skip)]
    shared_ids: HashMap<u64, Vec<u32>>,
    /// Customer entries the gateway does not serve (a uid with leading zeros, say).
    unserved: std::collections::HashSet<Uuid>,
    /// The slot and part of each entry (`handle`), by its entryUUID, which the record
    /// holds. Derived from the records.
    #[serde(skip)]
    by_uuid: Handles,
    /// One per sort column (`query::sort_columns(def)`): the listed customers ascending
    /// by its key (missing keys last), ties by id.
    orders: Vec<Order>,
    /// One per filter column (`def.columns().filter`): its values dictionary-encoded,
    /// while it has few distinct values.
    dicts: Vec<Option<Dict>>,
    /// The records whose search text (`Row::search_text`, made again from the record
    /// where it is needed) holds each trigram (`q=`).
    grams: Grams,
    /// The listed records, and those of each tenant (`resellers`): a scope's records
    /// without a pass. Derived from the records (`rebuild_scopes`).
    #[serde(skip)]
    listed: RoaringBitmap,
    #[serde(skip)]
    tenants: HashMap<u64, RoaringBitmap>,
    /// The matches of recent terms of `q` that needed a check.
    #[serde(skip)]
    recent: Recent,
    /// For each filter column marked `lookup`: the records of each of its values.
    values: Vec<Option<Postings>>,
    /// The entries (`handle`) seen since the current refresh or check began, for the
    /// sweep after a present phase or a check.
    #[serde(skip)]
    seen: RoaringBitmap,
    /// Loading from nothing: orders are built once at the end of the refresh.
    #[serde(skip)]
    bulk: bool,
    /// During a check (`SyncEvent::CheckBegin`): the entries the session changed or
    /// deleted since it began, whose state the check may have read before.
    #[serde(skip)]
    checking: Option<std::collections::HashSet<Uuid>>,
}

fn unset_def() -> &'static ResourceDef {
    &crate::mapping::resources::CUSTOMERS
}

/// An entry of a record in `by_uuid` and `seen`: its slot and part.
fn handle(slot: u32, part: Part) -> u32 {
    (slot << 2) | part_index(part) as u32
}

fn unhandle(h: u32) -> (u32, Part) {
    let part = match h & 3 {
        0 => Part::Root,
        1 => Part::Billing,
        _ => Part::Shipping,
    };
    (h >> 2, part)
}

/// The entryUUID a record holds for an entry (`handle`).
fn uuid_at(records: &[Option<Record>], h: u32) -> Option<Uuid> {
    let (slot, part) = unhandle(h);
    records.get(slot as usize)?.as_ref()?.row.key(part)
}

fn id_at(records: &[Option<Record>], slot: u32) -> Option<u64> {
    records.get(slot as usize)?.as_ref().map(|r| r.id)
}

/// The slot of each id, and the other slots of ids more than one record holds.
fn ids_of(records: &[Option<Record>]) -> (Handles, HashMap<u64, Vec<u32>>) {
    let mut by_id = Handles::with_capacity(records.iter().flatten().count());
    let mut shared: HashMap<u64, Vec<u32>> = HashMap::new();
    for (slot, rec) in records.iter().enumerate() {
        let Some(rec) = rec else { continue };
        if !by_id.insert_new(&rec.id, slot as u32, |s| id_at(records, s)) {
            shared.entry(rec.id).or_default().push(slot as u32);
        }
    }
    (by_id, shared)
}

/// The handle (slot and part) of each entry by its entryUUID; an entryUUID two records
/// hold is an error.
fn uuids_of(records: &[Option<Record>]) -> Result<Handles, &'static str> {
    let entries = records.iter().flatten().map(|r| r.row.keys().count()).sum();
    let mut by_uuid = Handles::with_capacity(entries);
    for (slot, rec) in records.iter().enumerate() {
        let Some(rec) = rec else { continue };
        for (part, u) in rec.row.keys() {
            if !by_uuid.insert_new(&u, handle(slot as u32, part), |h| uuid_at(records, h)) {
                return Err("an entryUUID is held by two records");
            }
        }
    }
    Ok(by_uuid)
}

/// Where a record sits in an order: its key there, its id and reseller.
type Placed = (Option<SortKey>, u64, u64);

/// What a snapshot's structures are (`snapshot`): one of another layout is not read.
pub(crate) const LAYOUT: &str = "index layout 9: the CSNs last verified, character trigrams, texts from records, keys from records, owners apart in narrow arrays, rows in one allocation with part bits, part lengths, entryUUIDs and slot lengths, packed value lists, narrow dictionaries";

/// Above this many distinct values a column is not kept dictionary-encoded; filters on
/// it look into the records instead.
const DICT_CAP: usize = 4096;

/// Up to this many candidates from the posting lists are sorted as they are; more are
/// found by walking the sort order.
const DIRECT_MAX: usize = 2048;

/// A value's id in a dictionary (a dictionary holds at most `DICT_CAP` values, plus one
/// while it is given up).
type DictId = u16;

/// The dictionary id of a slot whose entry holds several values of the column.
const MANY: DictId = DictId::MAX;

/// The dictionary ids of the slots: a byte each while the ids fit (most columns have a
/// few values: a country, a flag, a language), two bytes once one does not.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum DictIds {
    Narrow(Vec<u8>),
    Wide(Vec<DictId>),
}

impl Default for DictIds {
    fn default() -> Self {
        DictIds::Narrow(Vec::new())
    }
}

/// An id per slot (see `State::resellers`): four bytes each while every id fits (ids of
/// resellers and customers are counted up from 1), eight once one does not.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum SlotIds {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Default for SlotIds {
    fn default() -> Self {
        SlotIds::Narrow(Vec::new())
    }
}

impl SlotIds {
    /// The id of a slot below `len()`.
    fn get(&self, slot: u32) -> u64 {
        match self {
            SlotIds::Narrow(v) => u64::from(v[slot as usize]),
            SlotIds::Wide(v) => v[slot as usize],
        }
    }

    fn len(&self) -> usize {
        match self {
            SlotIds::Narrow(v) => v.len(),
            SlotIds::Wide(v) => v.len(),
        }
    }

    fn widen_for(&mut self, id: u64) {
        if let SlotIds::Narrow(v) = self {
            if u32::try_from(id).is_err() {
                *self = SlotIds::Wide(v.iter().map(|&i| u64::from(i)).collect());
            }
        }
    }

    /// Sets a slot below `len()`.
    fn set(&mut self, slot: u32, id: u64) {
        self.widen_for(id);
        match self {
            SlotIds::Narrow(v) => v[slot as usize] = id as u32,
            SlotIds::Wide(v) => v[slot as usize] = id,
        }
    }

    fn push(&mut self, id: u64) {
        self.widen_for(id);
        match self {
            SlotIds::Narrow(v) => v.push(id as u32),
            SlotIds::Wide(v) => v.push(id),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            SlotIds::Narrow(v) => v.capacity() * 4,
            SlotIds::Wide(v) => v.capacity() * 8,
        }
    }
}

/// `MANY` in a narrow array.
const NARROW_MANY: u8 = u8::MAX;

impl DictIds {
    fn get(&self, slot: usize) -> DictId {
        match self {
            DictIds::Narrow(v) => match v.get(slot).copied().unwrap_or(0) {
                NARROW_MANY => MANY,
                id => DictId::from(id),
            },
            DictIds::Wide(v) => v.get(slot).copied().unwrap_or(0),
        }
    }

    fn len(&self) -> usize {
        match self {
            DictIds::Narrow(v) => v.len(),
            DictIds::Wide(v) => v.len(),
        }
    }

    /// Sets a slot below `len()`.
    fn set(&mut self, slot: usize, id: DictId) {
        if let DictIds::Narrow(v) = self {
            if id != MANY && id >= DictId::from(NARROW_MANY) {
                *self =
                    DictIds::Wide(v.iter().map(|&i| if i == NARROW_MANY { MANY } else { DictId::from(i) }).collect());
            }
        }
        match self {
            DictIds::Narrow(v) => v[slot] = if id == MANY { NARROW_MANY } else { id as u8 },
            DictIds::Wide(v) => v[slot] = id,
        }
    }

    fn grow_to(&mut self, len: usize) {
        match self {
            DictIds::Narrow(v) if v.len() < len => v.resize(len, 0),
            DictIds::Wide(v) if v.len() < len => v.resize(len, 0),
            _ => {}
        }
    }

    fn bytes(&self) -> usize {
        match self {
            DictIds::Narrow(v) => v.capacity(),
            DictIds::Wide(v) => v.capacity() * 2,
        }
    }
}

/// A filter column's values, folded as its matching rule compares them, one id per
/// customer (0: none), so that a filter is decided once per distinct value and then
/// checked for every customer in a small array.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Dict {
    ids: DictIds,
    values: Vec<Box<str>>,
    lookup: HashMap<Box<str>, DictId>,
    refs: Vec<u32>,
    free: Vec<DictId>,
    /// How many slots are `MANY`.
    many: usize,
}

impl Dict {
    fn set(&mut self, slot: usize, value: Option<String>) {
        // The array reaches only as far as the last slot with a value: most filter
        // columns are empty for most elements, and one empty everywhere holds nothing.
        if value.is_none() && self.ids.len() <= slot {
            return;
        }
        self.ids.grow_to(slot + 1);
        let old = self.ids.get(slot);
        let new = match value {
            None => 0,
            Some(v) => match self.lookup.get(v.as_str()) {
                Some(&id) => id,
                None => {
                    let v: Box<str> = v.into();
                    let id = match self.free.pop() {
                        Some(id) => {
                            self.values[id as usize - 1] = v.clone();
                            id
                        }
                        None => {
                            self.values.push(v.clone());
                            self.refs.push(0);
                            DictId::try_from(self.values.len()).expect("a dictionary of at most DICT_CAP values")
                        }
                    };
                    self.lookup.insert(v, id);
                    id
                }
            },
        };
        if new != 0 {
            self.refs[new as usize - 1] += 1;
        }
        if old == MANY {
            self.many -= 1;
        }
        if old != 0 && old != MANY {
            let r = &mut self.refs[old as usize - 1];
            *r -= 1;
            if *r == 0 {
                self.lookup.remove(&self.values[old as usize - 1]);
                self.free.push(old);
            }
        }
        self.ids.set(slot, new);
    }

    /// Marks a slot whose entry holds several values: filters look into its record.
    fn set_many(&mut self, slot: usize) {
        self.set(slot, None);
        self.ids.grow_to(slot + 1);
        self.ids.set(slot, MANY);
        self.many += 1;
    }

    fn distinct(&self) -> usize {
        self.lookup.len()
    }
}

fn dictionary_column(col: Column) -> bool {
    // Ids are unique and the reseller has its own array.
    !matches!(col.kind(), Kind::Id | Kind::ParentRef)
}

type IdAndReseller = (u64, u64);

/// Orders by key, then id, then reseller (two customers share an id only when an admin
/// wrote them so).
fn cmp_keyed(a: (&Option<SortKey>, u64, u64), b: (&Option<SortKey>, u64, u64)) -> Ordering {
    compare_keys(a.0.as_ref(), b.0.as_ref(), false).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
}

impl State {
    fn new(def: &'static ResourceDef) -> State {
        State {
            def,
            records: Vec::new(),
            resellers: SlotIds::default(),
            customers: SlotIds::default(),
            free: Vec::new(),
            by_id: Handles::default(),
            shared_ids: HashMap::new(),
            unserved: Default::default(),
            by_uuid: Handles::default(),
            orders: vec![Order::default(); query::sort_columns(def).len()],
            dicts: def.columns().filter.iter().map(|c| dictionary_column(*c).then(Dict::default)).collect(),
            grams: Grams::default(),
            listed: RoaringBitmap::new(),
            tenants: HashMap::new(),
            recent: Recent::default(),
            values: def.columns().filter.iter().map(|c| c.field.lookup.then(Postings::default)).collect(),
            seen: RoaringBitmap::new(),
            bulk: false,
            checking: None,
        }
    }

    /// The sort column of order `c`.
    fn column(&self, c: usize) -> Column {
        query::sort_columns(self.def)[c]
    }

    fn owner(&self, slot: u32) -> Owner {
        let held = |v: u64| (v != 0).then_some(v);
        Owner { tenant: held(self.resellers.get(slot)), customer: held(self.customers.get(slot)) }
    }

    /// Whether a slot's owner is `owner` (see `resellers`).
    fn owned_by(&self, slot: u32, owner: Owner) -> bool {
        (self.resellers.get(slot), self.customers.get(slot)) == (owner.tenant.unwrap_or(0), owner.customer.unwrap_or(0))
    }

    fn rec(&self, slot: u32) -> &Record {
        self.records[slot as usize].as_ref().expect("a live slot")
    }

    /// Where a record with this key, id and reseller sits (or would sit) in order `c`.
    fn position(&self, c: usize, key: &Option<SortKey>, id: u64, reseller: u64) -> Result<usize, usize> {
        let col = self.column(c);
        self.orders[c].search(|s| {
            let r = self.rec(s);
            cmp_keyed((&r.key(col), r.id, r.reseller), (key, id, reseller))
        })
    }

    /// Every slot of an id (more than one only for ids shared by hand).
    fn slots_of(&self, id: u64) -> impl Iterator<Item = u32> + '_ {
        let first = self.by_id.get(&id, |s| id_at(&self.records, s));
        first.into_iter().chain(self.shared_ids.get(&id).into_iter().flatten().copied())
    }

    /// The slot and part of an entry the records hold.
    fn entry_of(&self, uuid: &Uuid) -> Option<(u32, Part)> {
        self.by_uuid.get(uuid, |h| uuid_at(&self.records, h)).map(unhandle)
    }

    /// Finds the entry `uuid` at `slot` and `part`, which its record holds now, and
    /// counts it as seen.
    fn put_entry(&mut self, uuid: &Uuid, slot: u32, part: Part) {
        let h = handle(slot, part);
        self.by_uuid.insert(uuid, h, |h| uuid_at(&self.records, h));
        self.seen.insert(h);
    }

    /// Forgets where an entry is (while its record still holds it).
    fn forget_entry(&mut self, uuid: &Uuid) -> Option<(u32, Part)> {
        self.by_uuid.remove(uuid, |h| uuid_at(&self.records, h)).map(unhandle)
    }

    /// The id and entryUUID tables from the records (after a snapshot is read).
    /// Derives what a snapshot does not hold (the scopes and the two key tables) and
    /// checks what it does: the two tables are built on threads of their own beside the
    /// check, as a restart waits for all of it.
    fn rebuild_and_check(&mut self) -> Result<(), &'static str> {
        self.rebuild_scopes();
        let records = &self.records;
        let (ids, uuids, sound) = std::thread::scope(|s| {
            let ids = s.spawn(|| ids_of(records));
            let uuids = s.spawn(|| uuids_of(records));
            let sound = self.soundness();
            (ids.join(), uuids.join(), sound)
        });
        sound?;
        let ((by_id, shared_ids), by_uuid) =
            (ids.map_err(|_| "the ids do not read")?, uuids.map_err(|_| "the entryUUIDs do not read")??);
        self.by_id = by_id;
        self.shared_ids = shared_ids;
        self.by_uuid = by_uuid;
        Ok(())
    }

    fn same_at(&self, c: usize, i: usize) -> bool {
        let o = &self.orders[c];
        i > 0 && i < o.len() && {
            let col = self.column(c);
            self.rec(o.get(i - 1)).key(col) == self.rec(o.get(i)).key(col)
        }
    }

    fn unlist(&mut self, slot: u32) {
        if self.bulk || !self.rec(slot).listed() {
            return;
        }
        for c in 0..self.orders.len() {
            let place = self.place_in(c, slot);
            self.take_out(c, slot, &place);
        }
    }

    /// A listed record's place in order `c`: its key, id and reseller.
    fn place_in(&self, c: usize, slot: u32) -> Placed {
        let rec = self.rec(slot);
        (rec.key(self.column(c)), rec.id, rec.reseller)
    }

    /// Takes `slot` out of order `c`, where it sits at `place` (which its record may no
    /// longer say: the record is compared at `place`).
    fn take_out(&mut self, c: usize, slot: u32, place: &Placed) {
        let col = self.column(c);
        let found = self.orders[c].search(|s| {
            if s == slot {
                return Ordering::Equal;
            }
            let r = self.rec(s);
            cmp_keyed((&r.key(col), r.id, r.reseller), (&place.0, place.1, place.2))
        });
        if let Ok(i) = found {
            self.orders[c].remove(i);
            if i < self.orders[c].len() {
                let same = self.same_at(c, i);
                self.orders[c].set_same(i, same);
            }
        }
    }

    /// Puts a listed record into order `c` at `place`, its place there.
    fn put_in(&mut self, c: usize, slot: u32, place: &Placed) {
        let i = self.position(c, &place.0, place.1, place.2).unwrap_or_else(|i| i);
        self.orders[c].insert(i, slot, false);
        let same = self.same_at(c, i);
        self.orders[c].set_same(i, same);
        if i + 1 < self.orders[c].len() {
            let same = self.same_at(c, i + 1);
            self.orders[c].set_same(i + 1, same);
        }
    }

    /// The posting keys of a record: its search text's trigrams, and the keys of its
    /// values in each lookup column.
    fn keys_of(&self, slot: u32) -> (Vec<lookup::Gram>, Vec<(usize, u64)>) {
        let rec = self.rec(slot);
        let mut values = Vec::new();
        for (c, col) in self.def.columns().filter.iter().enumerate() {
            if self.values[c].is_some() {
                for v in rec.row.values(*col, rec.id, rec.reseller) {
                    values.push((c, lookup::value_key(&row::fold(col.kind(), &v))));
                }
            }
        }
        (lookup::trigrams(&rec.row.search_text(self.def, rec.id)), values)
    }

    /// Takes a record out of the posting lists (before it changes or goes). During a
    /// load from nothing the lists are built once at its end (`rebuild_postings`).
    fn unindex(&mut self, slot: u32) {
        if self.bulk {
            return;
        }
        let (grams, values) = self.keys_of(slot);
        for g in grams {
            self.grams.remove(g, slot);
        }
        for (c, k) in values {
            if let Some(p) = self.values[c].as_mut() {
                p.remove(k, slot);
            }
        }
    }

    /// Puts a record into the posting lists.
    fn index(&mut self, slot: u32) {
        if self.bulk {
            return;
        }
        self.post(slot);
    }

    fn post(&mut self, slot: u32) {
        let (grams, values) = self.keys_of(slot);
        for g in grams {
            self.grams.add(g, slot);
        }
        for (c, k) in values {
            if let Some(p) = self.values[c].as_mut() {
                p.add(k, slot);
            }
        }
    }

    /// Changes a part of a record (and its owner, if given), keeping the orders,
    /// dictionaries and posting lists right.
    fn modify(&mut self, slot: u32, part: Part, owner: Option<Owner>, f: impl FnOnce(&mut Record)) {
        // Each order moves the record only if its place there changes.
        let places: Vec<Option<Placed>> = (0..self.orders.len())
            .map(|c| (!self.bulk && self.rec(slot).listed()).then(|| self.place_in(c, slot)))
            .collect();
        self.unindex(slot);
        let was = (self.rec(slot).listed(), self.resellers.get(slot));
        let owner = owner.unwrap_or_else(|| self.owner(slot));
        let rec = self.records[slot as usize].as_mut().expect("a live slot");
        f(rec);
        // The dictionaries hold listed customers only: one that becomes listed or stops
        // being listed is encoded whole.
        let part = (rec.listed() == was.0).then_some(part);
        let now = (rec.listed(), owner.tenant.unwrap_or(0));
        if !self.recent.is_empty() {
            let text = now.0.then(|| rec.row.search_text(self.def, rec.id));
            self.recent.recheck(slot, text.as_deref());
        }
        self.resellers.set(slot, now.1);
        self.customers.set(slot, owner.customer.unwrap_or(0));
        self.rescope(slot, was, now);
        self.index(slot);
        if !self.bulk {
            for (c, old) in places.iter().enumerate() {
                let new = now.0.then(|| self.place_in(c, slot));
                if *old == new {
                    continue;
                }
                if let Some(old) = old {
                    self.take_out(c, slot, old);
                }
                if let Some(new) = &new {
                    self.put_in(c, slot, new);
                }
            }
        }
        self.encode(slot, part);
    }

    /// Moves a slot between the scope bitmaps: from where it was (listed or not, of which
    /// tenant) to where it is.
    fn rescope(&mut self, slot: u32, was: (bool, u64), now: (bool, u64)) {
        if was == now {
            return;
        }
        if was.0 {
            self.listed.remove(slot);
            if let Some(b) = self.tenants.get_mut(&was.1) {
                b.remove(slot);
                if b.is_empty() {
                    self.tenants.remove(&was.1);
                }
            }
        }
        if now.0 {
            self.listed.insert(slot);
            self.tenants.entry(now.1).or_default().insert(slot);
        }
    }

    /// About how many bytes each structure takes (the heap's own overhead per allocation
    /// left out), for the log line of a load.
    fn footprint(&self) -> Vec<(&'static str, usize)> {
        use lookup::map_bytes;
        let parts: usize = self.records.iter().flatten().map(|r| r.row.bytes()).sum();
        let dicts: usize = self
            .dicts
            .iter()
            .flatten()
            .map(|d| {
                d.ids.bytes()
                    + d.values.capacity() * 16
                    // Each value twice: in `values` and as a key of `lookup`.
                    + 2 * d.values.iter().map(|v| v.len()).sum::<usize>()
                    + map_bytes(&d.lookup)
                    + d.refs.capacity() * 4
            })
            .sum();
        let scopes = self.listed.serialized_size()
            + map_bytes(&self.tenants)
            + self.tenants.values().map(|b| b.serialized_size()).sum::<usize>();
        vec![
            ("records", self.records.capacity() * std::mem::size_of::<Option<Record>>()),
            ("values", parts),
            (
                "ids",
                self.by_id.bytes()
                    + self.by_uuid.bytes()
                    + map_bytes(&self.shared_ids)
                    + self.resellers.bytes()
                    + self.customers.bytes(),
            ),
            ("orders", self.orders.iter().map(Order::bytes).sum()),
            ("dictionaries", dicts),
            ("trigrams", self.grams.bytes()),
            ("value lists", self.values.iter().flatten().map(Postings::bytes).sum()),
            ("scopes", scopes),
        ]
    }

    /// The scope bitmaps from the records (after a snapshot is read).
    fn rebuild_scopes(&mut self) {
        self.listed = RoaringBitmap::new();
        self.tenants = HashMap::new();
        for slot in 0..self.records.len() as u32 {
            if self.records[slot as usize].as_ref().is_some_and(Record::listed) {
                self.rescope(slot, (false, 0), (true, self.resellers.get(slot)));
            }
        }
    }

    /// The listed records of a scope, where bitmaps hold them: all, or a tenant's.
    fn scope_slots(&self, scope: &Scope) -> Option<&RoaringBitmap> {
        static NONE: std::sync::LazyLock<RoaringBitmap> = std::sync::LazyLock::new(RoaringBitmap::new);
        match scope {
            Scope::Provider => Some(&self.listed),
            Scope::Reseller(r) => Some(self.tenants.get(r).unwrap_or(&NONE)),
            Scope::Customer { .. } => None,
        }
    }

    /// Brings the dictionaries up to date for a slot: the columns of `part` (and the
    /// customer name, which depends on two parts), or all columns for `None`. A slot
    /// that is not listed has no values there, so that a value's count of slots is its
    /// count of listed customers.
    fn encode(&mut self, slot: u32, part: Option<Part>) {
        let rec = self.records[slot as usize].as_ref().filter(|r| r.listed());
        for (c, col) in self.def.columns().filter.iter().enumerate() {
            let touched = part.is_none_or(|p| p == col.part || col.kind() == Kind::DisplayName);
            let Some(dict) = self.dicts[c].as_mut().filter(|_| touched) else { continue };
            let values = rec.map(|r| r.row.values(*col, r.id, r.reseller)).unwrap_or_default();
            if values.len() > 1 {
                dict.set_many(slot as usize);
            } else {
                dict.set(slot as usize, values.first().map(|v| row::fold(col.kind(), v)));
            }
            if dict.distinct() > DICT_CAP {
                self.dicts[c] = None;
            }
        }
    }

    fn slot_for(&mut self, id: u64, reseller: u64) -> u32 {
        if let Some(slot) = self.slots_of(id).find(|&s| self.rec(s).reseller == reseller) {
            return slot;
        }
        let rec = Record { id, reseller, row: Row::default() };
        let slot = match self.free.pop() {
            Some(s) => {
                self.records[s as usize] = Some(rec);
                self.resellers.set(s, 0);
                self.customers.set(s, 0);
                s
            }
            None => {
                self.records.push(Some(rec));
                self.resellers.push(0);
                self.customers.push(0);
                (self.records.len() - 1) as u32
            }
        };
        if self.by_id.get(&id, |s| id_at(&self.records, s)).is_some() {
            tracing::warn!(id, reseller, "two customers have the same id; the provider's requests for it answer 409");
            self.shared_ids.entry(id).or_default().push(slot);
        } else {
            self.by_id.insert(&id, slot, |s| id_at(&self.records, s));
        }
        slot
    }

    fn drop_record(&mut self, slot: u32) {
        self.unlist(slot);
        self.unindex(slot);
        if let Some(rec) = self.records[slot as usize].as_ref() {
            let (id, listed) = (rec.id, rec.listed());
            let uuids: Vec<(Part, Uuid)> = rec.row.keys().collect();
            // The tables find their keys in the record: out of them before it goes.
            for (_, u) in uuids {
                self.forget_entry(&u);
            }
            self.forget_slot(id, slot);
            self.records[slot as usize] = None;
            self.encode(slot, None);
            self.rescope(slot, (listed, self.resellers.get(slot)), (false, 0));
            self.recent.recheck(slot, None);
            self.resellers.set(slot, 0);
            self.customers.set(slot, 0);
            self.free.push(slot);
        }
    }

    fn forget_slot(&mut self, id: u64, slot: u32) {
        let Some(others) = self.shared_ids.get_mut(&id) else {
            self.by_id.remove(&id, |s| id_at(&self.records, s));
            return;
        };
        if self.by_id.get(&id, |s| id_at(&self.records, s)) == Some(slot) {
            let next = others.pop().expect("shared ids have other slots");
            self.by_id.insert(&id, next, |s| id_at(&self.records, s));
        } else {
            others.retain(|&s| s != slot);
        }
        if others.is_empty() {
            self.shared_ids.remove(&id);
        }
    }

    /// Forgets an entry: its part of the record, or the whole record for the customer
    /// entry (its children went with it).
    fn detach(&mut self, uuid: &Uuid) {
        self.unserved.remove(uuid);
        let Some((slot, part)) = self.forget_entry(uuid) else { return };
        if part == Part::Root {
            self.drop_record(slot);
            return;
        }
        self.modify(slot, part, None, |rec| {
            rec.row.set(part, None);
        });
        if self.rec(slot).row.is_empty() {
            self.drop_record(slot);
        }
    }

    fn upsert(&mut self, base: &str, uuid: Uuid, entry: &Entry) {
        let def = self.def;
        let target = match def.place(&entry.dn, base) {
            Some(p) if p.part != Part::Root || entry.has_object_class(def.structural) => {
                // The reseller the DN gives it to (see `Tenant`).
                let reseller = match def.tenant {
                    Tenant::Parent => p.parent,
                    Tenant::Own => p.id,
                    Tenant::Attr => 0,
                };
                Some((p.id, reseller, p.part))
            }
            _ => None,
        };
        if target.is_none() && entry.has_object_class(def.structural) && def.has_root_shape(&entry.dn, base) {
            if self.unserved.insert(uuid) {
                tracing::warn!(resource = def.name, dn = %entry.dn, "an entry whose DN the gateway does not serve (its uid must be a plain number without leading zeros) is not listed");
            }
        } else {
            self.unserved.remove(&uuid);
        }
        // A known entry keeps its record while it stays the same part of the same id:
        // a move to another reseller renames the customer and its children together.
        let mut known = None;
        if let Some((slot, part)) = self.entry_of(&uuid) {
            let here = (self.rec(slot).id, part);
            if target.map(|(id, _, p)| (id, p)) != Some(here) {
                self.detach(&uuid);
            } else {
                known = Some(slot);
            }
        }
        let Some((id, reseller, part)) = target else { return };
        let slot = known.unwrap_or_else(|| self.slot_for(id, reseller));
        if let Some(old) = self.rec(slot).row.key(part).filter(|old| *old != uuid) {
            self.forget_entry(&old);
        }
        let values = PartValues::from_entry(def, part, entry);
        // The same entry again (a check, a refresh): nothing to reorder or reindex.
        let rec = self.rec(slot);
        let owner = (part == Part::Root).then(|| document::owner(def, rec.id, reseller, entry));
        let unchanged = rec.row.key(part) == Some(uuid)
            && rec.row.part(part) == Some(values.view())
            && owner.is_none_or(|o| rec.reseller == reseller && self.owned_by(slot, o));
        if unchanged {
            self.put_entry(&uuid, slot, part);
            return;
        }
        self.modify(slot, part, owner, |rec| {
            rec.row.set(part, Some((&uuid, &values)));
            if part == Part::Root {
                rec.reseller = reseller;
            }
        });
        self.put_entry(&uuid, slot, part);
    }

    /// The posting lists of every record, at the end of a load (slots ascending, so
    /// every list is built by pushes).
    fn rebuild_postings(&mut self) {
        self.grams = Grams::default();
        for v in self.values.iter_mut().flatten() {
            *v = Postings::default();
        }
        for slot in 0..self.records.len() as u32 {
            if self.records[slot as usize].is_some() {
                self.post(slot);
            }
        }
        self.grams.shrink();
        for p in self.values.iter_mut().flatten() {
            p.shrink();
        }
    }

    /// Slots in the order of `keys` (each column ascending or descending, missing
    /// values last), ties by id and reseller.
    fn sorted_by(&self, slots: &[u32], keys: &[(Column, bool)]) -> Vec<u32> {
        let mut keyed: Vec<(Vec<Option<SortKey>>, IdAndReseller, u32)> = slots
            .iter()
            .map(|&s| {
                let r = self.rec(s);
                (keys.iter().map(|(col, _)| r.key(*col)).collect(), (r.id, r.reseller), s)
            })
            .collect();
        keyed.sort_by(|a, b| {
            keys.iter()
                .enumerate()
                .map(|(k, (_, desc))| compare_keys(a.0[k].as_ref(), b.0[k].as_ref(), *desc))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        keyed.into_iter().map(|k| k.2).collect()
    }

    fn rebuild_orders(&mut self) {
        let listed: Vec<u32> = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_some_and(Record::listed))
            .map(|(i, _)| i as u32)
            .collect();
        self.orders = (0..query::sort_columns(self.def).len())
            .map(|c| {
                let col = self.column(c);
                let mut keyed: Vec<(Option<SortKey>, u64, u64, u32)> = listed
                    .iter()
                    .map(|&s| {
                        let r = self.rec(s);
                        (r.key(col), r.id, r.reseller, s)
                    })
                    .collect();
                keyed.sort_unstable_by(|a, b| cmp_keyed((&a.0, a.1, a.2), (&b.0, b.1, b.2)));
                let same = (0..keyed.len()).map(|i| i > 0 && keyed[i - 1].0 == keyed[i].0).collect();
                Order::from_sorted(keyed.into_iter().map(|k| k.3).collect(), same)
            })
            .collect();
    }

    /// The only records that can match a query, where bitmaps and posting lists tell:
    /// those of the scope that hold the value of each exact filter on a lookup column
    /// and every trigram of `q`; and whether all of them match (nothing is left to
    /// check: no filter, and `q` of one trigram or none).
    fn candidates(&self, scope: &Scope, q: &ListQuery) -> Option<(RoaringBitmap, bool)> {
        let mut lists: Vec<&[u32]> = Vec::new();
        for f in &q.filters {
            let row::Pattern::Equals(v) = &f.pattern else { continue };
            let c = self.def.columns().filter.iter().position(|x| *x == f.column);
            if let Some(p) = c.and_then(|c| self.values[c].as_ref()) {
                lists.push(p.get(lookup::value_key(v)));
            }
        }
        let mut found = (!lists.is_empty())
            .then(|| RoaringBitmap::from_sorted_iter(lookup::intersect(lists)).expect("posting lists ascend"));
        let scoped = self.scope_slots(scope);
        // Whether q is decided by the bitmap: a term of one trigram, a recent one, or one
        // whose check over every listed record is that of the scope or costs not much
        // more than it (then it becomes a recent one).
        let mut q_decided = true;
        if let Some(term) = q.q.as_deref() {
            let grams = lookup::trigrams(term);
            if grams.is_empty() {
                q_decided = false;
            } else {
                let with = match (lookup::whole_gram(term), self.recent.get(term)) {
                    (Some(_), _) => self.grams.all_of(&grams),
                    (None, Some(known)) => known,
                    (None, None) => {
                        let with = self.grams.all_of(&grams);
                        let wide = |s: &RoaringBitmap| {
                            *scope == Scope::Provider || with.intersection_len(s) > DIRECT_MAX as u64
                        };
                        if scoped.is_some_and(wide) {
                            let search = row::SearchTerm::new(self.def, term);
                            let mut text = String::new();
                            let holds = |s: &u32| {
                                let rec = self.rec(*s);
                                rec.row.search_text_holds(self.def, rec.id, &search, &mut text)
                            };
                            let known = RoaringBitmap::from_sorted_iter((with & &self.listed).iter().filter(holds))
                                .expect("bitmaps ascend");
                            self.recent.put(term, known.clone());
                            known
                        } else {
                            q_decided = false;
                            with
                        }
                    }
                };
                found = Some(match found {
                    Some(f) => f & with,
                    None => with,
                });
            }
        }
        let found = match (found, scoped) {
            (Some(f), Some(s)) => f & s,
            (None, Some(s)) if *scope != Scope::Provider => s.clone(),
            (f, _) => f?,
        };
        let exact = scoped.is_some() && q.filters.is_empty() && q_decided;
        Some((found, exact))
    }

    /// The ids of the entries a sweep would forget.
    fn unswept(&self) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.by_uuid.iter().filter(|h| !self.seen.contains(*h)).map(|h| self.rec(h >> 2).id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// An element as the change feed compares it (none while it is not listed).
    fn snapshot(&self, id: u64, public_url: &str) -> Option<Snapshot> {
        let slot = self.slots_of(id).find(|&s| self.rec(s).listed())?;
        let rec = self.rec(slot);
        Some(Snapshot {
            owner: self.owner(slot),
            doc: row::element(self.def, rec.id, rec.reseller, &rec.row, public_url),
        })
    }

    /// Whether a state read from a snapshot holds together, so that no later change or
    /// query can meet a slot that is not there.
    fn soundness(&self) -> Result<(), &'static str> {
        let n = self.records.len();
        let live = |s: u32| self.records.get(s as usize).is_some_and(Option::is_some);
        let listed = |s: u32| self.records.get(s as usize).is_some_and(|r| r.as_ref().is_some_and(Record::listed));
        if self.resellers.len() != n || self.customers.len() != n {
            return Err("the tenant arrays do not match the records");
        }
        let filter = &self.def.columns().filter;
        if self.orders.len() != query::sort_columns(self.def).len()
            || self.dicts.len() != filter.len()
            || self.values.len() != filter.len()
        {
            return Err("the columns are not those of this resource");
        }
        for (c, col) in filter.iter().enumerate() {
            if self.values[c].is_some() != col.field.lookup || (self.dicts[c].is_some() && !dictionary_column(*col)) {
                return Err("the columns are not those of this resource");
            }
        }
        let count = (0..n as u32).filter(|&s| listed(s)).count();
        for o in &self.orders {
            if !o.is_sound(n) || o.len() != count || o.iter_from(0).any(|(s, _)| !listed(s)) {
                return Err("an order does not hold the listed records");
            }
        }
        if self.free.iter().any(|&s| live(s) || s as usize >= n) {
            return Err("a free slot is in use");
        }
        for d in self.dicts.iter().flatten() {
            let ok = d.ids.len() <= n
                && d.refs.len() == d.values.len()
                && (0..d.ids.len()).all(|s| d.ids.get(s) == MANY || d.ids.get(s) as usize <= d.values.len())
                && d.lookup.values().all(|&i| i >= 1 && i as usize <= d.values.len());
            if !ok {
                return Err("a dictionary names values it does not hold");
            }
        }
        if !self.grams.is_sound(n) || !self.values.iter().flatten().all(|p| p.is_sound(n)) {
            return Err("a posting list names a slot that is not there");
        }
        Ok(())
    }

    fn sweep(&mut self) {
        let gone: Vec<Uuid> =
            self.by_uuid.iter().filter(|h| !self.seen.contains(*h)).filter_map(|h| uuid_at(&self.records, h)).collect();
        for u in gone {
            self.detach(&u);
        }
    }
}

/// How far the index has got.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Loaded: the first refresh is complete, or the index was restored from a snapshot.
    loaded: bool,
    /// A refresh of the synchronisation is under way (its end brings the next cookie).
    refreshing: bool,
    csns: Csns,
}

/// The answer to a list query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub total: u64,
    pub items: Vec<Value>,
    /// The change feed's position at the moment of the page: it holds every change up
    /// to there and none after.
    pub position: Option<crate::feed::Position>,
}

pub struct CollectionIndex {
    def: &'static ResourceDef,
    base: String,
    state: RwLock<State>,
    progress: watch::Sender<Progress>,
    restart: Arc<Notify>,
    /// Where the changes go once the index is loaded.
    feed: std::sync::OnceLock<Arc<Feed>>,
    /// What it holds came from a snapshot (until a reload from nothing).
    restored: std::sync::atomic::AtomicBool,
}

/// The index is not (yet) as far as the directory.
#[derive(Debug, thiserror::Error)]
#[error("the customer index has not caught up with the directory")]
pub struct Behind;

impl CollectionIndex {
    pub fn new(def: &'static ResourceDef, base: &str) -> Self {
        Self::sharing(def, base, Arc::new(Notify::new()))
    }

    /// An index whose synchronisation is restarted through `restart`, which it shares
    /// with the indexes the same session feeds.
    pub fn sharing(def: &'static ResourceDef, base: &str, restart: Arc<Notify>) -> Self {
        CollectionIndex {
            def,
            base: base.to_string(),
            state: RwLock::new(State::new(def)),
            progress: watch::channel(Progress::default()).0,
            restart,
            feed: Default::default(),
            restored: Default::default(),
        }
    }

    /// Hands every change of an element after the load to `feed` (once; later calls
    /// keep the first).
    pub fn feed_into(&self, feed: Arc<Feed>) {
        let _ = self.feed.set(feed);
    }

    pub fn def(&self) -> &'static ResourceDef {
        self.def
    }

    /// Writes what the index holds (for `snapshot::save`); `false`, with nothing written,
    /// while it is not loaded.
    pub(crate) fn save(&self, out: &mut impl std::io::Write) -> Result<bool, String> {
        let state = self.state.read().map_err(|_| "the index is poisoned".to_string())?;
        if !self.is_loaded() || state.bulk {
            return Ok(false);
        }
        postcard::to_io(&*state, out).map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Forgets everything (a snapshot that did not fit).
    pub(crate) fn clear(&self) {
        if let Ok(mut state) = self.state.write() {
            *state = State::new(self.def);
        }
        self.progress.send_modify(|p| *p = Progress::default());
        self.restored.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes what `save` wrote from the front of `bytes`, if it holds together; the rest
    /// of `bytes` after it. It holds every change up to `at`, the snapshot's cookie (a
    /// resume that brings nothing new sends no other). It serves once `serve_restored`
    /// is called, when every index of the snapshot is restored.
    pub(crate) fn restore<'a>(&self, bytes: &'a [u8], at: &Csns) -> Result<&'a [u8], String> {
        let t = std::time::Instant::now();
        let (mut state, rest): (State, &[u8]) = postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
        let decoded = t.elapsed();
        state.def = self.def;
        state.rebuild_and_check().map_err(|e| format!("{}: {e}", self.def.name))?;
        tracing::debug!(resource = self.def.name, decode = ?decoded, keys_and_check = ?(t.elapsed() - decoded), "index restored");
        *self.state.write().map_err(|_| "the index is poisoned".to_string())? = state;
        self.progress.send_modify(|p| *p = Progress { csns: at.clone(), ..Progress::default() });
        self.restored.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(rest)
    }

    /// A restored index serves at once: it holds every change up to its cookie, so a
    /// list whose `contextCSN` that covers is exact now, and one the directory has gone
    /// beyond waits for the resume as any list waits for a change (the resume can take
    /// long: a present phase naming every entry when slapd lost its session log).
    pub(crate) fn serve_restored(&self) {
        if self.restored() {
            self.progress.send_modify(|p| p.loaded = true);
        }
    }

    /// Whether what the index holds came from a snapshot (see `snapshot::load`).
    pub fn restored(&self) -> bool {
        self.restored.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_loaded(&self) -> bool {
        self.progress.borrow().loaded
    }

    /// Waits until the index has seen everything up to `target`; if it does not get
    /// there in time, the synchronisation is restarted (unless a refresh is under way:
    /// a new session would only begin it again) and the caller told.
    pub async fn wait_for(&self, target: &Csns, timeout: Duration) -> Result<(), Behind> {
        let mut rx = self.progress.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| p.loaded && p.csns.covers(target))).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let stuck = {
                    let p = self.progress.borrow();
                    p.loaded && !p.refreshing
                };
                if stuck {
                    tracing::warn!(?target, "the customer index fell behind the directory; restarting synchronisation");
                    self.restart.notify_one();
                }
                Err(Behind)
            }
        }
    }

    /// The parents an id is listed under, as far as the index knows (more than one only
    /// for an id an admin gave to two customers); for a resource without a parent its
    /// own id, which its DN template does not use.
    pub fn parents_of(&self, id: u64) -> Vec<u64> {
        let Ok(state) = self.state.read() else { return Vec::new() };
        state.slots_of(id).map(|s| state.rec(s)).filter(|r| r.listed()).map(|r| r.reseller).collect()
    }

    /// The id of the element an entry (by its entryUUID) belongs to, if it is indexed.
    pub fn id_of(&self, uuid: &Uuid) -> Option<u64> {
        let state = self.state.read().ok()?;
        let (slot, _) = state.entry_of(uuid)?;
        state.records.get(slot as usize)?.as_ref().map(|r| r.id)
    }

    /// Whether an entry at `dn` has the place of one of this resource's and the index
    /// does not hold it (by its entryUUID).
    pub fn lacks(&self, uuid: &Uuid, dn: &str) -> bool {
        let held = self.state.read().map(|s| s.entry_of(uuid).is_some()).unwrap_or(false);
        !held && self.def.place(dn, &self.base).is_some()
    }

    /// How many ids more than one customer has (each is logged when it appears).
    pub fn shared_ids(&self) -> usize {
        self.state.read().map(|s| s.shared_ids.len()).unwrap_or(0)
    }

    /// How many customer entries are not listed since the gateway does not serve their DN.
    pub fn unserved(&self) -> usize {
        self.state.read().map(|s| s.unserved.len()).unwrap_or(0)
    }

    /// Number of customers listed (for metrics and tests).
    pub fn len(&self) -> usize {
        self.state.read().map(|s| s.orders.first().map_or(0, Order::len)).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers a list query within the caller's scope.
    pub fn query(&self, scope: &Scope, q: &ListQuery, public_url: &str) -> Result<Page, Behind> {
        // A writer that panicked left the index in an unknown state: no answer rather
        // than a wrong one.
        let Ok(state) = self.state.read() else { return Err(Behind) };
        // Read under the lock the changes are recorded under.
        let position = self.feed.get().map(|f| f.position());
        let sorts = query::sort_columns(self.def);
        let (primary, descending) = match q.sort.first() {
            Some(s) => (s.column, s.descending),
            None => (sorts.iter().copied().find(|c| c.kind() == Kind::Id).expect("id sorts"), false),
        };
        let c = sorts.iter().position(|x| *x == primary).expect("a sort column");
        let secondary: Vec<(Column, bool)> = q.sort.iter().skip(1).map(|s| (s.column, s.descending)).collect();
        let matcher = Matcher::new(&state, scope, q);
        let offset = q.offset();
        let end = offset.saturating_add(q.per_page);

        // A customer user's scope is one customer: no need to walk the others.
        let own: Order;
        let order = match scope {
            Scope::Customer { customer, .. } if self.def.customer_of == CustomerOf::Itself => {
                let slots: Vec<u32> = state.slots_of(*customer).filter(|s| state.rec(*s).listed()).collect();
                own = Order::from_sorted(state.sorted_by(&slots, &[(primary, false)]), vec![false; slots.len()]);
                &own
            }
            _ => &state.orders[c],
        };
        // The walk goes over runs of equal primary keys, in the order asked for:
        // ascending as kept; descending from the top of the present keys, then the
        // missing ones (last either way).
        let n = order.len();
        let missing_from = order.partition_point(|s| state.rec(s).key(primary).is_some());

        let mut scratch = String::new();
        // Where bitmaps and posting lists narrow the query down (a reseller's scope, an
        // exact filter on a lookup column, the trigrams of q), only their records are
        // tested, or none when they are the answer; else, where filters and q look into
        // the records, all of them. Then the sort order is walked.
        let (candidates, exact) = match state.candidates(scope, q) {
            Some((c, exact)) => (Some(c), exact),
            None => (None, false),
        };
        let listed = |s: u32| state.records.get(s as usize).is_some_and(|r| r.as_ref().is_some_and(Record::listed));
        // A scope's bitmap holds listed records only.
        let scoped = state.scope_slots(scope).is_some();
        let check =
            |s: u32, scratch: &mut String| exact || ((scoped || listed(s)) && matcher.matches(&state, s, scratch));
        // Few of them: sorted as they are, without walking the order.
        if let Some(slots) = candidates.as_ref().filter(|c| c.len() <= DIRECT_MAX as u64) {
            let keys: Vec<(Column, bool)> = match q.sort.is_empty() {
                true => vec![(primary, false)],
                false => q.sort.iter().map(|s| (s.column, s.descending)).collect(),
            };
            let hits: Vec<u32> = slots.iter().filter(|&s| check(s, &mut scratch)).collect();
            let sorted = state.sorted_by(&hits, &keys);
            let total = sorted.len() as u64;
            let lo = (offset.min(total)) as usize;
            let hi = (end.min(total)) as usize;
            let items = sorted[lo..hi]
                .iter()
                .map(|&slot| {
                    let rec = state.rec(slot);
                    row::item(self.def, rec.id, rec.reseller, &rec.row, public_url)
                })
                .collect();
            return Ok(Page { total, items, position });
        }
        // With a count, the matches are found first (in slot order: the records lie in
        // memory roughly in that order); without, candidates are checked only as the
        // walk meets them.
        let (matched, unchecked) = match (q.count, candidates) {
            (true, Some(slots)) if exact => (Some(slots), None),
            (true, Some(slots)) => {
                let hits = slots.iter().filter(|&s| check(s, &mut scratch));
                (Some(RoaringBitmap::from_sorted_iter(hits).expect("bitmaps ascend")), None)
            }
            (true, None) => {
                let pass = (matcher.needs_records() && n > 1).then(|| {
                    let hits = (0..state.records.len() as u32)
                        .filter(|&s| listed(s) && matcher.matches(&state, s, &mut scratch));
                    RoaringBitmap::from_sorted_iter(hits).expect("slots ascend")
                });
                (pass, None)
            }
            (false, c) => (None, c),
        };
        let hit = |s: u32, scratch: &mut String| match (&matched, &unchecked) {
            (Some(bits), _) => bits.contains(s),
            (None, Some(bits)) => bits.contains(s) && (exact || matcher.matches(&state, s, scratch)),
            (None, None) => matcher.matches(&state, s, scratch),
        };

        let mut total = 0u64;
        let mut window: Vec<u32> = Vec::new();
        let mut hits: Vec<u32> = Vec::new();
        // The matches found first are counted in their bitmap, those of one dictionary
        // filter in its counts, a reseller's whole collection in its scope's bitmap. Then
        // the walk ends with the page.
        let known_total = match (scope, &matched) {
            (_, Some(bits)) => Some(bits.len()),
            (Scope::Reseller(_), None) if !matcher.looks_into_records() => state.scope_slots(scope).map(|s| s.len()),
            _ => matcher.counted(),
        };
        // When everything is listed, a page's position in the walk is its offset: the
        // walk begins there.
        let everything = matcher.everything();
        let known_total = if everything { Some(n as u64) } else { known_total };
        let at = if everything { offset.min(n as u64) as usize } else { 0 };
        order.walk_runs(missing_from, descending, at, |before, run, slots| {
            if everything {
                total = before as u64;
            }
            if (known_total.is_some() || !q.count) && total >= end {
                return false;
            }
            let len = run.len() as u64;
            let wanted = total < end && total + len > offset;
            hits.clear();
            if everything {
                if wanted && secondary.is_empty() {
                    // Kept in the page's order: only the page's part of the run is read.
                    let lo = offset.saturating_sub(total) as usize;
                    let hi = (end - total).min(len) as usize;
                    window.extend(order.slots(run.start + lo..run.start + hi));
                }
                if !wanted || secondary.is_empty() {
                    total += len;
                    return true;
                }
                hits.extend(slots);
            } else {
                hits.extend(slots.filter(|&s| hit(s, &mut scratch)));
            }
            let m = hits.len() as u64;
            if m > 0 && total < end && total + m > offset {
                // Within a run of equal primary keys: the other keys, then the id (the
                // order the run is kept in).
                let lo = offset.saturating_sub(total) as usize;
                let hi = (end - total).min(m) as usize;
                if secondary.is_empty() {
                    window.extend_from_slice(&hits[lo..hi]);
                } else {
                    window.extend_from_slice(&state.sorted_by(&hits, &secondary)[lo..hi]);
                }
            }
            total += m;
            true
        });
        let items = window
            .into_iter()
            .map(|s| {
                let rec = state.rec(s);
                row::item(self.def, rec.id, rec.reseller, &rec.row, public_url)
            })
            .collect();
        Ok(Page { total: known_total.unwrap_or(total), items, position })
    }
}

/// How one filter is checked.
enum Check<'a> {
    /// Decided per distinct value of a dictionary column (a customer with several values
    /// is checked in its record).
    Dict { ids: &'a DictIds, allowed: Vec<bool>, col: Column, pattern: &'a row::Pattern, dict: &'a Dict },
    /// Read from the record (slot in the part's values, or a derived value).
    Record { col: Column, slot: Option<usize>, pattern: &'a row::Pattern },
}

/// Scope, filters and `q` of one query, prepared for many records.
struct Matcher<'a> {
    scope: Scope,
    checks: Vec<Check<'a>>,
    q: Option<&'a str>,
    /// `q`'s searcher, built once for every record it looks into.
    term: Option<row::SearchTerm<'a>>,
}

impl<'a> Matcher<'a> {
    fn new(state: &'a State, scope: &Scope, q: &'a ListQuery) -> Self {
        let checks = q
            .filters
            .iter()
            .map(|f| {
                let c = state.def.columns().filter.iter().position(|x| *x == f.column);
                match c.and_then(|c| state.dicts[c].as_ref()) {
                    Some(dict) => {
                        let mut allowed = vec![false; dict.values.len() + 1];
                        for (i, v) in dict.values.iter().enumerate() {
                            allowed[i + 1] = f.pattern.matches_folded(Some(v));
                        }
                        Check::Dict { ids: &dict.ids, allowed, col: f.column, pattern: &f.pattern, dict }
                    }
                    None => {
                        let slot = match f.column.kind() {
                            Kind::Id | Kind::ParentRef | Kind::DisplayName => None,
                            _ if f.column.field.default.is_some() => None,
                            _ => row::slot_of(state.def, f.column.part, f.column.field.attr),
                        };
                        Check::Record { col: f.column, slot, pattern: &f.pattern }
                    }
                }
            })
            .collect();
        let term = q.q.as_deref().map(|t| row::SearchTerm::new(state.def, t));
        Matcher { scope: *scope, checks, q: q.q.as_deref(), term }
    }

    /// Whether every listed customer matches (then a pass need not look at them).
    fn everything(&self) -> bool {
        self.scope == Scope::Provider && !self.looks_into_records()
    }

    /// The number of matches where one dictionary filter is all there is to check: the
    /// counts of the values it allows (unless some customer holds several values).
    fn counted(&self) -> Option<u64> {
        match (self.scope, self.q, self.checks.as_slice()) {
            (Scope::Provider, None, [Check::Dict { allowed, dict, .. }]) if dict.many == 0 => {
                Some(dict.refs.iter().zip(&allowed[1..]).filter(|(_, a)| **a).map(|(r, _)| u64::from(*r)).sum())
            }
            _ => None,
        }
    }

    fn looks_into_records(&self) -> bool {
        !self.checks.is_empty() || self.q.is_some()
    }

    /// Whether checking needs the records themselves (not only the small arrays).
    fn needs_records(&self) -> bool {
        self.q.is_some() || self.checks.iter().any(|c| matches!(c, Check::Record { .. }))
    }

    fn matches(&self, state: &State, slot: u32, scratch: &mut String) -> bool {
        match self.scope {
            Scope::Reseller(r) if state.resellers.get(slot) != r => return false,
            Scope::Customer { customer, .. } if state.customers.get(slot) != customer => return false,
            _ => {}
        }
        let mut record_checks = false;
        for check in &self.checks {
            match check {
                Check::Dict { ids, allowed, col, pattern, .. } => {
                    let id = ids.get(slot as usize);
                    let ok = if id == MANY {
                        let rec = state.rec(slot);
                        rec.row
                            .values(*col, rec.id, rec.reseller)
                            .iter()
                            .any(|v| pattern.matches(col.kind(), Some(v), scratch))
                    } else {
                        allowed.get(id as usize).copied().unwrap_or(false)
                    };
                    if !ok {
                        return false;
                    }
                }
                Check::Record { .. } => record_checks = true,
            }
        }
        // The record itself only where a check reads it.
        if record_checks || matches!(self.scope, Scope::Customer { .. }) {
            let rec = state.rec(slot);
            if !self.scope.sees(state.owner(slot)) {
                return false;
            }
            if record_checks && !self.record_checks(rec, scratch) {
                return false;
            }
        }
        self.term.as_ref().is_none_or(|t| {
            let rec = state.rec(slot);
            rec.row.search_text_holds(state.def, rec.id, t, scratch)
        })
    }

    fn record_checks(&self, rec: &Record, scratch: &mut String) -> bool {
        for check in &self.checks {
            if let Check::Record { col, slot, pattern } = check {
                let ok = match slot {
                    Some(i) => match rec.row.part(col.part).and_then(|v| v.slot(col.def, col.part, *i)) {
                        Some(all) => all.split(row::SEPARATOR).any(|v| pattern.matches(col.kind(), Some(v), scratch)),
                        None => pattern.matches(col.kind(), None, scratch),
                    },
                    None => rec
                        .row
                        .values(*col, rec.id, rec.reseller)
                        .iter()
                        .any(|v| pattern.matches(col.kind(), Some(v), scratch)),
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }
}

impl CollectionIndex {
    /// The elements an entry's change may change: the one it belonged to and the one its
    /// DN gives it to.
    fn touched(&self, state: &State, uuid: &Uuid, dn: Option<&str>) -> Vec<u64> {
        let mut ids: Vec<u64> = state.entry_of(uuid).map(|(slot, _)| state.rec(slot).id).into_iter().collect();
        if let Some(p) = dn.and_then(|dn| self.def.place(dn, &self.base)) {
            if !ids.contains(&p.id) {
                ids.push(p.id);
            }
        }
        ids
    }

    /// Applies `f` and hands the change of each of `ids` to the feed (not while loading).
    fn recorded(&self, state: &mut State, ids: Vec<u64>, f: impl FnOnce(&mut State)) {
        let Some(feed) = self.feed.get().filter(|_| !state.bulk && !ids.is_empty()) else {
            f(state);
            return;
        };
        let url = feed.public_url();
        let before: Vec<Option<Snapshot>> = ids.iter().map(|id| state.snapshot(*id, url)).collect();
        f(state);
        for (id, before) in ids.into_iter().zip(before) {
            feed.record(Subject::of(self.def, id, url), before, state.snapshot(id, url));
        }
    }
}

impl SyncSink for CollectionIndex {
    fn apply(&self, event: SyncEvent) {
        let Ok(mut state) = self.state.write() else { return };
        match event {
            SyncEvent::RefreshBegin { reload } => {
                state.seen = RoaringBitmap::new();
                // A check that a new session interrupted is void.
                state.checking = None;
                self.progress.send_modify(|p| p.refreshing = true);
                if reload {
                    self.restored.store(false, std::sync::atomic::Ordering::Relaxed);
                    *state = State { bulk: true, ..State::new(self.def) };
                    self.progress.send_modify(|p| p.loaded = false);
                    // What changed while the index reloads cannot be told.
                    if let Some(feed) = self.feed.get() {
                        feed.reset();
                    }
                }
            }
            SyncEvent::Entry { uuid, entry } => {
                if let Some(c) = state.checking.as_mut() {
                    c.insert(uuid);
                }
                let ids = self.touched(&state, &uuid, Some(&entry.dn));
                self.recorded(&mut state, ids, |s| s.upsert(&self.base, uuid, &entry));
            }
            SyncEvent::Delete { uuid } => {
                if let Some(c) = state.checking.as_mut() {
                    c.insert(uuid);
                }
                let ids = self.touched(&state, &uuid, None);
                self.recorded(&mut state, ids, |s| s.detach(&uuid));
            }
            SyncEvent::CheckBegin => {
                state.seen = RoaringBitmap::new();
                state.checking = Some(Default::default());
            }
            SyncEvent::Checked { uuid, entry } => {
                let newer = state.checking.as_ref().is_some_and(|c| c.contains(&uuid));
                if !newer {
                    let ids = self.touched(&state, &uuid, Some(&entry.dn));
                    self.recorded(&mut state, ids, |s| s.upsert(&self.base, uuid, &entry));
                }
            }
            SyncEvent::CheckEnd => {
                if state.checking.take().is_some() {
                    let ids = state.unswept();
                    if !ids.is_empty() {
                        tracing::info!(resource = self.def.name, count = ids.len(), first = ?&ids[..ids.len().min(10)], "a check against the directory dropped elements it no longer holds");
                    }
                    self.recorded(&mut state, ids, State::sweep);
                    state.seen = RoaringBitmap::new();
                }
            }
            SyncEvent::Present(uuids) | SyncEvent::Unchanged(uuids) => {
                for u in uuids {
                    if let Some((slot, part)) = state.entry_of(&u) {
                        state.seen.insert(handle(slot, part));
                    }
                }
            }
            SyncEvent::RefreshEnd { present } => {
                if present {
                    let ids = state.unswept();
                    if !ids.is_empty() && !state.bulk {
                        tracing::info!(resource = self.def.name, count = ids.len(), first = ?&ids[..ids.len().min(10)], "a present phase dropped elements the directory no longer holds");
                    }
                    self.recorded(&mut state, ids, State::sweep);
                }
                state.seen = RoaringBitmap::new();
                let from_nothing = state.bulk;
                if from_nothing {
                    state.bulk = false;
                    state.rebuild_orders();
                    state.rebuild_postings();
                }
                let n = state.orders.first().map_or(0, Order::len);
                drop(state);
                release_free_memory();
                self.progress.send_modify(|p| {
                    p.loaded = true;
                    p.refreshing = false;
                });
                // What each structure takes, after a load from nothing only (a pass over
                // every record, under the read lock).
                let footprint = self.state.read().ok().filter(|_| from_nothing).map(|s| s.footprint());
                match footprint {
                    Some(footprint) => {
                        let mib = |b: usize| (b as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0;
                        let total = mib(footprint.iter().map(|(_, b)| b).sum());
                        let parts: Vec<String> = footprint.iter().map(|(k, b)| format!("{k} {}", mib(*b))).collect();
                        tracing::info!(resource = self.def.name, elements = n, mib = total, parts = %parts.join(", "), "collection index loaded");
                    }
                    None => tracing::info!(resource = self.def.name, elements = n, "collection index loaded"),
                }
            }
            SyncEvent::Cookie(csns, _) => {
                drop(state);
                self.progress.send_modify(|p| p.csns.merge(&csns));
            }
            SyncEvent::Verified(_) => {}
        }
    }
}

/// Hands memory freed after a load (the entries as they came in) back to the system.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::query::PageLimits;
    use crate::mapping::resources::CUSTOMERS;

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

    fn ids(index: &CollectionIndex, scope: Scope, raw: &str) -> (u64, Vec<u64>) {
        let q = query::parse(&CUSTOMERS, Some(raw), PageLimits { default_per_page: 30, max_per_page: 100 }).unwrap();
        let page = index.query(&scope, &q, "http://gw").unwrap();
        (page.total, page.items.iter().map(|i| i["id"].as_u64().unwrap()).collect())
    }

    #[test]
    fn a_dictionary_holds_slots_only_as_far_as_its_last_value() {
        let mut d = Dict::default();
        d.set(5000, None);
        assert_eq!(d.ids.len(), 0, "a column without values holds no array");
        d.set(10, Some("Bern".into()));
        d.set(20, None);
        assert_eq!(d.ids.len(), 11);
        d.set_many(30);
        assert_eq!((d.ids.len(), d.ids.get(30), d.many), (31, MANY, 1));
        d.set(30, None);
        assert_eq!((d.ids.get(30), d.many, d.ids.get(10)), (0, 0, 1));
        assert!(matches!(d.ids, DictIds::Narrow(_)));
    }

    #[test]
    fn a_dictionary_takes_two_bytes_a_slot_once_its_ids_do_not_fit_one() {
        let mut d = Dict::default();
        d.set_many(3);
        for slot in 0..300 {
            if slot != 3 {
                d.set(slot, Some(format!("v{slot}")));
            }
        }
        assert!(matches!(d.ids, DictIds::Wide(_)));
        assert_eq!(d.ids.get(3), MANY, "a slot of several values stays so when the array widens");
        for slot in (0..300).filter(|&s| s != 3) {
            let id = d.ids.get(slot);
            assert_eq!(&*d.values[id as usize - 1], format!("v{slot}"));
        }
        assert_eq!(d.distinct(), 299);
    }

    #[test]
    fn owner_arrays_take_eight_bytes_a_slot_once_an_id_does_not_fit_four() {
        let mut ids = SlotIds::default();
        for id in [0, 7, u64::from(u32::MAX)] {
            ids.push(id);
        }
        assert!(matches!(ids, SlotIds::Narrow(_)));
        ids.set(1, u64::from(u32::MAX) + 1);
        assert!(matches!(ids, SlotIds::Wide(_)));
        ids.push(1 << 40);
        let held: Vec<u64> = (0..ids.len() as u32).map(|s| ids.get(s)).collect();
        assert_eq!(held, [0, u64::from(u32::MAX) + 1, u64::from(u32::MAX), 1 << 40]);
    }

    #[test]
    fn a_customer_of_a_reseller_with_a_wide_id_is_in_that_resellers_scope_only() {
        let big = u64::from(u32::MAX) + 5;
        let index = loaded(vec![
            SyncEvent::Entry { uuid: u(1), entry: customer(1, 7, "One") },
            SyncEvent::Entry { uuid: u(2), entry: customer(2, big, "Two") },
        ]);
        assert_eq!(ids(&index, Scope::Reseller(big), "").1, [2]);
        assert_eq!(ids(&index, Scope::Reseller(7), "").1, [1]);
        assert_eq!(ids(&index, Scope::Reseller(big - (1 << 32)), "").1, Vec::<u64>::new());
    }

    #[test]
    fn a_poisoned_index_answers_no_page_rather_than_an_empty_one() {
        let index = std::sync::Arc::new(loaded(vec![SyncEvent::Entry { uuid: u(1), entry: customer(1, 7, "One") }]));
        assert_eq!(ids(&index, Scope::Provider, "").0, 1);
        let i = index.clone();
        let _ = std::thread::spawn(move || {
            let _held = i.state.write().unwrap();
            panic!("a writer dies holding the lock");
        })
        .join();
        let q = query::parse(&CUSTOMERS, None, PageLimits { default_per_page: 30, max_per_page: 100 }).unwrap();
        assert!(index.query(&Scope::Provider, &q, "http://gw").is_err());
    }

    fn loaded(events: Vec<SyncEvent>) -> CollectionIndex {
        let index = CollectionIndex::new(&CUSTOMERS, BASE);
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
        assert!(index.state.read().unwrap().orders.iter().all(|o| o.len() == 0));
    }

    #[test]
    fn posting_lists_answer_as_a_pass_over_every_record_would() {
        const NAMES: &[&str] = &["Müller AG", "Mueller GmbH", "Ammüller SA", "Keller AG", "Kellerei", "Zürcher"];
        let mut events = Vec::new();
        let mut names = std::collections::BTreeMap::new();
        for id in 1..=120u64 {
            let name = format!("{} {id}", NAMES[(id % 6) as usize]);
            let mut e = customer(id, 1 + id % 3, &name);
            e.attrs.insert("sstexternalid".into(), vec![format!("crm-{}", id % 40)]);
            events.push(SyncEvent::Entry { uuid: [id as u8; 16], entry: e });
            names.insert(id, name);
        }
        let index = loaded(events);
        // Renames and deletes after the load keep the lists exact.
        for id in [3u64, 9, 15] {
            let name = format!("Renamed Keller {id}");
            let mut e = customer(id, 1 + id % 3, &name);
            e.attrs.insert("sstexternalid".into(), vec![format!("new-{id}")]);
            index.apply(SyncEvent::Entry { uuid: [id as u8; 16], entry: e });
            names.insert(id, name);
        }
        index.apply(SyncEvent::Delete { uuid: [4; 16] });
        names.remove(&4);
        let external =
            |id: u64| if [3, 9, 15].contains(&id) { format!("new-{id}") } else { format!("crm-{}", id % 40) };
        for term in ["müll", "kell", "ler ag", "zürcher 1", "keller 1", "mue", "renamed keller 9", "xyz"] {
            let want: Vec<u64> =
                names.iter().filter(|(_, n)| n.to_lowercase().contains(term)).map(|(id, _)| *id).collect();
            let got = ids(&index, Scope::Provider, &format!("q={}&per_page=100", query::encode(term)));
            assert_eq!(got, (want.len() as u64, want.clone()), "q={term}");
            let reseller: Vec<u64> = want.iter().copied().filter(|id| 1 + id % 3 == 2).collect();
            let got = ids(&index, Scope::Reseller(2), &format!("q={}&per_page=100", query::encode(term)));
            assert_eq!(got.1, reseller, "q={term} for reseller 2");
        }
        for value in ["crm-5", "CRM-5", "new-9", "crm-4", "nope"] {
            let want: Vec<u64> = names.keys().copied().filter(|id| external(*id).eq_ignore_ascii_case(value)).collect();
            assert_eq!(ids(&index, Scope::Provider, &format!("externalID={value}&per_page=100")).1, want, "{value}");
        }
        // Wildcards are no lookups, and still answer.
        assert_eq!(ids(&index, Scope::Provider, "externalID=new-*").1, [3, 9, 15]);
        // Without a count, the same first page.
        for raw in ["q=kell&per_page=4", "q=m%C3%BCll&per_page=3&sort=-customerName", "q=zzz"] {
            let limits = PageLimits { default_per_page: 30, max_per_page: 100 };
            let mut q = query::parse(&CUSTOMERS, Some(raw), limits).unwrap();
            let counted = index.query(&Scope::Reseller(2), &q, "http://gw").unwrap();
            q.count = false;
            let first = index.query(&Scope::Reseller(2), &q, "http://gw").unwrap();
            assert_eq!(first.items, counted.items, "{raw}");
        }
        // Sorted and paged as the walk of the sort order (a wildcard filter, which no
        // posting list answers) pages the same records.
        for term in ["müll", "kell", "renamed"] {
            for tail in
                ["sort=-customerName&per_page=7&page=2", "sort=customerName,-id&per_page=5", "per_page=3&page=3"]
            {
                let direct = ids(&index, Scope::Reseller(1), &format!("q={}&{tail}", query::encode(term)));
                let walked = ids(&index, Scope::Reseller(1), &format!("customerName=*{}*&{tail}", query::encode(term)));
                assert_eq!(direct, walked, "{term} {tail}");
            }
        }
    }

    #[test]
    fn many_candidates_are_found_by_the_walk_with_and_without_a_count() {
        let n = DIRECT_MAX as u64 + 500;
        let events = (1..=n)
            .map(|id| SyncEvent::Entry {
                uuid: [(id % 251) as u8, (id / 251) as u8, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7],
                entry: customer(id, 1 + id % 2, &format!("Common {id} AG")),
            })
            .collect();
        let index = loaded(events);
        let limits = PageLimits { default_per_page: 30, max_per_page: 100 };
        for raw in ["q=common&per_page=7&page=3", "q=mmon%201&sort=-customerName&per_page=5", "q=common%2099"] {
            let mut q = query::parse(&CUSTOMERS, Some(raw), limits).unwrap();
            let counted = index.query(&Scope::Reseller(2), &q, "http://gw").unwrap();
            let (term, rest) = raw.split_once('&').unwrap_or((raw, ""));
            let wildcard = format!("customerName=*{}*&{rest}", term.trim_start_matches("q="));
            let walked = ids(&index, Scope::Reseller(2), &wildcard);
            assert_eq!(counted.total, walked.0, "{raw}");
            q.count = false;
            let first = index.query(&Scope::Reseller(2), &q, "http://gw").unwrap();
            assert_eq!(first.items, counted.items, "{raw}");
        }
        assert_eq!(ids(&index, Scope::Provider, "q=common&per_page=1").0, n);
    }

    #[test]
    fn a_check_adds_what_was_missed_drops_what_is_gone_and_yields_to_newer_changes() {
        let index = loaded(vec![
            SyncEvent::Entry { uuid: u(1), entry: customer(1, 1, "One") },
            SyncEvent::Entry { uuid: u(2), entry: customer(2, 1, "Two") },
            SyncEvent::Entry { uuid: u(3), entry: customer(3, 1, "Three") },
            SyncEvent::Entry { uuid: u(5), entry: customer(5, 1, "Five") },
        ]);
        index.apply(SyncEvent::CheckBegin);
        // The session reports changes while the check reads: a new name of 1, the delete
        // of 2; the check read both before.
        index.apply(SyncEvent::Entry { uuid: u(1), entry: customer(1, 1, "Eins") });
        index.apply(SyncEvent::Delete { uuid: u(2) });
        index.apply(SyncEvent::Checked { uuid: u(1), entry: customer(1, 1, "One") });
        index.apply(SyncEvent::Checked { uuid: u(2), entry: customer(2, 1, "Two") });
        // 4 is one the session never reported; 5 changed without the session saying so;
        // 3 is gone (not read).
        index.apply(SyncEvent::Checked { uuid: u(4), entry: customer(4, 1, "Four") });
        index.apply(SyncEvent::Checked { uuid: u(5), entry: customer(5, 1, "Fünf") });
        assert_eq!(ids(&index, Scope::Provider, "").0, 4, "nothing is dropped before the check ends");
        index.apply(SyncEvent::CheckEnd);
        assert_eq!(ids(&index, Scope::Provider, ""), (3, vec![1, 4, 5]));
        assert_eq!(ids(&index, Scope::Provider, "customerName=Eins").1, vec![1]);
        assert_eq!(ids(&index, Scope::Provider, "customerName=F*nf").1, vec![5]);
        // A check a new session interrupts drops nothing.
        index.apply(SyncEvent::CheckBegin);
        index.apply(SyncEvent::RefreshBegin { reload: false });
        index.apply(SyncEvent::RefreshEnd { present: false });
        index.apply(SyncEvent::CheckEnd);
        assert_eq!(ids(&index, Scope::Provider, "").0, 3);
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

    #[test]
    fn filters_work_with_and_without_a_dictionary() {
        let mut events = Vec::new();
        for i in 0..(DICT_CAP as u64 + 100) {
            events.push(SyncEvent::Entry {
                uuid: u128::from(i + 1).to_le_bytes(),
                entry: customer(i + 1, 1, &format!("N{i}")),
            });
            events.push(SyncEvent::Entry {
                uuid: u128::from(i + 1_000_000).to_le_bytes(),
                entry: billing(i + 1, 1, if i % 2 == 0 { "Bern" } else { "Thun" }),
            });
        }
        let index = loaded(events);
        {
            let state = index.state.read().unwrap();
            let c = |name: &str| {
                CUSTOMERS.columns().filter.iter().position(|c| c.field.name == name && c.part == Part::Root)
            };
            assert!(state.dicts[c("customerName").unwrap()].is_none(), "too many names for a dictionary");
            assert!(state.dicts[c("isActive").unwrap()].is_some());
        }
        let n = DICT_CAP as u64 + 100;
        assert_eq!(ids(&index, Scope::Provider, "localityName=bern&per_page=1").0, n / 2);
        assert_eq!(ids(&index, Scope::Provider, "customerName=n4*&customerName=*7&per_page=100").0, 1 + 10 + 10 + 9);
        // A changed value moves between the dictionary's values.
        index.apply(SyncEvent::Entry { uuid: u128::from(1_000_000u64).to_le_bytes(), entry: billing(1, 1, "Aarau") });
        assert_eq!(ids(&index, Scope::Provider, "localityName=aarau"), (1, vec![1]));
        assert_eq!(ids(&index, Scope::Provider, "localityName=bern&per_page=1").0, n / 2 - 1);
        index.apply(SyncEvent::Delete { uuid: u128::from(1_000_000u64).to_le_bytes() });
        assert_eq!(ids(&index, Scope::Provider, "localityName=aarau").0, 0);
        assert_eq!(ids(&index, Scope::Provider, "localityName=*&per_page=1").0, n - 1);
    }

    #[tokio::test]
    async fn waiting_needs_the_load_and_the_csn() {
        let index = CollectionIndex::new(&CUSTOMERS, BASE);
        let target = Csns::from_values(["20260101000000.000000Z#000000#000#000000"]);
        assert!(index.wait_for(&Csns::default(), Duration::from_millis(10)).await.is_err(), "not loaded");
        index.apply(SyncEvent::RefreshBegin { reload: true });
        index.apply(SyncEvent::RefreshEnd { present: false });
        assert!(index.wait_for(&target, Duration::from_millis(10)).await.is_err(), "not that far");
        index.apply(SyncEvent::Cookie(target.clone(), Arc::from(&b"c"[..])));
        assert!(index.wait_for(&target, Duration::from_millis(10)).await.is_ok());
    }

    /// What the reference model knows of one customer.
    #[derive(Clone)]
    struct Modelled {
        reseller: u64,
        name: String,
        /// The billing entry's locality and country, if it has one.
        billing: Option<(String, String)>,
    }

    fn uuid_of(kind: u8, id: u64) -> Uuid {
        let mut u = [0u8; 16];
        u[0] = kind;
        u[1..9].copy_from_slice(&id.to_le_bytes());
        u
    }

    fn billing_in(id: u64, reseller: u64, city: &str, country: &str) -> Entry {
        entry(
            &format!("ou=address,uid={id},ou=customers,uid={reseller},ou=reseller,{BASE}"),
            &[("objectClass", "sstAddress"), ("l", city), ("c", country), ("postalCode", "3000")],
        )
    }

    /// The ids a list must give, from the model alone: filtered, then ordered by the
    /// key (missing keys last either way), ties by id.
    fn modelled(
        model: &std::collections::BTreeMap<u64, Modelled>,
        reseller: Option<u64>,
        sort: Option<(&str, bool)>,
        country: Option<&str>,
        q: Option<&str>,
    ) -> Vec<u64> {
        let mut hits: Vec<(Option<SortKey>, u64)> = model
            .iter()
            .filter(|(_, m)| reseller.is_none_or(|r| m.reseller == r))
            .filter(|(_, m)| country.is_none_or(|c| m.billing.as_ref().is_some_and(|b| b.1 == c)))
            .filter(|(id, m)| {
                q.is_none_or(|q| {
                    let mut fields = vec![id.to_string(), m.name.to_lowercase()];
                    if let Some((city, _)) = &m.billing {
                        fields.push(city.to_lowercase());
                        fields.push("3000".into());
                    }
                    fields.iter().any(|f| f.contains(q))
                })
            })
            .map(|(id, m)| {
                let key = match sort.map(|s| s.0) {
                    Some("customerName") => Some(row::sort_key(Kind::Text { max: 0 }, &m.name)),
                    Some("localityName") => m.billing.as_ref().map(|b| row::sort_key(Kind::Text { max: 0 }, &b.0)),
                    _ => Some(SortKey::Int(*id)),
                };
                (key, *id)
            })
            .collect();
        let descending = sort.is_some_and(|s| s.1);
        hits.sort_by(|a, b| compare_keys(a.0.as_ref(), b.0.as_ref(), descending).then(a.1.cmp(&b.1)));
        hits.into_iter().map(|h| h.1).collect()
    }

    #[test]
    fn random_adds_changes_moves_and_deletes_leave_what_a_reference_model_holds() {
        // Few names and cities, so that runs of equal keys are long and span the chunks
        // of the orders; enough customers for several chunks.
        const NAMES: &[&str] = &["alpha", "Beta", "gamma", "müller", "Zeta", "ÄRZTE", "delta", "Ω mega"];
        const CITIES: &[&str] = &["bern", "Zürich", "genf", "basel", "Ölten"];
        const COUNTRIES: &[&str] = &["CH", "DE"];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut model: std::collections::BTreeMap<u64, Modelled> = Default::default();
        let mut events = Vec::new();
        let pick = |m: &mut std::collections::BTreeMap<u64, Modelled>, id: u64, next: &mut dyn FnMut(u64) -> u64| {
            let c = Modelled {
                reseller: 1 + next(3),
                name: format!("{} {}", NAMES[next(NAMES.len() as u64) as usize], ["ag", "gmbh"][next(2) as usize]),
                billing: (next(5) != 0)
                    .then(|| (CITIES[next(CITIES.len() as u64) as usize].into(), COUNTRIES[next(2) as usize].into())),
            };
            m.insert(id, c.clone());
            c
        };
        let events_of = |id: u64, c: &Modelled| {
            let mut out = vec![SyncEvent::Entry { uuid: uuid_of(1, id), entry: customer(id, c.reseller, &c.name) }];
            if let Some((city, country)) = &c.billing {
                out.push(SyncEvent::Entry { uuid: uuid_of(2, id), entry: billing_in(id, c.reseller, city, country) });
            }
            out
        };
        for id in 1..=1200u64 {
            let c = pick(&mut model, id, &mut next);
            events.extend(events_of(id, &c));
        }
        let index = loaded(events);
        let mut next_id = 1201u64;
        let queries = |index: &CollectionIndex,
                       model: &std::collections::BTreeMap<u64, Modelled>,
                       next: &mut dyn FnMut(u64) -> u64| {
            for _ in 0..12 {
                let sort = [
                    None,
                    Some(("customerName", false)),
                    Some(("customerName", true)),
                    Some(("localityName", false)),
                    Some(("localityName", true)),
                    Some(("id", true)),
                ][next(6) as usize];
                let reseller = [None, Some(2)][next(2) as usize];
                let country = [None, None, Some("DE")][next(3) as usize];
                let q = [
                    None,
                    None,
                    None,
                    Some("mül"),
                    Some("a a"),
                    Some("ürich"),
                    Some("ega a"),
                    Some("ω m"),
                    Some("120"),
                    Some("gmbh"),
                ][next(10) as usize];
                let per_page = 1 + next(100);
                let all = modelled(model, reseller, sort, country, q);
                let pages = (all.len() as u64).div_ceil(per_page).max(1);
                let page = [1, 1 + next(pages), pages, pages + 1][next(4) as usize];
                let mut raw = format!("per_page={per_page}&page={page}");
                if let Some((field, desc)) = sort {
                    raw.push_str(&format!("&sort={}{field}", if desc { "-" } else { "" }));
                }
                if let Some(c) = country {
                    raw.push_str(&format!("&countryCode={c}"));
                }
                if let Some(q) = q {
                    raw.push_str(&format!("&q={}", query::encode(q)));
                }
                let scope = reseller.map_or(Scope::Provider, Scope::Reseller);
                let want: Vec<u64> =
                    all.iter().skip(((page - 1) * per_page) as usize).take(per_page as usize).copied().collect();
                assert_eq!(ids(index, scope, &raw), (all.len() as u64, want), "{raw} as {scope:?}");
            }
        };
        queries(&index, &model, &mut next);
        for step in 0..3000 {
            let known: Vec<u64> = model.keys().copied().collect();
            let id = known[next(known.len() as u64) as usize];
            match next(6) {
                // A new customer.
                0 => {
                    let c = pick(&mut model, next_id, &mut next);
                    for e in events_of(next_id, &c) {
                        index.apply(e);
                    }
                    next_id += 1;
                }
                // A rename, or a new locality (the billing entry made or changed).
                1 | 2 => {
                    let m = model.get_mut(&id).unwrap();
                    if next(2) == 0 {
                        m.name = format!("{} {id}", NAMES[next(NAMES.len() as u64) as usize]);
                        index
                            .apply(SyncEvent::Entry { uuid: uuid_of(1, id), entry: customer(id, m.reseller, &m.name) });
                    } else {
                        let b = (
                            CITIES[next(CITIES.len() as u64) as usize].to_string(),
                            COUNTRIES[next(2) as usize].to_string(),
                        );
                        index.apply(SyncEvent::Entry {
                            uuid: uuid_of(2, id),
                            entry: billing_in(id, m.reseller, &b.0, &b.1),
                        });
                        m.billing = Some(b);
                    }
                }
                // The billing entry deleted.
                3 => {
                    model.get_mut(&id).unwrap().billing = None;
                    index.apply(SyncEvent::Delete { uuid: uuid_of(2, id) });
                }
                // A move to another reseller: the customer entry with its new DN.
                4 => {
                    let m = model.get_mut(&id).unwrap();
                    m.reseller = 1 + (m.reseller % 3);
                    index.apply(SyncEvent::Entry { uuid: uuid_of(1, id), entry: customer(id, m.reseller, &m.name) });
                }
                // Deleted, its children first (as the directory reports them).
                _ => {
                    if model.remove(&id).is_some_and(|m| m.billing.is_some()) {
                        index.apply(SyncEvent::Delete { uuid: uuid_of(2, id) });
                    }
                    index.apply(SyncEvent::Delete { uuid: uuid_of(1, id) });
                }
            }
            if step % 100 == 99 {
                queries(&index, &model, &mut next);
                assert_eq!(index.len(), model.len());
            }
        }
    }
}
