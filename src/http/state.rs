//! What every handler gets: the settings, the directory, the services of the resources
//! the authenticator and the subscription keys. It is built at start (`app.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::collection::contracts::ContractWatch;
use crate::config::Settings;
use crate::directory::sync::SyncConsumer;
use crate::directory::Directory;
use crate::mapping::resource::ResourceDef;
use crate::service::auth::Authenticator;
use crate::service::changes::Changes;
use crate::service::contracts::Contracts;
use crate::service::keys::Keys;
use crate::service::subscriptions::Subscriptions;
use crate::service::Resources;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub directory: Directory,
    /// One per resource, in the order of `resources::ALL`.
    pub services: Arc<[Resources]>,
    pub auth: Arc<Authenticator>,
    /// The subscription keys of the merchants' facade.
    pub keys: Arc<Keys>,
    /// The merchants' facade over the customers.
    pub subscriptions: Subscriptions,
    /// The merchants' orders and contracts.
    pub contracts: Contracts,
    /// The change feed's subscribers.
    pub changes: Changes,
    /// The contracts the change feed follows.
    pub contract_watch: Arc<ContractWatch>,
    pub sync: Arc<SyncConsumer>,
    pub body_limit: usize,
    pub ready_timeout: Duration,
}

impl AppState {
    /// The service of every resource, in the order of `resources::ALL`.
    pub fn resources(&self) -> &[Resources] {
        &self.services
    }

    /// The service of a resource (every resource of `resources::ALL` has one).
    pub fn service(&self, def: &'static ResourceDef) -> &Resources {
        self.services.iter().find(|r| std::ptr::eq(r.def(), def)).unwrap_or(&self.services[0])
    }
}
