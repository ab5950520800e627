//! Kairos storage: the [`Store`] trait every backend implements, and the
//! embedded backend (redb) that `kairos serve` uses by default.
//!
//! A store keeps, per customer: their attributes, every accepted event (which
//! is also the idempotency record, keyed by customer and event id), the
//! learned profile state, and which messages they already responded to. It
//! also keeps trained models shared by every server using it.
//!
//! Ingest is atomic and durable: a batch is one transaction, committed and
//! fsynced before the call returns, and the profile update happens in the same
//! transaction as the events it reflects.

#[cfg(feature = "conformance")]
pub mod conformance;
mod embedded;
mod error;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kairos_core::{Customer, CustomerId, CustomerPatch, Event};
use kairos_learn::{ProfileConfig, ProfileState};
use serde::Serialize;

pub use embedded::EmbeddedStore;
pub use error::{Result, StoreError};

/// What every backend needs to know to maintain profiles.
#[derive(Debug, Clone)]
pub struct StoreContext {
    /// Decay and attribution of the online profile update.
    pub profile: ProfileConfig,
    /// Zone used for customers whose own zone is unknown.
    pub default_tz: Tz,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub duplicates: u64,
}

/// A customer as stored: attributes if the client set any, and the profile
/// if any event arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRecord {
    pub customer_id: CustomerId,
    pub attributes: Option<Customer>,
    pub profile: ProfileState,
}

/// Everything stored about one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerExport {
    pub customer_id: CustomerId,
    pub attributes: Option<Customer>,
    pub profile: ProfileState,
    /// Every stored event, oldest first.
    pub events: Vec<Event>,
    /// Attribution state of the customer's messages, by "channel:message_id".
    pub messages: std::collections::BTreeMap<String, kairos_learn::MessageState>,
}

/// One customer's whole history, for training.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerHistory {
    pub customer_id: CustomerId,
    pub attributes: Option<Customer>,
    /// Every stored event, oldest first.
    pub events: Vec<Event>,
}

/// Called once per stored profile by [`Store::visit_profiles`].
pub type ProfileVisitor = Box<dyn FnMut(&CustomerId, &ProfileState) + Send>;
/// Called once per customer with events by [`Store::visit_histories`].
pub type HistoryVisitor = Box<dyn FnMut(CustomerHistory) + Send>;

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Stores a batch of validated events atomically and durably, once per
    /// (customer, event id) forever, and updates the customers' profiles.
    async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome>;

    /// Merges attributes into a customer, creating it if needed. A change of
    /// time zone recomputes the profile from the stored events.
    async fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer>;

    /// The customer, or `None` if nothing at all is stored for them.
    async fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>>;

    /// Erases every trace of the customer. True if anything was stored.
    async fn delete_customer(&self, id: &CustomerId) -> Result<bool>;

    /// Everything stored about the customer.
    async fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>>;

    /// Calls `visit` for every stored profile; returns how many.
    async fn visit_profiles(&self, visit: ProfileVisitor) -> Result<u64>;

    /// Calls `visit` with every customer's history; returns how many.
    async fn visit_histories(&self, visit: HistoryVisitor) -> Result<u64>;

    /// The profile update from now on (decay, attribution).
    fn profile_config(&self) -> ProfileConfig;

    /// Uses `config` for new events without recomputing stored profiles (for
    /// profiles already computed with it).
    fn set_profile_config(&self, config: ProfileConfig);

    /// Uses `config` for every profile from now on, recomputing each stored
    /// profile from its events (a few customers per transaction, so ingest
    /// goes on meanwhile). Returns how many profiles were recomputed.
    async fn rebuild_profiles(&self, config: ProfileConfig) -> Result<u64>;

    /// Stores a named model artifact shared by every server on this store.
    async fn put_model(&self, name: &str, bytes: Vec<u8>) -> Result<()>;

    async fn model(&self, name: &str) -> Result<Option<Vec<u8>>>;

    /// Succeeds when the store can serve reads and writes.
    async fn ping(&self) -> Result<()>;
}

/// The zone a customer's local times are computed in.
pub fn customer_tz(attributes: Option<&Customer>, default: Tz) -> Tz {
    attributes
        .and_then(|c| c.timezone.as_deref())
        .and_then(|name| name.parse().ok())
        .unwrap_or(default)
}
