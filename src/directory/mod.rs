//! The directory layer: the LDAP connection pool, DN and filter building, controls,
//! transactions, the id counter. Nothing here knows JSON.

pub mod controls;
pub mod csn;
pub mod entry;
pub mod error;
pub mod escape;
pub mod layout;
pub mod ops;
pub mod pool;
pub mod reconcile;
pub mod shared;
pub mod sync;

pub use entry::Entry;
pub use error::DirError;
pub use ops::{Directory, Guarded, Op};
