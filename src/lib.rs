//! stoney-gateway: the REST gateway of the stoney customer directory kept in OpenLDAP.
//!
//! Layers, top to bottom: `http` (routes, extractors, errors) → `service` (operations and
//! scope checks) → `mapping` (the resource definitions, JSON ↔ entries) → `directory`
//! (pool, DN and filter building, controls, transactions, replication checks); beside
//! them `collection`, the index that answers lists, kept by the directory's content
//! synchronisation.

pub mod app;
pub mod collection;
pub mod config;
pub mod directory;
pub mod feed;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod service;
pub mod telemetry;
pub mod tools;
