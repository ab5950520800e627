//! The embedded backend: one redb file, so `kairos serve` needs nothing else.
//!
//! Every write is one redb transaction with `Durability::Immediate`: committed
//! and fsynced before the call returns. redb calls block, so each runs on
//! tokio's blocking pool, never on an async worker thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kairos_core::{Customer, CustomerId, CustomerPatch, Event};
use kairos_learn::profile_first_response as first_response;
use kairos_learn::ProfileState;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{
    customer_tz, CustomerExport, CustomerRecord, IngestOutcome, ProfileVisitor, Result, Store,
    StoreContext, StoreError,
};

/// (customer, event id) -> event as JSON. Also the idempotency record.
const EVENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("events");
/// customer -> attributes as JSON.
const CUSTOMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("customers");
/// customer -> profile state (postcard).
const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
/// (customer, "channel:message_id") -> () for messages already responded to.
const RESPONSES: TableDefinition<(&str, &str), ()> = TableDefinition::new("responses");
/// model name -> bytes.
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");

pub const FILE_NAME: &str = "kairos.redb";

#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    ctx: StoreContext,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `dir`.
    pub fn open(dir: &Path, ctx: StoreContext) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // Create every table up front so read transactions never miss one.
        let txn = db.begin_write().map_err(StoreError::unavailable)?;
        {
            txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
            txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
            txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
            txn.open_table(RESPONSES).map_err(StoreError::unavailable)?;
            txn.open_table(MODELS).map_err(StoreError::unavailable)?;
        }
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner { db, ctx, path }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs blocking store work on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

fn decode_profile(bytes: &[u8]) -> Result<ProfileState> {
    postcard::from_bytes(bytes).map_err(StoreError::corrupt)
}

fn encode_profile(p: &ProfileState) -> Result<Vec<u8>> {
    postcard::to_stdvec(p).map_err(StoreError::corrupt)
}

fn decode_customer(bytes: &[u8]) -> Result<Customer> {
    serde_json::from_slice(bytes).map_err(StoreError::corrupt)
}

fn decode_event(bytes: &[u8]) -> Result<Event> {
    serde_json::from_slice(bytes).map_err(StoreError::corrupt)
}

/// Keys of one customer in a table keyed by (customer, _).
fn keys_of<T: ReadableTable<(&'static str, &'static str), V>, V: redb::Value + 'static>(
    table: &T,
    customer: &str,
) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for entry in table
        .range((customer, "")..)
        .map_err(StoreError::unavailable)?
    {
        let (k, _) = entry.map_err(StoreError::unavailable)?;
        let (c, rest) = k.value();
        if c != customer {
            break;
        }
        keys.push(rest.to_owned());
    }
    Ok(keys)
}

fn events_of<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    table: &T,
    customer: &str,
) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    for entry in table
        .range((customer, "")..)
        .map_err(StoreError::unavailable)?
    {
        let (k, v) = entry.map_err(StoreError::unavailable)?;
        if k.value().0 != customer {
            break;
        }
        events.push(decode_event(v.value())?);
    }
    events.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
    Ok(events)
}

