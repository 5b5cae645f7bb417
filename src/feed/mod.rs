//! The change feed: every change to a resource, whoever made it (this gateway, another
//! one, an admin's LDAP tool), as the collection indexes see it arrive through content
//! synchronisation. An index hands over each element's state before and after a change
//! ([`Feed::record`]); the changes of a short moment are merged per element (a create
//! that writes a customer, its billing and its shipping entry is one change) and then
//! published into a bounded window of recent changes, which subscribers read from their
//! position on.
//!
//! Positions count every recorded change of this gateway's run (`<epoch>-<seq>`): a list
//! answered at position `p` holds every change up to `p` and none after it, and the
//! published changes after `p` are exactly those it does not hold. A position of another
//! run (a restart, another gateway, a reload of the indexes) or one older than the window
//! is gone: the subscriber lists again.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::{watch, Notify};

use crate::mapping::resource::{Owner, ResourceDef};

/// What a change is of: one element of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// The collection (`customers`, `contracts`).
    pub resource: &'static str,
    /// One of them (`customer`), for the event's type.
    pub singular: &'static str,
    /// Its id, as its JSON shows it.
    pub id: Value,
    /// Its URL.
    pub location: String,
}

impl Subject {
    /// An element of a resource of the definitions.
    pub fn of(def: &'static ResourceDef, id: u64, public_url: &str) -> Subject {
        Subject {
            resource: def.name,
            singular: def.singular,
            id: Value::from(id),
            location: def.location(public_url, id),
        }
    }

    fn key(&self) -> (&'static str, String) {
        (self.resource, self.id.to_string())
    }
}

/// How much the feed keeps.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// The most changes in the window.
    pub window: usize,
    /// How long a change stays in the window.
    pub max_age: Duration,
    /// How long the changes of one element are merged before they are published.
    pub coalesce: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings { window: 10_000, max_age: Duration::from_secs(600), coalesce: Duration::from_millis(20) }
    }
}

/// A place in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub seq: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.seq)
    }
}

impl std::str::FromStr for Position {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (e, n) = s.trim().split_once('-').ok_or(())?;
        if e.len() != 16 || n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        Ok(Position { epoch: u64::from_str_radix(e, 16).map_err(|_| ())?, seq: n.parse().map_err(|_| ())? })
    }
}

/// One element as the feed compares it: whom it belongs to and its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub owner: Owner,
    /// Its JSON as `GET` of the element shows it.
    pub doc: Value,
}

/// A published change of one element.
#[derive(Debug)]
pub struct Change {
    pub position: u64,
    pub subject: Subject,
    /// When the gateway saw it (the first of its merged changes).
    pub time: SystemTime,
    /// Whom it belonged to before (none: it did not exist).
    pub before: Option<Owner>,
    /// Whom it belongs to after, and its document (none: it is gone).
    pub after: Option<(Owner, Arc<Value>)>,
    /// What changed, as a JSON merge patch (RFC 7396) from before to after; for a new
    /// element its whole document.
    pub changed: Value,
}

/// What a change is to one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Created,
    Updated,
    /// To another reseller; a reader who sees only one side gets `Deleted` or `Created`.
    Moved,
    Deleted,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Created => "created",
            What::Updated => "updated",
            What::Moved => "moved",
            What::Deleted => "deleted",
        }
    }
}

impl Change {
    /// What this change is to a reader who sees the elements `sees` accepts, and the
    /// fields it shows them (none: nothing, the element is not theirs).
    pub fn seen(&self, sees: impl Fn(Owner) -> bool) -> Option<(What, &Value)> {
        let before = self.before.is_some_and(&sees);
        let after = self.after.as_ref().filter(|(o, _)| sees(*o));
        match (before, after) {
            (false, None) => None,
            (false, Some((_, doc))) => Some((What::Created, doc)),
            (true, None) => Some((What::Deleted, &Value::Null)),
            (true, Some((owner, _))) => {
                let moved = self.before.is_some_and(|b| b.tenant != owner.tenant);
                Some((if moved { What::Moved } else { What::Updated }, &self.changed))
            }
        }
    }
}

