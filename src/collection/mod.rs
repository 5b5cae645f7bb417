//! The collections: per resource an in-memory index of every element, kept exact by
//! the directory's content synchronisation, that answers every list (page, sort,
//! filters, `q=`) without loading the collection from LDAP.

pub mod contracts;
mod handles;
pub mod index;
mod lookup;
mod order;
pub mod snapshot;

pub use index::{CollectionIndex, Page};
pub use snapshot::Fanout;
