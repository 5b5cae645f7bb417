//! The contracts of the subscriptions facade as the change feed sees them: every
//! `sgwContract` entry below a customer, kept by the same content synchronisation as the
//! indexes, so that each change of a contract (an order, an activation, a termination,
//! options, a return, a move of its customer), whoever made it, is an event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::directory::reconcile::rfc3339;
use crate::directory::sync::{SyncEvent, SyncSink, Uuid};
use crate::directory::Entry;
use crate::feed::{Feed, Snapshot, Subject};
use crate::mapping::contracts::{self, CONTRACTS};
use crate::mapping::resource::Owner;
use crate::mapping::resources::CUSTOMERS;
use crate::mapping::table::Part;

struct Known {
    subject: Subject,
    snapshot: Snapshot,
    gen: u32,
}

#[derive(Default)]
struct State {
    known: HashMap<Uuid, Known>,
    gen: u32,
    /// Loading from nothing: what arrives is the content, not changes.
    loading: bool,
    /// While the indexes came from a snapshot and this holds nothing yet (the check
    /// after the resume brings the content): the entries the session changed or deleted
    /// since, which are newer than what the check reads of them.
    restoring: Option<std::collections::HashSet<Uuid>>,
}

pub struct ContractWatch {
    base: String,
    feed: Arc<Feed>,
    state: Mutex<State>,
}

impl ContractWatch {
    pub fn new(base: &str, feed: Arc<Feed>) -> ContractWatch {
        ContractWatch { base: base.to_string(), feed, state: Mutex::new(State::default()) }
    }

    /// The synchronisation resumes from a snapshot of the indexes, which holds no
    /// contracts: they come with the check that follows the resume.
    pub fn restored(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.restoring = Some(Default::default());
    }

    /// A contract entry's subject and state: its customer and reseller come from its DN
    /// (`sgwContractId=…,ou=contracts,uid=<customer>,ou=customers,uid=<reseller>,ou=reseller,<base>`).
    fn read(&self, e: &Entry) -> Option<(Subject, Snapshot)> {
        if !e.has_object_class("sgwContract") {
            return None;
        }
        // Its customer's DN, placed as the customers' definition places it.
        let mut rdns = e.dn.splitn(3, ',');
        let (_, ou, customer_dn) = (rdns.next()?, rdns.next()?, rdns.next()?);
        if !is_contracts_rdn(ou) {
            return None;
        }
        let at = CUSTOMERS.place(customer_dn, &self.base).filter(|p| p.part == Part::Root)?;
        let (customer, reseller) = (at.id, at.parent);
        let id = e.first("sgwContractId")?.to_string();
        let url = self.feed.public_url();
        let location = match e.first("sgwCustomerNumber") {
            Some(n) => format!("{url}/subscriptions/v1/customers/{}/contracts/{id}", crate::mapping::query::encode(n)),
            None => format!("{url}/v1/customers/{customer}"),
        };
        let today = &rfc3339(std::time::SystemTime::now())[..10];
        let mut doc = contracts::contract_json(e, today);
        doc["customerNumber"] = e.first("sgwCustomerNumber").map(|n| Value::String(n.into())).unwrap_or(Value::Null);
        let subject = Subject { resource: CONTRACTS, singular: "contract", id: Value::String(id), location };
        Some((subject, Snapshot { owner: Owner { tenant: Some(reseller), customer: Some(customer) }, doc }))
    }
}

