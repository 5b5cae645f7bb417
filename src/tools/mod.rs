//! Tools for admins that use the gateway as any client does (its REST API, with the
//! caller's credentials and scope): export and import of a collection.

pub mod transfer;
