//! The service layer: the operations of every resource with their scope checks, on top of the
//! mapping and the directory. It speaks in documents and ids, never in HTTP.

pub mod auth;
pub mod changes;
pub mod contracts;
pub mod keys;
pub mod resources;
pub mod scope;
pub mod subscriptions;
pub mod throttle;

pub use resources::Resources;
pub use scope::{Caller, Scope};

use crate::directory::DirError;
use crate::mapping::Problem;

/// The first `entries` hits of a full-text search in every collection, each list as of
/// one state of the directory (read once); the hits are not counted.
pub async fn search<'a>(
    services: &'a [Resources],
    scope: &Scope,
    q: &str,
    entries: u64,
) -> Result<Vec<(&'a Resources, crate::collection::Page)>, ServiceError> {
    let Some(first) = services.first() else { return Ok(Vec::new()) };
    let raw = format!("q={}&per_page={entries}", crate::mapping::query::encode(q));
    let target = first.directory().context_csn().await?;
    let mut out = Vec::new();
    for s in services {
        let (_, page) = s.first_hits(scope, &raw, &target).await?;
        out.push((s, page));
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Unknown id, or one outside the caller's scope: the two look the same.
    #[error("not found")]
    NotFound,
    /// The request cannot be read (a broken query string).
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("validation failed")]
    Invalid(Vec<Problem>),
    #[error("conflict: {0}")]
    Conflict(String),
    /// Customers of several resellers have this id (written so by hand).
    #[error("customers under resellers {resellers:?} have the id {id}")]
    SharedId { id: u64, resellers: Vec<u64> },
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("directory unavailable")]
    Unavailable,
    /// A change feed position that is no longer (or never was) in the window.
    #[error("gone: {0}")]
    Gone(String),
    /// No more change subscriptions now.
    #[error("too many streams: {0}")]
    TooManyStreams(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<DirError> for ServiceError {
    fn from(e: DirError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = ?e.to_string(), "directory unavailable");
            ServiceError::Unavailable
        } else {
            ServiceError::Internal(e.to_string())
        }
    }
}

/// An `If-Match` precondition (RFC 9110 section 13.1.1, strong comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    Any,
    Tags(Vec<String>),
}

impl Precondition {
    pub fn parse(header: &str) -> Precondition {
        if header.trim() == "*" {
            return Precondition::Any;
        }
        Precondition::Tags(header.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect())
    }

    pub fn matches(&self, etag: &str) -> bool {
        match self {
            Precondition::Any => true,
            Precondition::Tags(tags) => tags.iter().any(|t| !t.starts_with("W/") && t == etag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_uses_strong_comparison() {
        assert!(Precondition::parse("*").matches("\"a\""));
        assert!(Precondition::parse("\"x\", \"a\"").matches("\"a\""));
        assert!(!Precondition::parse("W/\"a\"").matches("\"a\""));
        assert!(!Precondition::parse("\"b\"").matches("\"a\""));
    }
}