impl Inner {
    fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome> {
        let mut outcome = IngestOutcome::default();
        let txn = self.db.begin_write().map_err(StoreError::unavailable)?;
        {
            let mut ev_table = txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
            let mut responses = txn.open_table(RESPONSES).map_err(StoreError::unavailable)?;
            let mut profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
            let customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
            let mut touched: BTreeMap<String, (ProfileState, chrono_tz::Tz)> = BTreeMap::new();
            for event in &events {
                let cid = event.customer_id.as_str();
                let key = (cid, event.event_id.as_str());
                if ev_table
                    .get(key)
                    .map_err(StoreError::unavailable)?
                    .is_some()
                {
                    outcome.duplicates += 1;
                    continue;
                }
                let json = serde_json::to_vec(event).map_err(StoreError::corrupt)?;
                ev_table
                    .insert(key, json.as_slice())
                    .map_err(StoreError::unavailable)?;
                if !touched.contains_key(cid) {
                    let profile = match profiles.get(cid).map_err(StoreError::unavailable)? {
                        Some(v) => decode_profile(v.value())?,
                        None => ProfileState::default(),
                    };
                    let attrs = match customers.get(cid).map_err(StoreError::unavailable)? {
                        Some(v) => Some(decode_customer(v.value())?),
                        None => None,
                    };
                    let tz = customer_tz(attrs.as_ref(), self.ctx.default_tz);
                    touched.insert(cid.to_owned(), (profile, tz));
                }
                let mut new_response = Ok(true);
                let first = first_response(event, |k| {
                    new_response = responses
                        .insert((cid, k), ())
                        .map(|old| old.is_none())
                        .map_err(StoreError::unavailable);
                    *new_response.as_ref().unwrap_or(&false)
                });
                new_response?;
                if let Some((profile, tz)) = touched.get_mut(cid) {
                    profile.observe(event, *tz, &self.ctx.learn, first);
                }
                outcome.accepted += 1;
            }
            for (cid, (profile, _)) in &touched {
                let bytes = encode_profile(profile)?;
                profiles
                    .insert(cid.as_str(), bytes.as_slice())
                    .map_err(StoreError::unavailable)?;
            }
        }
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(outcome)
    }

    fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let cid = id.as_str();
        let txn = self.db.begin_write().map_err(StoreError::unavailable)?;
        let updated = {
            let mut customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
            let current = match customers.get(cid).map_err(StoreError::unavailable)? {
                Some(v) => Some(decode_customer(v.value())?),
                None => None,
            };
            let old_tz = customer_tz(current.as_ref(), self.ctx.default_tz);
            let updated = patch.apply(id.clone(), current, now);
            let json = serde_json::to_vec(&updated).map_err(StoreError::corrupt)?;
            customers
                .insert(cid, json.as_slice())
                .map_err(StoreError::unavailable)?;
            let new_tz = customer_tz(Some(&updated), self.ctx.default_tz);
            if new_tz != old_tz {
                let events = events_of(
                    &txn.open_table(EVENTS).map_err(StoreError::unavailable)?,
                    cid,
                )?;
                if !events.is_empty() {
                    let profile = ProfileState::from_events(&events, new_tz, &self.ctx.learn);
                    let bytes = encode_profile(&profile)?;
                    txn.open_table(PROFILES)
                        .map_err(StoreError::unavailable)?
                        .insert(cid, bytes.as_slice())
                        .map_err(StoreError::unavailable)?;
                    tracing::info!(customer_id = %id, events = events.len(), timezone = %new_tz.name(), "profile recomputed for new time zone");
                }
            }
            updated
        };
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(updated)
    }

    fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>> {
        let txn = self.db.begin_read().map_err(StoreError::unavailable)?;
        let customers = txn.open_table(CUSTOMERS).map_err(StoreError::unavailable)?;
        let profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
        let attributes = match customers
            .get(id.as_str())
            .map_err(StoreError::unavailable)?
        {
            Some(v) => Some(decode_customer(v.value())?),
            None => None,
        };
        let profile = match profiles.get(id.as_str()).map_err(StoreError::unavailable)? {
            Some(v) => Some(decode_profile(v.value())?),
            None => None,
        };
        if attributes.is_none() && profile.is_none() {
            return Ok(None);
        }
        Ok(Some(CustomerRecord {
            customer_id: id.clone(),
            attributes,
            profile: profile.unwrap_or_default(),
        }))
    }

    fn delete_customer(&self, id: &CustomerId) -> Result<bool> {
        let cid = id.as_str();
        let txn = self.db.begin_write().map_err(StoreError::unavailable)?;
        let mut found = false;
        {
            let mut events = txn.open_table(EVENTS).map_err(StoreError::unavailable)?;
            for k in keys_of(&events, cid)? {
                found |= events
                    .remove((cid, k.as_str()))
                    .map_err(StoreError::unavailable)?
                    .is_some();
            }
            let mut responses = txn.open_table(RESPONSES).map_err(StoreError::unavailable)?;
            for k in keys_of(&responses, cid)? {
                responses
                    .remove((cid, k.as_str()))
                    .map_err(StoreError::unavailable)?;
            }
            for table in [CUSTOMERS, PROFILES] {
                let mut t = txn.open_table(table).map_err(StoreError::unavailable)?;
                found |= t.remove(cid).map_err(StoreError::unavailable)?.is_some();
            }
        }
        txn.commit().map_err(StoreError::unavailable)?;
        Ok(found)
    }

    fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>> {
        let Some(record) = self.customer(id)? else {
            return Ok(None);
        };
        let txn = self.db.begin_read().map_err(StoreError::unavailable)?;
        let events = events_of(
            &txn.open_table(EVENTS).map_err(StoreError::unavailable)?,
            id.as_str(),
        )?;
        let responded_messages = keys_of(
            &txn.open_table(RESPONSES).map_err(StoreError::unavailable)?,
            id.as_str(),
        )?;
        Ok(Some(CustomerExport {
            customer_id: record.customer_id,
            attributes: record.attributes,
            profile: record.profile,
            events,
            responded_messages,
        }))
    }

    fn visit_profiles(&self, mut visit: ProfileVisitor) -> Result<u64> {
        let txn = self.db.begin_read().map_err(StoreError::unavailable)?;
        let profiles = txn.open_table(PROFILES).map_err(StoreError::unavailable)?;
        let mut n = 0;
        for entry in profiles.iter().map_err(StoreError::unavailable)? {
            let (k, v) = entry.map_err(StoreError::unavailable)?;
            let id = CustomerId::parse(k.value()).map_err(StoreError::corrupt)?;
            visit(&id, &decode_profile(v.value())?);
            n += 1;
        }
        Ok(n)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn ingest(&self, events: Vec<Event>) -> Result<IngestOutcome> {
        self.run(move |s| s.ingest(events)).await
    }

    async fn put_customer(
        &self,
        id: &CustomerId,
        patch: CustomerPatch,
        now: DateTime<Utc>,
    ) -> Result<Customer> {
        let id = id.clone();
        self.run(move |s| s.put_customer(&id, patch, now)).await
    }

    async fn customer(&self, id: &CustomerId) -> Result<Option<CustomerRecord>> {
        let id = id.clone();
        self.run(move |s| s.customer(&id)).await
    }

    async fn delete_customer(&self, id: &CustomerId) -> Result<bool> {
        let id = id.clone();
        self.run(move |s| s.delete_customer(&id)).await
    }

    async fn export_customer(&self, id: &CustomerId) -> Result<Option<CustomerExport>> {
        let id = id.clone();
        self.run(move |s| s.export_customer(&id)).await
    }

    async fn visit_profiles(&self, visit: ProfileVisitor) -> Result<u64> {
        self.run(move |s| s.visit_profiles(visit)).await
    }

    async fn put_model(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let name = name.to_owned();
        self.run(move |s| {
            let txn = s.db.begin_write().map_err(StoreError::unavailable)?;
            txn.open_table(MODELS)
                .map_err(StoreError::unavailable)?
                .insert(name.as_str(), bytes.as_slice())
                .map_err(StoreError::unavailable)?;
            txn.commit().map_err(StoreError::unavailable)
        })
        .await
    }

    async fn model(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = name.to_owned();
        self.run(move |s| {
            let txn = s.db.begin_read().map_err(StoreError::unavailable)?;
            let t = txn.open_table(MODELS).map_err(StoreError::unavailable)?;
            let v = t.get(name.as_str()).map_err(StoreError::unavailable)?;
            Ok(v.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.run(|s| {
            let txn = s.db.begin_read().map_err(StoreError::unavailable)?;
            txn.open_table(MODELS).map_err(StoreError::unavailable)?;
            Ok(())
        })
        .await
    }
}
