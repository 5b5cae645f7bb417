//! What a caller may see and do (SPEC section 7).

pub use crate::mapping::resource::{Owner, Role};

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
    /// Whether an element is visible to the caller, by whom it belongs to: a reseller's
    /// users see what is committed to that reseller (nothing while a customer is on its
    /// way to another: then it belongs to no reseller), a customer's users what belongs
    /// to that customer.
    pub fn sees(&self, owner: Owner) -> bool {
        match *self {
            Scope::Provider => true,
            Scope::Reseller(r) => owner.tenant == Some(r),
            Scope::Customer { customer, .. } => owner.customer == Some(customer),
        }
    }

    /// The reseller of a reseller's or customer's user.
    pub fn reseller(&self) -> Option<u64> {
        match *self {
            Scope::Provider => None,
            Scope::Reseller(r) | Scope::Customer { reseller: r, .. } => Some(r),
        }
    }

    /// The customer of a customer's user.
    pub fn customer(&self) -> Option<u64> {
        match *self {
            Scope::Customer { customer, .. } => Some(customer),
            _ => None,
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

/// An authenticated caller: its scope, and the person it is (its own entry is guarded
/// against changes of its scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub scope: Scope,
    pub uid: u64,
}

impl std::ops::Deref for Caller {
    type Target = Scope;
    fn deref(&self) -> &Scope {
        &self.scope
    }
}
