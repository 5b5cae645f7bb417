//! The change feed in REST terms: which changes a caller sees, each as a CloudEvents 1.0
//! event naming its resource by its REST location, and how many subscribers may wait
//! for them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Scope, ServiceError};
use crate::directory::reconcile::rfc3339;
use crate::feed::{Change, Feed, Position, What};
use crate::mapping::contracts::CONTRACTS;
use crate::mapping::resources::ALL;

/// Which changes a subscriber asked for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The resources (none given: all).
    pub resources: Vec<&'static str>,
    /// One element's id, as its JSON shows it.
    pub id: Option<String>,
}

impl Filter {
    /// From `?resource=customers,people` and `?id=`.
    pub fn parse(resource: Option<&str>, id: Option<&str>) -> Result<Filter, ServiceError> {
        let known: Vec<&'static str> = ALL.iter().map(|d| d.name).chain([CONTRACTS]).collect();
        let mut resources: Vec<&'static str> = Vec::new();
        for name in resource.into_iter().flat_map(|r| r.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
            let found = known.iter().copied().find(|k| *k == name).ok_or_else(|| {
                ServiceError::BadRequest(format!(
                    "resource: {:?} is not one of {}",
                    name.chars().take(64).collect::<String>(),
                    known.join(", ")
                ))
            })?;
            if !resources.contains(&found) {
                resources.push(found);
            }
        }
        let id = match id {
            None => None,
            Some(s)
                if !s.is_empty()
                    && s.len() <= 64
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                Some(s.to_string())
            }
            Some(_) => return Err(ServiceError::BadRequest("id: give a resource id".into())),
        };
        Ok(Filter { resources, id })
    }

    fn wants(&self, c: &Change) -> bool {
        (self.resources.is_empty() || self.resources.contains(&c.subject.resource))
            && self.id.as_deref().is_none_or(|id| match &c.subject.id {
                Value::String(s) => s == id,
                other => other.as_u64().is_some_and(|n| id.parse::<u64>() == Ok(n)),
            })
    }
}

/// Open subscriptions, in all and per caller.
struct Streams {
    max: usize,
    per_caller: usize,
    open: Mutex<(usize, HashMap<u64, usize>)>,
}

/// One open subscription; it counts until dropped.
pub struct StreamSlot {
    streams: Arc<Streams>,
    caller: u64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.caller);
            }
        }
    }
}

#[derive(Clone)]
pub struct Changes {
    feed: Arc<Feed>,
    streams: Arc<Streams>,
    /// Set when the gateway stops: open streams end.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// What a subscriber is told.
pub enum Told {
    /// The events it sees, and where to read on.
    Events(Vec<Value>, Position),
    /// Its position is gone: list again.
    Gone,
}

pub const GONE: &str = "this position is not in the change window (it is too old, from another gateway or from before a restart); list the collection again and follow from its X-Changes-Position";

impl Changes {
    pub fn new(feed: Arc<Feed>, max_streams: usize, max_per_caller: usize) -> Changes {
        let streams =
            Arc::new(Streams { max: max_streams.max(1), per_caller: max_per_caller.max(1), open: Default::default() });
        Changes { feed, streams, closing: Arc::new(tokio::sync::watch::channel(false).0) }
    }

    /// Ends every subscription (the gateway stops).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn closing(&self) -> bool {
        *self.closing.borrow()
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// How many subscriptions are open.
    pub fn open_streams(&self) -> usize {
        self.streams.open.lock().map(|o| o.0).unwrap_or(0)
    }

    /// Holds a place for one more subscription of `caller` (a person's uid), or says
    /// that there are too many.
    pub fn open(&self, caller: u64) -> Result<StreamSlot, ServiceError> {
        let mut open = self.streams.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.streams.max {
            return Err(ServiceError::TooManyStreams("too many open change streams; try again later".into()));
        }
        let mine = open.1.entry(caller).or_insert(0);
        if *mine >= self.streams.per_caller {
            return Err(ServiceError::TooManyStreams(
                "too many open change streams of this caller; close one or try again later".into(),
            ));
        }
        *mine += 1;
        open.0 += 1;
        Ok(StreamSlot { streams: self.streams.clone(), caller })
    }

    /// Where a subscriber starts: after `since`, else now.
    pub fn start(&self, since: Option<&str>) -> Result<Position, ServiceError> {
        let Some(since) = since else { return Ok(self.feed.position()) };
        let gone = || {
            crate::metrics::change_feed_reset();
            ServiceError::Gone(GONE.into())
        };
        let p: Position = since.parse().map_err(|_| gone())?;
        // A position this feed never handed out, or one already gone.
        self.feed.read(p, 0).map_err(|_| gone())?;
        Ok(p)
    }

    /// The events after `from` the caller sees (up to `max` changes looked at).
    pub fn next(&self, scope: &Scope, filter: &Filter, from: Position, max: usize) -> Told {
        let Ok((changes, next)) = self.feed.read(from, max) else {
            crate::metrics::change_feed_reset();
            return Told::Gone;
        };
        let events: Vec<Value> = changes
            .iter()
            .filter(|c| filter.wants(c))
            .filter_map(|c| c.seen(|o| scope.sees(o)).map(|(what, fields)| self.event(from.epoch, c, what, fields)))
            .collect();
        crate::metrics::change_events_sent(events.len() as u64);
        Told::Events(events, next)
    }

    /// Waits until something after `from` is published, or `timeout` passes.
    pub async fn wait(&self, from: Position, timeout: Duration) {
        let mut rx = self.feed.subscribe();
        let mut closing = self.closing.subscribe();
        let published = rx.wait_for(|p| p.epoch != from.epoch || p.seq > from.seq);
        tokio::select! {
            _ = tokio::time::timeout(timeout, published) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    }

    /// One change as a CloudEvent: `data` names the resource's id and reseller, and the
    /// fields that changed with their new values (a JSON merge patch, `null`: removed; on
    /// `created` the whole document).
    fn event(&self, epoch: u64, c: &Change, what: What, fields: &Value) -> Value {
        let url = self.feed.public_url();
        let owner = match what {
            What::Deleted => c.before,
            _ => c.after.as_ref().map(|(o, _)| *o),
        };
        let mut data = Map::new();
        data.insert("id".into(), c.subject.id.clone());
        data.insert("reseller".into(), json!(owner.and_then(|o| o.tenant)));
        if what == What::Moved {
            data.insert("previousReseller".into(), json!(c.before.and_then(|o| o.tenant)));
        }
        if what != What::Deleted {
            data.insert("changed".into(), fields.clone());
        }
        json!({
            "specversion": "1.0",
            "id": Position { epoch, seq: c.position }.to_string(),
            "source": format!("{url}/v1/changes"),
            "type": format!("org.stoney.{}.{}", c.subject.singular, what.as_str()),
            "time": rfc3339(c.time),
            "subject": c.subject.location,
            "datacontenttype": "application/json",
            "data": data,
        })
    }
}
