//! The mapping layer: the declarative tables that say how each JSON field of a resource
//! lives in LDAP, the value types they validate with, and the conversion between JSON
//! documents and directory entries that walks those tables.

pub mod contracts;
pub mod document;
pub mod patch;
pub mod query;
pub mod resource;
pub mod resources;
pub mod row;
pub mod subscriptions;
pub mod table;
pub mod values;
pub mod view;

pub use table::{Field, Kind, Part};

/// One problem with one field of a request, reported in `error.details`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { field: field.into(), message: message.into() }
    }
}
