//! The resources, one definition each.

mod address;
mod customers;
mod people;
mod resellers;
mod shared;

pub use address::ADDRESS;
pub use customers::CUSTOMERS;
pub use people::PEOPLE;
pub use resellers::RESELLERS;

use super::resource::ResourceDef;

/// Every resource the gateway serves, in the order of the API.
pub static ALL: &[&ResourceDef] = &[&CUSTOMERS, &RESELLERS, &PEOPLE];
