//! A bounded in-memory cache of customer records in front of the embedded
//! store, which stays the source of truth.
//!
//! Every write removes the records it touches after it commits; each shard
//! also counts its writes, and a record read from the store is only cached
//! when no write reached its shard between the start of the read and the
//! insert, so a read that raced a write can never put an old record back.
//! When a shard is full, an arbitrary record makes room.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use crate::CustomerRecord;

const SHARDS: usize = 64;

#[derive(Debug, Default)]
struct Shard {
    records: HashMap<String, CustomerRecord>,
    writes: u64,
}

#[derive(Debug)]
pub(crate) struct RecordCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

/// Where a read started: pass it back to [`RecordCache::insert`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    shard: usize,
    writes: u64,
}

impl RecordCache {
    /// A cache of at most about `capacity` records (0: none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.shards[i]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn index(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) as usize) % SHARDS
    }

    /// The cached record, or a ticket to cache what the store answers.
    pub(crate) fn get(&self, id: &str) -> Result<CustomerRecord, Ticket> {
        let i = self.index(id);
        let shard = self.shard(i);
        match shard.records.get(id) {
            Some(r) => Ok(r.clone()),
            None => Err(Ticket {
                shard: i,
                writes: shard.writes,
            }),
        }
    }

    /// Caches a record read from the store, unless a write came in between.
    pub(crate) fn insert(&self, ticket: Ticket, record: &CustomerRecord) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(ticket.shard);
        if shard.writes != ticket.writes {
            return;
        }
        if shard.records.len() >= self.per_shard {
            if let Some(k) = shard.records.keys().next().cloned() {
                shard.records.remove(&k);
            }
        }
        // Without its stored bytes: they would double the memory a record
        // takes, and a reservation from a cached read is checked in full.
        let mut kept = record.clone();
        kept.stored = None;
        shard
            .records
            .insert(record.customer_id.as_str().to_owned(), kept);
    }

    /// Forgets a customer's record; call after the write that changed it committed.
    pub(crate) fn invalidate(&self, id: &str) {
        let mut shard = self.shard(self.index(id));
        shard.writes += 1;
        shard.records.remove(id);
    }

    /// Forgets every record.
    pub(crate) fn clear(&self) {
        for i in 0..SHARDS {
            let mut shard = self.shard(i);
            shard.writes += 1;
            shard.records.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::CustomerId;

    fn record(id: &str, events: u64) -> CustomerRecord {
        let mut r = CustomerRecord {
            customer_id: CustomerId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            attributes: None,
            profile: Default::default(),
            reservations: Vec::new(),
            stored: None,
        };
        r.profile.events = events;
        r
    }

    #[test]
    fn a_write_during_a_read_keeps_the_old_record_out() {
        let cache = RecordCache::new(1000);
        let Err(ticket) = cache.get("c-1") else {
            panic!("empty cache")
        };
        // A write commits and invalidates while the read is in flight.
        cache.invalidate("c-1");
        cache.insert(ticket, &record("c-1", 1));
        assert!(cache.get("c-1").is_err(), "the raced read was not cached");
        let Err(ticket) = cache.get("c-1") else {
            panic!()
        };
        cache.insert(ticket, &record("c-1", 2));
        assert_eq!(cache.get("c-1").map(|r| r.profile.events).ok(), Some(2));
        cache.invalidate("c-1");
        assert!(cache.get("c-1").is_err());
    }

    #[test]
    fn bounded() {
        let cache = RecordCache::new(128);
        for i in 0..10_000 {
            let id = format!("c-{i}");
            if let Err(t) = cache.get(&id) {
                cache.insert(t, &record(&id, 1));
            }
        }
        let held: usize = (0..SHARDS).map(|i| cache.shard(i).records.len()).sum();
        assert!((64..=128 + SHARDS).contains(&held), "{held}");
        cache.clear();
        let held: usize = (0..SHARDS).map(|i| cache.shard(i).records.len()).sum();
        assert_eq!(held, 0);
        // Capacity 0: nothing is cached.
        let none = RecordCache::new(0);
        let Err(t) = none.get("c-1") else { panic!() };
        none.insert(t, &record("c-1", 1));
        assert!(none.get("c-1").is_err());
    }
}
