//! What a caller may see and do (SPEC section 7).

pub use crate::mapping::resource::Role;

/// The reach of an authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `sstBelongsToUID: 1`: every customer.
    Provider,
    /// A reseller's user: the customers under that reseller.
    Reseller(u64),
    /// A customer's user: that one customer.
    Customer { reseller: u64, customer: u64 },
}

impl Scope {
    /// Whether a customer is visible to the caller, by its id and its tenant: the
    /// reseller it is committed to (`None` while its DN and `sstBelongsToResellerUID`
    /// disagree, as during a move: then it belongs to no reseller).
    pub fn sees(&self, id: u64, tenant: Option<u64>) -> bool {
        match *self {
            Scope::Provider => true,
            Scope::Reseller(r) => tenant == Some(r),
            Scope::Customer { customer, .. } => customer == id,
        }
    }

    /// Whether customers may be placed under this reseller by the caller.
    pub fn may_use_reseller(&self, reseller: u64) -> bool {
        match *self {
            Scope::Provider => true,
            Scope::Reseller(r) => r == reseller,
            Scope::Customer { reseller: r, .. } => r == reseller,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Scope::Provider => Role::Provider,
            Scope::Reseller(_) => Role::Reseller,
            Scope::Customer { .. } => Role::Customer,
        }
    }
}