/// The position asked for is not in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the position is not in the change window")]
pub struct Gone;

/// The changes of one element since it was last published.
struct Staged {
    subject: Subject,
    time: SystemTime,
    first: Option<Snapshot>,
    last: Option<Snapshot>,
    /// Whom it belonged to at any point (for one created and deleted again at once).
    owner: Option<Owner>,
    position: u64,
}

struct Inner {
    epoch: u64,
    /// The last position handed out.
    seq: u64,
    /// Every change up to here has been published.
    horizon: u64,
    /// Changes up to here have left the window.
    floor: u64,
    staged: Vec<Staged>,
    /// The staged entry of each element (by resource and id).
    staged_at: HashMap<(&'static str, String), usize>,
    /// Published changes by position, each with when it came in.
    window: VecDeque<(Instant, Arc<Change>)>,
}

pub struct Feed {
    settings: FeedSettings,
    public_url: String,
    inner: Mutex<Inner>,
    published: watch::Sender<Position>,
    flush: Notify,
}

fn new_epoch() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64;
    }
    u64::from_le_bytes(b)
}

/// A JSON merge patch (RFC 7396) that turns `from` into `to`.
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut m = Map::new();
            for (k, v) in b {
                match a.get(k) {
                    Some(old) if old == v => {}
                    Some(old @ Value::Object(_)) if v.is_object() => {
                        m.insert(k.clone(), merge_patch(old, v));
                    }
                    _ => {
                        m.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in a.keys() {
                if !b.contains_key(k) {
                    m.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(m)
        }
        _ => to.clone(),
    }
}

impl Feed {
    /// A feed whose documents name elements under `public_url`.
    pub fn new(settings: FeedSettings, public_url: &str) -> Arc<Feed> {
        let epoch = new_epoch();
        Arc::new(Feed {
            settings,
            public_url: public_url.trim_end_matches('/').to_string(),
            inner: Mutex::new(Inner {
                epoch,
                seq: 0,
                horizon: 0,
                floor: 0,
                staged: Vec::new(),
                staged_at: HashMap::new(),
                window: VecDeque::new(),
            }),
            published: watch::channel(Position { epoch, seq: 0 }).0,
            flush: Notify::new(),
        })
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn settings(&self) -> &FeedSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The feed's state is consistent after every statement that changes it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position now: every change recorded so far is at or before it.
    pub fn position(&self) -> Position {
        let inner = self.lock();
        Position { epoch: inner.epoch, seq: inner.seq }
    }

    /// Notes that an element changed from `before` to `after` (none: it does not exist).
    /// Called by an index while it holds its write lock, so that a list's position
    /// (read under the read lock) splits its changes exactly.
    pub fn record(&self, subject: Subject, before: Option<Snapshot>, after: Option<Snapshot>) {
        if before == after {
            return;
        }
        let mut inner = self.lock();
        inner.seq += 1;
        let position = inner.seq;
        let was_empty = inner.staged.is_empty();
        let owner = after.as_ref().or(before.as_ref()).map(|s| s.owner);
        let key = subject.key();
        match inner.staged_at.get(&key).copied() {
            Some(i) => {
                let s = &mut inner.staged[i];
                s.last = after;
                s.owner = s.owner.or(owner);
                s.position = position;
            }
            None => {
                let i = inner.staged.len();
                inner.staged.push(Staged {
                    subject,
                    time: SystemTime::now(),
                    first: before,
                    last: after,
                    owner,
                    position,
                });
                inner.staged_at.insert(key, i);
            }
        }
        drop(inner);
        if was_empty {
            self.flush.notify_one();
        }
    }

    /// Forgets everything: the indexes load again from nothing, so no change since any
    /// position can be told. Every position handed out so far is gone.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.epoch = new_epoch();
        inner.staged.clear();
        inner.staged_at.clear();
        inner.window.clear();
        inner.horizon = inner.seq;
        inner.floor = inner.seq;
        let now = Position { epoch: inner.epoch, seq: inner.seq };
        drop(inner);
        crate::metrics::change_feed_reset();
        self.published.send_replace(now);
    }

    /// Publishes what is staged, a moment after the first of it came (so that the entries
    /// of one write are one change), until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.flush.notified().await;
            tokio::time::sleep(self.settings.coalesce).await;
            self.publish();
        }
    }

    /// Publishes what is staged now.
    pub fn publish(&self) {
        let mut inner = self.lock();
        let staged = std::mem::take(&mut inner.staged);
        inner.staged_at.clear();
        let mut changes: Vec<Change> = staged
            .into_iter()
            .filter_map(|s| {
                let before = s.first.as_ref().map(|b| b.owner);
                let (changed, after) = match (&s.first, s.last) {
                    (Some(a), Some(b)) if *a == b => return None,
                    (Some(a), Some(b)) => (merge_patch(&a.doc, &b.doc), Some((b.owner, Arc::new(b.doc)))),
                    (None, Some(b)) => (b.doc.clone(), Some((b.owner, Arc::new(b.doc)))),
                    (Some(_), None) => (Value::Null, None),
                    // Created and deleted again: a list may have shown it in between.
                    (None, None) => {
                        return s.owner.map(|o| Change {
                            position: s.position,
                            subject: s.subject,
                            time: s.time,
                            before: Some(o),
                            after: None,
                            changed: Value::Null,
                        })
                    }
                };
                Some(Change { position: s.position, subject: s.subject, time: s.time, before, after, changed })
            })
            .collect();
        changes.sort_by_key(|c| c.position);
        let now = Instant::now();
        for c in changes {
            inner.window.push_back((now, Arc::new(c)));
        }
        inner.horizon = inner.seq;
        self.evict(&mut inner, now);
        let published = Position { epoch: inner.epoch, seq: inner.horizon };
        drop(inner);
        self.published.send_replace(published);
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, c)) = inner.window.front() {
            if inner.window.len() <= self.settings.window && now.duration_since(*at) <= self.settings.max_age {
                break;
            }
            inner.floor = inner.floor.max(c.position);
            inner.window.pop_front();
        }
    }

    /// Up to `max` published changes after `from`, and the position to read on from.
    pub fn read(&self, from: Position, max: usize) -> Result<(Vec<Arc<Change>>, Position), Gone> {
        let mut inner = self.lock();
        self.evict(&mut inner, Instant::now());
        if from.epoch != inner.epoch || from.seq < inner.floor || from.seq > inner.seq {
            return Err(Gone);
        }
        let start = inner.window.partition_point(|(_, c)| c.position <= from.seq);
        let out: Vec<Arc<Change>> = inner.window.iter().skip(start).take(max).map(|(_, c)| c.clone()).collect();
        let next = if start + out.len() < inner.window.len() {
            out.last().map_or(from.seq, |c| c.position)
        } else {
            from.seq.max(inner.horizon)
        };
        Ok((out, Position { epoch: from.epoch, seq: next }))
    }

    /// Tells when something was published.
    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.published.subscribe()
    }

    /// How many changes the window holds.
    pub fn len(&self) -> usize {
        self.lock().window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::resources::CUSTOMERS;
    use serde_json::json;

    fn snap(reseller: u64, doc: Value) -> Option<Snapshot> {
        Some(Snapshot { owner: Owner { tenant: Some(reseller), customer: None }, doc })
    }

    fn c(id: u64) -> Subject {
        Subject::of(&CUSTOMERS, id, "http://x")
    }

    fn feed(window: usize) -> Arc<Feed> {
        Feed::new(FeedSettings { window, ..Default::default() }, "http://x")
    }

    #[test]
    fn positions_read_back_and_refuse_garbage() {
        let p = Position { epoch: 0xabc, seq: 42 };
        assert_eq!(p.to_string(), "0000000000000abc-42");
        assert_eq!(p.to_string().parse::<Position>(), Ok(p));
        for bad in
            ["", "-", "abc-1", "0000000000000abc-", "0000000000000abc-1x", "zzzzzzzzzzzzzzzz-1", "0000000000000abc--1"]
        {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_patches_name_what_changed_and_null_what_went() {
        let a = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": 3});
        let b = json!({"a": 1, "b": {"x": 1, "y": 5}, "d": 4});
        assert_eq!(merge_patch(&a, &b), json!({"b": {"y": 5}, "c": null, "d": 4}));
        assert_eq!(merge_patch(&a, &a), json!({}));
    }

    #[test]
    fn the_changes_of_one_moment_are_one_per_element_and_split_exactly_at_a_position() {
        let f = feed(100);
        let start = f.position();
        f.record(c(1), None, snap(4, json!({"id": 1})));
        let listed = f.position();
        f.record(c(1), snap(4, json!({"id": 1})), snap(4, json!({"id": 1, "b": {"l": "Bern"}})));
        f.record(c(2), None, snap(4, json!({"id": 2})));
        f.record(c(2), snap(4, json!({"id": 2})), None);
        // Nothing is published before the moment is over.
        assert!(f.read(start, 10).unwrap().0.is_empty());
        f.publish();
        let (all, next) = f.read(start, 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].subject.id, 1);
        assert_eq!(all[0].changed, json!({"id": 1, "b": {"l": "Bern"}}));
        let sees = |_| true;
        assert_eq!(all[0].seen(sees).unwrap().0, What::Created);
        assert_eq!(all[1].seen(sees).unwrap().0, What::Deleted, "created and gone: a list may have shown it");
        assert_eq!(next, f.position());
        // From the list's position, the merged change of 1 still comes (it ends after it).
        let (after_list, _) = f.read(listed, 10).unwrap();
        assert_eq!(after_list.len(), 2);
        // Reading on from the end gives nothing more.
        assert!(f.read(next, 10).unwrap().0.is_empty());
    }

    #[test]
    fn moves_are_deletes_and_creates_to_who_sees_one_side() {
        let f = feed(100);
        let start = f.position();
        f.record(c(1), snap(4, json!({"id": 1, "r": 4})), snap(5, json!({"id": 1, "r": 5})));
        f.publish();
        let (all, _) = f.read(start, 10).unwrap();
        let c = &all[0];
        assert_eq!(c.seen(|_| true).map(|s| s.0), Some(What::Moved));
        assert_eq!(c.seen(|o| o.tenant == Some(4)).map(|s| s.0), Some(What::Deleted));
        let (what, doc) = c.seen(|o| o.tenant == Some(5)).unwrap();
        assert_eq!((what, doc), (What::Created, &json!({"id": 1, "r": 5})));
        assert!(c.seen(|o| o.tenant == Some(6)).is_none());
    }

    #[test]
    fn positions_outside_the_window_or_of_another_run_are_gone() {
        let f = feed(2);
        let start = f.position();
        for id in 1..=3 {
            f.record(c(id), None, snap(4, json!({"id": id})));
            f.publish();
        }
        assert_eq!(f.read(start, 10).err(), Some(Gone), "the first change left the window");
        let (two, _) = f.read(Position { seq: 1, ..start }, 10).unwrap();
        assert_eq!(two.iter().map(|c| c.subject.id.clone()).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(f.read(Position { seq: 99, ..start }, 10).err(), Some(Gone), "from the future");
        assert_eq!(f.read(Position { epoch: start.epoch ^ 1, ..start }, 10).err(), Some(Gone));
        let now = f.position();
        f.reset();
        assert_eq!(f.read(now, 10).err(), Some(Gone), "a reload voids every position");
        assert!(f.read(f.position(), 10).unwrap().0.is_empty());
    }
}