impl SyncSink for ContractWatch {
    fn apply(&self, event: SyncEvent) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let gen = state.gen;
        if let (Some(newer), SyncEvent::Entry { uuid, .. } | SyncEvent::Delete { uuid }) =
            (&mut state.restoring, &event)
        {
            newer.insert(*uuid);
        }
        match event {
            SyncEvent::RefreshBegin { reload } => {
                state.gen = state.gen.wrapping_add(1);
                if reload {
                    state.known.clear();
                    state.loading = true;
                    state.restoring = None;
                }
            }
            SyncEvent::Entry { uuid, entry } => {
                let before = state.known.remove(&uuid);
                let now = self.read(&entry);
                let loading = state.loading;
                if let Some((subject, snapshot)) = &now {
                    state.known.insert(uuid, Known { subject: subject.clone(), snapshot: snapshot.clone(), gen });
                }
                if loading {
                    return;
                }
                match (before, now) {
                    // Another contract under the same entry: the old one went.
                    (Some(b), Some((subject, snap))) if b.subject.id != subject.id => {
                        self.feed.record(b.subject, Some(b.snapshot), None);
                        self.feed.record(subject, None, Some(snap));
                    }
                    (b, Some((subject, snap))) => self.feed.record(subject, b.map(|b| b.snapshot), Some(snap)),
                    (Some(b), None) => self.feed.record(b.subject, Some(b.snapshot), None),
                    (None, None) => {}
                }
            }
            SyncEvent::Delete { uuid } => {
                if let Some(b) = state.known.remove(&uuid) {
                    if !state.loading {
                        self.feed.record(b.subject, Some(b.snapshot), None);
                    }
                }
            }
            SyncEvent::Present(uuids) => {
                for u in uuids {
                    if let Some(k) = state.known.get_mut(&u) {
                        k.gen = gen;
                    }
                }
            }
            SyncEvent::RefreshEnd { present } => {
                if present {
                    let gone: Vec<Uuid> = state.known.iter().filter(|(_, k)| k.gen != gen).map(|(u, _)| *u).collect();
                    for u in gone {
                        if let Some(b) = state.known.remove(&u) {
                            if !state.loading {
                                self.feed.record(b.subject, Some(b.snapshot), None);
                            }
                        }
                    }
                }
                state.loading = false;
            }
            SyncEvent::Cookie(..) | SyncEvent::Verified(_) | SyncEvent::Unchanged(_) => {}
            // A check after a resume corrects the collection indexes; the contracts' events
            // follow the session's own changes only. After a restore it brings the
            // contracts, as a load would (the session's changes meanwhile win).
            SyncEvent::Checked { uuid, entry } if state.restoring.as_ref().is_some_and(|n| !n.contains(&uuid)) => {
                if let Some((subject, snapshot)) = self.read(&entry) {
                    state.known.insert(uuid, Known { subject, snapshot, gen });
                }
            }
            SyncEvent::CheckEnd => state.restoring = None,
            SyncEvent::CheckBegin | SyncEvent::Checked { .. } => {}
        }
    }

    /// After a restore it holds no contracts yet: the check reads each one in full.
    fn lacks(&self, uuid: &Uuid, dn: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.restoring.is_some()
            && !state.known.contains_key(uuid)
            && dn.split(',').nth(1).is_some_and(is_contracts_rdn)
    }
}

/// Whether an RDN is `ou=contracts`, the container of a customer's contracts (whatever
/// its case and the spaces around it; without building the string for every entry of a
/// check).
fn is_contracts_rdn(rdn: &str) -> bool {
    let rdn = rdn.trim();
    rdn.len() == 3 + CONTRACTS.len()
        && rdn.is_char_boundary(3)
        && rdn[..3].eq_ignore_ascii_case("ou=")
        && rdn[3..].eq_ignore_ascii_case(CONTRACTS)
}

#[cfg(test)]
mod tests {
    use super::is_contracts_rdn;

    #[test]
    fn the_contracts_rdn_is_told_whatever_its_case() {
        for rdn in ["ou=contracts", "OU=Contracts", " ou=contracts "] {
            assert!(is_contracts_rdn(rdn), "{rdn:?}");
        }
        for rdn in ["ou=contract", "ou=contractsx", "cn=contracts", "ou=shipping", "", "ü=contracts"] {
            assert!(!is_contracts_rdn(rdn), "{rdn:?}");
        }
    }
}
